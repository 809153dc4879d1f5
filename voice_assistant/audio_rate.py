"""How much of real time the connected streams' audio arrives at: the load signal that sees lost audio.

A WebRTC or phone client sends its microphone in real time, 20 ms a frame, silence included, so each
connected stream should deliver about 1 s of audio per 1 s of wall time. A process that cannot keep up
loses that audio without its loop lagging or its thread using a whole core: when the vCPUs are shared
(with the other workers, with whatever else runs there), the kernel drops the UDP packets the loop did
not read in time, and a phone call's WebSocket (TCP) delivers its audio later and later. Either way the
streams receive less than real time, whatever made the process slow, and whether or not anyone speaks:
silence is sent too. So this also covers load that grows after admission, such as sessions that
connected silent and then all speak: the loss shows as soon as it happens, and new work is refused.

Each transport registers its stream while it is connected (`connected()`) and adds the seconds it
receives (one float add per frame); the load sensor's sampler, already awake every 100 ms, snapshots
each stream's total in `sample()`. The rules that keep the signal honest:

- Only a stream connected for the whole window counts, measured from its own first snapshot: a stream
  that just connected has not yet been sent a window's worth of audio (and its first moments include
  the setup and the burst of audio held while its session opened), so it would read as short or long.
- A stream that leaves is forgotten at once: its last, partial window is never judged.
- A stream that received nothing over the window is not counted: its peer is gone or has stopped its
  track (the connection not yet closed), which is no sign of this process losing audio; an overloaded
  process still reads some of every stream.
- The verdict is the median stream's share, over at least `MIN_STREAMS` streams: overload takes audio
  from every stream at once, while a client on a lossy network loses only its own, and one or two such
  clients must not shut a worker to everyone else.
"""

from __future__ import annotations

import contextlib
import statistics
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol

MIN_STREAMS = 3
"""Fewer full-window streams than this cannot tell this process's loss from their clients' networks."""

ReceivedSeconds = Callable[[float], None]
"""Adds the seconds of audio a stream has just received."""


class AudioStreams(Protocol):
    """What a transport sees of the signal: register a connected stream, report what it receives."""

    def connected(self) -> AbstractContextManager[ReceivedSeconds]: ...


class _Stream:
    __slots__ = ("received_s", "snapshots")

    def __init__(self) -> None:
        self.received_s = 0.0
        self.snapshots: deque[tuple[float, float]] = deque()
        """(at, received_s) at each sample; the oldest is the last one at or before the window's start."""

    def received(self, seconds: float) -> None:
        self.received_s += seconds


class AudioRate:
    def __init__(self, window_s: float) -> None:
        self._window_s = window_s
        self._streams: set[_Stream] = set()

    @contextlib.contextmanager
    def connected(self) -> Iterator[ReceivedSeconds]:
        stream = _Stream()
        self._streams.add(stream)
        try:
            yield stream.received
        finally:
            self._streams.discard(stream)

    def sample(self, at: float) -> float | None:
        """The median full-window stream's received seconds per second of wall time, over the window
        that ends at `at` (monotonic seconds); None while fewer than `MIN_STREAMS` streams count."""
        start = at - self._window_s
        rates = []
        for stream in self._streams:
            snapshots = stream.snapshots
            snapshots.append((at, stream.received_s))
            while len(snapshots) > 1 and snapshots[1][0] <= start:
                snapshots.popleft()
            since, received_then = snapshots[0]
            received = stream.received_s - received_then
            if since <= start and received > 0:
                rates.append(received / (at - since))
        return statistics.median(rates) if len(rates) >= MIN_STREAMS else None
