"""One Realtime connection on a real session pipeline (real Silero, a scripted model, an in-memory store),
driven by a scripted socket: events no well-behaved client sends get an `error` and change nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.fakes import FakeAudioLM, InlineStore, held_writes
from tests.unit.test_conversation import POLICY
from voice_assistant.config import TurnSettings
from voice_assistant.metrics import Metrics
from voice_assistant.session.hub import EventHub
from voice_assistant.session.pipeline import Answering, Pipelines, SessionPipeline, TurnTaking
from voice_assistant.transport import realtime_protocol as rt
from voice_assistant.transport.message_rate import MessageRate
from voice_assistant.transport.realtime import RealtimeConnection
from voice_assistant.turn.vad import SileroModel

pytestmark = pytest.mark.unit

MANUAL = {"type": "session.update", "session": {"turn_detection": None, "output_modalities": ["text"]}}


def user_message(content: Any, **event: Any) -> dict[str, Any]:
    item = {"type": "message", "role": "user", "content": content}
    return {"type": "conversation.item.create", "item": item, **event}


def typed(text: str, **event: Any) -> dict[str, Any]:
    """A user's typed turn, as Pipecat sends its context."""
    return user_message([{"type": "input_text", "text": text}], **event)


@dataclass(frozen=True)
class Until:
    """The scripted client waits for the server to send an event of this type before going on."""

    kind: str


@dataclass
class ScriptedClient:
    """The FastAPI WebSocket of a Realtime client that sends its script, then hangs up."""

    script: list[dict[str, Any] | str | bytes | Until]
    sent: list[str] = field(default_factory=list)
    closed: tuple[int, str | None] | None = None
    _more: asyncio.Event = field(default_factory=asyncio.Event)

    async def receive(self) -> dict[str, Any]:
        while self.script:
            step = self.script.pop(0)
            if isinstance(step, Until):
                async with asyncio.timeout(5):
                    while step.kind not in self.kinds:
                        self._more.clear()
                        await self._more.wait()
                continue
            if isinstance(step, bytes):
                return {"type": "websocket.receive", "bytes": step}
            return {"type": "websocket.receive", "text": step if isinstance(step, str) else json.dumps(step)}
        return {"type": "websocket.disconnect", "code": 1000}

    async def send_text(self, text: str) -> None:
        self.sent.append(text)
        self._more.set()

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = (code, reason)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(text) for text in self.sent]

    @property
    def kinds(self) -> list[str]:
        return [event["type"] for event in self.events]

    def errors(self) -> list[str]:
        return [event["error"]["code"] for event in self.events if event["type"] == "error"]


async def serve(
    store: InlineStore,
    lm: FakeAudioLM,
    client: ScriptedClient,
    *,
    tamper: Callable[[SessionPipeline], None] = lambda _: None,
) -> None:
    """Serves `client` until it hangs up; `tamper` may break the pipeline first."""
    metrics = Metrics()
    pipelines = Pipelines(store=store, held=held_writes(store, metrics), hub=EventHub(), metrics=metrics)
    answering = Answering(lm, POLICY, None, 60.0, speculative=False, transcripts=False)
    pipelines.load(TurnTaking(SileroModel(), TurnSettings(), None), answering)
    session_id = await store.create_session(now=datetime.now(UTC))

    async def open_pipeline(connection: RealtimeConnection) -> SessionPipeline:
        pipeline = await pipelines.open(session_id, publish=connection.publish, plain_barge_in=True)
        tamper(pipeline)
        return pipeline

    connection = RealtimeConnection(
        client,  # type: ignore[arg-type]
        session_id=session_id,
        open_pipeline=open_pipeline,
        store=store,
        metrics=metrics,
        model_name="fake",
        instructions="Be brief.",
        events=rt.ServerEvents(),
        messages=MessageRate(10_000),
        max_text_chars=24_000,
    )
    await connection.run()


