"""The OpenAI Realtime endpoint end to end: real server processes, driven by the official `openai` SDK's
realtime client (`client.realtime.connect` with this server's base URL), with real human speech (an
Asterisk prompt) streamed in as `input_audio_buffer.append` chunks, paced in real time or all at once.
Malformed events go through a plain WebSocket, since the SDK only sends well-formed ones."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
import websockets
from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection

from benchmarks.human_speech import asterisk_prompt
from benchmarks.server import ServerProcess
from tests.support.servers import LONG_REPLIES, Servers
from voice_assistant.audio.pcm import MODEL_RATE
from voice_assistant.audio.resample import resample

pytestmark = pytest.mark.e2e

KEY = "sk-test-realtime"
ADMIN = "admin-for-realtime-tests"
CHUNK_BYTES = 4800
"""100 ms of 24 kHz 16-bit audio, as the SDK's examples send it."""
MANUAL = {"type": "realtime", "audio": {"input": {"turn_detection": None}}}


@pytest.fixture(scope="module")
def server(servers: Servers) -> ServerProcess:
    return servers.start("realtime", {"VA_MAX_NEW_TOKENS": "24", "VA_API_KEYS": KEY, "VA_ADMIN_TOKEN": ADMIN})


@pytest.fixture(scope="module")
def long_replies(servers: Servers) -> ServerProcess:
    """Replies that go on for seconds, to be spoken over."""
    return servers.start("realtime-long", {**LONG_REPLIES, "VA_API_KEYS": KEY})


def pcm16(speech: np.ndarray, *, before_s: float = 0.3, after_s: float = 1.5) -> bytes:
    """16 kHz speech with silence around it, as 24 kHz pcm16 (what a Realtime client sends)."""
    padded = np.concatenate(
        [
            np.zeros(int(before_s * MODEL_RATE), np.float32),
            speech,
            np.zeros(int(after_s * MODEL_RATE), np.float32),
        ]
    )
    return (np.clip(resample(padded, MODEL_RATE, 24_000), -1, 1) * 32767).astype("<i2").tobytes()


def spoken(name: str = "conf-onlyperson", **padding: float) -> bytes:
    return pcm16(asterisk_prompt(name), **padding)


async def send_audio(connection: AsyncRealtimeConnection, pcm: bytes, *, paced: bool) -> None:
    for start in range(0, len(pcm), CHUNK_BYTES):
        await connection.input_audio_buffer.append(
            audio=base64.b64encode(pcm[start : start + CHUNK_BYTES]).decode()
        )
        if paced:
            await asyncio.sleep(CHUNK_BYTES / 48_000)


async def until(connection: AsyncRealtimeConnection, kind: str, *, timeout: float = 30) -> list[Any]:
    """Every event up to and including the first of `kind`."""
    seen = []
    async with asyncio.timeout(timeout):
        async for event in connection:
            seen.append(event)
            if event.type == kind:
                return seen
    raise AssertionError(f"the connection closed before {kind}: {[e.type for e in seen]}")


def client(server: ServerProcess, key: str = KEY) -> AsyncOpenAI:
    return AsyncOpenAI(api_key=key, base_url=f"{server.url}/v1")


async def session_record(server: ServerProcess, session_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url) as http:
        return dict((await http.get(f"/api/sessions/{session_id}")).json())


def first_index(events: list[Any], kind: str) -> int:
    return next(i for i, event in enumerate(events) if event.type == kind)


@pytest.mark.parametrize("paced", [True, False], ids=["paced", "unpaced"])
async def test_a_spoken_turn_gets_the_documented_events_and_a_spoken_reply(
    server: ServerProcess, paced: bool
) -> None:
    async with client(server).realtime.connect(model="tiny") as connection:
        created = await until(connection, "session.created")
        session_id = created[-1].session.id
        await connection.session.update(
            session={"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad"}}}}
        )
        await until(connection, "session.updated")
        sender = asyncio.create_task(send_audio(connection, spoken(), paced=paced))
        events = await until(connection, "response.done")
        await sender

    kinds = [event.type for event in events]
    order = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "response.created",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_audio_transcript.delta",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.done",
    ]
    positions = [first_index(events, kind) for kind in order]
    assert positions == sorted(positions), kinds
    item_events = ("conversation.item.added", "conversation.item.done")
    items = [(e.type, e.item.role, e.item.status) for e in events if e.type in item_events]
    assert items == [
        ("conversation.item.added", "user", "completed"),
        ("conversation.item.done", "user", "completed"),
        ("conversation.item.added", "assistant", "in_progress"),  # the reply's item, as OpenAI adds it
        ("conversation.item.done", "assistant", "completed"),
    ]
    started, stopped = events[positions[0]], events[positions[1]]
    assert started.item_id == stopped.item_id == events[positions[2]].item_id
    assert 0 <= started.audio_start_ms < stopped.audio_end_ms
    audio = b"".join(base64.b64decode(e.delta) for e in events if e.type == "response.output_audio.delta")
    assert len(audio) > 24_000  # at least half a second of 24 kHz pcm16: the reply was spoken
    assert first_index(events, "response.output_audio.delta") < first_index(events, "response.done")
    done = events[-1].response
    transcript = "".join(e.delta for e in events if e.type == "response.output_audio_transcript.delta")
    assert done.status == "completed" and transcript
    assert done.output[0].content[0].transcript == transcript

    stored = await session_record(server, session_id)  # one of our sessions, stored like any other
    assert len(stored["turns"]) == 1
    turn = stored["turns"][0]
    assert turn["reply_text"] == transcript and turn["audio_seconds"] > 1.0
    assert turn["interrupted"] is False


