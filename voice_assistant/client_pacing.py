"""What paces the Python client's microphones: one 20 ms ticker per event loop for all of them.

A timer per microphone per packet (asyncio.sleep) wakes the loop 50 times a second for each client; with
tens of clients in a load generator that alone is a fifth of what a client costs. The microphones of a
loop share one grid of 20 ms ticks instead, and a tick releases every packet that is due.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Protocol

TICK_S = 0.02


class Pacer(Protocol):
    """When a microphone's packets go out: `now()` is the wall time of the latest tick (a microphone
    starts there), `until(due)` returns once the tick at wall time `due` has passed."""

    def now(self) -> float: ...

    async def until(self, due: float) -> None: ...


class Ticker:
    """20 ms ticks on one grid of the loop's clock, dated in wall time; it runs only while awaited."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._origin = loop.time()
        self._wall_origin = time.time()
        self._waiters: list[asyncio.Future[None]] = []

    def _index(self) -> int:
        # A timer may fire a hair early (the loop's clock resolution): a microsecond of tolerance.
        return int((self._loop.time() - self._origin) / TICK_S + 1e-4)

    def now(self) -> float:
        return self._wall_origin + self._index() * TICK_S

    async def until(self, due: float) -> None:
        while self.now() < due - TICK_S / 2:
            if not self._waiters:
                self._loop.call_at(self._origin + (self._index() + 1) * TICK_S, self._release)
            waiter: asyncio.Future[None] = self._loop.create_future()  # its own: a cancel stays its own
            self._waiters.append(waiter)
            await waiter

    def _release(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


_tickers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Ticker] = weakref.WeakKeyDictionary()


def ticker() -> Ticker:
    """The running loop's ticker."""
    loop = asyncio.get_running_loop()
    if loop not in _tickers:
        _tickers[loop] = Ticker(loop)
    return _tickers[loop]
