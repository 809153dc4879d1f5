"""Turn-taking on a scripted VAD: pauses, the end-of-turn model's verdicts, silence as the fallback."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pytest

from voice_assistant.audio.pcm import Samples
from voice_assistant.config import TurnSettings
from voice_assistant.turn.detector import EndReason, TurnParams
from voice_assistant.turn.segmenter import TurnSegmenter
from voice_assistant.turn.taker import CompletedTurn, TurnTaker
from voice_assistant.turn.vad import FRAME_SAMPLES

pytestmark = pytest.mark.unit

# In frames of 32 ms: speech starts after 2, a pause at 3, the turn ends after 10 of silence.
PARAMS = TurnParams.from_settings(TurnSettings(min_speech_ms=64, pause_ms=96, min_silence_ms=320))


class ScriptedVad:
    """Speech probability by frame: 0.9 where the script says speech, 0.05 elsewhere."""

    def __init__(self, speech: list[tuple[int, int]]) -> None:
        self._speech = speech
        self._frame = -1

    def prob(self, frame: Samples) -> float:
        self._frame += 1
        return 0.9 if any(a <= self._frame < b for a, b in self._speech) else 0.05


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
    delay: float = 0.0
    fails: bool = False
    asked: int = 0

    def complete_probability(self, audio: Samples) -> float:
        self.asked += 1
        time.sleep(self.delay)  # runs in a worker thread, as a real model does
        if self.fails:
            raise RuntimeError("model broke")
        return self.probability


async def play(taker: TurnTaker, frames: int, *, settle: float = 0.0) -> None:
    for _ in range(frames):
        taker.feed(np.zeros(FRAME_SAMPLES, np.float32), datetime.now(UTC))
        if settle:
            await asyncio.sleep(settle)


def taker(speech: list[tuple[int, int]], listener: Listener, verdict: Verdict | None = None) -> TurnTaker:
    segmenter = TurnSegmenter(ScriptedVad(speech), PARAMS, pad_frames=1)  # type: ignore[arg-type]
    return TurnTaker(segmenter, listener, end_of_turn=verdict, threshold=0.5)


async def test_without_a_model_silence_ends_the_turn() -> None:
    listener = Listener()
    await play(taker([(0, 10)], listener), 25)
    assert listener.events == ["started", "paused:13", "finished:silence"]
    assert len(listener.turns[0].audio) == (10 + 1) * FRAME_SAMPLES  # speech and one frame of padding after


async def test_a_complete_verdict_ends_the_turn_at_the_pause() -> None:
    listener, verdict = Listener(), Verdict(0.9)
    turns = taker([(0, 10)], listener, verdict)
    await play(turns, 14, settle=0.01)
    assert listener.events == ["started", "paused:13", "finished:semantic"]
    assert verdict.asked == 1
    assert listener.turns[0].speech_end < listener.turns[0].decided_at


async def test_an_incomplete_verdict_waits_for_the_silence() -> None:
    listener = Listener()
    await play(taker([(0, 10)], listener, Verdict(0.2)), 25, settle=0.005)
    assert listener.events[-1] == "finished:silence"


async def test_a_late_verdict_on_a_pause_that_resumed_is_ignored() -> None:
    listener = Listener()
    turns = taker([(0, 10), (14, 20)], listener, Verdict(0.95, delay=0.15))
    await play(turns, 16)  # the pause at frames 10-13, then speech again before the verdict
    await asyncio.sleep(0.3)
    await play(turns, 2)
    assert "finished:semantic" not in listener.events
    assert listener.events[:3] == ["started", "paused:13", "resumed"]
    await turns.close()


async def test_a_failing_model_leaves_the_end_to_silence() -> None:
    listener = Listener()
    await play(taker([(0, 10)], listener, Verdict(0.9, fails=True)), 25, settle=0.005)
    assert listener.events[-1] == "finished:silence"
    assert [t.reason for t in listener.turns] == [EndReason.SILENCE]
