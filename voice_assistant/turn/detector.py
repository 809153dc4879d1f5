"""The turn state machine: pure, frame-counted, no clock and no I/O, so it is tested on any timeline."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from voice_assistant.turn.vad import FRAME_SECONDS


@dataclass(frozen=True)
class TurnParams:
    threshold: float = 0.5
    neg_threshold: float = 0.35
    min_speech_frames: int = 3
    min_silence_frames: int = 17
    max_turn_frames: int = 938

    @classmethod
    def from_ms(
        cls,
        *,
        threshold: float,
        neg_threshold: float,
        min_speech_ms: float,
        min_silence_ms: float,
        max_turn_seconds: float,
    ) -> TurnParams:
        def frames(ms: float) -> int:
            return max(1, math.ceil(ms / 1000 / FRAME_SECONDS - 1e-9))

        return cls(
            threshold=threshold,
            neg_threshold=min(neg_threshold, threshold),
            min_speech_frames=frames(min_speech_ms),
            min_silence_frames=frames(min_silence_ms),
            max_turn_frames=frames(max_turn_seconds * 1000),
        )


class EndReason(enum.StrEnum):
    SILENCE = "silence"
    MAX_LENGTH = "max_length"


@dataclass(frozen=True)
class SpeechStarted:
    frame: int
    """First frame of the speech run that started the turn."""


@dataclass(frozen=True)
class SpeechEnded:
    frame: int
    """First frame after the speech (where the silence began, or the cut)."""
    reason: EndReason


TurnEvent = SpeechStarted | SpeechEnded


class _State(enum.Enum):
    QUIET = enum.auto()
    SPEAKING = enum.auto()


class TurnDetector:
    """One call per 32 ms frame with its speech probability; returns the turn event it caused, if any.

    Hysteresis: speech starts after `min_speech_frames` frames at or over `threshold`; once speaking,
    only frames under `neg_threshold` start a silence, and a frame at or over `threshold` cancels it.
    Frames in between neither start nor cancel a silence, so a fading voice does not end a sentence
    early and breath noise does not keep a finished one open.
    """

    def __init__(self, params: TurnParams) -> None:
        self.params = params
        self._frame = -1
        self._state = _State.QUIET
        self._run_start: int | None = None
        self._turn_start = 0
        self._silence_start: int | None = None

    @property
    def speaking(self) -> bool:
        return self._state is _State.SPEAKING

    def push(self, probability: float) -> TurnEvent | None:
        self._frame += 1
        if self._state is _State.QUIET:
            return self._push_quiet(probability)
        return self._push_speaking(probability)

    def _push_quiet(self, probability: float) -> TurnEvent | None:
        if probability >= self.params.threshold:
            if self._run_start is None:
                self._run_start = self._frame
            if self._frame - self._run_start + 1 >= self.params.min_speech_frames:
                self._state = _State.SPEAKING
                self._turn_start = self._run_start
                self._silence_start = None
                self._run_start = None
                return SpeechStarted(frame=self._turn_start)
        elif probability < self.params.neg_threshold:
            self._run_start = None
        return None

    def _push_speaking(self, probability: float) -> TurnEvent | None:
        if probability >= self.params.threshold:
            self._silence_start = None
        elif probability < self.params.neg_threshold and self._silence_start is None:
            self._silence_start = self._frame
        if (
            self._silence_start is not None
            and self._frame - self._silence_start + 1 >= self.params.min_silence_frames
        ):
            return self._end(self._silence_start, EndReason.SILENCE)
        if self._frame - self._turn_start + 1 >= self.params.max_turn_frames:
            return self._end(self._frame + 1, EndReason.MAX_LENGTH)
        return None

    def _end(self, frame: int, reason: EndReason) -> SpeechEnded:
        self._state = _State.QUIET
        self._silence_start = None
        self._run_start = None
        return SpeechEnded(frame=frame, reason=reason)
