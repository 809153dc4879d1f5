"""Turn detection with the real Silero model on real speech (espeak-ng) with known pause lengths."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.speech import RATE, Utterance
from voice_assistant.config import TurnSettings
from voice_assistant.turn.detector import EndReason
from voice_assistant.turn.segmenter import TurnAudio, TurnBegan, TurnSegmenter
from voice_assistant.turn.vad import SileroModel

pytestmark = pytest.mark.integration

SCRIPT = [
    Utterance(("Hello there,", "how are you today?"), inner_pause=0.25, gap_after=1.5),
    Utterance(("Can you tell me", "a short story", "about a robot?"), inner_pause=0.35, gap_after=1.2),
    Utterance(("Thank you.",), gap_after=1.0),
    Utterance(("What did I ask you", "before that?"), inner_pause=0.2, gap_after=2.0),
]


def params(min_silence_ms: int = 550, max_turn_seconds: float = 30.0) -> TurnSettings:
    return TurnSettings(
        end_of_turn="silence", min_silence_ms=min_silence_ms, max_turn_seconds=max_turn_seconds
    )


def recording(script: list[Utterance], lead: float = 0.7) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The whole conversation and each turn's true (start, end) in seconds."""
    parts = [np.zeros(int(lead * RATE), dtype=np.float32)]
    truth = []
    cursor = lead
    for utterance in script:
        speech = utterance.audio()
        truth.append((cursor, cursor + len(speech) / RATE))
        parts += [speech, np.zeros(int(utterance.gap_after * RATE), dtype=np.float32)]
        cursor += len(speech) / RATE + utterance.gap_after
    return np.concatenate(parts), truth


def segment(
    silero: SileroModel, audio: np.ndarray, turns: TurnSettings, chunk: int = 320
) -> list[tuple[float, object]]:
    """Feed 20 ms chunks as WebRTC delivers them; note when (in audio time) each event was decided."""
    segmenter = TurnSegmenter.from_settings(silero.stream(), turns)
    decided = []
    for offset in range(0, len(audio), chunk):
        for event in segmenter.feed(audio[offset : offset + chunk]):
            decided.append((segmenter.samples_seen / RATE, event))
    return decided


def test_every_turn_is_found_once_without_splitting_sentences(silero: SileroModel) -> None:
    audio, truth = recording(SCRIPT)
    events = segment(silero, audio, params())
    began = [e for _, e in events if isinstance(e, TurnBegan)]
    ended = [(at, e) for at, e in events if isinstance(e, TurnAudio)]
    assert len(began) == len(ended) == len(truth), [
        (at, e.start_sample / RATE, e.end_sample / RATE) for at, e in ended
    ]

    for (start, end), (decided_at, turn) in zip(truth, ended, strict=True):
        assert turn.reason is EndReason.SILENCE
        assert abs(turn.start_sample / RATE - start) < 0.15
        assert abs(turn.end_sample / RATE - end) < 0.15
        # The decision comes min_silence (550 ms) after the speech, plus Silero's own lag.
        assert 0.5 <= decided_at - end <= 0.75
        # The audio kept covers the whole speech (with its padding).
        assert len(turn.samples) / RATE >= end - start


def test_a_shorter_silence_setting_splits_at_long_inner_pauses(silero: SileroModel) -> None:
    audio, truth = recording(
        [Utterance(("Can you tell me", "a short story"), inner_pause=0.6, gap_after=1.0)]
    )
    assert (
        len([e for _, e in segment(silero, audio, params(min_silence_ms=550)) if isinstance(e, TurnAudio)])
        == 1
    )
    assert (
        len([e for _, e in segment(silero, audio, params(min_silence_ms=300)) if isinstance(e, TurnAudio)])
        == 2
    )


def test_an_overlong_turn_is_cut_at_the_maximum_and_nothing_is_lost(silero: SileroModel) -> None:
    long_turn = Utterance(
        ("one two three four five six seven eight nine ten",) * 2, inner_pause=0.1, gap_after=1.0
    )
    audio, truth = recording([long_turn])
    assert truth[0][1] - truth[0][0] > 5.0
    turns = [e for _, e in segment(silero, audio, params(max_turn_seconds=2.5)) if isinstance(e, TurnAudio)]
    assert len(turns) >= 2
    assert turns[0].reason is EndReason.MAX_LENGTH
    assert turns[0].end_sample - turns[0].start_sample == pytest.approx(2.5 * RATE, abs=512)
    assert turns[-1].reason is EndReason.SILENCE
    # The pieces follow each other: the speech after the cut is in the next turn.
    for before, after in zip(turns, turns[1:], strict=False):
        assert after.start_sample - before.end_sample <= 0.3 * RATE


def test_chunk_size_does_not_change_the_decisions(silero: SileroModel) -> None:
    audio, _ = recording(SCRIPT[:2])
    as_20ms = [(round(at, 3), type(e).__name__) for at, e in segment(silero, audio, params(), chunk=320)]
    as_512 = [(round(at, 3), type(e).__name__) for at, e in segment(silero, audio, params(), chunk=512)]
    assert [name for _, name in as_20ms] == [name for _, name in as_512]
    assert all(abs(a - b) <= 0.021 for (a, _), (b, _) in zip(as_20ms, as_512, strict=True))
