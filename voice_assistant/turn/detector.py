"""The turn state machine: pure, frame-counted, no clock and no I/O, so it is tested on any timeline."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from voice_assistant.config import TurnSettings
from voice_assistant.turn.vad import FRAME_SECONDS


def frames(ms: float) -> int:
    """The whole frames that `ms` milliseconds take, rounded up (at least one)."""
    return max(1, math.ceil(ms / 1000 / FRAME_SECONDS - 1e-9))


@dataclass(frozen=True)
class TurnParams:
    """The turn settings in frames. No defaults here: `TurnSettings` holds them (`from_settings`)."""

    threshold: float
    neg_threshold: float
    min_speech_frames: int
    pause_frames: int
    """Silence after which the user has paused: the end-of-turn model is first asked (without one, a
    reply may start)."""
    min_silence_frames: int
    """Silence that ends the turn whatever the end-of-turn model says: the silence rule without a
    model, the policy's cap with one."""
    max_turn_frames: int

    @classmethod
    def from_settings(cls, turns: TurnSettings) -> TurnParams:
        """Milliseconds rounded up to whole frames; a pause never longer than the silence that ends the
        turn, a silence threshold never above the speech one."""
        if turns.end_of_turn == "silence":
            pause_ms, silence_ms = turns.pause_ms, turns.min_silence_ms
        else:  # the pause is where Smart Turn is first asked
            pause_ms, silence_ms = (
                min(turns.end_of_turn_judge_ms, default=turns.pause_ms),
                turns.max_silence_ms,
            )
        return cls(
            threshold=turns.vad_threshold,
            neg_threshold=min(turns.vad_neg_threshold, turns.vad_threshold),
            min_speech_frames=frames(turns.min_speech_ms),
            pause_frames=min(frames(pause_ms), frames(silence_ms)),
            min_silence_frames=frames(silence_ms),
            max_turn_frames=frames(turns.max_turn_seconds * 1000),
        )


class EndReason(enum.StrEnum):
    SILENCE = "silence"
    """The silence reached `min_silence_frames`."""
    SEMANTIC = "semantic"
    """The end-of-turn policy ended the paused turn: its silence reached what the model's verdict allows."""
    MAX_LENGTH = "max_length"
    CLIENT = "client"
    """The client cut the turn itself (a Realtime client's commit, with its turn detection off)."""


@dataclass(frozen=True)
class SpeechStarted:
    frame: int
    """First frame of the speech run that started the turn."""


@dataclass(frozen=True)
class SpeechPaused:
    frame: int
    """Where the silence began; the turn is still open."""


@dataclass(frozen=True)
class SpeechResumed:
    frame: int


@dataclass(frozen=True)
class SpeechEnded:
    frame: int
    """First frame after the speech (where the silence began, or the cut)."""
    reason: EndReason


TurnEvent = SpeechStarted | SpeechPaused | SpeechResumed | SpeechEnded


class _State(enum.Enum):
    QUIET = enum.auto()
    SPEAKING = enum.auto()


class TurnDetector:
    """One call per 32 ms frame with its speech probability; returns the turn event it caused, if any.

    Hysteresis: speech starts after `min_speech_frames` frames at or over `threshold`; once speaking,
    only frames under `neg_threshold` start a silence, and a frame at or over `threshold` cancels it.
    Frames in between neither start nor cancel a silence, so a fading voice does not end a sentence
    early and breath noise does not keep a finished one open. A silence of `pause_frames` is a pause
    (announced once); the turn ends at `min_silence_frames`, or earlier through `end_now()`.
    """

    def __init__(self, params: TurnParams) -> None:
        self.params = params
        self._frame = -1
        self._state = _State.QUIET
        self._run_start: int | None = None
        self._turn_start = 0
        self._silence_start: int | None = None
        self._paused = False

    @property
    def speaking(self) -> bool:
        return self._state is _State.SPEAKING

    @property
    def paused(self) -> bool:
        return self._paused

    def push(self, probability: float) -> TurnEvent | None:
        self._frame += 1
        if self._state is _State.QUIET:
            return self._push_quiet(probability)
        return self._push_speaking(probability)

    def end_now(self) -> SpeechEnded | None:
        """End the paused turn at the start of its silence (the end-of-turn model's verdict)."""
        if not self._paused or self._silence_start is None:
            return None
        return self._end(self._silence_start, EndReason.SEMANTIC)

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
            if self._paused:
                self._paused = False
                return SpeechResumed(frame=self._frame)
        elif probability < self.params.neg_threshold and self._silence_start is None:
            self._silence_start = self._frame
        if self._silence_start is not None:
            silence = self._frame - self._silence_start + 1
            if silence >= self.params.min_silence_frames:
                return self._end(self._silence_start, EndReason.SILENCE)
            if silence >= self.params.pause_frames and not self._paused:
                self._paused = True
                return SpeechPaused(frame=self._silence_start)
        if self._frame - self._turn_start + 1 >= self.params.max_turn_frames:
            return self._end(self._frame + 1, EndReason.MAX_LENGTH)
        return None

    def _end(self, frame: int, reason: EndReason) -> SpeechEnded:
        self._state = _State.QUIET
        self._silence_start = None
        self._run_start = None
        self._paused = False
        return SpeechEnded(frame=frame, reason=reason)
