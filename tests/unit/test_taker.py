"""Turn-taking on a scripted VAD and a virtual clock: pauses, the end-of-turn model's verdicts (each
arriving where the test finishes it) weighed by the policy against the silence, the cap as the fallback."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import pytest

from tests.fakes import FakeClock, ManualOffload, ScriptedVad, settle
from voice_assistant.audio.pcm import Samples
from voice_assistant.config import TurnSettings
from voice_assistant.turn.detector import EndReason, TurnParams
from voice_assistant.turn.policy import EndOfTurnPolicy
from voice_assistant.turn.segmenter import TurnSegmenter
from voice_assistant.turn.taker import CompletedTurn, TurnTaker
from voice_assistant.turn.vad import FRAME_SAMPLES, FRAME_SECONDS

pytestmark = pytest.mark.unit

# In frames of 32 ms: speech starts after 2, a pause at 3, the turn ends after 10 of silence (the silence
# rule without a model, the cap with one).
PARAMS = TurnParams.from_settings(
    TurnSettings(
        min_speech_ms=64, pause_ms=96, min_silence_ms=320, end_of_turn_judge_ms=(96,), max_silence_ms=320
    )
)
F = FRAME_SECONDS
# Asked at 3 and 6 frames of silence: over (0.8 or more) ends the turn after 3 frames of silence, doubt (0.2
# or less) after 8, in between in between; 10 frames end it whatever the model does.
POLICY = EndOfTurnPolicy(
    quick_s=3 * F, doubt_s=8 * F, sure=0.8, unsure=0.2, cap_s=10 * F, likely=0.5, judge_at_s=(3 * F, 6 * F)
)


@dataclass
class Listener:
    events: list[str] = field(default_factory=list)
    turns: list[CompletedTurn] = field(default_factory=list)

    def speech_started(self) -> None:
        self.events.append("started")

    def speech_paused(self, audio: Samples) -> None:
        self.events.append(f"paused:{len(audio) // FRAME_SAMPLES}")

    def speech_silent(self) -> None:
        pass

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
    later: list[float] = field(default_factory=list)
    """The probabilities of the next verdicts, when they differ from the first."""

    def complete_probability(self, audio: Samples) -> float:
        self.asked.append(len(audio) // FRAME_SAMPLES)
        if self.fails:
            raise RuntimeError("model broke")
        return self.later[len(self.asked) - 2] if len(self.asked) > 1 and self.later else self.probability


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
            policy=POLICY,
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


async def test_a_sure_verdict_ends_the_turn_at_the_pause() -> None:
    timeline = Timeline([(0, 10)], Verdict(1.0))
    await timeline.play(13)
    assert timeline.listener.events == ["started"]  # asked at the pause, not answered yet: nothing to say
    timeline.clock.advance(0.05)
    await timeline.worker.finish_next()

    assert timeline.listener.events == ["started", "paused:13", "finished:semantic"]
    assert timeline.verdict is not None and timeline.verdict.asked == [13]
    turn = timeline.listener.turns[0]
    assert turn.decided_at == timeline.clock.now  # when the verdict came
    assert turn.speech_end == turn.decided_at - timedelta(seconds=0.05 + 3 * FRAME_SECONDS)
    assert turn.speech_start == turn.speech_end - timedelta(seconds=10 * FRAME_SECONDS)


async def test_doubt_waits_longer_the_more_doubtful() -> None:
    ended_after = []
    for probability in (0.9, 0.5, 0.1):  # waits of 3, 5.5 and 8 frames of silence
        timeline = Timeline([(0, 10)], Verdict(probability))
        await timeline.play(13)
        await timeline.worker.finish_next()
        silent = 3
        while not timeline.listener.turns:
            await timeline.play(1)
            silent += 1
            if timeline.worker.pending:  # asked again at 6 frames: the same verdict
                await timeline.worker.finish_next()
        assert timeline.listener.turns[0].reason == EndReason.SEMANTIC
        ended_after.append(silent)
    assert ended_after == [3, 6, 8]


async def test_a_reply_starts_speculatively_only_on_a_likely_verdict() -> None:
    likely = Timeline([(0, 10)], Verdict(0.6))
    await likely.play(13)
    await likely.worker.finish_next()
    assert likely.listener.events == ["started", "paused:13"]

    unlikely = Timeline([(0, 10)], Verdict(0.3))
    await unlikely.play(13)
    await unlikely.worker.finish_next()
    assert unlikely.listener.events == ["started"]


async def test_the_model_is_asked_again_as_the_silence_grows() -> None:
    # Doubtful at the pause (a wait of 8 frames), over at 6 frames of silence: it ends there.
    timeline = Timeline([(0, 10)], Verdict(0.1, later=[1.0]))
    await timeline.play(13)
    await timeline.worker.finish_next()
    assert timeline.listener.events == ["started"]
    await timeline.play(3)
    assert timeline.worker.pending == 1 and timeline.listener.turns == []
    await timeline.worker.finish_next()
    assert timeline.verdict is not None and timeline.verdict.asked == [13, 16]
    assert timeline.listener.events == ["started", "paused:16", "finished:semantic"]


async def test_only_a_model_that_never_answers_leaves_the_end_to_the_cap() -> None:
    timeline = Timeline([(0, 10)], Verdict(0.9))
    await timeline.play(19)  # the verdict asked at the pause never comes back
    assert timeline.listener.turns == [] and timeline.worker.pending == 1
    await timeline.play(1)
    assert timeline.listener.events == ["started", "finished:silence"]


async def test_a_late_verdict_on_a_pause_that_resumed_is_ignored() -> None:
    # Speech, a pause at frames 10-13, speech again at 14-20, a second pause: both verdicts still out.
    timeline = Timeline([(0, 10), (14, 20)], Verdict(0.95))
    await timeline.play(24)
    assert timeline.listener.events == ["started", "resumed"]
    assert timeline.worker.pending == 2

    await timeline.worker.finish_next()  # "complete", about the first pause: too late, it resumed
    assert timeline.listener.events == ["started", "resumed"] and timeline.listener.turns == []

    await timeline.worker.finish_next()  # "complete", about the pause the user is in: it ends the turn
    assert timeline.listener.events[-2:] == ["paused:23", "finished:semantic"]
    assert timeline.verdict is not None and timeline.verdict.asked == [13, 23]
    assert len(timeline.listener.turns[0].audio) == (20 + 1) * FRAME_SAMPLES  # both spans of speech
    await timeline.play(20)
    assert len(timeline.listener.turns) == 1  # and the silence after it does not end another
    await timeline.taker.close()


async def test_a_failing_model_counts_as_doubt() -> None:
    timeline = Timeline([(0, 10)], Verdict(0.9, fails=True))
    await timeline.play(13)
    await timeline.worker.finish_next()
    assert timeline.listener.events == ["started"]
    await timeline.play(3)
    await timeline.worker.finish_next()  # asked again, and broken again
    await timeline.play(1)
    assert timeline.listener.turns == []
    await timeline.play(1)
    assert timeline.listener.events == ["started", "finished:semantic"]  # after 8 frames of silence


def test_the_policy_waits_longer_for_doubt_and_never_past_the_cap() -> None:
    policy = EndOfTurnPolicy(
        quick_s=0.3, doubt_s=0.9, sure=0.8, unsure=0.2, cap_s=0.8, likely=0.5, judge_at_s=(0.06, 0.2, 1.0)
    )
    assert policy.wait_s(0.95) == policy.wait_s(0.8) == pytest.approx(0.3)
    assert policy.wait_s(0.5) == pytest.approx(0.6)  # halfway
    assert policy.wait_s(0.1) == policy.wait_s(None) == pytest.approx(0.8)  # doubt, held to the cap
    assert [policy.next_judgement(s) for s in (0.0, 0.06, 0.5)] == [0.06, 0.2, None]  # 1 s: past the cap


async def test_every_pause_is_told_as_silence_whatever_the_verdict() -> None:
    """What lets speech over a spoken reply prove short (session/interruption.py) even when the model
    doubts the turn is over, so that no speculation starts there."""

    class Silences(Listener):
        def speech_silent(self) -> None:
            self.events.append("silent")

    timeline = Timeline([(0, 10), (16, 24)], Verdict(0.1), listener=Silences())
    await timeline.play(13)
    assert timeline.listener.events == ["started", "silent"]  # at the pause, before any verdict
    await timeline.worker.finish_next()
    await timeline.play(6)
    assert timeline.listener.events == ["started", "silent", "resumed"]
    await timeline.play(12)
    assert timeline.listener.events[:4] == ["started", "silent", "resumed", "silent"]
