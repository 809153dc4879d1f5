"""Turns and replies held while the store is unreachable, written in order once it is back.

A turn the server has taken is not lost because its database went away for a while (a PostgreSQL restart
or failover, a network cut, a full disk): the conversation holds it here and goes on, and a background
task writes what is held, each session's writes in the order they were taken, as soon as the store takes
them again. While a session has writes held, its new turns are held behind them, so that the store gives
them the numbers the client was told. What is held is bounded by its seconds of audio
(`VA_STORE_HOLD_SECONDS`): past that a turn is refused and counted as lost, and so is a write the store
refuses for good (its session deleted meanwhile). Held writes live in this process: a clean stop tries to
write them for a few seconds more, and logs how many it could not; a process killed loses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass

from voice_assistant.audio.pcm import MODEL_RATE
from voice_assistant.history.database import unreachable
from voice_assistant.history.store import HistoryStore, NewTurn, ReplyOutcome
from voice_assistant.metrics import Metrics

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class HeldTurn:
    """One session's turn (or only its reply, when the turn is stored) waiting for the store."""

    session_id: str
    turn: NewTurn | None
    """None once written (or when only the reply is held)."""
    index: int | None = None
    """The store's number for the turn, once written."""
    outcome: ReplyOutcome | None = None
    """The reply to write, once it ended."""

    @property
    def seconds(self) -> float:
        return 0.0 if self.turn is None else len(self.turn.audio) / MODEL_RATE


class HeldWrites:
    """This process's held writes, and the task that writes them (`start`, `close`)."""

    def __init__(
        self, store: HistoryStore, *, metrics: Metrics, capacity_s: float, retry_s: float = 1.0
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._capacity_s = capacity_s
        self._retry_s = retry_s
        self._held: dict[str, deque[HeldTurn]] = {}
        self._seconds = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def count(self) -> int:
        return sum(len(queue) for queue in self._held.values())

    def holding(self, session_id: str) -> bool:
        """Whether the session has turns waiting: its next turn waits behind them, to keep its number (a
        held reply alone changes no number)."""
        return any(held.turn is not None for held in self._held.get(session_id, ()))

    def hold_turn(self, session_id: str, turn: NewTurn) -> HeldTurn | None:
        """Hold a turn the store could not take; None when holding it would pass the bound (it is lost)."""
        held = HeldTurn(session_id, turn)
        if self._seconds + held.seconds > self._capacity_s:
            self._lose(1, "the held turns reached VA_STORE_HOLD_SECONDS")
            return None
        self._seconds += held.seconds
        self._enqueue(held)
        return held

    async def finish_reply(self, held: HeldTurn, outcome: ReplyOutcome) -> None:
        """The reply of a held turn ended: written with the turn, or now if the turn is written already."""
        if held.index is None:
            held.outcome = outcome
        else:
            await self.write_reply(held.session_id, held.index, outcome)

    async def write_reply(self, session_id: str, index: int, outcome: ReplyOutcome) -> Exception | None:
        """Write a stored turn's reply now, or hold it when the store is unreachable (and return why it is
        held). Any other failure raises, as the store's does."""
        try:
            await self._store.finish_reply(session_id, index, outcome)
        except Exception as exc:
            if not unreachable(exc):
                raise
            self._enqueue(HeldTurn(session_id, None, index, outcome))
            return exc
        return None

    def _enqueue(self, held: HeldTurn) -> None:
        self._held.setdefault(held.session_id, deque()).append(held)
        self._metrics.held_turns.set(self.count)

    def _lose(self, count: int, why: str) -> None:
        logger.error("%d held writes lost: %s", count, why)
        self._metrics.turns_lost.inc(count)

    async def flush(self) -> bool:
        """Write what is held, each session's in order, until the store fails: whether all is written."""
        for session_id in list(self._held):
            queue = self._held[session_id]
            while queue:
                head = queue[0]
                try:
                    if head.turn is not None:
                        index = await self._store.add_turn(session_id, head.turn)
                        self._seconds -= head.seconds
                        head.turn, head.index = None, index
                    if head.outcome is not None:
                        assert head.index is not None
                        await self._store.finish_reply(session_id, head.index, head.outcome)
                        head.outcome = None
                except Exception as exc:
                    if unreachable(exc):
                        return False
                    self._seconds -= head.seconds
                    self._lose(1, f"the store refused a held write: {type(exc).__name__}")
                queue.popleft()
                self._metrics.held_turns.set(self.count)
            del self._held[session_id]
        return True

    def start(self) -> None:
        self._task = asyncio.create_task(self._write_forever(), name="held-writes")

    async def _write_forever(self) -> None:
        while True:
            await asyncio.sleep(self._retry_s)
            if self._held and await self.flush():
                logger.info("the store is back: every held write is written")

    async def close(self, *, timeout_s: float) -> None:
        """Stop retrying in the background; try for `timeout_s` more to write what is held."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while not await self.flush():  # the store is away: nothing to wait on but time
                    await asyncio.sleep(self._retry_s)
                    logger.warning("stopping: %d writes still held for the store", self.count)
        if self._held:
            self._lose(self.count, "the server stopped before the store came back")
