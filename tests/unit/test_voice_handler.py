"""A WebRTC connection whose session cannot be opened (the store is away): told so on its data channel."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from fastrtc.utils import Context, current_context

from tests.fakes import FakeAudioLM, InlineStore, RecordingStreams, held_writes
from tests.unit.test_conversation import POLICY
from voice_assistant.config import TurnSettings
from voice_assistant.metrics import Metrics
from voice_assistant.session.hub import EventHub
from voice_assistant.session.pipeline import Answering, Pipelines, TurnTaking
from voice_assistant.transport.webrtc import Connections, VoiceHandler

pytestmark = pytest.mark.unit


@dataclass
class RecordingChannel:
    readyState: str = "open"  # noqa: N815 (aiortc's name)
    sent: list[str] = field(default_factory=list)

    def send(self, message: str) -> None:
        self.sent.append(message)


async def test_a_connection_whose_session_cannot_be_opened_gets_an_error_event_and_no_session(
    inline_store: InlineStore,
) -> None:
    metrics = Metrics()
    pipelines = Pipelines(
        store=inline_store, held=held_writes(inline_store, metrics), hub=EventHub(), metrics=metrics
    )
    answering = Answering(FakeAudioLM([]), POLICY, None, 60.0, speculative=False, transcripts=False)
    pipelines.load(TurnTaking(None, TurnSettings(), None), answering)  # type: ignore[arg-type]  # no VAD runs
    session_id = await inline_store.create_session(now=datetime.now(UTC))
    connections = Connections(
        pipelines,
        metrics,
        RecordingStreams(),
        bound_session=lambda _webrtc_id: session_id,  # bound by its offer: no UI involved
        ui=lambda: None,  # type: ignore[arg-type, return-value]
        speak=False,
    )
    handler = VoiceHandler(connections)
    channel = RecordingChannel()
    handler.set_channel(channel)  # type: ignore[arg-type]
    current_context.set(Context(webrtc_id="w1"))
    inline_store.fail("turn_count")  # opening the pipeline reads it while the database is away

    await handler.start_up()
    assert [json.loads(message) for message in channel.sent] == [
        {"type": "error", "data": {"message": "the session could not be opened: OperationalError"}}
    ]
    assert handler.session_id is None and handler.live == set()
    assert metrics.registry.get_sample_value("va_errors_total", {"stage": "store"}) == 1
    await handler.shutdown()
