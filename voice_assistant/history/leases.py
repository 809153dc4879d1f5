"""This process's leases (history/limits.py): what it holds open that every instance counts, kept alive by
a heartbeat, so that the leases of an instance that dies (SIGKILL, a lost machine) run out by themselves
one TTL later, while a clean stop gives its own back at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from datetime import timedelta

from voice_assistant.clock import Clock, utc_now
from voice_assistant.history.limits import RATE_WINDOW, LimitBook

logger = logging.getLogger(__name__)


class Leases:
    """This process (`holder`) and what it holds: each lease lasts while its `alive()` says so, or until
    it is released; the heartbeat renews the live ones every third of the TTL and gives back the rest."""

    def __init__(self, book: LimitBook, *, ttl_s: float, clock: Clock = utc_now) -> None:
        self.holder = secrets.token_hex(8)
        self._book = book
        self._ttl = timedelta(seconds=ttl_s)
        self._clock = clock
        self._held: dict[str, tuple[str, Callable[[], bool]]] = {}
        """name -> (pool, alive)."""
        self._heartbeat: asyncio.Task[None] | None = None

    @property
    def interval_s(self) -> float:
        return self._ttl.total_seconds() / 3

    def _over(self) -> list[str]:
        """The names whose lease is over, forgotten here; the caller gives them back to the store."""
        over = [name for name, (_, alive) in self._held.items() if not alive()]
        for name in over:
            del self._held[name]
        return over

    async def take(
        self, pool: str, name: str, *, limit: int | None, alive: Callable[[], bool], take_over: bool = False
    ) -> int | None:
        """A lease in `pool` unless it holds `limit` already (None: taken; else how many it holds). It is
        counted from now on, on every instance, until `alive()` is false or `release(name)`.
        `take_over`: it replaces the `reserve`d place of `name`, whichever instance reserved it."""
        held = await self._take_lease(pool, name, ttl=self._ttl, limit=limit, take_over=take_over)
        if held is None:
            self._held[name] = (pool, alive)
        return held

    async def reserve(self, pool: str, name: str, *, limit: int, seconds: float) -> int | None:
        """A place in `pool` for `name` unless it holds `limit` already (None: reserved; else how many it
        holds), checked and taken under the pool's lock. It is not renewed here: it counts on every
        instance for `seconds`, unless the instance where `name` begins `take`s it over first."""
        return await self._take_lease(pool, name, ttl=timedelta(seconds=seconds), limit=limit)

    async def _take_lease(
        self, pool: str, name: str, *, ttl: timedelta, limit: int | None, take_over: bool = False
    ) -> int | None:
        now, over = self._clock(), self._over()
        return await self._book.take_lease(
            pool,
            holder=self.holder,
            name=name,
            expires_at=now + ttl,
            now=now,
            limit=limit,
            release=over,
            take_over=take_over,
        )

    async def count(self, pool: str) -> int:
        """The leases in `pool` on every instance (this one's that are over are given back first)."""
        over = self._over()
        return await self._book.count_leases(pool, now=self._clock(), holder=self.holder, release=over)

    async def release(self, name: str) -> None:
        """Give the lease back now. Never raises: with the store away it is no longer renewed here, and
        runs out alone one TTL later (a phone call's end must not fail for it)."""
        if self._held.pop(name, None) is not None:
            try:
                await self._book.release_leases(holder=self.holder, names=[name])
            except Exception as exc:
                logger.warning("could not give back a lease (it runs out alone): %s", exc)

    async def beat(self) -> None:
        """One heartbeat: renew what lives, give back what is over, prune what ran out everywhere."""
        now, over = self._clock(), self._over()
        held = {name: pool for name, (pool, _) in self._held.items()}
        await self._book.renew_leases(holder=self.holder, held=held, expires_at=now + self._ttl, release=over)
        await self._book.prune(now=now, hits_before=now - RATE_WINDOW)

    def start(self) -> None:
        self._heartbeat = asyncio.create_task(self._beat_forever())

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.beat()
            except Exception as exc:  # the store is down: the leases run out unless it is back in time
                logger.warning("lease heartbeat failed (retrying in %.0f s): %s", self.interval_s, exc)

    async def close(self) -> None:
        """Stop the heartbeat and give back every lease at once (a clean stop)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        names, self._held = list(self._held), {}
        if names:
            try:
                await self._book.release_leases(holder=self.holder, names=names)
            except Exception as exc:
                logger.warning("could not give back %d leases (they run out alone): %s", len(names), exc)
