"""Retention (`VA_RETENTION_DAYS`): the sessions nobody has spoken in for that many days are deleted, with
their turns and audio, at start and then every hour, by every instance (cheap: see
`HistoryStore.delete_idle_sessions`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from voice_assistant.clock import Clock, utc_now
from voice_assistant.history.store import HistoryStore

logger = logging.getLogger(__name__)

SWEEP_EVERY_S = 3600.0


class Retention:
    """Deletes the sessions idle for longer than `days` by this clock, once per `sweep()`, and every
    `every_s` once started."""

    def __init__(
        self, store: HistoryStore, *, days: int, clock: Clock = utc_now, every_s: float = SWEEP_EVERY_S
    ) -> None:
        self._store = store
        self._kept = timedelta(days=days)
        self._clock = clock
        self._every_s = every_s
        self._sweeper: asyncio.Task[None] | None = None

    async def sweep(self) -> int | None:
        """One sweep now: how many sessions it deleted, or None when the store failed (a warning says
        so; what it left is deleted by the next sweep)."""
        try:
            deleted = await self._store.delete_idle_sessions(before=self._clock() - self._kept)
        except Exception as exc:
            logger.warning("retention sweep failed (retrying in %.0f s): %s", self._every_s, exc)
            return None
        if deleted:
            logger.info("retention: deleted %d sessions idle for over %d days", deleted, self._kept.days)
        return deleted

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        while True:
            await self.sweep()
            await asyncio.sleep(self._every_s)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
