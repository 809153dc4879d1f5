"""Turn-taking for one stream: the segmenter's frames, the end-of-turn model's verdicts, wall-clock times.

It tells a listener (the conversation) when the user starts, pauses, resumes and finishes a turn.
Without an end-of-turn model a pause is where a reply may start speculatively, and the segmenter's
silence rule ends the turn. With one, the model is asked at the pause and again as the silence grows
(turn/policy.py); each verdict arrives from a worker thread a few tens of milliseconds later and
counts only if the user is still silent in the same pause. It sets the silence that ends the turn
(over: short, doubtful: longer, never past the cap), and a reply starts speculatively at the first
verdict that calls the turn likely over.

Frames are scored by the segmenter's own VAD as they are fed, or, given a `FrameScorer`, a few
milliseconds later in a batch with other streams' frames (turn/batcher.py): the same decisions, in the
same order, each made when its frame's probability comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from voice_assistant.audio.pcm import MODEL_RATE, Samples
from voice_assistant.clock import Clock, utc_now
from voice_assistant.turn.detector import EndReason
from voice_assistant.turn.policy import EndOfTurnPolicy
from voice_assistant.turn.segmenter import (
    SegmentEvent,
    TurnAudio,
    TurnBegan,
    TurnPaused,
    TurnResumed,
    TurnSegmenter,
)
from voice_assistant.turn.semantic import EndOfTurnModel

logger = logging.getLogger(__name__)

Offload = Callable[[Callable[[Samples], float], Samples], Awaitable[float]]
"""Runs the end-of-turn model's blocking call away from the event loop: a worker thread, or a test's step."""


@dataclass(frozen=True)
class CompletedTurn:
    audio: Samples
    speech_start: datetime
    speech_end: datetime
    decided_at: datetime
    """When the turn was judged over."""
    reason: EndReason
    text: str | None = None
    """A turn typed, not spoken (a Realtime client's text item): its words; its `audio` is empty."""


class FrameScorer(Protocol):
    def submit(self, frames: list[Samples], scored: Callable[[Samples, float], None]) -> None:
        """`scored` gets each frame with its speech probability, in order, soon (on the event loop)."""
        ...

    def close(self) -> None:
        """Scores the frames still waiting at once, then takes no more."""
        ...


class TurnListener(Protocol):
    def speech_started(self) -> None: ...

    def speech_paused(self, audio: Samples) -> None:
        """The user is silent for a moment: `audio` is the turn so far."""
        ...

    def speech_silent(self) -> None:
        """The user fell silent in the turn, at every pause (where Smart Turn is first asked, or
        `VA_PAUSE_MS`), whatever the end-of-turn model makes of it: speech that paused a spoken reply
        was that long (session/interruption.py)."""
        ...

    def speech_resumed(self) -> None: ...

    def turn_finished(self, turn: CompletedTurn) -> None: ...


class TurnTaker:
    def __init__(
        self,
        segmenter: TurnSegmenter,
        listener: TurnListener,
        *,
        end_of_turn: EndOfTurnModel | None = None,
        policy: EndOfTurnPolicy | None = None,
        clock: Clock = utc_now,
        offload: Offload = asyncio.to_thread,
        scorer: FrameScorer | None = None,
    ) -> None:
        if end_of_turn is not None and policy is None:
            raise ValueError("an end-of-turn model needs the policy that weighs its verdicts")
        self._segmenter = segmenter
        self._scorer = scorer
        self._listener = listener
        self._end_of_turn = end_of_turn
        self._policy = policy
        self._clock = clock
        self._offload = offload
        self._arrived = clock()
        self._pause = 0
        """Counts pauses, so that a late verdict about an earlier pause is ignored."""
        self._verdict: asyncio.Task[None] | None = None
        self._silence_from: int | None = None
        """The sample where the current pause's silence began (None: not paused)."""
        self._wait_s: float | None = None
        """The silence that ends the current pause's turn, by the latest verdict (None: none yet)."""
        self._rejudge_at: float | None = None
        self._speculated = False

    def feed(self, samples: Samples, arrived: datetime) -> None:
        """16 kHz samples whose newest one arrived at `arrived`."""
        self._arrived = arrived
        if self._scorer is None:
            for event in self._segmenter.feed(samples):
                self._take(event)
            self._weigh()
        else:
            self._scorer.submit(self._segmenter.split(samples), self._scored)

    def _scored(self, frame: Samples, probability: float) -> None:
        event = self._segmenter.push(frame, probability)
        if event is not None:
            self._take(event)
        self._weigh()

    def _take(self, event: SegmentEvent) -> None:
        match event:
            case TurnBegan():
                self._listener.speech_started()
            case TurnPaused(samples=so_far, pause_sample=silence_from):
                self._new_pause(silence_from)
                self._listener.speech_silent()
                if self._end_of_turn is None:
                    self._listener.speech_paused(so_far)
                else:
                    self._ask(so_far)
            case TurnResumed():
                self._new_pause(None)
                self._listener.speech_resumed()
            case TurnAudio() as turn:
                self._new_pause(None)
                self._finish(turn)

    def _new_pause(self, silence_from: int | None) -> None:
        """Whatever was judged about the last pause no longer counts."""
        self._pause += 1
        self._silence_from = silence_from
        self._wait_s = None
        self._rejudge_at = None
        self._speculated = False

    def _silence_s(self) -> float:
        assert self._silence_from is not None
        return (self._segmenter.samples_scored - self._silence_from) / MODEL_RATE

    def _ask(self, audio: Samples) -> None:
        assert self._end_of_turn is not None and self._policy is not None
        self._rejudge_at = self._policy.next_judgement(self._silence_s())
        self._verdict = asyncio.create_task(self._judge(self._pause, audio))

    def _weigh(self) -> None:
        """After each frame: end the paused turn once its silence reaches what the verdict allows, or ask
        the model again where the policy says to."""
        if self._silence_from is None or self._end_of_turn is None:
            return
        if self._wait_s is not None and self._silence_s() >= self._wait_s:
            self._end_now()
        elif self._rejudge_at is not None and self._silence_s() >= self._rejudge_at:
            if self._verdict is None or self._verdict.done():
                self._ask(self._segmenter.turn_so_far())

    async def close(self) -> None:
        """The frames fed so far decided (a turn that they finish is finished), no verdict left waiting."""
        if self._scorer is not None:
            self._scorer.close()
        if self._verdict is not None:
            self._verdict.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._verdict

    async def _judge(self, pause: int, audio: Samples) -> None:
        assert self._end_of_turn is not None and self._policy is not None
        probability: float | None
        try:
            probability = await self._offload(self._end_of_turn.complete_probability, audio)
        except Exception:  # a broken end-of-turn model must not end or stall turns: it counts as doubt
            logger.exception("end-of-turn model failed")
            probability = None
        if pause != self._pause:
            return
        self._wait_s = self._policy.wait_s(probability)
        if probability is not None and probability >= self._policy.likely and not self._speculated:
            self._speculated = True
            self._listener.speech_paused(audio)
        self._weigh()

    def _end_now(self) -> None:
        turn = self._segmenter.end_turn()
        if turn is not None:
            self._new_pause(None)
            self._finish(turn)

    def _finish(self, turn: TurnAudio) -> None:
        def at(sample: int) -> datetime:
            return self._arrived - timedelta(seconds=(self._segmenter.samples_seen - sample) / MODEL_RATE)

        self._listener.turn_finished(
            CompletedTurn(
                audio=turn.samples,
                speech_start=at(turn.start_sample),
                speech_end=at(turn.end_sample),
                decided_at=self._clock(),
                reason=turn.reason,
            )
        )
