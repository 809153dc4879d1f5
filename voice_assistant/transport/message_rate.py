"""How fast a client may send on a WebSocket: a token bucket per connection (`VA_MAX_MESSAGES_PER_SECOND`).

Every message costs the event loop that all connections' audio shares (parsing, decoding, the turn
taker), and most of them get an answer queued, so a client that sends without pause would take that loop
and the memory of its answers. The bucket holds `BURST_S` seconds' worth: a client that sends audio
faster than real time (a turn at once, as an SDK may) passes; one that keeps sending past the rate is
closed, with why.
"""

from __future__ import annotations

import time
from collections.abc import Callable

BURST_S = 10.0
"""The rate is averaged over this long: a 30 s turn (VA_MAX_TURN_SECONDS) sent at once in 100 ms appends
is 300 messages, under the 1000 that the default rate allows at once."""


class MessageRate:
    def __init__(self, per_second: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self._capacity = per_second * BURST_S
        self._tokens = self._capacity
        self._clock = clock
        self._at = clock()

    def take(self) -> bool:
        """Whether one more message is within the rate (it is counted); False: the client is past it."""
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._at) * self.per_second)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def refusal(self) -> str:
        """Why the connection ends, as its close reason (WebSocket reasons stay under 123 bytes)."""
        return f"too many messages: at most {self.per_second:g} a second"
