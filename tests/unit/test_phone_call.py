"""A phone call's media stream: while the store is away, closed with a reason, counted, nothing raised;
in a call, each frame of the caller's audio reported to the load sensor."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from fastapi import WebSocketDisconnect
from sqlalchemy.exc import OperationalError
from starlette.websockets import WebSocketState

from tests.fakes import FakeAudioLM, FakeSynthesizer, InlineStore, RecordingStreams, held_writes
from tests.unit.test_conversation import POLICY
from tests.unit.test_twilio_codec import START
from voice_assistant.config import TurnSettings
from voice_assistant.metrics import Metrics
from voice_assistant.session.hub import EventHub
from voice_assistant.session.pipeline import Answering, Pipelines, TurnTaking
from voice_assistant.transport import twilio
from voice_assistant.transport.message_rate import MessageRate
from voice_assistant.transport.phone import (
    FRAME_BYTES,
    INTERNAL_ERROR,
    MULAW_SILENCE,
    NORMAL_CLOSURE,
    UNSUPPORTED_DATA,
    PhoneCall,
)
from voice_assistant.turn.vad import SileroModel

pytestmark = pytest.mark.unit


@dataclass
class ScriptedSocket:
    """The FastAPI WebSocket of a media stream that sends `incoming` and records how it was closed."""

    incoming: list[str | bytes]
    closed: tuple[int, str] | None = None
    sent: list[str] = field(default_factory=list)
    application_state: WebSocketState = WebSocketState.CONNECTED

    async def accept(self) -> None:
        return None

    async def receive(self) -> dict[str, object]:
        if not self.incoming:
            return {"type": "websocket.disconnect", "code": 1000}
        message = self.incoming.pop(0)
        kind = "text" if isinstance(message, str) else "bytes"
        return {"type": "websocket.receive", kind: message}

    async def send_text(self, text: str) -> None:
        self.sent.append(text)

    async def close(self, code: int, reason: str) -> None:
        if self.application_state is WebSocketState.DISCONNECTED:  # as Starlette refuses it
            raise RuntimeError('Cannot call "send" once a close message has been sent.')
        self.application_state = WebSocketState.DISCONNECTED
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
        pipelines=Pipelines(
            store=inline_store, held=held_writes(inline_store, metrics), hub=EventHub(), metrics=metrics
        ),
        metrics=metrics,
        audio=RecordingStreams(),
        spend_token=spend_token,
        greeting="",
        messages=MessageRate(100),
    )
    await call.run()
    assert socket.closed == (INTERNAL_ERROR, "the assistant cannot take this call right now")
    assert metrics.registry.get_sample_value("va_errors_total", {"stage": "store"}) == 1


async def test_a_call_reports_each_frame_it_receives_to_the_load_sensor_while_it_lasts(
    inline_store: InlineStore,
) -> None:
    """What the sensor's lost-audio signal counts (voice_assistant/audio_rate.py): silence too."""
    metrics = Metrics()
    pipelines = Pipelines(
        store=inline_store, held=held_writes(inline_store, metrics), hub=EventHub(), metrics=metrics
    )
    answering = Answering(
        FakeAudioLM([]), POLICY, FakeSynthesizer(), 60.0, speculative=False, transcripts=False
    )
    pipelines.load(TurnTaking(SileroModel(), TurnSettings(), None), answering)
    session_id = await inline_store.create_session(now=datetime.now(UTC))

    async def spend_token(token: str) -> str | None:
        return session_id

    stream_sid = START["streamSid"]
    silence = twilio.media(str(stream_sid), MULAW_SILENCE * FRAME_BYTES)
    stop = json.dumps({"event": "stop", "streamSid": stream_sid, "stop": {"callSid": "CA0123"}})
    audio = RecordingStreams()
    socket = ScriptedSocket([json.dumps(START), *[silence] * 50, stop])
    call = PhoneCall(
        socket,  # type: ignore[arg-type]
        pipelines=pipelines,
        metrics=metrics,
        audio=audio,
        spend_token=spend_token,
        greeting="",
        messages=MessageRate(100),
    )
    await call.run()
    assert audio.received == [[0.02] * 50] and audio.connected_now == 0
    # Closed by the call: uvicorn drops a stream its handler leaves open, without a close frame (1006).
    assert socket.closed == (NORMAL_CLOSURE, "the call ended")


