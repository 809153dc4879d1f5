"""Audio reaches the turn detector as soon as each packet is in order, not after aiortc's prefetch.

aiortc's receiver holds 4 audio packets (80 ms), and then waits for the next packet to know that a
frame is whole (20 ms more), before it decodes the oldest: that smooths playout. Nothing here plays
the caller's audio back, and every Opus packet is a whole frame, so each packet is released the
moment it is next in sequence; a gap still waits for its packet (order is kept). Measured here over
loopback, this takes about 80 ms off every end of turn.
"""

from __future__ import annotations

import aiortc.rtcrtpreceiver as receiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame


class InOrderAudioBuffer(JitterBuffer):
    def __init__(self, capacity: int, prefetch: int = 0, is_video: bool = False) -> None:
        super().__init__(capacity, prefetch, is_video)

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        if self._is_video:
            return super()._remove_frame(sequence_number)
        packet = self._packets[self._origin % self._capacity] if self._origin is not None else None
        if packet is None:
            return None
        self.remove(1)
        # `_data` is the depayloaded frame: aiortc's receiver sets it before `add`, its own buffer reads it.
        return JitterFrame(data=packet._data, timestamp=packet.timestamp)  # type: ignore[attr-defined]


def release_audio_in_order() -> None:
    """Applies to every aiortc receiver created afterwards in this process (idempotent)."""
    receiver.JitterBuffer = InOrderAudioBuffer  # type: ignore[attr-defined]
