"""Turn-taking end to end over real WebRTC: speculative start and barge-in."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from benchmarks.server import ServerProcess
from benchmarks.speech import RATE, Utterance
from tests.support.servers import LONG_REPLIES, Servers
from voice_assistant.client import VoiceClient

pytestmark = pytest.mark.e2e


def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


@pytest.fixture(scope="module")
def speculating(servers: Servers) -> ServerProcess:
    # Silence alone ends turns here, so every inner pause is a pause that resumes.
    return servers.start(
        "speculating", {"VA_END_OF_TURN": "silence", "VA_MIN_SILENCE_MS": "700", "VA_MAX_NEW_TOKENS": "24"}
    )


@pytest.fixture(scope="module")
def long_replies(servers: Servers) -> ServerProcess:
    return servers.start("barge-in", LONG_REPLIES)


async def test_pauses_that_resume_leave_no_trace_and_the_last_one_is_adopted(
    speculating: ServerProcess,
) -> None:
    client = VoiceClient(speculating.url)
    await client.connect()
    sentence = Utterance(("Can you tell me", "a short story", "about a robot?"), inner_pause=0.45)
    client.microphone.play(sentence.audio())
    client.microphone.play(np.zeros(RATE * 2, dtype=np.float32))
    await asyncio.wait_for(client.wait_for("reply_done", 1), 20)
    await asyncio.sleep(0.5)
    await client.close()

    kinds = [r.message["type"] for r in client.events()]
    assert kinds[:2] == ["turn_started", "turn_ended"] and kinds.count("reply_done") == 1
    assert "reply_delta" not in kinds[: kinds.index("turn_ended")]  # nothing of a discarded reply was sent
    async with httpx.AsyncClient(base_url=speculating.url) as http:
        turns = (await http.get(f"/api/sessions/{client.session_id}")).json()["turns"]
        metrics = (await http.get("/metrics")).text
    assert len(turns) == 1
    assert turns[0]["context"]["speculative"] is True
    assert turns[0]["reply_text"] == client.events("reply_done")[0].message["data"]["text"]
    assert metric(metrics, 'va_speculations_total{outcome="discarded"}') >= 2  # the two inner pauses
    assert metric(metrics, 'va_speculations_total{outcome="adopted"}') == 1


async def test_speech_during_a_reply_stops_it_and_becomes_the_next_turn(long_replies: ServerProcess) -> None:
    client = VoiceClient(long_replies.url)
    await client.connect()
    client.microphone.play(Utterance(("Tell me everything", "you know."), inner_pause=0.3).audio())
    client.microphone.play(np.zeros(RATE, dtype=np.float32))
    await asyncio.wait_for(client.wait_for("reply_delta", 1), 20)
    barge_in = Utterance(("Stop, stop.",)).audio()
    barge_in_end = client.microphone.play(barge_in)  # mid-reply
    client.microphone.play(np.zeros(RATE * 2, dtype=np.float32))
    await asyncio.wait_for(client.wait_for("reply_done", 2), 30)
    barge_in_onset = await barge_in_end - len(barge_in) / RATE
    await client.close()

    started_1 = next(r for r in client.events("turn_started") if r.message["data"]["turn"] == 1)
    done_0 = next(r for r in client.events("reply_done") if r.message["data"]["turn"] == 0)
    stop_latency = done_0.at - started_1.at
    print(
        f"\nbarge-in: speech onset -> reply_done(0) {(done_0.at - barge_in_onset) * 1000:.0f} ms;"
        f" turn_started(1) -> reply_done(0) {stop_latency * 1000:.1f} ms"
    )
    assert done_0.message["data"]["interrupted"] is True
    assert 0 <= stop_latency < 0.1
    delivered = "".join(
        r.message["data"]["text"] for r in client.events("reply_delta") if r.message["data"]["turn"] == 0
    )
    assert done_0.message["data"]["text"] == delivered
    assert all(r.at <= done_0.at for r in client.events("reply_delta") if r.message["data"]["turn"] == 0)

    async with httpx.AsyncClient(base_url=long_replies.url) as http:
        turns = (await http.get(f"/api/sessions/{client.session_id}")).json()["turns"]
    assert [t["index"] for t in turns] == [0, 1]
    assert turns[0]["interrupted"] is True and turns[0]["reply_text"] == delivered
    assert turns[1]["audio_seconds"] > 0.5
