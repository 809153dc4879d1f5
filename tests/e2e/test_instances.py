"""Two real server processes on one real PostgreSQL behave as one service: a session goes on from one to
the other with its whole history, SSE on one sees a connection on the other, a rate limit, a call token and
the call limit hold across both, and a SIGKILLed instance leaves every finished turn to the other."""

from __future__ import annotations

import asyncio
import json
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest

from benchmarks.phone_client import TwilioCall, twiml_stream
from benchmarks.server import ServerProcess
from benchmarks.speech import RATE, Utterance
from tests.support.servers import Servers
from voice_assistant.client import Received, VoiceClient

pytestmark = pytest.mark.e2e

OFFERS_PER_MINUTE = 6
"""Per client address: enough for this module's voice clients (127.0.0.1), few for the rate test's
requests, which come from 127.0.0.2 (a bucket of their own)."""
TURNS = [
    Utterance(("Hello there,", "how are you today?"), inner_pause=0.3, gap_after=1.6),
    Utterance(("Can you tell me", "a short story?"), inner_pause=0.25, gap_after=1.4),
]
Pair = tuple[ServerProcess, ServerProcess]
NEXT = Utterance(("Do you still remember", "what I said?"), inner_pause=0.3, gap_after=1.5)


@pytest.fixture(scope="module")
def pair(servers: Servers, postgres_database: str) -> Pair:
    env = {
        "VA_DATABASE_URL": postgres_database,
        "VA_MAX_NEW_TOKENS": "24",
        "VA_OFFERS_PER_MINUTE_PER_ADDRESS": str(OFFERS_PER_MINUTE),
        "VA_MAX_CALLS": "1",
    }
    with ThreadPoolExecutor(2) as starting:  # both at once, as a deployment starts them (twice the work)
        a, b = starting.map(lambda name: servers.start(name, env, public_url=True, timeout=300), ("a", "b"))
    return a, b


async def connected(server: ServerProcess, session_id: str | None = None) -> VoiceClient:
    """A voice client connected to `server`, on a new session or on `session_id`."""
    client = VoiceClient(server.url, session_id=session_id)
    await client.connect()
    return client


async def speak(client: VoiceClient, *utterances: Utterance) -> None:
    for utterance in utterances:
        await client.microphone.play(utterance.audio())
        client.microphone.play(np.zeros(int(utterance.gap_after * RATE), dtype=np.float32))


async def answered(client: VoiceClient, *utterances: Utterance) -> list[Received]:
    """Speak `utterances` and wait for a reply to each; every reply_done of the connection so far."""
    replies = len(client.events("reply_done")) + len(utterances)
    await speak(client, *utterances)
    return await asyncio.wait_for(client.wait_for("reply_done", replies), 30)


