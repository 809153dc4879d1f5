"""The OpenAI-compatible backend over real HTTP: audio encoding, history, streaming, cancellation, retries,
timeouts, transcripts, warm-up, and a conversation that outlives a model server that was down.

The server is a stand-in, and only because vLLM cannot run here (no GPU, no weights): a small Starlette app
on 127.0.0.1, served by uvicorn in a thread, that speaks the chat completions streaming format (SSE
`data: {...}` chunks, then `data: [DONE]`) and records every request body. Everything on the client side
is the real thing: the openai client, its HTTP stack, sockets, timeouts, the conversation and SQLite.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import socket
import sys
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes import EventLog
from voice_assistant.assistant import Assistant
from voice_assistant.audio.pcm import MODEL_RATE, Samples
from voice_assistant.config import Settings
from voice_assistant.errors import ModelError
from voice_assistant.events import ErrorRaised, ReplyDone
from voice_assistant.history.store import HistoryStore, PastTurn
from voice_assistant.metrics import Metrics
from voice_assistant.model.base import AudioPart, Message, TextPart
from voice_assistant.model.families import FAMILIES, Family
from voice_assistant.model.openai_compat import OpenAICompatAudioLM, ServerOptions
from voice_assistant.model.registry import load_model
from voice_assistant.session.conversation import Conversation
from voice_assistant.session.held_writes import HeldWrites
from voice_assistant.session.window import WindowPolicy, build_window
from voice_assistant.turn.detector import EndReason
from voice_assistant.turn.taker import CompletedTurn

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]  # a retry loop gone wrong fails fast

MODEL = "test/audio-model"
"""A name of no known family: the system prompt keeps its role."""


@dataclass
class Reply:
    """What the stand-in server answers to one chat request."""

    deltas: list[str] = field(default_factory=lambda: ["Hel", "lo", "."])
    status: int = 200
    message: str = ""
    """The error message, for a status other than 200."""
    nested_error: bool = False
    """`{"error": {"message"}}` (OpenAI, newer vLLM) instead of vLLM's flat `{"message"}`."""
    first_delay_s: float = 0.0
    """A stall after the role chunk, before the first text."""
    delay_s: float = 0.0
    gate: threading.Event | None = None
    """When set, the stream waits for it after its first text."""
    sent: list[str] = field(default_factory=list)
    """The deltas the server has handed to the connection so far."""
    hung_up: threading.Event = field(default_factory=threading.Event)
    """Set when the client went away before the last delta."""


def is_transcription(body: dict[str, Any]) -> bool:
    parts = body["messages"][-1]["content"]
    return any(part.get("text") == Family.transcribe_prompt for part in parts if isinstance(part, dict))


