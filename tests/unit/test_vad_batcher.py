"""Silero batched across streams, on virtual timers: the same probabilities and the same turns as each
frame scored alone, within the flush bound, and nothing lost or left behind when a stream closes."""

from __future__ import annotations

import gc
from dataclasses import dataclass, field

import numpy as np
import pytest

from tests.fakes import FakeClock, FakeTimers
from tests.unit.test_taker import PARAMS, Listener
from voice_assistant.audio.pcm import MODEL_RATE, Samples
from voice_assistant.turn.batcher import VadBatcher
from voice_assistant.turn.segmenter import TurnSegmenter
from voice_assistant.turn.taker import TurnTaker
from voice_assistant.turn.vad import CONTEXT_SAMPLES, FRAME_SAMPLES, SileroModel, SileroStream

pytestmark = pytest.mark.unit

DELAY = 0.010
CHUNK = MODEL_RATE // 50
"""20 ms, as WebRTC delivers audio."""


class LoudnessModel:
    """Stands in for Silero's network where the test needs to know the answer: speech is a loud frame
    after a loud one (the state carries the loudness of the frame before, so order and state matter)."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def run(self, windows: np.ndarray, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.batches.append(len(windows))
        loudness = np.abs(windows[:, CONTEXT_SAMPLES:]).mean(axis=1)
        before = states[0, :, 0]
        speech = np.where((loudness > 0.5) & (before > 0.5), 0.9, 0.05).astype(np.float32)
        new_states = np.zeros_like(states)
        new_states[0, :, 0] = loudness
        return speech, new_states


def frames_of(rng: np.random.Generator, count: int, scale: float) -> list[Samples]:
    return [rng.normal(0, scale, FRAME_SAMPLES).astype(np.float32) for _ in range(count)]


def test_a_batch_gives_each_stream_the_probabilities_of_its_frames_alone(silero: SileroModel) -> None:
    rng = np.random.default_rng(0)
    tone = (0.3 * np.sin(np.arange(FRAME_SAMPLES * 6) * 2 * np.pi * 220 / MODEL_RATE)).astype(np.float32)
    streams = [frames_of(rng, 6, 0.01), list(tone.reshape(6, FRAME_SAMPLES)), frames_of(rng, 6, 0.3)]
    alone = []
    for frames in streams:
        stream = silero.stream()
        alone.append([stream.prob(frame) for frame in frames])

    timers = FakeTimers()
    batcher = VadBatcher(silero, max_delay_s=DELAY, schedule=timers)
    batched: list[list[float]] = [[] for _ in streams]
    handles = [batcher.stream(silero.stream()) for _ in streams]
    for index in range(6):
        for handle, frames, out in zip(handles, streams, batched, strict=True):
            handle.submit([frames[index]], lambda _frame, p, out=out: out.append(p))
        timers.advance()

    assert batcher.runs == 6  # every stream had its frame ready: one run each time, at once
    np.testing.assert_allclose(batched, alone, atol=1e-5)


@dataclass
class Stream:
    """A taker fed a loudness timeline in 20 ms chunks, as WebRTC delivers them."""

    loud: list[tuple[int, int]]
    """Spans of loud frames [start, end)."""
    lead: int = 0
    """Samples fed with the first chunk: the streams' frames are ready at different times."""
    listener: Listener = field(default_factory=Listener)

    def chunks(self, frames: int) -> list[Samples]:
        audio = np.zeros(frames * FRAME_SAMPLES, dtype=np.float32)
        for start, end in self.loud:
            audio[start * FRAME_SAMPLES : end * FRAME_SAMPLES] = 1.0
        cuts = range(self.lead + CHUNK, len(audio), CHUNK)
        return np.split(audio, list(cuts))


def play(streams: list[Stream], *, batched: bool, frames: int = 60) -> tuple[LoudnessModel, FakeTimers]:
    model = LoudnessModel()
    timers = FakeTimers()
    batcher = VadBatcher(model, max_delay_s=DELAY, schedule=timers)  # type: ignore[arg-type]
    clock = FakeClock()
    takers = []
    for stream in streams:
        silero = SileroStream(model)  # type: ignore[arg-type]
        scorer = batcher.stream(silero) if batched else None
        segmenter = TurnSegmenter(silero, PARAMS, pad_frames=1)
        takers.append(TurnTaker(segmenter, stream.listener, clock=clock, scorer=scorer))
    for chunks in zip(*(stream.chunks(frames) for stream in streams), strict=False):
        arrived = clock.advance(CHUNK / MODEL_RATE)
        for taker, chunk in zip(takers, chunks, strict=True):
            taker.feed(chunk, arrived)
        timers.advance(CHUNK / MODEL_RATE)
    return model, timers


async def test_batched_streams_take_the_same_turns_as_streams_scored_alone() -> None:
    def streams() -> list[Stream]:
        return [Stream([(2, 14)]), Stream([(5, 9), (12, 30)], lead=100), Stream([(1, 6)], lead=200)]

    alone, batched = streams(), streams()
    play(alone, batched=False)
    model, timers = play(batched, batched=True)

    assert [s.listener.events for s in batched] == [s.listener.events for s in alone]
    assert batched[0].listener.events == ["started", "paused:15", "finished:silence"]
    for mine, theirs in zip(batched, alone, strict=True):
        for turn, same in zip(mine.listener.turns, theirs.listener.turns, strict=True):
            np.testing.assert_array_equal(turn.audio, same.audio)
            assert (turn.speech_start, turn.speech_end) == (same.speech_start, same.speech_end)
    assert max(model.batches) == 3 and min(model.batches) == 1  # frames waited for each other, or not
    assert timers.pending == []


