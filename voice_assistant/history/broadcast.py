"""PostgreSQL's LISTEN/NOTIFY as a broadcast between the instances on one database: what one sends, every
other one receives, in the order it was sent (needs psycopg 3, the `postgres` extra).

A NOTIFY payload must stay under 8000 bytes, and a reply can be longer: what is waiting to go is sent as one
JSON batch, cut into parts that each fit, all in one transaction, so the parts arrive together and in order
(PostgreSQL delivers a transaction's notifications at its commit, in the order they were made, and one
sender's transactions in commit order). A receiver puts an origin's parts back together and drops a batch
whose part it missed (it was reconnecting). Both sides reconnect on their own when the connection drops,
with a warning: what other instances send meanwhile is missed, nothing else is lost. `close()` first sends
what is still waiting (for up to `FLUSH_S`): the last events before a shutdown reach the others too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import deque
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

logger = logging.getLogger(__name__)

CHANNEL = "voice_assistant_events"
PART_CHARS = 7900
"""A part's JSON, ASCII only (json.dumps escapes the rest), beside a header of < 40: under 8000 bytes."""
BATCH_VALUES = 500
"""At most so many values in one transaction."""
OUTBOX_LIMIT = 10_000
"""What waits while the database is unreachable; past it the oldest go."""
PROBE_S = 10.0
"""A silent listener asks the server something this often: a connection that died quietly shows."""
RECONNECT_S = (0.5, 30.0)
"""The first wait before reconnecting, doubled on each failure up to the second."""
FLUSH_S = 2.0
"""`close()` waits so long at most for what is queued to be sent (the database may be away)."""


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL (`postgresql+psycopg://...`) as libpq reads it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def frames(origin: str, values: list[Any]) -> list[str]:
    """The payloads that carry `values` from `origin`: `origin index count` then a part of the JSON."""
    text = json.dumps(values, separators=(",", ":"))
    parts = [text[at : at + PART_CHARS] for at in range(0, len(text), PART_CHARS)]
    return [f"{origin} {index} {len(parts)}\n{part}" for index, part in enumerate(parts)]


class Reassembly:
    """Payloads back into the values each origin sent, but `own`'s (a sender hears its own NOTIFYs)."""

    def __init__(self, own: str) -> None:
        self._own = own
        self._partial: dict[str, list[str]] = {}

    def feed(self, payload: str) -> list[Any]:
        """The values of the batch this payload completes; none while parts are missing. ValueError for a
        payload that no sender here makes."""
        header, _, part = payload.partition("\n")
        origin, index_text, count_text = header.split(" ")
        index, count = int(index_text), int(count_text)
        if origin == self._own:
            return []
        parts = self._partial.pop(origin, []) if index else []
        if index != len(parts):  # an earlier part was missed: the batch is lost
            return []
        parts.append(part)
        if index + 1 < count:
            self._partial[origin] = parts
            return []
        values = json.loads("".join(parts))
        if not isinstance(values, list):
            raise ValueError("a batch is a JSON array")
        return values


class Broadcast:
    """Sends values (anything JSON can hold) to every other instance on the database and hands theirs to
    `receive`, from `start()` until `close()`."""

    def __init__(self, url: str, *, channel: str = CHANNEL) -> None:
        self.origin = secrets.token_hex(8)
        self._conninfo = libpq_url(url)
        self._channel = channel
        self._outbox: deque[Any] = deque()
        self._waiting = asyncio.Event()
        self._sent = asyncio.Event()
        """Set while nothing waits to go and nothing is on its way."""
        self._sent.set()
        self.listening = asyncio.Event()
        """Set while the receiving side is connected and listening."""
        self._tasks: list[asyncio.Task[None]] = []

    def send(self, value: Any) -> None:
        """Queue `value` for the other instances; returns at once."""
        if len(self._outbox) >= OUTBOX_LIMIT:
            self._outbox.popleft()
            logger.warning("the event channel is behind: an event for other instances was dropped")
        self._outbox.append(value)
        self._sent.clear()
        self._waiting.set()

    def start(self, receive: Callable[[Any], None]) -> None:
        self._tasks = [asyncio.create_task(self._send_forever()), asyncio.create_task(self._listen(receive))]

    async def close(self) -> None:
        if self._tasks:
            try:
                await asyncio.wait_for(self._sent.wait(), FLUSH_S)
            except TimeoutError:
                logger.warning(
                    "closing the event channel: %d events for other instances are dropped", len(self._outbox)
                )
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _connect(self, role: str) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, application_name=f"voice-assistant {role} {self.origin}"
        )

    async def _send_forever(self) -> None:
        connection: psycopg.AsyncConnection[Any] | None = None
        wait = RECONNECT_S[0]
        try:
            while True:
                if not self._outbox:
                    self._sent.set()
                    self._waiting.clear()
                    await self._waiting.wait()
                batch = [self._outbox.popleft() for _ in range(min(len(self._outbox), BATCH_VALUES))]
                try:
                    if connection is None:
                        connection = await self._connect("sender")
                    async with connection.transaction():
                        await connection.cursor().executemany(
                            "SELECT pg_notify(%s, %s)",
                            [(self._channel, payload) for payload in frames(self.origin, batch)],
                        )
                    wait = RECONNECT_S[0]
                except (psycopg.Error, OSError) as exc:
                    self._outbox.extendleft(reversed(batch))  # sent again, first, once connected
                    logger.warning(
                        "could not send events to other instances (retrying in %.1f s): %s", wait, exc
                    )
                    if connection is not None:
                        await connection.close()
                        connection = None
                    await asyncio.sleep(wait)
                    wait = min(wait * 2, RECONNECT_S[1])
        finally:
            if connection is not None:
                await connection.close()

    async def _listen(self, receive: Callable[[Any], None]) -> None:
        wait = RECONNECT_S[0]
        while True:
            try:
                async with await self._connect("listener") as connection:
                    await connection.execute(f"LISTEN {self._channel}")
                    self.listening.set()
                    wait = RECONNECT_S[0]
                    reassembly = Reassembly(self.origin)
                    while True:
                        async for notice in connection.notifies(timeout=PROBE_S):
                            self._hand_over(reassembly, notice.payload, receive)
                        await connection.execute("SELECT 1")
            except (psycopg.Error, OSError) as exc:
                self.listening.clear()
                logger.warning(
                    "lost the event channel of the database (reconnecting in %.1f s; events of other "
                    "instances' connections are missed until then): %s",
                    wait,
                    exc,
                )
                await asyncio.sleep(wait)
                wait = min(wait * 2, RECONNECT_S[1])

    @staticmethod
    def _hand_over(reassembly: Reassembly, payload: str, receive: Callable[[Any], None]) -> None:
        try:
            values = reassembly.feed(payload)
        except ValueError as exc:
            logger.warning("ignored a notification on the event channel that no instance sent: %s", exc)
            return
        for value in values:
            try:
                receive(value)
            except Exception:
                logger.exception("an event from another instance could not be delivered")
