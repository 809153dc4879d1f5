"""The load benchmark waits for the clients' speech with a bound: a client whose connection closed is
counted as dropped, and one still stuck fails the level with what it was stuck on."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from benchmarks import load

pytestmark = pytest.mark.unit


def client(state: str) -> Any:
    """What `spoken` reads of a `VoiceClient`: its microphone's queue and its connection's state."""
    microphone = SimpleNamespace(queued_seconds=0.0)
    return SimpleNamespace(microphone=microphone, pc=SimpleNamespace(connectionState=state))


def turns(*ends: float | None) -> list[asyncio.Future[float]]:
    """A client's turns: sent at `end`, or (None) never sent."""
    futures = []
    for end in ends:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if end is not None:
            future.set_result(end)
        futures.append(future)
    return futures


async def test_a_client_whose_connection_closed_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load, "SLACK_S", 0.0)  # nothing is queued: no wait at all
    closed = turns(None, None)
    for turn in closed:
        turn.cancel()  # as the microphone does when its connection closes
    ends = await load.spoken([client("connected"), client("closed")], [turns(1.0, 5.0), closed])
    assert ends == [[1.0, 5.0], []]


async def test_speech_still_not_sent_fails_the_level(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load, "SLACK_S", 0.0)
    with pytest.raises(load.LevelFailed, match=r"1 of 2 clients' speech not sent .* \(1 connected\)"):
        await load.spoken([client("connected"), client("connected")], [turns(1.0, 5.0), turns(1.0, None)])