async def test_a_binary_frame_closes_the_stream_with_a_reason_not_a_traceback(
    inline_store: InlineStore,
) -> None:
    async def spend_token(token: str) -> str | None:
        raise AssertionError("never reached: the stream closes before its start")

    metrics = Metrics()
    socket = ScriptedSocket([json.dumps({"event": "connected", "protocol": "Call"}), b"\x00\x01binary"])
    call = PhoneCall(
        socket,  # type: ignore[arg-type]
        pipelines=Pipelines(
            store=inline_store, held=held_writes(inline_store, metrics), hub=EventHub(), metrics=metrics
        ),
        metrics=metrics,
        audio=RecordingStreams(),
        spend_token=spend_token,
        greeting="",
        messages=MessageRate(100),
    )
    with contextlib.suppress(WebSocketDisconnect):  # the route suppresses it, as for every close
        await call.run()
    assert socket.closed == (UNSUPPORTED_DATA, "media streams are JSON text messages, not binary")


class BrokenVad:
    """A VAD that fails on every frame: a bug in turn-taking, in the middle of a call."""

    def stream(self) -> BrokenVad:
        return self

    def prob(self, frame: object) -> float:
        raise RuntimeError("a bug")


async def test_a_failure_no_handler_expected_closes_the_stream_with_a_reason(
    inline_store: InlineStore,
) -> None:
    metrics = Metrics()
    pipelines = Pipelines(
        store=inline_store, held=held_writes(inline_store, metrics), hub=EventHub(), metrics=metrics
    )
    answering = Answering(
        FakeAudioLM([]), POLICY, FakeSynthesizer(), 60.0, speculative=False, transcripts=False
    )
    pipelines.load(TurnTaking(BrokenVad(), TurnSettings(), None), answering)  # type: ignore[arg-type]
    session_id = await inline_store.create_session(now=datetime.now(UTC))

    async def spend_token(token: str) -> str | None:
        return session_id

    silence = twilio.media(str(START["streamSid"]), MULAW_SILENCE * FRAME_BYTES)
    socket = ScriptedSocket([json.dumps(START), *[silence] * 5])
    call = PhoneCall(
        socket,  # type: ignore[arg-type]
        pipelines=pipelines,
        metrics=metrics,
        audio=RecordingStreams(),
        spend_token=spend_token,
        greeting="",
        messages=MessageRate(100),
    )
    await call.run()
    assert socket.closed == (INTERNAL_ERROR, "the assistant failed on this call")


@dataclass
class HangingUpSocket(ScriptedSocket):
    """A caller who hangs up as the greeting goes out: the writer's send fails (Starlette then marks the
    socket closed), and Twilio's `stop`, already on its way, is read after."""

    hung_up: asyncio.Event = field(default_factory=asyncio.Event)

    async def send_text(self, text: str) -> None:
        self.application_state = WebSocketState.DISCONNECTED
        self.hung_up.set()
        raise WebSocketDisconnect(1006)

    async def receive(self) -> dict[str, object]:
        if len(self.incoming) == 1:  # the stop
            await self.hung_up.wait()
        return await super().receive()


async def test_a_caller_gone_before_the_stream_is_closed_is_no_failure(
    inline_store: InlineStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Closing it then raised RuntimeError, logged as the call failing (found by the fuzz pass)."""
    metrics = Metrics()
    pipelines = Pipelines(
        store=inline_store, held=held_writes(inline_store, metrics), hub=EventHub(), metrics=metrics
    )
    answering = Answering(
        FakeAudioLM([]), POLICY, FakeSynthesizer(), 60.0, speculative=False, transcripts=False
    )
    pipelines.load(TurnTaking(SileroModel(), TurnSettings(), None), answering)
    session_id = await inline_store.create_session(now=datetime.now(UTC))

    async def spend_token(token: str) -> str | None:
        return session_id

    stop = json.dumps({"event": "stop", "streamSid": START["streamSid"]})
    socket = HangingUpSocket([json.dumps(START), stop])
    call = PhoneCall(
        socket,  # type: ignore[arg-type]
        pipelines=pipelines,
        metrics=metrics,
        audio=RecordingStreams(),
        spend_token=spend_token,
        greeting="Hello!",
        messages=MessageRate(100),
    )
    async with asyncio.timeout(10):
        await call.run()
    assert socket.closed is None and "the call failed" not in caplog.text