async def test_a_lone_surrogate_is_echoed_as_its_escape_and_the_model_hears_the_replacement(
    inline_store: InlineStore,
) -> None:
    """A JSON escape such as \\ud800 decodes to a character UTF-8 cannot hold: echoed, it killed the
    writer (nothing more was sent); heard, the tokenizer of a real model refuses it."""
    lm = FakeAudioLM([["Fine."]])
    surrogate = {"type": "session.update", "session": {**MANUAL["session"], "instructions": "Be \ud800."}}
    client = ScriptedClient(
        [surrogate, typed("Hi \udfff", event_id="e\ud800"), Until("conversation.item.done")]
        + [{"type": "response.create"}, Until("response.done"), {"type": "nope", "event_id": "\ud801"}]
    )
    await serve(inline_store, lm, client)
    assert all(text.isascii() for text in client.sent)
    assert client.kinds[-1] == "error" and client.events[-1]["error"]["event_id"] == "\ud801"
    (heard,) = lm.heard
    assert heard[0].text.startswith("Be \ufffd.") and heard[-1].text == "Hi \ufffd"
    assert "response.done" in client.kinds and client.closed == (1000, None)


def detection(**fields: Any) -> dict[str, Any]:
    return {"type": "session.update", "session": {"turn_detection": fields}}


@pytest.mark.parametrize(
    ("event", "code"),
    [
        # Shapes that raised TypeError or AttributeError out of the connection, which then closed.
        (user_message(5), "unsupported_item"),
        (user_message([{"type": [1]}]), "unsupported_item"),
        (user_message([{"type": "input_text", "text": "x"}, 5]), "unsupported_item"),
        (
            {"type": "session.update", "session": {"input_audio_format": {"type": ["audio/pcm"]}}},
            "invalid_value",
        ),
        # Values the server's own settings refuse, once taken as they came.
        (detection(type="server_vad", threshold=7), "invalid_value"),
        (detection(type="semantic_vad", threshold=-0.5), "invalid_value"),
        (detection(type="server_vad", prefix_padding_ms=-1), "invalid_value"),
        (detection(type="server_vad", prefix_padding_ms=10**9), "invalid_value"),  # kept in memory
    ],
)
async def test_a_malformed_event_is_an_error_and_the_connection_goes_on(
    inline_store: InlineStore, event: dict[str, Any], code: str
) -> None:
    lm = FakeAudioLM([["Fine."]])
    client = ScriptedClient([event, MANUAL, typed("Hi"), Until("conversation.item.done")])
    client.script += [{"type": "response.create"}, Until("response.done")]
    await serve(inline_store, lm, client)
    assert client.errors() == [code]
    assert client.events[-1]["response"]["status"] == "completed" and len(lm.heard) == 1


async def test_an_item_the_store_cannot_read_is_an_error_and_the_connection_goes_on(
    inline_store: InlineStore,
) -> None:
    client = ScriptedClient([{"type": "conversation.item.retrieve", "item_id": "item_000000_user"}, MANUAL])
    inline_store.fail("get_session")
    await serve(inline_store, FakeAudioLM([]), client)
    assert client.errors() == ["store_unavailable"] and client.kinds[-1] == "session.updated"


async def test_a_failure_no_handler_expected_is_an_error_and_a_close_with_a_reason(
    inline_store: InlineStore,
) -> None:
    """A bug in handling one event: the client is told and the socket closed, not dropped (1006)."""

    def broken(pipeline: SessionPipeline) -> None:
        async def retune(_: TurnSettings | None) -> None:
            raise RuntimeError("a bug")

        pipeline.retune = retune  # type: ignore[method-assign]

    client = ScriptedClient([MANUAL, {"type": "nope"}])
    await serve(inline_store, FakeAudioLM([]), client, tamper=broken)
    assert client.errors() == ["internal_error"]
    assert "RuntimeError" in client.events[-1]["error"]["message"]
    assert client.closed == (1011, "the server failed on this connection")
