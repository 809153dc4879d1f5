"""Spoken replies on the browser's WebRTC audio track (VA_WEBRTC_SPEECH), and barge-in silencing them."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from benchmarks.server import ServerProcess
from benchmarks.speech import RATE, Utterance
from tests.support.servers import Servers
from voice_assistant.client import VoiceClient

pytestmark = pytest.mark.e2e

LOUD = 0.01


@pytest.fixture(scope="module")
def server(servers: Servers) -> ServerProcess:
    return servers.start("webrtc-speech", {"VA_WEBRTC_SPEECH": "true", "VA_MAX_NEW_TOKENS": "60"})


def loud_after(client: VoiceClient, moment: float) -> list[float]:
    return [at for at, rms in client.speaker if at > moment and rms > LOUD]


async def test_the_reply_is_heard_and_new_speech_silences_it(server: ServerProcess) -> None:
    client = VoiceClient(server.url)
    await client.connect()
    end = await client.microphone.play(Utterance(("Tell me a story,", "please.")).audio())
    client.microphone.play(np.zeros(RATE, np.float32))
    async with asyncio.timeout(20):
        await client.until(lambda: loud_after(client, end))
    first_audio = loud_after(client, end)[0] - end
    print(f"\nWebRTC: speech end -> first reply audio frame at the client {first_audio:.3f} s")
    assert first_audio < 3.0

    await asyncio.sleep(0.5)  # the reply is playing
    # Long enough to be a turn: a short word only pauses the reply (tests/e2e/test_false_interruptions.py).
    client.microphone.play(Utterance(("Stop, stop, wait a moment.",)).audio())
    client.microphone.play(np.zeros(RATE * 2, np.float32))
    async with asyncio.timeout(10):
        await client.wait_for("turn_started", 2)
    barge_in = client.events("turn_started")[1].at
    await asyncio.sleep(1.0)
    await client.close()
    late = loud_after(client, barge_in + 0.4)
    assert not late, f"reply audio went on {late[-1] - barge_in:.2f} s after the user spoke"

    async with httpx.AsyncClient(base_url=server.url) as http:
        turns = (await http.get(f"/api/sessions/{client.session_id}")).json()["turns"]
    assert turns[0]["interrupted"] is True  # cut while it was being spoken
    generated, heard = turns[0]["reply_text"], turns[0]["heard_text"]
    assert heard is not None and len(heard) < len(generated)  # what was said, and what was heard of it
    done = client.events("reply_done")[0].message["data"]
    assert done["interrupted"] is True and done["heard"] == heard


async def test_a_reply_that_never_stops_is_cut_by_the_deadline_and_stored_as_such(servers: Servers) -> None:
    # Thousands of tokens of spoken reply: far longer than the reply's 2 s deadline.
    server = servers.start(
        "reply-deadline",
        {"VA_WEBRTC_SPEECH": "true", "VA_MAX_NEW_TOKENS": "4000", "VA_REPLY_TIMEOUT_S": "2"},
    )
    client = VoiceClient(server.url)
    await client.connect()
    await client.microphone.play(Utterance(("Talk to me forever,", "please.")).audio())
    client.microphone.play(np.zeros(RATE, np.float32))
    async with asyncio.timeout(30):
        done = (await client.wait_for("reply_done", 1))[0].message["data"]
    errors = [event.message["data"]["message"] for event in client.events("error")]
    await client.close()

    assert done["interrupted"] is True and done["text"]
    assert any("took longer than 2 s" in message for message in errors)
    async with httpx.AsyncClient(base_url=server.url) as http:
        stored = (await http.get(f"/api/sessions/{client.session_id}")).json()["turns"][0]
    assert stored["interrupted"] is True and "took longer than 2 s" in stored["error"]
    assert stored["reply_text"] == done["text"] and stored["heard_text"] == done["heard"]
    assert 1.9 <= stored["timings"]["reply_done"] - stored["timings"]["turn_ended"] < 4.0
