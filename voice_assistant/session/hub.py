"""Fan-out of a session's events to its SSE subscribers (in this process); `close()` ends them all."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator

from voice_assistant.events import Event

_QUEUE_LIMIT = 1000


class EventHub:
    def __init__(self) -> None:
        self._subscribers: defaultdict[str, set[asyncio.Queue[Event | None]]] = defaultdict(set)
        self._closed = False

    def publish(self, session_id: str, event: Event) -> None:
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

    def close(self) -> None:
        """End every subscription (the server drains: an open SSE stream would keep it from exiting)."""
        self._closed = True
        for queues in self._subscribers.values():
            for queue in queues:
                queue.put_nowait(None)