class StandInServer:
    """Chat completions (streamed) and the model list, each request recorded; replies come from `script`
    (default: "Hello."), transcription requests get `transcript`."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.transcript = [" hello", " world "]
        self.requests: list[dict[str, Any]] = []
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    async def _models(self, _: Request) -> Response:
        return JSONResponse(
            {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "test"}]}
        )

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        if is_transcription(body):
            reply = Reply(deltas=self.transcript)
        else:
            reply = self.script.pop(0) if self.script else Reply()
        if reply.status != 200:
            error = {"message": reply.message, "type": "BadRequestError", "code": reply.status}
            content = {"error": error} if reply.nested_error else {"object": "error", **error}
            return JSONResponse(content, status_code=reply.status)
        return StreamingResponse(self._events(reply), media_type="text/event-stream")

    async def _events(self, reply: Reply) -> AsyncIterator[str]:
        try:
            yield _sse({"role": "assistant", "content": ""})
            await asyncio.sleep(reply.first_delay_s)
            for delta in reply.deltas:
                if reply.sent and reply.delay_s:
                    await asyncio.sleep(reply.delay_s)
                if len(reply.sent) == 1 and reply.gate is not None:
                    await asyncio.to_thread(reply.gate.wait, 10)
                # Counted before the yield: the client can read a chunk before this generator resumes.
                reply.sent.append(delta)
                yield _sse({"content": delta})
            yield _sse({}, finish_reason="stop")
            yield "data: [DONE]\n\n"
        finally:
            if len(reply.sent) < len(reply.deltas):  # cancelled by Starlette: the client went away
                reply.hung_up.set()


def _sse(delta: dict[str, str], finish_reason: str | None = None) -> str:
    chunk = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    return f"data: {json.dumps(chunk)}\n\n"


def free_port() -> int:
    """A port nothing listens on (yet): connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def serving(port: int = 0) -> Iterator[tuple[StandInServer, str]]:
    """The stand-in server on 127.0.0.1:`port` (0: any free one), and its base URL."""
    stand_in = StandInServer()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    server = uvicorn.Server(uvicorn.Config(stand_in.app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the stand-in server did not start"
        time.sleep(0.01)
    try:
        yield stand_in, f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def running() -> Iterator[tuple[StandInServer, str]]:
    with serving() as running:
        yield running


@pytest.fixture
def server(running: tuple[StandInServer, str]) -> StandInServer:
    stand_in, _ = running
    stand_in.script.clear()
    stand_in.requests.clear()
    return stand_in


def backend(base_url: str, **options: Any) -> OpenAICompatAudioLM:
    """Fast retries and short timeouts, so that failures are quick to test."""
    defaults: dict[str, Any] = {"backoff_s": 0.01, "first_token_timeout_s": 3.0, "total_timeout_s": 10.0}
    served = ServerOptions.from_settings(Settings(model=MODEL, openai_base_url=base_url))
    return OpenAICompatAudioLM(replace(served, **{**defaults, **options}))


Connect = Callable[..., OpenAICompatAudioLM]


@pytest.fixture
async def connect(running: tuple[StandInServer, str]) -> AsyncIterator[Connect]:
    """Backends on the stand-in server (or another URL), closed after the test."""
    made: list[OpenAICompatAudioLM] = []

    def make(base_url: str = running[1], **options: Any) -> OpenAICompatAudioLM:
        made.append(backend(base_url, **options))
        return made[-1]

    yield make
    for lm in made:
        await lm.aclose()


@pytest.fixture
def lm(connect: Connect) -> OpenAICompatAudioLM:
    return connect()


def tone(seconds: float, hz: float) -> Samples:
    t = np.arange(int(seconds * MODEL_RATE)) / MODEL_RATE
    return (0.8 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def decoded(part: dict[str, Any]) -> Samples:
    """An `input_audio` part back to samples, checking it is 16 kHz mono 16-bit WAV on the way."""
    assert part["type"] == "input_audio" and part["input_audio"]["format"] == "wav"
    data = io.BytesIO(base64.b64decode(part["input_audio"]["data"]))
    info = sf.info(data)
    assert (info.samplerate, info.channels, info.subtype) == (MODEL_RATE, 1, "PCM_16")
    data.seek(0)
    samples, _ = sf.read(data, dtype="float32")
    return np.asarray(samples, dtype=np.float32)


def assert_same_audio(part: dict[str, Any], clip: Samples) -> None:
    samples = decoded(part)
    assert samples.shape == clip.shape
    assert np.max(np.abs(samples - clip)) <= 1 / 32768 + 1e-7  # 16-bit quantisation, nothing more


def hello() -> list[Message]:
    """A one-turn conversation: half a second of a tone."""
    return [Message("user", (AudioPart(tone(0.5, 440.0)),))]


async def collect(stream: AsyncIterator[str]) -> list[str]:
    return [delta async for delta in stream]


# -- what the server hears


async def test_the_audio_goes_as_16_khz_mono_wav(server: StandInServer, lm: OpenAICompatAudioLM) -> None:
    clip = tone(1.3, 440.0)
    assert await collect(lm.stream_reply([Message("user", (AudioPart(clip),))])) == ["Hel", "lo", "."]

    (body,) = server.requests
    assert body["model"] == MODEL and body["stream"] is True
    (part,) = body["messages"][0]["content"]
    assert_same_audio(part, clip)


async def test_the_history_window_is_carried(server: StandInServer, lm: OpenAICompatAudioLM) -> None:
    """Three turns: the oldest heard as text (its transcript), the last as audio, each with its reply."""
    earlier, current = tone(0.8, 300.0), tone(1.1, 500.0)
    past = [
        PastTurn(index=0, audio=None, audio_seconds=0.9, transcript="what time is it", reply_text="Noon."),
        PastTurn(index=1, audio=earlier, audio_seconds=0.8, transcript=None, reply_text="Yes, sunny."),
    ]
    policy = WindowPolicy(
        system_prompt="Be brief.", audio_turns=2, max_turns=8, token_budget=4000, audio_tokens=lm.audio_tokens
    )
    window = build_window(policy, past, current)
    await collect(lm.stream_reply(window.messages))

    messages = server.requests[0]["messages"]
    assert [message["role"] for message in messages] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert messages[0]["content"] == "Be brief."
    assert messages[1]["content"] == [{"type": "text", "text": "what time is it"}]
    assert (messages[2]["content"], messages[4]["content"]) == ("Noon.", "Yes, sunny.")
    assert_same_audio(messages[3]["content"][0], earlier)
    assert_same_audio(messages[5]["content"][0], current)


async def test_a_family_without_a_system_role_gets_the_prompt_in_the_first_user_turn(
    server: StandInServer, connect: Connect
) -> None:
    voxtral = connect(model="mistralai/Voxtral-Mini-3B-2507")
    clip = tone(0.5, 440.0)
    system = Message("system", (TextPart("Be brief."),))
    await collect(voxtral.stream_reply([system, Message("user", (AudioPart(clip),))]))

    (user,) = server.requests[0]["messages"]
    assert user["role"] == "user"
    assert user["content"][0] == {"type": "text", "text": "Be brief.\n\n"}
    assert_same_audio(user["content"][1], clip)


def test_audio_tokens_and_clips_follow_the_served_family() -> None:
    url = "http://127.0.0.1:9/v1"
    qwen = backend(url, model="Qwen/Qwen2-Audio-7B-Instruct")
    assert qwen.family is FAMILIES["qwen2_audio"] and qwen.max_clips == qwen.family.max_clips
    assert qwen.audio_tokens(2.0) == qwen.family.audio_tokens(2.0)
    assert backend(url, model="fixie-ai/ultravox-v0_5-llama-3_1-8b").audio_tokens(2.0) == 13 + 8
    unknown = backend(url, model="my-finetune")
    assert unknown.audio_tokens(2.0) == 50 + 8 and unknown.max_clips is None  # the safe side
    assert backend(url, model="my-finetune", audio_tokens_per_second=10.0).audio_tokens(2.0) == 20 + 8


# -- streaming and cancelling


async def test_deltas_stream_in_order_as_they_are_generated(
    server: StandInServer, lm: OpenAICompatAudioLM
) -> None:
    gate = threading.Event()
    reply = Reply(deltas=["One", " two", " three."], gate=gate)
    server.script.append(reply)
    stream = lm.stream_reply(hello())

    first = await asyncio.wait_for(anext(stream), 5)  # the server holds the rest back until the gate opens
    assert first == "One" and reply.sent == ["One"]
    gate.set()
    assert await collect(stream) == [" two", " three."]


@pytest.mark.parametrize("how", ["cancel the consumer", "close the iterator"])
async def test_stopping_a_reply_closes_the_stream_so_the_server_stops(
    server: StandInServer, lm: OpenAICompatAudioLM, how: str
) -> None:
    """Barge-in cancels the reply's task; the conversation then closes the iterator. Either must hang up."""
    reply = Reply(deltas=[f"word{i} " for i in range(200)], delay_s=0.02)
    server.script.append(reply)
    stream = lm.stream_reply(hello())
    assert isinstance(stream, AsyncGenerator)
    if how == "close the iterator":
        assert [await anext(stream), await anext(stream)] == ["word0 ", "word1 "]
        await stream.aclose()
    else:
        two = asyncio.Event()

        async def consume() -> None:
            async for delta in stream:
                if delta == "word1 ":
                    two.set()

        consumer = asyncio.create_task(consume())
        await asyncio.wait_for(two.wait(), 5)
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer

    assert await asyncio.to_thread(reply.hung_up.wait, 5), "the server never saw the client go"
    assert len(reply.sent) < 50


# -- failures


@pytest.mark.parametrize("status", [503, 429])
async def test_overload_and_server_errors_are_retried(
    server: StandInServer, lm: OpenAICompatAudioLM, status: int
) -> None:
    server.script += [Reply(status=status, message="busy"), Reply(status=status, message="busy"), Reply()]
    assert await collect(lm.stream_reply(hello())) == [
        "Hel",
        "lo",
        ".",
    ]
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    ("status", "nested"), [(400, False), (404, True)], ids=["400 vLLM body", "404 OpenAI body"]
)
async def test_a_refusal_is_not_retried_and_says_what_the_server_said(
    server: StandInServer, running: tuple[StandInServer, str], connect: Connect, status: int, nested: bool
) -> None:
    said = "At most 1 audio(s) may be provided in one request."
    server.script += [Reply(status=status, message=said, nested_error=nested), Reply()]
    with pytest.raises(ModelError) as caught:
        await collect(connect().stream_reply(hello()))

    assert str(caught.value) == f"the model server at {running[1]} answered {status}: {said}"
    assert len(server.requests) == 1


async def test_an_unreachable_server_fails_fast_after_the_retries(connect: Connect) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()
    with pytest.raises(ModelError) as caught:
        await collect(connect(url, retries=2).stream_reply(hello()))

    assert time.monotonic() - started < 2.0
    assert str(caught.value).startswith(f"the model server at {url} is unreachable")
    assert "3 attempts" in str(caught.value)


async def test_a_stall_before_the_first_text_times_out(server: StandInServer, connect: Connect) -> None:
    server.script.append(Reply(first_delay_s=5.0))
    started = time.monotonic()
    with pytest.raises(ModelError, match=r"sent no text within 0\.3 s"):
        await collect(connect(first_token_timeout_s=0.3).stream_reply(hello()))
    assert time.monotonic() - started < 2.0
    assert len(server.requests) == 1  # a stall is not retried: the user has waited long enough


async def test_a_reply_that_outlasts_the_total_timeout_fails_after_its_text(
    server: StandInServer, connect: Connect
) -> None:
    server.script.append(Reply(deltas=[f"w{i} " for i in range(100)], delay_s=0.05))
    got: list[str] = []
    with pytest.raises(ModelError, match=r"did not finish the reply within 0\.5 s"):
        async for delta in connect(total_timeout_s=0.5).stream_reply(hello()):
            got.append(delta)
    assert 2 <= len(got) < 100
    assert len(server.requests) == 1  # text had started: a retry would repeat it


# -- transcripts and warm-up


async def test_transcribe_asks_the_same_server_for_the_words(
    server: StandInServer, lm: OpenAICompatAudioLM
) -> None:
    clip = tone(0.7, 440.0)
    assert await lm.transcribe(clip) == "hello world"

    (body,) = server.requests
    assert body["temperature"] == 0.0
    assert body["max_tokens"] == 16 + 6  # within what 0.7 s of speech can say
    audio, instruction = body["messages"][0]["content"]
    assert_same_audio(audio, clip)
    assert instruction == {"type": "text", "text": Family.transcribe_prompt}


async def test_warm_up_checks_the_model_is_served_and_takes_audio(
    server: StandInServer, connect: Connect
) -> None:
    await connect().warm_up()
    (body,) = server.requests
    assert body["max_tokens"] == 1 and body["messages"][0]["content"][0]["type"] == "input_audio"

    with pytest.raises(ModelError, match="does not serve 'other/model'.*VA_OPENAI_MODEL"):
        await connect(model="other/model").warm_up()


async def started(tmp_path: Path, base_url: str) -> Assistant:
    """An assistant on VA_BACKEND=openai, started as the server's lifespan starts it."""
    settings = Settings(
        backend="openai", openai_base_url=base_url, openai_retries=0, model=MODEL, data_dir=tmp_path
    )
    assistant = Assistant(settings)
    with contextlib.suppress(ModelError):
        await assistant.start()
    return assistant


async def test_readiness_follows_the_model_server(
    server: StandInServer, running: tuple[StandInServer, str], tmp_path: Path
) -> None:
    down = f"http://127.0.0.1:{free_port()}/v1"
    assistant = await started(tmp_path / "down", down)
    assert not assistant.ready.is_set() and assistant.startup_error is not None
    assert assistant.startup_error.startswith(f"ModelError: the model server at {down} is unreachable")
    await assistant.close()

    assistant = await started(tmp_path / "up", running[1])
    assert assistant.ready.is_set() and assistant.startup_error is None
    assert isinstance(assistant.model, OpenAICompatAudioLM) and assistant.model.name == MODEL
    await assistant.close()
    await assistant.model.aclose()


def test_without_the_openai_package_the_backend_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "voice_assistant.model.openai_compat")
    with pytest.raises(ModelError, match=r"pip install 'openai>=1\.52'"):
        load_model(Settings(backend="openai"))


# -- a conversation on this backend


def completed_turn(clip: Samples) -> CompletedTurn:
    end = datetime.now(UTC)
    return CompletedTurn(
        audio=clip,
        speech_start=end - timedelta(seconds=len(clip) / MODEL_RATE),
        speech_end=end,
        decided_at=end,
        reason=EndReason.SILENCE,
    )


async def transcribed(log: EventLog, *, turn: int) -> None:
    count = 1
    while not any(event.turn == turn for event in await log.wait_for("transcript", count)):  # type: ignore[attr-defined]
        count += 1


async def test_a_conversation_reports_a_down_server_and_answers_once_it_is_back(
    sqlite_store: HistoryStore, connect: Connect
) -> None:
    port = free_port()
    lm = connect(f"http://127.0.0.1:{port}/v1", retries=1)
    log = EventLog()
    conversation = Conversation(
        session_id=await sqlite_store.create_session(now=datetime.now(UTC)),
        next_index=0,
        store=sqlite_store,
        held=HeldWrites(sqlite_store, metrics=Metrics(), capacity_s=600.0),
        model=lm,
        policy=WindowPolicy(
            system_prompt="Be brief.",
            audio_turns=4,
            max_turns=8,
            token_budget=4000,
            audio_tokens=lm.audio_tokens,
        ),
        publish=log,
        metrics=Metrics(),
        reply_timeout_s=60.0,
        speculative=False,
    )
    first, second = tone(0.6, 300.0), tone(0.9, 600.0)
    try:
        conversation.speech_started()
        conversation.turn_finished(completed_turn(first))
        (error,) = await log.wait_for("error")
        assert isinstance(error, ErrorRaised) and error.turn == 0
        assert f"127.0.0.1:{port}/v1 is unreachable" in error.message
        await log.wait_for("reply_done", 1)

        with serving(port) as (server, _):
            server.script.append(Reply(deltas=["Back", " again."]))
            conversation.speech_started()
            conversation.turn_finished(completed_turn(second))
            done = await log.wait_for("reply_done", 2)
            assert isinstance(done[1], ReplyDone) and done[1].text == "Back again."
            assert len(log.of("error")) == 1
            # The failed turn stays in the history: both clips are heard, in order.
            (reply,) = [body for body in server.requests if not is_transcription(body)]
            audio = reply["messages"][-1]["content"]
            assert_same_audio(audio[0], first)
            assert_same_audio(audio[1], second)
            await transcribed(log, turn=1)
    finally:
        await conversation.close()

    turns = (await sqlite_store.get_session(conversation.session_id)).turns
    assert turns[0].error is not None and "unreachable" in turns[0].error
    assert (turns[1].reply_text, turns[1].error, turns[1].transcript) == ("Back again.", None, "hello world")
