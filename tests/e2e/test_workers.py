"""`serve --workers 2`: one port, two real server processes, real aiortc clients and real speech.

A session's connection lives in one worker; when that worker is killed (SIGKILL, mid-conversation), the
client reconnects through the same port, lands on the other worker, and goes on with its whole history,
and the supervisor starts the killed worker again.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from typing import Any

import httpx
import numpy as np
import pytest

from benchmarks.server import ServerProcess
from benchmarks.speech import RATE, Utterance
from tests.support.servers import Servers
from tests.support.sockets import udp_sockets
from voice_assistant.client import VoiceClient

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(servers: Servers) -> ServerProcess:
    server = servers.start("workers", {"VA_WORKERS": "2"})
    for _ in range(600):  # /readyz is ready once one worker is: wait for both
        if all(worker["ready"] for worker in workers(server)):
            return server
        time.sleep(0.2)
    raise TimeoutError(f"both workers not ready: {workers(server)}")


def workers(server: ServerProcess) -> list[dict[str, Any]]:
    answer: list[dict[str, Any]] = httpx.get(server.url + "/readyz", timeout=10).json()["workers"]
    return answer


def holding_media(pids: list[int]) -> list[int]:
    """The workers with UDP sockets open: the ones holding a WebRTC connection."""
    return [pid for pid in pids if udp_sockets(pid)]


async def one_turn(client: VoiceClient, words: tuple[str, ...], done: int) -> None:
    client.microphone.play(Utterance(words, inner_pause=0.3).audio())
    client.microphone.play(np.zeros(RATE * 2, dtype=np.float32))
    await asyncio.wait_for(client.wait_for("reply_done", done), 60)


async def test_a_session_outlives_its_worker_and_the_worker_comes_back(server: ServerProcess) -> None:
    pids = [worker["pid"] for worker in workers(server)]
    assert len(set(pids)) == 2 and holding_media(pids) == []

    first = VoiceClient(server.url)
    await first.connect()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        subscribed = asyncio.Event()
        events = asyncio.create_task(read_events(http, str(first.session_id), subscribed, until="reply_done"))
        await asyncio.wait_for(subscribed.wait(), 30)
        await one_turn(first, ("Hello there,", "how are you today?"), 1)
        seen = await asyncio.wait_for(events, 30)
        # The event stream, asked through the one port, came from the worker holding the connection.
        lifecycle = [kind for kind in seen if kind != "reply_delta"]
        assert lifecycle[-3:] == ["turn_started", "turn_ended", "reply_done"]

        (holder,) = holding_media(pids)
        os.kill(holder, signal.SIGKILL)  # mid-conversation: the connection dies with it
        await first.close()

        again = VoiceClient(server.url, session_id=first.session_id)
        await again.connect()
        (other,) = [pid for pid in pids if pid != holder]
        assert holding_media([other]) == [other]
        await one_turn(again, ("Please remind me", "to call my sister at five."), 1)
        await again.close()

        turns = (await http.get(f"/api/sessions/{first.session_id}")).json()["turns"]
        assert [turn["index"] for turn in turns] == [0, 1] and all(turn["reply_done_at"] for turn in turns)
        assert turns[1]["context"]["audio_turns"] == [0]  # the other worker heard the first turn

        for _ in range(600):  # started again, with a new process, and ready
            now = workers(server)
            if all(worker["ready"] for worker in now) and holder not in [w["pid"] for w in now]:
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError(f"the killed worker did not come back: {now}")


async def read_events(
    http: httpx.AsyncClient, session_id: str, subscribed: asyncio.Event, *, until: str
) -> list[str]:
    """The types of the session's SSE events, up to the first `until`."""
    kinds: list[str] = []
    async with http.stream("GET", f"/api/sessions/{session_id}/events") as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith(":"):
                subscribed.set()
            elif line.startswith("data:"):
                kinds.append(json.loads(line.removeprefix("data:"))["type"])
                if kinds[-1] == until:
                    return kinds
    return kinds
