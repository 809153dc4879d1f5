"""Graceful drain on SIGTERM: stop taking new work, let live conversations finish, then exit.

uvicorn, on SIGTERM, closes its listening socket at once, then waits for open HTTP connections (up to
`timeout_graceful_shutdown`) and runs the lifespan shutdown, which here closes every live connection
and cuts the replies in progress. WebRTC media does not go through uvicorn's connections, so it would
not wait for them; and a closed socket refuses new offers instead of answering them. `DrainingServer`
puts the drain first: on SIGTERM the server goes on listening but refuses new offers and calls (503 +
`Retry-After`, polite TwiML; `/readyz` says "draining"), each live connection ends at its first quiet
moment (the turn being spoken answered, the reply played out and stored), a WebRTC client being told
to reconnect with its session id (the `reconnect` event) and a caller hearing goodbye, for at most
`VA_DRAIN_TIMEOUT_S`; then the SSE streams end (with a `reconnect` too) and uvicorn's own shutdown
follows: whatever is still live is closed, its reply stored as interrupted, the store closed.
A second SIGTERM, or SIGINT, skips what is left of the drain.

A connection can join after the drain began: its offer was answered just before, its handler starts
once ICE has connected. The drain takes in each one as it joins (`Live` wakes it), and it lasts while
offers it answered are still on their way (`pending`), so that every connection live at any moment of
the drain ends the same way.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Protocol, TypeVar

import uvicorn

from voice_assistant.session.hub import EventHub
from voice_assistant.web.admission import Admission

logger = logging.getLogger(__name__)


RESCAN_S = 0.1
"""How often a drain waiting only for answered offers looks whether they are still on their way."""


class Drainable(Hashable, Protocol):
    async def drain(self) -> None:
        """End this connection at its first quiet moment; cancelled when the drain's time is up."""
        ...


T = TypeVar("T")


class Live(set[T]):
    """The live connections of one kind; a drain in progress wakes when one joins."""

    def __init__(self, items: Iterable[T] = ()) -> None:
        super().__init__(items)
        self.joined = asyncio.Event()

    def add(self, item: T) -> None:
        super().add(item)
        self.joined.set()


class Group(Protocol):
    """What the drain reads of a `Live`: covariant, so a `Live[VoiceHandler]` is one."""

    @property
    def joined(self) -> asyncio.Event: ...

    def __iter__(self) -> Iterator[Drainable]: ...

    def __len__(self) -> int: ...


def _nothing_pending() -> bool:
    return False


@dataclass(frozen=True, kw_only=True)
class Drain:
    admission: Admission
    live: Sequence[Group]
    """The live connections (WebRTC handlers, phone calls), read again whenever one joins."""
    hub: EventHub
    timeout_s: float
    pending: Callable[[], bool] = _nothing_pending
    """Whether connections whose offer was answered have still to join."""
    rescan_s: float = RESCAN_S

    async def run(self) -> None:
        if self.admission.draining:
            return
        self.admission.start_draining()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        logger.info("draining: %d live connections, for up to %g s", self._count(), self.timeout_s)
        tasks: dict[Drainable, asyncio.Task[None]] = {}
        while True:
            for group in self.live:
                group.joined.clear()
            for connection in [connection for group in self.live for connection in group]:
                if connection not in tasks:
                    tasks[connection] = asyncio.create_task(connection.drain())
            busy = [task for task in tasks.values() if not task.done()]
            left = deadline - loop.time()
            if left <= 0 or not (busy or self.pending()):
                break
            joins = [asyncio.create_task(group.joined.wait()) for group in self.live]
            await asyncio.wait(
                [*busy, *joins],
                timeout=left if busy else min(left, self.rescan_s),
                return_when=asyncio.FIRST_COMPLETED,
            )
            for join in joins:
                join.cancel()
        # One that joined last takes its first step: cut short, it still tells its client.
        await asyncio.sleep(0)
        late = [task for task in tasks.values() if not task.done()]
        for task in late:
            task.cancel()
        for outcome in await asyncio.gather(*tasks.values(), return_exceptions=True):
            if isinstance(outcome, Exception):
                logger.warning("a connection failed to drain: %r", outcome)
        if tasks:
            logger.info("drained: %d of %d connections were still busy", len(late), len(tasks))
        self.hub.end_subscriptions()

    def _count(self) -> int:
        return sum(len(group) for group in self.live)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, with a `Drain` before its shutdown on the first SIGTERM."""

    def __init__(self, config: uvicorn.Config, *, drain: Drain) -> None:
        super().__init__(config)
        self._drain = drain
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self._draining is None and not self.should_exit and self._loop:
            # A signal handler: the drain starts from the loop, right after it.
            self._loop.call_soon_threadsafe(self._start_drain, sig, frame)
            return
        super().handle_exit(sig, frame)

    def _start_drain(self, sig: int, frame: FrameType | None) -> None:
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain_then_exit(sig, frame), name="drain")

    async def _drain_then_exit(self, sig: int, frame: FrameType | None) -> None:
        try:
            await self._drain.run()
        except Exception:
            logger.exception("the drain failed: shutting down at once")
        finally:
            super().handle_exit(sig, frame)  # uvicorn's own shutdown, and its exit by this signal