async def test_text_only_responses_stream_text_deltas(server: ServerProcess) -> None:
    async with client(server).realtime.connect(model="tiny") as connection:
        await connection.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        updated = (await until(connection, "session.updated"))[-1]
        assert updated.session.output_modalities == ["text"]
        sender = asyncio.create_task(send_audio(connection, spoken(), paced=False))
        events = await until(connection, "response.done")
        await sender
    kinds = {event.type for event in events}
    assert "response.output_text.delta" in kinds and "response.output_text.done" in kinds
    assert "response.output_audio.delta" not in kinds
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert events[-1].response.output[0].content[0].text == text


async def test_a_manual_turn_waits_for_response_create_with_its_own_instructions(
    server: ServerProcess,
) -> None:
    async with client(server).realtime.connect(model="tiny") as connection:
        session_id = (await until(connection, "session.created"))[-1].session.id
        await connection.session.update(session=MANUAL)
        assert (await until(connection, "session.updated"))[-1].session.audio.input.turn_detection is None
        await connection.input_audio_buffer.commit()  # nothing in the buffer yet
        empty = (await until(connection, "error"))[-1]
        assert empty.error.code == "input_audio_buffer_commit_empty"

        await send_audio(connection, spoken(after_s=0.2), paced=False)
        await connection.input_audio_buffer.commit()
        committed = await until(connection, "conversation.item.done")
        assert not any(e.type.startswith("input_audio_buffer.speech") for e in committed)  # the client cut it
        with pytest.raises(TimeoutError):  # no response until asked for
            await until(connection, "response.created", timeout=1.5)
        await connection.response.create(response={"instructions": "Answer in one word."})
        events = await until(connection, "response.done")
        assert events[-1].response.status == "completed"
    stored = await session_record(server, session_id)
    assert len(stored["turns"]) == 1 and stored["turns"][0]["reply_text"]
    assert stored["turns"][0]["context"]["end"] == "client"


async def test_speech_over_a_response_cancels_it_and_truncate_stores_what_was_heard(
    long_replies: ServerProcess,
) -> None:
    async with client(long_replies).realtime.connect(model="tiny") as connection:
        session_id = (await until(connection, "session.created"))[-1].session.id
        await connection.session.update(
            session={"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad"}}}}
        )
        await until(connection, "session.updated")
        await send_audio(connection, spoken(), paced=True)
        events = await until(connection, "response.output_audio.delta", timeout=60)  # the reply speaks
        item_id = next(e.item_id for e in events if e.type == "response.output_audio.delta")
        sender = asyncio.create_task(send_audio(connection, spoken("conf-invalidpin"), paced=True))
        events = await until(connection, "response.done", timeout=60)
        await sender
        done = events[-1].response
        assert done.status == "cancelled" and done.status_details.reason == "turn_detected"
        assert first_index(events, "input_audio_buffer.speech_started") < len(events) - 1
        await connection.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=0)
        truncated = (await until(connection, "conversation.item.truncated"))[-1]
        assert truncated.item_id == item_id and truncated.audio_end_ms == 0
        await connection.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=10**7)
        assert (await until(connection, "error"))[-1].error.param == "audio_end_ms"  # longer than it is
    stored = (await session_record(long_replies, session_id))["turns"][0]
    assert stored["interrupted"] is True and stored["reply_text"]
    assert stored["heard_text"] == ""  # the client played none of it


