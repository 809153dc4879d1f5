"""A phone call's media stream while the store is away: closed with a reason, counted, nothing raised."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from sqlalchemy.exc import OperationalError

from tests.fakes import InlineStore
from tests.unit.test_twilio_codec import START
from voice_assistant.metrics import Metrics
from voice_assistant.session.hub import EventHub
from voice_assistant.session.pipeline import Pipelines
from voice_assistant.transport.phone import INTERNAL_ERROR, PhoneCall

pytestmark = pytest.mark.unit


@dataclass
class ScriptedSocket:
    """The FastAPI WebSocket of a media stream that sends `incoming` and records how it was closed."""

    incoming: list[str]
    closed: tuple[int, str] | None = None
    sent: list[str] = field(default_factory=list)

    async def accept(self) -> None:
        return None

    async def receive_text(self) -> str:
        return self.incoming.pop(0)

    async def send_text(self, text: str) -> None:
        self.sent.append(text)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


async def test_a_call_whose_token_cannot_be_checked_is_closed_with_a_reason_and_counted(
    inline_store: InlineStore,
) -> None:
    async def spend_token(token: str) -> str | None:
        # What spending a token raises while the database is away (a real outage).
        raise OperationalError("UPDATE call_tokens", None, ConnectionRefusedError("connection refused"))

    metrics = Metrics()
    socket = ScriptedSocket([json.dumps({"event": "connected", "protocol": "Call"}), json.dumps(START)])
    call = PhoneCall(
        socket,  # type: ignore[arg-type]
        pipelines=Pipelines(store=inline_store, hub=EventHub(), metrics=metrics),
        metrics=metrics,
        spend_token=spend_token,
        greeting="",
    )
    await call.run()
    assert socket.closed == (INTERNAL_ERROR, "the assistant cannot take this call right now")
    assert metrics.registry.get_sample_value("va_errors_total", {"stage": "store"}) == 1
