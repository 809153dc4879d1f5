"""What one client may send, on virtual time: the message rate of a WebSocket (the bucket, a media stream
and a Realtime connection flooded past it), the length of typed words, the size of a request body."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, WebSocketDisconnect
from fastapi.responses import JSONResponse

from tests.fakes import FakeAudioLM, InlineStore, RecordingStreams, ScriptedRealtimeSocket, held_writes
from tests.unit.test_conversation import POLICY
from tests.unit.test_phone_call import ScriptedSocket
from voice_assistant.config import TurnSettings
from voice_assistant.metrics import Metrics
from voice_assistant.session.hub import EventHub
from voice_assistant.session.pipeline import Answering, Pipelines, SessionPipeline, TurnTaking
from voice_assistant.transport import realtime_protocol as rt
from voice_assistant.transport.message_rate import MessageRate
from voice_assistant.transport.phone import POLICY_VIOLATION, PhoneCall
from voice_assistant.transport.realtime import RealtimeConnection
from voice_assistant.turn.vad import SileroModel
from voice_assistant.web.body_limit import BodyLimit
from voice_assistant.web.errors import install_error_handlers
from voice_assistant.web.ui_offer import _whole_body

pytestmark = pytest.mark.unit

CONNECTED = json.dumps({"event": "connected", "protocol": "Call"})


class StoppedClock:
    """time.monotonic that stands still until the test moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_takes_ten_seconds_worth_at_once_then_the_rate() -> None:
    clock = StoppedClock()
    rate = MessageRate(3, clock=clock)
    assert all(rate.take() for _ in range(30))
    assert not rate.take()
    clock.now = 1.0  # a second later: three more
    assert [rate.take() for _ in range(4)] == [True, True, True, False]
    clock.now = 100.0  # a long pause refills it, but only to the burst
    assert sum(rate.take() for _ in range(40)) == 30
    assert rate.refusal() == "too many messages: at most 3 a second"


async def test_a_media_stream_flooding_past_the_rate_is_closed_with_why(inline_store: InlineStore) -> None:
    async def spend_token(token: str) -> str | None:
        raise AssertionError("never reached: the flood comes before any start")

    metrics = Metrics()
    socket = ScriptedSocket([CONNECTED] * 12)
    call = PhoneCall(
        socket,  # type: ignore[arg-type]
        pipelines=Pipelines(
            store=inline_store, held=held_writes(inline_store, metrics), hub=EventHub(), metrics=metrics
        ),
        metrics=metrics,
        audio=RecordingStreams(),
        spend_token=spend_token,
        greeting="",
        messages=MessageRate(1, clock=StoppedClock()),
    )
    with pytest.raises(WebSocketDisconnect) as ended:  # the route suppresses it, as for every close
        await call.run()
    assert ended.value.code == POLICY_VIOLATION
    assert socket.closed == (POLICY_VIOLATION, "too many messages: at most 1 a second")
    assert len(socket.incoming) == 1  # read no further


@pytest.fixture
async def pipelines(inline_store: InlineStore) -> Pipelines:
    metrics = Metrics()
    loaded = Pipelines(
        store=inline_store, held=held_writes(inline_store, metrics), hub=EventHub(), metrics=metrics
    )
    answering = Answering(FakeAudioLM([]), POLICY, None, 60.0, speculative=False, transcripts=False)
    loaded.load(TurnTaking(SileroModel(), TurnSettings(), None), answering)
    return loaded


async def serve(
    pipelines: Pipelines, store: InlineStore, incoming: list[dict[str, Any]], *, per_second: float = 100
) -> ScriptedRealtimeSocket:
    """One Realtime connection of a new session on `incoming`, until the client is done or closed."""
    session_id = await store.create_session(now=datetime.now(UTC))

    async def open_pipeline(connection: RealtimeConnection) -> SessionPipeline:
        return await pipelines.open(session_id, publish=connection.publish, plain_barge_in=True)

    socket = ScriptedRealtimeSocket(incoming)
    await RealtimeConnection(
        socket,  # type: ignore[arg-type]
        session_id=session_id,
        open_pipeline=open_pipeline,
        store=store,
        metrics=Metrics(),
        model_name="tiny",
        instructions="Be brief.",
        events=rt.ServerEvents(),
        messages=MessageRate(per_second, clock=StoppedClock()),
        max_text_chars=100,
    ).run()
    return socket


async def test_a_realtime_client_flooding_past_the_rate_is_told_and_closed(
    pipelines: Pipelines, inline_store: InlineStore
) -> None:
    socket = await serve(pipelines, inline_store, [{"type": "input_audio_buffer.clear"}] * 25, per_second=2)
    cleared = [event for event in socket.sent if event["type"] == "input_audio_buffer.cleared"]
    assert len(cleared) == 20  # ten seconds' worth, at once
    assert socket.errors()[-1]["code"] == "rate_limit_exceeded"
    assert socket.closed == (1008, "too many messages: at most 2 a second")
    assert len(socket.incoming) == 4  # read no further


async def test_typed_words_and_instructions_past_the_limit_are_refused_and_change_nothing(
    pipelines: Pipelines, inline_store: InlineStore
) -> None:
    def typed(text: str) -> dict[str, Any]:
        content = [{"type": "input_text", "text": text}]
        return {
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": content},
        }

    socket = await serve(
        pipelines,
        inline_store,
        [
            typed("x" * 101),
            {"type": "session.update", "session": {"type": "realtime", "instructions": "y" * 101}},
            typed("x" * 100),
        ],
    )
    refused = socket.errors()
    assert [error["code"] for error in refused] == ["text_too_large", "text_too_large"]
    assert refused[0]["message"] == (
        "item.content holds 101 characters; at most 100 are taken (VA_HISTORY_TOKEN_BUDGET)"
    )
    assert [e["type"] for e in socket.sent].count("session.updated") == 0
    added = [e for e in socket.sent if e["type"] == "conversation.item.added"]
    assert [item["item"]["content"][0]["text"] for item in added] == ["x" * 100]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app, Metrics())

    @app.post("/echo")
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"bytes": len(await request.body())})

    @app.post("/form")
    async def form(request: Request) -> JSONResponse:
        return JSONResponse({"fields": len(await request.form())})

    app.add_middleware(BodyLimit, max_bytes=1024)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client


async def test_a_body_over_the_cap_is_413_with_a_json_error_declared_or_chunked(
    http: httpx.AsyncClient,
) -> None:
    assert (await http.post("/echo", content=b"x" * 1024)).json() == {"bytes": 1024}

    declared = await http.post("/echo", content=b"x" * 1025)
    assert declared.status_code == 413
    assert declared.json() == {"error": "the request body is larger than 1024 bytes (VA_MAX_BODY_BYTES)"}

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(5):
            yield b"x" * 300

    chunked = await http.post("/echo", content=chunks())
    assert chunked.status_code == 413 and "larger than 1024 bytes" in chunked.json()["error"]
    form = await http.post(
        "/form", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert form.status_code == 413


async def test_a_middleware_reading_a_body_whole_is_stopped_at_the_cap_too() -> None:
    async def reads_whole(scope: Any, receive: Any, send: Any) -> None:
        await _whole_body(receive)  # what the UI's offer gate does
        await JSONResponse({"read": True})(scope, receive, send)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"x" * 300

    transport = httpx.ASGITransport(app=BodyLimit(reads_whole, max_bytes=1024))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        refused = await client.post("/", content=chunks())
        assert refused.status_code == 413 and "larger than 1024 bytes" in refused.json()["error"]
        assert (await client.post("/", content=b"x" * 1000)).json() == {"read": True}
