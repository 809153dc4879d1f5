"""Turn-taking on a scripted VAD and a virtual clock: pauses, the end-of-turn model's verdicts (each
arriving where the test finishes it), silence as the fallback."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import pytest

from tests.fakes import FakeClock, ManualOffload, ScriptedVad, settle
from voice_assistant.audio.pcm import Samples
from voice_assistant.config import TurnSettings
from voice_assistant.turn.detector import EndReason, TurnParams
from voice_assistant.turn.segmenter import TurnSegmenter
from voice_assistant.turn.taker import CompletedTurn, TurnTaker
from voice_assistant.turn.vad import FRAME_SAMPLES, FRAME_SECONDS

pytestmark = pytest.mark.unit

# In frames of 32 ms: speech starts after 2, a pause at 3, the turn ends after 10 of silence.
PARAMS = TurnParams.from_settings(TurnSettings(min_speech_ms=64, pause_ms=96, min_silence_ms=320))


@dataclass
class Listener:
    events: list[str] = field(default_factory=list)
    turns: list[CompletedTurn] = field(default_factory=list)

    def speech_started(self) -> None:
        self.events.append("started")

    def speech_paused(self, audio: Samples) -> None:
        self.events.append(f"paused:{len(audio) // FRAME_SAMPLES}")

    def speech_resumed(self) -> None:
        self.events.append("resumed")

    def turn_finished(self, turn: CompletedTurn) -> None:
        self.events.append(f"finished:{turn.reason}")
        self.turns.append(turn)


@dataclass
class Verdict:
    probability: float
    fails: bool = False
    asked: list[int] = field(default_factory=list)
    """The length in frames of each turn so far it was asked about."""

    def complete_probability(self, audio: Samples) -> float:
        self.asked.append(len(audio) // FRAME_SAMPLES)
        if self.fails:
            raise RuntimeError("model broke")
        return self.probability


@dataclass
class Timeline:
    """A taker on a scripted VAD, fed one frame per frame's worth of virtual time."""

    speech: list[tuple[int, int]]
    verdict: Verdict | None = None
    listener: Listener = field(default_factory=Listener)
    clock: FakeClock = field(default_factory=FakeClock)
    worker: ManualOffload = field(default_factory=ManualOffload)

    def __post_init__(self) -> None:
        segmenter = TurnSegmenter(ScriptedVad.frames(self.speech), PARAMS, pad_frames=1)
        self.taker = TurnTaker(
            segmenter,
            self.listener,
            end_of_turn=self.verdict,
            threshold=0.5,
            clock=self.clock,
            offload=self.worker,
        )

    async def play(self, frames: int) -> None:
        for _ in range(frames):
            self.taker.feed(np.zeros(FRAME_SAMPLES, np.float32), self.clock.advance(FRAME_SECONDS))
            await settle()


async def test_without_a_model_silence_ends_the_turn() -> None:
    timeline = Timeline([(0, 10)])
    await timeline.play(25)
    assert timeline.listener.events == ["started", "paused:13", "finished:silence"]
    assert len(timeline.listener.turns[0].audio) == (10 + 1) * FRAME_SAMPLES  # speech and one frame after


async def test_a_complete_verdict_ends_the_turn_at_the_pause() -> None:
    timeline = Timeline([(0, 10)], Verdict(0.9))
    await timeline.play(14)
    assert timeline.listener.events == ["started", "paused:13"]  # the model has not answered yet
    timeline.clock.advance(0.05)
    await timeline.worker.finish_next()

    assert timeline.listener.events == ["started", "paused:13", "finished:semantic"]
    assert timeline.verdict is not None and timeline.verdict.asked == [13]
    turn = timeline.listener.turns[0]
    assert turn.decided_at == timeline.clock.now  # when the verdict came
    assert turn.speech_end == turn.decided_at - timedelta(seconds=0.05 + 4 * FRAME_SECONDS)
    assert turn.speech_start == turn.speech_end - timedelta(seconds=10 * FRAME_SECONDS)


async def test_an_incomplete_verdict_waits_for_the_silence() -> None:
    timeline = Timeline([(0, 10)], Verdict(0.2))
    await timeline.play(14)
    await timeline.worker.finish_next()
    assert timeline.listener.events == ["started", "paused:13"]
    await timeline.play(11)
    assert timeline.listener.events == ["started", "paused:13", "finished:silence"]


async def test_a_late_verdict_on_a_pause_that_resumed_is_ignored() -> None:
    # Speech, a pause at frames 10-13, speech again at 14-20, a second pause: both verdicts still out.
    timeline = Timeline([(0, 10), (14, 20)], Verdict(0.95))
    await timeline.play(24)
    assert timeline.listener.events == ["started", "paused:13", "resumed", "paused:23"]
    assert timeline.worker.pending == 2

    await timeline.worker.finish_next()  # "complete", about the first pause: too late, it resumed
    assert timeline.listener.events[-1] == "paused:23" and timeline.listener.turns == []

    await timeline.worker.finish_next()  # "complete", about the pause the user is in: it ends the turn
    assert timeline.listener.events[-1] == "finished:semantic"
    assert timeline.verdict is not None and timeline.verdict.asked == [13, 23]
    assert len(timeline.listener.turns[0].audio) == (20 + 1) * FRAME_SAMPLES  # both spans of speech
    await timeline.play(20)
    assert len(timeline.listener.turns) == 1  # and the silence after it does not end another
    await timeline.taker.close()


async def test_a_failing_model_leaves_the_end_to_silence() -> None:
    timeline = Timeline([(0, 10)], Verdict(0.9, fails=True))
    await timeline.play(14)
    await timeline.worker.finish_next()
    assert timeline.listener.events == ["started", "paused:13"]
    await timeline.play(11)
    assert timeline.listener.events[-1] == "finished:silence"
    assert [t.reason for t in timeline.listener.turns] == [EndReason.SILENCE]
