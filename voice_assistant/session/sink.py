"""Where spoken replies go: the narrow seam between a session's voice and each transport's playback.

A sink plays pieces in the order it is given them, each under a label. What it can say about playback
is what the reply needs to know what the user heard: which pieces had not finished when it was cleared,
and when a piece has finished playing (a transport's own clock, or the phone network's marks).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from voice_assistant.audio.pcm import Samples


class AudioSink(Protocol):
    async def play(self, samples: Samples, rate: int, label: str) -> None:
        """Queue `samples` for playback after what is queued; `label` names the piece (a mark)."""
        ...

    def clear(self) -> set[str]:
        """Drop everything not yet played, at once (barge-in); the labels of the pieces that had not
        finished playing."""
        ...

    async def played(self, label: str) -> None:
        """Returns once the piece `label` has finished playing, or was cleared before it did."""
        ...


@dataclass
class _Out:
    pieces: int = 0
    played: asyncio.Event = field(default_factory=asyncio.Event)


class Playout:
    """The pieces a sink has sent and not yet heard back as played, by label (a long sentence is sent
    in several pieces under one label): the bookkeeping behind `clear` and `played` for every sink."""

    def __init__(self) -> None:
        self._out: dict[str, _Out] = {}

    def sent(self, label: str) -> None:
        self._out.setdefault(label, _Out()).pieces += 1

    def finished(self, label: str) -> None:
        """One piece under `label` has played (and, sinks play in order, all before it)."""
        out = self._out.get(label)
        if out is not None:
            out.pieces -= 1
            if out.pieces <= 0:
                del self._out[label]
                out.played.set()

    def clear(self) -> set[str]:
        """Forget every piece: the labels that had not played (their waiters are released)."""
        out, self._out = self._out, {}
        for pending in out.values():
            pending.played.set()
        return set(out)

    async def played(self, label: str) -> None:
        out = self._out.get(label)
        if out is not None:
            await out.played.wait()
