"""Human speech over a reply spoken on the WebRTC track: a short word pauses it and it resumes, a real
turn cuts it; either way the voice stops within 100 ms of the server hearing the speech."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from benchmarks.human_speech import MissingSpeech, asterisk_prompt
from benchmarks.server import ServerProcess
from benchmarks.speech import RATE, Utterance
from tests.support.servers import Servers
from voice_assistant.client import VoiceClient

pytestmark = pytest.mark.e2e

LOUD = 0.01
STOPS_WITHIN_S = 0.1


@pytest.fixture(scope="module", params=["smart-turn", "silence"])
def server(servers: Servers, request: pytest.FixtureRequest) -> ServerProcess:
    """Under either end of turn: they report the silence in the speech at different points."""
    return servers.start(
        f"false-interruptions-{request.param}",
        {"VA_WEBRTC_SPEECH": "true", "VA_MAX_NEW_TOKENS": "120", "VA_END_OF_TURN": request.param},
    )


def human(name: str) -> np.ndarray:
    try:
        return asterisk_prompt(name)
    except MissingSpeech as exc:
        pytest.skip(str(exc))


def loud(client: VoiceClient, after: float, before: float = float("inf")) -> list[float]:
    return [at for at, rms in client.speaker if after < at < before and rms > LOUD]


async def reply_playing(server: ServerProcess) -> VoiceClient:
    client = VoiceClient(server.url)
    await client.connect()
    end = await client.microphone.play(Utterance(("Tell me a story please.",)).audio())  # one turn
    client.microphone.play(np.zeros(RATE, np.float32))
    async with asyncio.timeout(30):
        await client.until(lambda: loud(client, end))
    await asyncio.sleep(0.5)  # well into the reply
    return client


async def stored_turns(server: ServerProcess, client: VoiceClient) -> list[dict[str, object]]:
    async with httpx.AsyncClient(base_url=server.url) as http:
        session = (await http.get(f"/api/sessions/{client.session_id}")).json()
    turns: list[dict[str, object]] = session["turns"]
    return turns


def stopped_after(client: VoiceClient, paused: float, until: float) -> float:
    """How long the reply's audio went on at the client after `reply_paused` reached it."""
    late = loud(client, paused, until)
    return late[-1] - paused if late else 0.0


async def test_a_short_word_over_the_reply_pauses_it_then_it_resumes_and_nothing_is_interrupted(
    server: ServerProcess,
) -> None:
    # "six": 0.42-0.45 s of speech as Silero hears it after other speech, wideband or phone. Silero
    # stretches short words there: "at" (0.22 s alone) to up to 0.51 s, "eight" (0.42 s) to 0.48-0.51 s,
    # which the 0.5 s rule then takes for a turn now and then.
    word = human("digits/6")
    client = await reply_playing(server)
    client.microphone.play(word)
    client.microphone.play(np.zeros(RATE * 2, np.float32))
    async with asyncio.timeout(15):
        [paused] = await client.wait_for("reply_paused", 1)
        [resumed] = await client.wait_for("reply_resumed", 1)
        await client.until(lambda: loud(client, resumed.at))
    async with asyncio.timeout(60):  # it plays to its end
        done = (await client.wait_for("reply_done", 1))[0].message["data"]
    await client.close()

    went_on, back = stopped_after(client, paused.at, resumed.at), resumed.at - paused.at
    print(f"\nbackchannel: audio {went_on * 1000:.0f} ms past reply_paused; back {back:.2f} s later")
    assert went_on <= STOPS_WITHIN_S
    assert done["interrupted"] is False and len(client.events("turn_started")) == 1
    [turn] = await stored_turns(server, client)  # the word is no turn of the conversation
    assert turn["interrupted"] is False and turn["heard_text"] == done["heard"]
    assert str(turn["heard_text"]).split() == str(turn["reply_text"]).split()  # all of it, once


async def test_a_real_turn_over_the_reply_stops_it_at_once_and_stores_what_was_heard(
    server: ServerProcess,
) -> None:
    sentence = human("agent-newlocation")  # "Please enter a new extension, followed by pound."
    client = await reply_playing(server)
    client.microphone.play(sentence)
    client.microphone.play(np.zeros(RATE * 2, np.float32))
    async with asyncio.timeout(15):
        [paused] = await client.wait_for("reply_paused", 1)
        started = (await client.wait_for("turn_started", 2))[1]
        done = (await client.wait_for("reply_done", 1))[0].message["data"]
    await asyncio.sleep(1.0)
    await client.close()

    went_on = stopped_after(client, paused.at, started.at + 1.0)
    print(
        f"\nbarge-in: audio {went_on * 1000:.0f} ms past reply_paused; turn {started.at - paused.at:.2f} s on"
    )
    assert went_on <= STOPS_WITHIN_S
    assert client.events("reply_resumed") == []
    turns = await stored_turns(server, client)
    assert turns[0]["interrupted"] is True and done["interrupted"] is True
    generated, heard = str(turns[0]["reply_text"]), turns[0]["heard_text"]
    assert heard == done["heard"] and isinstance(heard, str) and len(heard) < len(generated)