async def stored(server: ServerProcess, session_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get(f"/api/sessions/{session_id}")
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


async def test_a_session_started_on_a_goes_on_on_b_and_b_hears_a_s_turns(
    pair: Pair,
) -> None:
    a, b = pair
    on_a = await connected(a)
    await answered(on_a, *TURNS)
    await on_a.close()

    on_b = await connected(b, on_a.session_id)
    assert on_b.session_id == on_a.session_id
    await answered(on_b, NEXT)
    await on_b.close()
    assert on_b.events("turn_started")[0].message["data"]["turn"] == len(TURNS)

    assert on_a.session_id is not None
    session = await stored(a, on_a.session_id)  # B's turn, read through A: one store
    assert [turn["index"] for turn in session["turns"]] == [0, 1, 2]
    replies = [r.message["data"]["text"] for r in (*on_a.events("reply_done"), *on_b.events("reply_done"))]
    assert [turn["reply_text"] for turn in session["turns"]] == replies
    # What B's model heard for the new turn: A's two turns, as audio.
    assert session["turns"][2]["context"]["audio_turns"] == [0, 1]


async def test_an_sse_subscriber_on_b_sees_a_connection_on_a(
    pair: Pair,
) -> None:
    a, b = pair
    async with httpx.AsyncClient(base_url=b.url, timeout=30) as http:
        session_id = (await http.post("/api/sessions")).json()["session_id"]
        lines: list[dict[str, Any]] = []
        subscribed = asyncio.Event()

        async def listen() -> None:
            async with http.stream("GET", f"/api/sessions/{session_id}/events") as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    subscribed.set()  # the ": subscribed" comment
                    if line.startswith("data: "):
                        lines.append(json.loads(line[6:]))
                        if lines[-1]["type"] == "reply_done":
                            return

        listener = asyncio.create_task(listen())
        await asyncio.wait_for(subscribed.wait(), 10)
        client = await connected(a, session_id)
        await speak(client, TURNS[0])
        await asyncio.wait_for(listener, 30)
        await client.close()
    same = {"turn_started", "turn_ended", "reply_delta", "reply_done"}
    on_the_channel = [m.message for m in client.events() if m.message["type"] in same]
    assert [line["type"] for line in lines][:2] == ["turn_started", "turn_ended"]
    assert lines == on_the_channel[: len(lines)] and lines[-1]["type"] == "reply_done"


async def test_a_rate_limit_reached_on_a_holds_on_b(pair: Pair, offer_sdp: str) -> None:
    a, b = pair
    # An offer naming an unknown session is counted, then refused with 404: no connection is made.
    body = {"sdp": offer_sdp, "type": "offer", "webrtc_id": "rate", "session_id": "0" * 32}
    from_elsewhere = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(transport=from_elsewhere, timeout=10) as http:
        statuses = [(await http.post(f"{a.url}/webrtc/offer", json=body)).status_code for _ in range(7)]
        on_b = await http.post(f"{b.url}/webrtc/offer", json=body)
    assert statuses == [404] * OFFERS_PER_MINUTE + [429]
    assert on_b.status_code == 429 and "from this address" in on_b.json()["error"]
    assert 1 <= int(on_b.headers["Retry-After"]) <= 60


async def test_a_call_token_from_a_is_spent_once_and_the_call_limit_holds_on_b(
    pair: Pair,
) -> None:
    a, b = pair
    answer = await TwilioCall(a.url).ring()
    _, parameters = twiml_stream(answer.text)
    # VA_MAX_CALLS=1: the answered call holds the one place from its answer on, before its stream starts.
    racing = await TwilioCall(b.url).ring()
    assert "busy" in racing.text and "<Stream" not in racing.text
    calls = [TwilioCall(server.url) for server in (a, b)]
    await asyncio.gather(
        *(
            call.open_stream(server.url.replace("http://", "ws://") + "/telephone/stream", parameters)
            for call, server in zip(calls, (a, b), strict=True)
        )
    )
    async with asyncio.timeout(15):  # one plays the greeting, the other is closed
        for call in calls:
            await call.wait(lambda call=call: call.closed is not None or call.reply_audio())
    closed = [call for call in calls if call.closed is not None]
    assert len(closed) == 1 and closed[0].closed is not None and closed[0].closed[0] == 1008
    (winner,) = [call for call in calls if call.closed is None]

    # VA_MAX_CALLS=1 and a call is in progress on one of them: the other says it is busy.
    loser = (a, b)[calls.index(closed[0])]
    busy = await TwilioCall(loser.url).ring()
    assert "busy" in busy.text and "<Stream" not in busy.text
    await winner.hang_up()
    await closed[0].close()
    for _ in range(50):  # the call's place is free again, once its server has seen it end
        if "<Stream" in (again := await TwilioCall(loser.url).ring()).text:
            break
        await asyncio.sleep(0.2)
    assert "<Stream" in again.text


async def test_after_a_is_killed_mid_conversation_b_has_every_finished_turn(
    pair: Pair,
) -> None:
    a, b = pair
    client = await connected(a)
    await answered(client, TURNS[0])
    await speak(client, TURNS[1])
    await asyncio.wait_for(client.wait_for("turn_ended", 2), 30)  # the second turn is committed
    assert a.process is not None
    a.process.send_signal(signal.SIGKILL)  # mid-conversation: its reply may be under way
    a.process.wait()
    await client.close()

    assert client.session_id is not None
    resumed = await connected(b, client.session_id)
    session = await stored(b, client.session_id)
    ended = {e.message["data"]["turn"]: e.message["data"] for e in client.events("turn_ended")}
    assert [turn["index"] for turn in session["turns"]] == sorted(ended) == [0, 1]
    for turn in session["turns"]:
        assert turn["audio_seconds"] == pytest.approx(ended[turn["index"]]["audio_seconds"], abs=0.002)
    assert session["turns"][0]["reply_text"] == client.events("reply_done")[0].message["data"]["text"]

    done = await answered(resumed, NEXT)
    await resumed.close()
    assert done[0].message["data"]["turn"] == 2
    assert (await stored(b, client.session_id))["turns"][2]["context"]["audio_turns"] == [0, 1]
