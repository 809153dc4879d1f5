"""Fan-out of a session's events to its SSE subscribers: those of this process at once, and, on PostgreSQL,
those of every other instance on the database (history/broadcast.py: LISTEN/NOTIFY), whichever instance
holds the session's connection. SQLite serves one instance: its events stay in the process.
`end_subscriptions()` ends every stream (a drain)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url

from voice_assistant.events import Event

if TYPE_CHECKING:
    from voice_assistant.history.broadcast import Broadcast

_QUEUE_LIMIT = 1000
_EVENT_TYPES: dict[str, type[Event]] = {kind.type: kind for kind in Event.__subclasses__()}


def event_of(message: dict[str, Any]) -> Event:
    """An event from its wire form (`Event.to_message()`)."""
    return _EVENT_TYPES[message["type"]](**message["data"])


class EventHub:
    def __init__(self, broadcast: Broadcast | None = None) -> None:
        self._subscribers: defaultdict[str, set[asyncio.Queue[Event | None]]] = defaultdict(set)
        self._closed = False
        self._broadcast = broadcast

    @classmethod
    def for_database(cls, url: str) -> EventHub:
        """The hub for the instances on the database at `url`."""
        if make_url(url).get_backend_name() != "postgresql":
            return cls()
        from voice_assistant.history.broadcast import Broadcast  # psycopg: only with PostgreSQL

        return cls(Broadcast(url))

    def start(self) -> None:
        if self._broadcast is not None:
            self._broadcast.start(self._received)

    async def close(self) -> None:
        if self._broadcast is not None:
            await self._broadcast.close()

    def publish(self, session_id: str, event: Event) -> None:
        self._deliver(session_id, event)
        if self._broadcast is not None:
            self._broadcast.send([session_id, event.to_message()])

    def _received(self, value: Any) -> None:
        """Another instance's event (never one of this process: those were delivered at once)."""
        session_id, message = value
        if session_id in self._subscribers:
            self._deliver(session_id, event_of(message))

    def _deliver(self, session_id: str, event: Event) -> None:
        for queue in self._subscribers.get(session_id, ()):
            if queue.qsize() < _QUEUE_LIMIT:  # a stalled reader loses events, never memory
                queue.put_nowait(event)

    async def subscribe(self, session_id: str) -> AsyncIterator[Event]:
        """The session's events until the hub closes."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._subscribers[session_id].add(queue)
        try:
            while not self._closed and (event := await queue.get()) is not None:
                yield event
        finally:
            self._subscribers[session_id].discard(queue)
            if not self._subscribers[session_id]:
                del self._subscribers[session_id]

    def end_subscriptions(self) -> None:
        """End every subscription (the server drains: an open SSE stream would keep it from exiting)."""
        self._closed = True
        for queues in self._subscribers.values():
            for queue in queues:
                queue.put_nowait(None)
