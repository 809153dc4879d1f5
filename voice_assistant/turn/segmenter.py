"""Cuts a stream of 16 kHz samples into user turns: Silero per frame, the detector, and the audio kept."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from voice_assistant.audio.pcm import Samples
from voice_assistant.config import TurnSettings
from voice_assistant.turn.detector import (
    EndReason,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    TurnDetector,
    TurnParams,
)
from voice_assistant.turn.vad import FRAME_SAMPLES, FRAME_SECONDS, FrameVad


@dataclass(frozen=True)
class TurnBegan:
    start_sample: int


@dataclass(frozen=True)
class TurnPaused:
    samples: Samples
    """The turn so far, its padding and the silence of the pause included."""
    pause_sample: int


@dataclass(frozen=True)
class TurnResumed:
    pass


@dataclass(frozen=True)
class TurnAudio:
    samples: Samples
    """The speech with `pad` frames before it and up to `pad` frames of the silence after it."""
    start_sample: int
    end_sample: int
    reason: EndReason


SegmentEvent = TurnBegan | TurnPaused | TurnResumed | TurnAudio


class TurnSegmenter:
    """Feed samples as they arrive (any chunk size); get turn events back as soon as a frame decides them.

    `feed` scores each frame with the segmenter's own `vad`, at once. A caller that scores frames
    elsewhere (batched with other streams') uses `split` and `push` instead: the same decisions, made when
    each frame's probability comes back."""

    def __init__(self, vad: FrameVad, params: TurnParams, *, pad_frames: int) -> None:
        self._vad = vad
        self._detector = TurnDetector(params)
        self._pad = pad_frames
        self._pending = np.zeros(0, dtype=np.float32)
        self._frames: deque[Samples] = deque()
        self._first_frame = 0
        """Index of `_frames[0]` in the stream."""
        self._next_frame = 0
        """Frames pushed (scored) so far."""
        self._frames_split = 0
        self._turn_start: int | None = None
        self._keep_quiet = pad_frames + params.min_speech_frames

    @classmethod
    def from_settings(cls, vad: FrameVad, turns: TurnSettings) -> TurnSegmenter:
        """The segmenter that `turns` describes: its durations in frames, `speech_pad_ms` to the nearest."""
        return cls(
            vad, TurnParams.from_settings(turns), pad_frames=round(turns.speech_pad_ms / 1000 / FRAME_SECONDS)
        )

    @property
    def samples_seen(self) -> int:
        """Every sample fed, whether or not its frame is scored yet."""
        return self._frames_split * FRAME_SAMPLES + len(self._pending)

    @property
    def samples_scored(self) -> int:
        """The samples of every frame pushed so far: where the turn decisions stand."""
        return self._next_frame * FRAME_SAMPLES

    @property
    def speaking(self) -> bool:
        return self._detector.speaking

    @property
    def paused(self) -> bool:
        return self._detector.paused

    def end_turn(self) -> TurnAudio | None:
        """End the paused turn now (an end-of-turn model judged it complete); None if not paused."""
        event = self._detector.end_now()
        return self._cut(event) if event is not None else None

    def feed(self, samples: Samples) -> list[SegmentEvent]:
        events: list[SegmentEvent] = []
        for frame in self.split(samples):
            event = self.push(frame, self._vad.prob(frame))
            if event is not None:
                events.append(event)
        return events

    def split(self, samples: Samples) -> list[Samples]:
        """The whole frames that `samples` complete, to be scored and handed to `push`, all in order."""
        self._pending = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        usable = len(self._pending) - len(self._pending) % FRAME_SAMPLES
        frames = [
            np.ascontiguousarray(self._pending[offset : offset + FRAME_SAMPLES])
            for offset in range(0, usable, FRAME_SAMPLES)
        ]
        self._pending = self._pending[usable:]
        self._frames_split += len(frames)
        return frames

    def push(self, frame: Samples, probability: float) -> SegmentEvent | None:
        """The next frame that `split` gave, with its speech probability."""
        if self._next_frame == self._frames_split:
            raise RuntimeError("push() takes the frames that split() gave, each once")
        self._frames.append(frame)
        self._next_frame += 1
        result: SegmentEvent | None = None
        match self._detector.push(probability):
            case SpeechStarted(frame=start):
                self._turn_start = start
                result = TurnBegan(start_sample=start * FRAME_SAMPLES)
            case SpeechPaused(frame=silence):
                result = TurnPaused(samples=self.turn_so_far(), pause_sample=silence * FRAME_SAMPLES)
            case SpeechResumed():
                result = TurnResumed()
            case SpeechEnded() as ended:
                result = self._cut(ended)
        if self._turn_start is None:
            while len(self._frames) > self._keep_quiet:
                self._frames.popleft()
                self._first_frame += 1
        return result

    def _frames_between(self, begin: int, end: int) -> Samples:
        """Frames [begin, end) of the stream that are still kept."""
        kept = list(self._frames)[max(begin, self._first_frame) - self._first_frame : end - self._first_frame]
        return np.concatenate(kept)

    def turn_so_far(self) -> Samples:
        """The open turn up to the last frame pushed, its padding and any silence since included."""
        assert self._turn_start is not None
        return self._frames_between(self._turn_start - self._pad, self._next_frame)

    def _cut(self, event: SpeechEnded) -> TurnAudio:
        assert self._turn_start is not None
        end = min(self._next_frame, event.frame + self._pad)
        turn = TurnAudio(
            samples=self._frames_between(self._turn_start - self._pad, end),
            start_sample=self._turn_start * FRAME_SAMPLES,
            end_sample=event.frame * FRAME_SAMPLES,
            reason=event.reason,
        )
        self._turn_start = None
        return turn
