"""Admission control and the graceful drain on real server processes: an overloaded server refuses new
offers and calls while its connected session keeps every turn; SIGTERM mid-reply lets the reply finish,
tells the client to reconnect, says goodbye to a caller, and a second server on the same database
continues the session."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import httpx
import numpy as np
import pytest

from benchmarks.phone_client import TwilioCall
from benchmarks.speech import RATE, Utterance
from tests.support.servers import Servers
from voice_assistant.client import OfferRefused, VoiceClient

pytestmark = pytest.mark.e2e

DRAIN_TIMEOUT_S = 45
"""An upper bound: the drain ends as soon as the reply has (a few seconds here, more on a loaded machine)."""


def speak(client: VoiceClient, *words: str) -> None:
    client.microphone.play(Utterance(words).audio())
    client.microphone.play(np.zeros(int(RATE * 1.5), dtype=np.float32))


async def test_an_overloaded_server_refuses_new_work_and_its_session_keeps_every_turn(
    servers: Servers,
) -> None:
    # One silent connection costs its event loop about 13 % of a core here: past 5 % it is overloaded.
    server = servers.start("overloaded", {"VA_MAX_LOOP_CPU": "0.05", "VA_MAX_NEW_TOKENS": "16"})
    client = VoiceClient(server.url)
    await client.connect()
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            for _ in range(75):  # up to 15 s: the window (3 s) fills with the connected session's load
                if (ready := await http.get("/readyz")).status_code != 200:
                    break
                await asyncio.sleep(0.2)
            assert ready.status_code == 503 and ready.json()["status"] == "overloaded"
            assert "of a core" in ready.json()["reason"] and ready.headers["Retry-After"] == "5"

            with pytest.raises(OfferRefused) as refused:
                await VoiceClient(server.url).connect()
            assert refused.value.status == 503 and refused.value.retry_after == 5
            assert "overloaded" in str(refused.value.error)
            call = await TwilioCall(server.url, caller="+15550007001").ring()
            assert "<Say>" in call.text and "very busy" in call.text and "<Hangup" in call.text
            assert "<Stream" not in call.text

            for turn, words in enumerate((("Hello there.",), ("Are you still", "with me?"))):
                speak(client, *words)
                async with asyncio.timeout(20):
                    await client.wait_for("reply_done", turn + 1)
            metrics = (await http.get("/metrics")).text
    finally:
        await client.close()
    assert not client.events("error")
    assert all(not done.message["data"]["interrupted"] for done in client.events("reply_done"))
    assert 'va_refused_total{reason="overloaded"} 2.0' in metrics


async def sse_lines(url: str, session_id: str, lines: list[str]) -> None:
    async with (
        httpx.AsyncClient(base_url=url, timeout=None) as http,
        http.stream("GET", f"/api/sessions/{session_id}/events") as stream,
    ):
        async for line in stream.aiter_lines():
            lines.append(line)


async def test_sigterm_mid_reply_lets_it_finish_and_the_session_continues_elsewhere(
    servers: Servers, tmp_path_factory: pytest.TempPathFactory
) -> None:
    database = f"sqlite:///{tmp_path_factory.mktemp('shared') / 'history.db'}"
    common = {"VA_DATABASE_URL": database, "VA_SPECULATIVE_START": "false"}
    # A reply long enough to be under way when SIGTERM comes, short enough to end well within the drain.
    first = servers.start(
        "drained", {**common, "VA_MAX_NEW_TOKENS": "600", "VA_DRAIN_TIMEOUT_S": str(DRAIN_TIMEOUT_S)}
    )
    second = servers.start("successor", {**common, "VA_MAX_NEW_TOKENS": "16"})
    assert first.process is not None

    call = TwilioCall(first.url, caller="+15550007002")  # a call cannot move: it is ended politely
    await call.dial()
    async with asyncio.timeout(15):
        await call.wait(lambda: any(h.message["mark"]["name"] == "greeting.0" for h in call.of("mark")))
    client = VoiceClient(first.url)
    await client.connect()
    session_id = client.session_id
    assert session_id is not None
    sse: list[str] = []
    subscriber = asyncio.create_task(sse_lines(first.url, session_id, sse))
    speak(client, "Tell me a long story.")
    async with asyncio.timeout(20):
        await client.wait_for("reply_delta", 1)
    signalled = time.time()
    first.process.send_signal(signal.SIGTERM)

    async with httpx.AsyncClient(base_url=first.url) as http:
        await asyncio.sleep(0.1)  # the signal handler hands the drain to the loop
        ready = await http.get("/readyz")
    with pytest.raises(OfferRefused) as refused:
        await VoiceClient(first.url).connect()
    async with asyncio.timeout(DRAIN_TIMEOUT_S):
        [reconnect] = await client.wait_for("reconnect", 1)
    async with asyncio.timeout(10):
        await subscriber  # the SSE stream ended too, so that the server could exit
    async with asyncio.timeout(DRAIN_TIMEOUT_S):
        await call.wait(lambda: call.closed is not None)
    await call.close()
    exit_code = await asyncio.to_thread(first.process.wait, DRAIN_TIMEOUT_S)
    exited_after = time.time() - signalled
    await client.close()

    assert ready.status_code == 503 and ready.json()["status"] == "draining"
    assert refused.value.status == 503 and refused.value.retry_after is not None
    [done] = client.events("reply_done")
    assert done.message["data"]["interrupted"] is False and done.at <= reconnect.at
    reply = done.message["data"]["text"]
    assert any(delta.at > signalled for delta in client.events("reply_delta"))  # it went on after SIGTERM
    events = [json.loads(line.removeprefix("data:")) for line in sse if line.startswith("data:")]
    assert events[-1]["type"] == "reconnect" and "reply_done" in {event["type"] for event in events}
    print(f"\nSIGTERM -> reply_done {done.at - signalled:.2f} s, -> exit {exited_after:.2f} s")
    assert exit_code == -signal.SIGTERM and exited_after < DRAIN_TIMEOUT_S
    farewell = [h.message["mark"]["name"] for h in call.of("mark") if "farewell" in h.message["mark"]["name"]]
    assert farewell and call.closed is not None and call.closed[0] == 1000  # said goodbye, then hung up

    again = VoiceClient(second.url, session_id=session_id)
    await again.connect()
    try:
        speak(again, "Where was I?")
        async with asyncio.timeout(20):
            await again.wait_for("reply_done", 1)
    finally:
        await again.close()
    assert again.events("reply_done")[0].message["data"]["turn"] == 1
    async with httpx.AsyncClient(base_url=second.url) as http:
        turns = (await http.get(f"/api/sessions/{session_id}")).json()["turns"]
    assert turns[0]["reply_text"] == reply and turns[0]["interrupted"] is False
    assert turns[0]["reply_done_at"] is not None and len(turns) == 2
