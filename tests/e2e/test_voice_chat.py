"""The browser voice chat end to end: a real server process, a real WebRTC client (aiortc) speaking real
speech (espeak-ng) in real time, the real Silero VAD, a tiny real Qwen2-Audio and a real SQLite file."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest

from benchmarks.server import ServerProcess
from benchmarks.speech import RATE, Utterance
from tests.support.servers import Servers
from voice_assistant.client import VoiceClient

pytestmark = pytest.mark.e2e

SCRIPT = [
    Utterance(("Hello there,", "how are you today?"), inner_pause=0.3, gap_after=1.6),
    Utterance(("Can you tell me", "a short story", "about a robot?"), inner_pause=0.25, gap_after=1.4),
    Utterance(("Thank you.",), gap_after=1.2),
    Utterance(("What did I ask you", "before that?"), inner_pause=0.35, gap_after=1.8),
]
RESUMED = Utterance(("Do you still remember", "what I said?"), inner_pause=0.3, gap_after=1.5)


@pytest.fixture(scope="module")
def server(servers: Servers) -> ServerProcess:
    return servers.start("server", {"VA_MAX_NEW_TOKENS": "24"})


async def speak_script(client: VoiceClient, script: list[Utterance]) -> list[float]:
    """Play every turn with its pauses, in real time; return the true end of each turn's speech."""
    ends = []
    for utterance in script:
        ends.append(client.microphone.play(utterance.audio()))
        client.microphone.play(np.zeros(int(utterance.gap_after * RATE), dtype=np.float32))
    return list(await asyncio.gather(*ends))


def per_turn(client: VoiceClient, kind: str) -> dict[int, list[float]]:
    seen: dict[int, list[float]] = {}
    for received in client.events(kind):
        seen.setdefault(received.message["data"]["turn"], []).append(received.at)
    return seen


async def test_a_conversation_survives_a_restart_and_a_reconnect_remembers_it(server: ServerProcess) -> None:
    client = VoiceClient(server.url)
    await client.connect()
    speech_ends = await speak_script(client, SCRIPT)
    await asyncio.wait_for(client.wait_for("reply_done", len(SCRIPT)), 30)
    await asyncio.wait_for(client.wait_for("transcript", len(SCRIPT)), 30)  # made while idle, after replies
    await asyncio.sleep(0.5)  # anything extra (a split turn) would show up now
    await client.close()

    assert not client.events("error")
    started, ended, done = (per_turn(client, k) for k in ("turn_started", "turn_ended", "reply_done"))
    # Exactly one turn_ended and one reply_done per turn: no sentence was split at its inner pauses.
    assert sorted(ended) == sorted(done) == sorted(started) == list(range(len(SCRIPT)))
    assert all(len(times) == 1 for times in (*ended.values(), *done.values()))
    for turn in range(len(SCRIPT)):
        deltas = per_turn(client, "reply_delta").get(turn, [])
        assert started[turn][0] < ended[turn][0] <= min(deltas, default=done[turn][0]) <= done[turn][0]
    endpointing = [ended[turn][0] - end for turn, end in enumerate(speech_ends)]
    print("\nendpointing (true speech end -> turn_ended), s:", [round(d, 3) for d in endpointing])
    assert all(0.3 < delay < 1.5 for delay in endpointing)

    replies = {r.message["data"]["turn"]: r.message["data"]["text"] for r in client.events("reply_done")}
    async with httpx.AsyncClient(base_url=server.url) as http:
        stored = (await http.get(f"/api/sessions/{client.session_id}")).json()
    assert [t["index"] for t in stored["turns"]] == list(range(len(SCRIPT)))
    assert [t["reply_text"] for t in stored["turns"]] == [replies[i] for i in range(len(SCRIPT))]
    for turn, utterance in zip(stored["turns"], SCRIPT, strict=True):
        spoken = len(utterance.audio()) / RATE
        assert spoken < turn["audio_seconds"] < spoken + 0.9  # the speech and its padding
        assert turn["speech_start"] < turn["speech_end"] < turn["turn_ended_at"] <= turn["reply_done_at"]
        assert not turn["interrupted"] and turn["error"] is None
        assert isinstance(turn["transcript"], str)

    server.stop()
    server.start()
    async with httpx.AsyncClient(base_url=server.url) as http:
        after_restart = (await http.get(f"/api/sessions/{client.session_id}")).json()
    assert after_restart["turns"] == stored["turns"]

    resumed = VoiceClient(server.url, session_id=client.session_id)
    answer = await resumed.connect()
    assert answer["session_id"] == client.session_id
    await speak_script(resumed, [RESUMED])
    done_again = await asyncio.wait_for(resumed.wait_for("reply_done", 1), 20)
    await resumed.close()
    assert done_again[0].message["data"]["turn"] == len(SCRIPT)
    assert resumed.events("turn_started")[0].message["data"]["turn"] == len(SCRIPT)

    async with httpx.AsyncClient(base_url=server.url) as http:
        final = (await http.get(f"/api/sessions/{client.session_id}")).json()
    assert len(final["turns"]) == len(SCRIPT) + 1
    # The model heard the earlier turns: the newest three as audio (K = 4 with the new one), the rest as text.
    assert final["turns"][-1]["context"]["audio_turns"] == [1, 2, 3]
    assert final["turns"][-1]["context"]["text_turns"] == [0]


async def test_the_events_also_stream_over_sse(server: ServerProcess) -> None:
    client = VoiceClient(server.url)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        session_id = (await http.post("/api/sessions")).json()["session_id"]
        client.session_id = session_id
        lines: list[dict[str, object]] = []

        async def listen() -> None:
            async with http.stream("GET", f"/api/sessions/{session_id}/events") as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        lines.append(json.loads(line[6:]))
                        if lines[-1]["type"] == "reply_done":
                            return

        listener = asyncio.create_task(listen())
        await asyncio.sleep(0.3)
        await client.connect()
        await speak_script(client, [SCRIPT[2]])
        await asyncio.wait_for(listener, 20)
        await client.close()
    kinds = [line["type"] for line in lines]
    assert kinds[:2] == ["turn_started", "turn_ended"] and kinds[-1] == "reply_done"
    # The same events on both ways out, up to the reply's end (where the SSE reader stopped).
    same = {"turn_started", "turn_ended", "reply_done"}
    assert [m.message for m in client.events() if m.message["type"] in same] == [
        line for line in lines if line["type"] in same
    ]