async def test_a_resumed_session_continues_with_its_history(server: ServerProcess) -> None:
    async with client(server).realtime.connect(model="tiny") as connection:
        session_id = (await until(connection, "session.created"))[-1].session.id
        await connection.session.update(session=MANUAL)
        await send_audio(connection, spoken(after_s=0.2), paced=False)
        await connection.input_audio_buffer.commit()
        await connection.response.create()
        await until(connection, "response.done")

    realtime = client(server).realtime
    async with realtime.connect(model="tiny", extra_query={"session_id": session_id}) as connection:
        created = (await until(connection, "session.created"))[-1]
        assert created.session.id == session_id
        await connection.session.update(session=MANUAL)
        await send_audio(connection, spoken("conf-invalidpin", after_s=0.2), paced=False)
        await connection.input_audio_buffer.commit()
        await connection.response.create()
        await until(connection, "response.done")
    turns = (await session_record(server, session_id))["turns"]
    assert [turn["index"] for turn in turns] == [0, 1]
    assert turns[1]["context"]["audio_turns"] == [0]  # the model heard the first turn too

    async with realtime.connect(model="tiny", extra_query={"session_id": "no-such-session"}) as connection:
        refused = (await until(connection, "error"))[-1]
        assert refused.error.code == "session_not_found"


def raw_socket(server: ServerProcess, **query: str) -> websockets.connect:
    url = (
        server.url.replace("http://", "ws://")
        + "/v1/realtime?"
        + "&".join(f"{k}={v}" for k, v in query.items())
    )
    return websockets.connect(url, additional_headers={"Authorization": f"Bearer {KEY}"}, max_size=None)


async def next_of(socket: Any, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            event = json.loads(await socket.recv())
            if event["type"] == kind:
                return dict(event)


async def test_bad_events_get_an_error_event_and_the_connection_goes_on(server: ServerProcess) -> None:
    async with (
        client(server).realtime.connect(model="tiny") as other,
        raw_socket(server, model="tiny") as socket,
    ):
        await until(other, "session.created")
        await next_of(socket, "session.created")
        bad = {
            "not json": "invalid_json",
            json.dumps({"type": "no.such.event", "event_id": "e1"}): "unknown_event",
            json.dumps({"type": "input_audio_buffer.append", "audio": "***"}): "invalid_value",
            json.dumps({"type": "input_audio_buffer.append"}): "invalid_value",
            json.dumps({"type": "response.create"}): "no_turn_to_respond",
            json.dumps({"type": "response.cancel"}): "response_cancel_not_active",
            json.dumps({"type": "input_audio_buffer.commit"}): "input_audio_buffer_commit_unavailable",
            json.dumps(
                {"type": "conversation.item.truncate", "item_id": "x", "audio_end_ms": 0}
            ): "item_not_found",
            json.dumps(
                {
                    "type": "conversation.item.create",
                    "item": {"type": "function_call_output", "call_id": "c1", "output": "{}"},
                }
            ): "unsupported_item",
            json.dumps(
                {
                    "type": "session.update",
                    "session": {"audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}},
                }
            ): "invalid_value",
            json.dumps(
                {"type": "input_audio_buffer.append", "audio": "A" * (15 * 1024 * 1024 + 4)}
            ): "event_too_large",
        }
        for message, code in bad.items():
            await socket.send(message)
            error = await next_of(socket, "error")
            assert error["error"]["code"] == code, (message[:80], error)
        assert error["error"]["type"] == "invalid_request_error"
        await socket.send(json.dumps({"type": "no.such.event", "event_id": "mine"}))
        assert (await next_of(socket, "error"))["error"]["event_id"] == "mine"
        # Still serving: a manual turn is answered.
        await socket.send(json.dumps({"type": "session.update", "session": MANUAL}))
        await next_of(socket, "session.updated")
        audio = base64.b64encode(spoken(after_s=0.2)).decode()
        await socket.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
        await socket.send(json.dumps({"type": "input_audio_buffer.commit"}))
        await socket.send(json.dumps({"type": "response.create"}))
        assert (await next_of(socket, "response.done"))["response"]["status"] == "completed"
        # And another session, open all along, was not disturbed.
        await other.session.update(session=MANUAL)
        await send_audio(other, spoken(after_s=0.2), paced=False)
        await other.input_audio_buffer.commit()
        await other.response.create()
        assert (await until(other, "response.done"))[-1].response.status == "completed"

    async with raw_socket(server, model="some-other-model") as socket:
        assert (await next_of(socket, "error"))["error"]["code"] == "model_not_found"
    async with raw_socket(server, model="é" * 100) as socket:  # the refusal quotes it: past 123 bytes
        assert (await next_of(socket, "error"))["error"]["code"] == "model_not_found"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await socket.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_keys_and_client_secrets(server: ServerProcess) -> None:
    events = []
    with pytest.raises(websockets.ConnectionClosedError):  # closed with 1008 after the error
        async with client(server, "sk-wrong").realtime.connect(model="tiny") as connection:
            async for event in connection:
                events.append(event)
    assert [e.type for e in events] == ["error"] and events[0].error.code == "invalid_api_key"
    async with httpx.AsyncClient(base_url=server.url) as http:
        refused = await http.post("/v1/realtime/client_secrets", headers={"Authorization": "Bearer sk-wrong"})
        assert refused.status_code == 401
    secret = await client(server).realtime.client_secrets.create(
        session={"type": "realtime", "instructions": "You are a pirate."},
        expires_after={"anchor": "created_at", "seconds": 60},
    )
    assert secret.value.startswith("ek_") and secret.expires_at > 0
    async with client(server, secret.value).realtime.connect(model="tiny") as connection:
        created = (await until(connection, "session.created"))[-1]
        assert created.session.instructions == "You are a pirate."
    async with httpx.AsyncClient(base_url=server.url) as http:  # a secret does not mint more secrets
        minted = await http.post(
            "/v1/realtime/client_secrets", headers={"Authorization": f"Bearer {secret.value}"}
        )
        assert minted.status_code == 401


async def test_the_readmes_example_runs_as_written(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    code = readme.split("<!-- realtime-example -->\n```python\n", 1)[1].split("```", 1)[0]
    code = code.replace("http://127.0.0.1:7860", server.url).replace('"sk-my-key"', repr(KEY))
    wav = tmp_path / "speech.wav"
    sf.write(wav, asterisk_prompt("conf-onlyperson"), MODEL_RATE)
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    await asyncio.wait_for(namespace["main"](str(wav)), 60)
    printed = capsys.readouterr().out
    assert printed.strip()  # the reply's text, streamed


async def test_a_typed_turn_is_answered_and_then_heard_as_text(server: ServerProcess) -> None:
    """What Pipecat sends first: the context as a user text item, then response.create."""
    async with client(server).realtime.connect(model="tiny") as connection:
        session_id = (await until(connection, "session.created"))[-1].session.id
        await connection.session.update(session=MANUAL)
        await connection.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Say hello."}],
            }
        )
        added = (await until(connection, "conversation.item.added"))[-1]
        assert added.item.content[0].type == "input_text" and added.item.content[0].text == "Say hello."
        await connection.response.create()
        assert (await until(connection, "response.done"))[-1].response.status == "completed"
        await send_audio(connection, spoken(after_s=0.2), paced=False)
        await connection.input_audio_buffer.commit()
        await connection.response.create()
        await until(connection, "response.done")
        await connection.conversation.item.retrieve(item_id=added.item.id)
        retrieved = (await until(connection, "conversation.item.retrieved"))[-1]
        assert retrieved.item.content[0].text == "Say hello."
    turns = (await session_record(server, session_id))["turns"]
    assert turns[0]["transcript"] == "Say hello." and turns[0]["audio_seconds"] == 0
    assert turns[0]["reply_text"]
    assert turns[1]["context"]["text_turns"] == [0]  # heard as its words: it has no audio
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get(f"/api/sessions/{session_id}/turns/0/audio")).status_code == 404
        assert (await http.get(f"/api/sessions/{session_id}/turns/1/audio")).status_code == 200


