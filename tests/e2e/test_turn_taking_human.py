"""The default end of turn on real human speech, end to end over WebRTC: a pause in the middle of a
sentence does not end the turn, and a complete sentence is answered sooner than the old 650 ms silence
rule could (its decision alone comes 650 ms after the speech).

The speech is two Asterisk prompts (one professional voice, 8 kHz): "There is currently one other
participant in the conference." with 0.6 s of silence put between two of its words, where Smart Turn
hears an unfinished sentence, and "That pin is invalid for this conference.", which it hears as finished.
"""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from benchmarks.human_set import insert_pause, trimmed
from benchmarks.human_speech import asterisk_prompt, asterisk_transcripts
from benchmarks.server import ServerProcess
from benchmarks.speech import RATE
from tests.support.servers import Servers
from voice_assistant.client import VoiceClient

pytestmark = pytest.mark.e2e

SILENCE_RULE_S = 0.65
"""What `VA_END_OF_TURN=silence` waits after the speech before it decides (VA_MIN_SILENCE_MS)."""


@pytest.fixture(scope="module")
def default_turns(servers: Servers) -> ServerProcess:
    return servers.start("human-turns", {"VA_END_OF_TURN": "smart-turn", "VA_MAX_NEW_TOKENS": "8"})


def quiet(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.float32)


async def speak(server: ServerProcess, speech: np.ndarray) -> tuple[VoiceClient, float]:
    """Play the speech after a second of silence and follow it with two; return the client (closed)
    and the time its last speech sample went out."""
    client = VoiceClient(server.url)
    await client.connect()
    client.microphone.play(quiet(1.0))
    spoken = client.microphone.play(speech)
    await client.microphone.play(quiet(2.0))
    speech_end = await spoken
    await asyncio.sleep(0.5)
    await client.close()
    return client, speech_end


async def stored_turns(server: ServerProcess, session_id: str) -> list[dict[str, object]]:
    async with httpx.AsyncClient(base_url=server.url) as http:
        return list((await http.get(f"/api/sessions/{session_id}")).json()["turns"])


async def test_a_pause_in_the_middle_of_a_sentence_does_not_end_the_turn(
    default_turns: ServerProcess,
) -> None:
    """Smart Turn hears about a third of the pauses inside turns as ends (README, "Turn-taking"), and this
    one, in real time, is held in most runs but not all (the frames it is asked about move with the
    pacing): the sentence is spoken again, in a new session, when the first run split it, and the second
    must keep it whole. A model that split it every time fails."""
    name = "conf-onlyone"
    prompt = trimmed(asterisk_prompt(name))
    speech, _ = insert_pause(prompt, asterisk_transcripts()[name], 0.6)

    client, speech_end = await speak(default_turns, speech)
    if len(client.events("turn_ended")) > 1:
        client, speech_end = await speak(default_turns, speech)

    ended = client.events("turn_ended")
    assert len(ended) == 1 and len(client.events("turn_started")) == 1
    assert ended[0].at > speech_end  # after the whole sentence, not at the pause
    (turn,) = await stored_turns(default_turns, client.session_id)
    assert turn["audio_seconds"] >= len(speech) / RATE  # both halves of the sentence in one turn


async def test_a_complete_sentence_ends_sooner_than_the_silence_rule(default_turns: ServerProcess) -> None:
    speech = trimmed(asterisk_prompt("conf-invalidpin"))

    client, speech_end = await speak(default_turns, speech)

    (ended,) = client.events("turn_ended")
    delay = ended.at - speech_end
    print(f"\nend of speech -> turn_ended: {delay * 1000:.0f} ms")
    assert 0 < delay < SILENCE_RULE_S
    (turn,) = await stored_turns(default_turns, client.session_id)
    assert turn["context"]["end"] == "semantic"  # the policy ended it, not the cap
