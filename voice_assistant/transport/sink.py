"""Where spoken replies go: a narrow seam between speech output and each transport."""

from __future__ import annotations

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
