"""Which worker process a request goes to: the decisions alone, with no I/O, so each can be tested alone.

A WebRTC connection lives in the worker that answered its offer (its media, data channel and session),
so whatever names that connection goes back there: trickled ICE candidates (by `webrtc_id`) and the
session's event stream (by `session_id`, learnt from the offer's answer). A browser tab sticks to one
worker through a cookie, because the Gradio UI keeps its queue and state in the process that served the
page. Anything else, new offers first, goes round the workers, skipping the ones that refused it.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Sequence
from typing import Final

COOKIE: Final = "va_worker"
REMEMBERED: Final = 10_000
"""Connections and sessions remembered per kind: the oldest is forgotten first."""


class _Bounded:
    """A mapping that forgets its oldest entries past `REMEMBERED` (a connection that closed is never
    named again, so it leaves by age)."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, int] = OrderedDict()

    def put(self, key: str, worker: int) -> None:
        self._items[key] = worker
        self._items.move_to_end(key)
        while len(self._items) > REMEMBERED:
            self._items.popitem(last=False)

    def get(self, key: str | None) -> int | None:
        return self._items.get(key) if key else None


class Router:
    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._turn = itertools.cycle(range(workers))
        self._connections = _Bounded()
        self._sessions = _Bounded()

    def from_cookie(self, value: str | None) -> int | None:
        """The worker a cookie names, if it is one of ours (`isdecimal`: "²", a Latin-1 byte a cookie may
        carry, is a digit that `int` refuses: the proxy answered 500)."""
        if value is None or not value.isdecimal():
            return None
        index = int(value)
        return index if index < self.workers else None

    def candidates(self, preferred: int | None = None) -> list[int]:
        """Every worker once, in the order to try them: `preferred` first, then round the others from
        the next in turn (so new work spreads out)."""
        start = next(self._turn)
        order = [(start + step) % self.workers for step in range(self.workers)]
        if preferred is not None:
            order.remove(preferred)
            order.insert(0, preferred)
        return order

    def for_connection(self, webrtc_id: str | None) -> int | None:
        return self._connections.get(webrtc_id)

    def for_session(self, session_id: str | None) -> int | None:
        return self._sessions.get(session_id)

    def answered(self, worker: int, *, webrtc_id: str | None, session_id: str | None) -> None:
        """`worker` took this connection (and holds its session now: a reconnect may have moved it)."""
        if webrtc_id:
            self._connections.put(webrtc_id, worker)
        if session_id:
            self._sessions.put(session_id, worker)


def session_in_path(path: str) -> str | None:
    """The session of `/api/sessions/{id}/events`: its events come from the worker holding it."""
    parts = path.strip("/").split("/")
    if len(parts) == 4 and parts[:2] == ["api", "sessions"] and parts[3] == "events":
        return parts[2]
    return None


def first_of(orders: Sequence[int | None]) -> int | None:
    """The first decision that was made, of several in order of precedence."""
    return next((worker for worker in orders if worker is not None), None)