def test_a_frame_waits_for_other_streams_no_longer_than_the_bound() -> None:
    model = LoudnessModel()
    timers = FakeTimers()
    batcher = VadBatcher(model, max_delay_s=DELAY, schedule=timers)  # type: ignore[arg-type]
    scored: list[str] = []
    first, second, _idle = (batcher.stream(SileroStream(model)) for _ in range(3))  # type: ignore[arg-type]
    frame = np.zeros(FRAME_SAMPLES, dtype=np.float32)

    first.submit([frame], lambda _f, _p: scored.append("first"))
    timers.advance(0.004)
    second.submit([frame], lambda _f, _p: scored.append("second"))
    timers.advance(DELAY - 0.004 - 1e-6)
    assert scored == []  # the third stream has no frame ready: the first waits for the bound
    timers.advance(1e-6)
    assert scored == ["first", "second"] and model.batches == [2]
    assert timers.pending == []


def test_a_full_batch_or_a_lone_stream_is_scored_at_once() -> None:
    model = LoudnessModel()
    timers = FakeTimers()
    batcher = VadBatcher(model, max_delay_s=DELAY, max_batch=2, schedule=timers)  # type: ignore[arg-type]
    frame = np.zeros(FRAME_SAMPLES, dtype=np.float32)
    streams = [batcher.stream(SileroStream(model)) for _ in range(3)]  # type: ignore[arg-type]
    streams[0].submit([frame], lambda _f, _p: None)
    streams[1].submit([frame], lambda _f, _p: None)
    assert timers.pending == [0.0]  # max_batch streams are waiting
    timers.advance()
    assert model.batches == [2]

    for stream in streams[1:]:
        stream.close()
    streams[0].submit([frame], lambda _f, _p: None)
    assert timers.pending == [0.0]  # the only live stream waits for no one
    timers.advance()
    assert model.batches == [2, 1]


def test_a_stream_dropped_without_being_closed_holds_no_batch_back() -> None:
    model = LoudnessModel()
    timers = FakeTimers()
    batcher = VadBatcher(model, max_delay_s=DELAY, schedule=timers)  # type: ignore[arg-type]
    kept = batcher.stream(SileroStream(model))  # type: ignore[arg-type]
    dropped = batcher.stream(SileroStream(model))  # type: ignore[arg-type]
    del dropped
    gc.collect()
    kept.submit([np.zeros(FRAME_SAMPLES, np.float32)], lambda _f, _p: None)
    assert timers.pending == [0.0]


def test_a_stream_with_frames_queued_gets_them_in_order_one_run_each() -> None:
    model = LoudnessModel()
    timers = FakeTimers()
    batcher = VadBatcher(model, max_delay_s=DELAY, schedule=timers)  # type: ignore[arg-type]
    busy, quiet = (batcher.stream(SileroStream(model)) for _ in range(2))  # type: ignore[arg-type]
    loud, soft = np.ones(FRAME_SAMPLES, np.float32), np.zeros(FRAME_SAMPLES, np.float32)
    got: list[float] = []
    busy.submit([loud, loud, soft, loud], lambda _f, p: got.append(p))
    quiet.submit([soft], lambda _f, _p: None)
    timers.advance()

    assert got == pytest.approx([0.05, 0.9, 0.05, 0.05])  # a loud frame after a loud one is speech
    assert model.batches == [2, 1, 1, 1]


async def test_closing_a_stream_decides_its_waiting_frames_and_leaves_no_timer() -> None:
    model = LoudnessModel()
    timers = FakeTimers()
    batcher = VadBatcher(model, max_delay_s=DELAY, schedule=timers)  # type: ignore[arg-type]
    _other = batcher.stream(SileroStream(model))  # type: ignore[arg-type]
    listener = Listener()
    silero = SileroStream(model)  # type: ignore[arg-type]
    taker = TurnTaker(
        TurnSegmenter(silero, PARAMS, pad_frames=1),
        listener,
        clock=FakeClock(),
        scorer=batcher.stream(silero),
    )
    clock = FakeClock()
    loud = np.ones(FRAME_SAMPLES * 6, np.float32)
    taker.feed(np.concatenate([loud, np.zeros(FRAME_SAMPLES * 10, np.float32)]), clock())
    assert listener.events == [] and timers.pending == [DELAY]

    await taker.close()  # the user hung up in the silence that ends the turn: the turn is still taken
    assert listener.events == ["started", "paused:9", "finished:silence"]
    assert timers.pending == []
    with pytest.raises(RuntimeError, match="closed"):
        taker.feed(np.zeros(FRAME_SAMPLES, np.float32), clock())


def test_one_streams_failing_consumer_costs_the_others_nothing() -> None:
    model = LoudnessModel()
    timers = FakeTimers()
    batcher = VadBatcher(model, max_delay_s=DELAY, schedule=timers)  # type: ignore[arg-type]
    broken, fine = (batcher.stream(SileroStream(model)) for _ in range(2))  # type: ignore[arg-type]
    frame = np.zeros(FRAME_SAMPLES, dtype=np.float32)
    got: list[float] = []

    def fail(_frame: Samples, _probability: float) -> None:
        raise RuntimeError("consumer broke")

    broken.submit([frame], fail)
    fine.submit([frame, frame], lambda _f, p: got.append(p))
    timers.advance()
    assert len(got) == 2


def test_frames_of_another_size_are_refused_where_they_are_submitted(silero: SileroModel) -> None:
    batcher = VadBatcher(silero, max_delay_s=DELAY, schedule=FakeTimers())
    with pytest.raises(ValueError, match="512"):
        batcher.stream(silero.stream()).submit([np.zeros(320, np.float32)], lambda _f, _p: None)
