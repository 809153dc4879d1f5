"""What a connection costs and leaves behind: an idle one, and one that vanishes mid-reply."""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
import pytest

from benchmarks.server import ServerProcess
from benchmarks.speech import RATE, Utterance
from tests.support.servers import LONG_REPLIES, Servers
from voice_assistant.client import VoiceClient

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(servers: Servers) -> ServerProcess:
    # Long replies, so that there is time to vanish mid-reply.
    return servers.start("lifecycle", LONG_REPLIES)


async def cpu_share(server: ServerProcess, seconds: float) -> float:
    before, start = server.cpu_seconds(), time.monotonic()
    await asyncio.sleep(seconds)
    return (server.cpu_seconds() - before) / (time.monotonic() - start)


async def test_a_connected_silent_session_costs_almost_nothing(server: ServerProcess) -> None:
    idle_server = await cpu_share(server, 4.0)
    client = VoiceClient(server.url)
    await client.connect()
    await asyncio.sleep(1.0)
    connected = await cpu_share(server, 8.0)
    await client.close()
    print(f"\nserver CPU: idle {idle_server:.1%} of a core, one silent connection {connected:.1%}")
    assert idle_server < 0.03  # nothing polls while nobody is connected
    # Decoding 50 Opus frames/s and 31 VAD frames/s: 13 % of a core on this VM (the same on the commit
    # before the reply handle); a busy loop, as in stock fastrtc, takes the whole core.
    assert connected < 0.25


async def test_a_client_that_vanishes_mid_reply_leaves_the_reply_so_far_stored(server: ServerProcess) -> None:
    client = VoiceClient(server.url)
    await client.connect()
    client.microphone.play(Utterance(("Tell me everything", "you know."), inner_pause=0.3).audio())
    client.microphone.play(np.zeros(RATE * 2, dtype=np.float32))
    await asyncio.wait_for(client.wait_for("reply_delta", 3), 20)
    await client.close()  # gone, mid-reply
    received = "".join(r.message["data"]["text"] for r in client.events("reply_delta"))

    async with httpx.AsyncClient(base_url=server.url) as http:
        for _ in range(100):
            turn = (await http.get(f"/api/sessions/{client.session_id}")).json()["turns"][0]
            if turn["reply_done_at"]:
                break
            await asyncio.sleep(0.1)
        metrics = (await http.get("/metrics")).text
    assert turn["interrupted"] is True
    assert turn["reply_text"].startswith(received) and len(turn["reply_text"]) < 4000
    assert "va_live_sessions 0.0" in metrics

    # The server goes on: a new connection gets a reply.
    again = VoiceClient(server.url)
    await again.connect()
    again.microphone.play(Utterance(("Hello.",)).audio())
    again.microphone.play(np.zeros(RATE, dtype=np.float32))
    await asyncio.wait_for(again.wait_for("reply_delta", 1), 20)
    await again.close()