async def test_sigterm_lets_the_response_finish_then_the_session_goes_on_elsewhere(
    servers: Servers, server: ServerProcess
) -> None:
    """A drain ends a Realtime connection at its first quiet moment; the client reconnects to another
    instance on the same database with its session id."""
    database = f"sqlite:///{server.data_dir / 'voice_assistant.db'}"
    drained = servers.start(
        "realtime-drained",
        {"VA_DATABASE_URL": database, "VA_MAX_NEW_TOKENS": "600", "VA_SPECULATIVE_START": "false"},
    )
    assert drained.process is not None
    async with client(drained).realtime.connect(model="tiny") as connection:
        session_id = (await until(connection, "session.created"))[-1].session.id
        await connection.session.update(session={**MANUAL, "output_modalities": ["text"]})
        await send_audio(connection, spoken(after_s=0.2), paced=False)
        await connection.input_audio_buffer.commit()
        await connection.response.create()
        await until(connection, "response.output_text.delta")
        drained.process.send_signal(signal.SIGTERM)
        done = (await until(connection, "response.done"))[-1]
        farewell = (await until(connection, "error"))[-1]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await until(connection, "never", timeout=10)
    assert done.response.status == "completed"  # the reply in progress finished
    assert farewell.error.code == "server_shutting_down" and session_id in farewell.error.message
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012  # service restart: reconnect
    assert await asyncio.to_thread(drained.process.wait, 30) == -signal.SIGTERM

    async with client(server).realtime.connect(model="tiny", extra_query={"session_id": session_id}) as again:
        assert (await until(again, "session.created"))[-1].session.id == session_id
    stored = await session_record(server, session_id)
    assert (
        len(stored["turns"]) == 1
        and stored["turns"][0]["reply_text"] == done.response.output[0].content[0].text
    )
