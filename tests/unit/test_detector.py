"""The turn state machine on scripted probability timelines (no clock, no audio)."""

from __future__ import annotations

from dataclasses import replace

import pytest

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

pytestmark = pytest.mark.unit

PARAMS = TurnParams(
    threshold=0.5,
    neg_threshold=0.35,
    min_speech_frames=3,
    pause_frames=5,
    min_silence_frames=5,
    max_turn_frames=40,
)
PAUSING = replace(PARAMS, pause_frames=2, min_silence_frames=6)


def run(probabilities: list[float], params: TurnParams = PARAMS) -> list[tuple[int, object]]:
    detector = TurnDetector(params)
    return [(i, event) for i, p in enumerate(probabilities) if (event := detector.push(p)) is not None]


def test_speech_then_silence_is_one_turn() -> None:
    events = run([0.0] * 4 + [0.9] * 10 + [0.0] * 10)
    assert events == [(6, SpeechStarted(frame=4)), (18, SpeechEnded(frame=14, reason=EndReason.SILENCE))]


def test_a_short_blip_is_not_speech() -> None:
    assert run([0.0, 0.9, 0.9, 0.1, 0.9, 0.0, 0.0]) == []


def test_a_pause_shorter_than_min_silence_does_not_split() -> None:
    events = run([0.9] * 10 + [0.1] * 4 + [0.9] * 10 + [0.1] * 6)
    assert [type(e) for _, e in events] == [SpeechStarted, SpeechEnded]
    assert events[1][1] == SpeechEnded(frame=24, reason=EndReason.SILENCE)


def test_hysteresis_frames_between_thresholds_neither_start_nor_cancel_silence() -> None:
    # 0.4 is under the start threshold but over the silence threshold.
    fading = [0.9] * 6 + [0.4] * 8 + [0.1] * 5
    events = run(fading)
    assert events[-1][1] == SpeechEnded(frame=14, reason=EndReason.SILENCE)
    # Once silence began, a 0.4 frame does not cancel it: the turn ends 5 frames after it began.
    events = run([0.9] * 6 + [0.1, 0.4, 0.4, 0.1, 0.1])
    assert events[-1] == (10, SpeechEnded(frame=6, reason=EndReason.SILENCE))


def test_a_turn_longer_than_the_maximum_is_cut_and_speech_goes_on_as_a_new_turn() -> None:
    events = run([0.9] * 50 + [0.0] * 6)
    assert events[0][1] == SpeechStarted(frame=0)
    assert events[1] == (39, SpeechEnded(frame=40, reason=EndReason.MAX_LENGTH))
    assert events[2][1] == SpeechStarted(frame=40)
    assert events[3][1] == SpeechEnded(frame=50, reason=EndReason.SILENCE)


def test_params_from_milliseconds_round_up_to_whole_frames() -> None:
    params = TurnParams.from_settings(
        TurnSettings(vad_neg_threshold=0.6, end_of_turn="silence", min_silence_ms=550)
    )
    assert params.min_speech_frames == 3
    assert params.pause_frames == 7  # 200 ms / 32 ms = 6.25
    assert params.min_silence_frames == 18  # 550 ms / 32 ms = 17.2
    assert params.max_turn_frames == 938
    assert params.neg_threshold == 0.5  # never above the start threshold


def test_the_default_settings_in_frames() -> None:
    """The one set of defaults (TurnSettings), as the detector counts them."""
    params = TurnParams.from_settings(TurnSettings())
    assert (params.threshold, params.neg_threshold) == (0.5, 0.35)
    assert params.min_speech_frames == 3  # 96 ms
    assert params.pause_frames == 2  # Smart Turn is first asked at 64 ms
    assert params.min_silence_frames == 79  # Smart Turn's cap: 2500 ms / 32 ms = 78.1
    assert params.max_turn_frames == 938  # 30 s
    silence_rule = TurnParams.from_settings(TurnSettings(end_of_turn="silence"))
    assert silence_rule.pause_frames == 7  # 200 ms
    assert silence_rule.min_silence_frames == 21  # 650 ms / 32 ms = 20.3


def test_a_pause_is_never_longer_than_the_silence_that_ends_the_turn() -> None:
    params = TurnParams.from_settings(TurnSettings(pause_ms=800, end_of_turn="silence", min_silence_ms=300))
    assert params.pause_frames == params.min_silence_frames == 10


def test_a_pause_is_announced_once_and_resuming_speech_cancels_it() -> None:
    events = run([0.9] * 5 + [0.1] * 4 + [0.9] * 5 + [0.1] * 7, PAUSING)
    assert [e for _, e in events] == [
        SpeechStarted(frame=0),
        SpeechPaused(frame=5),
        SpeechResumed(frame=9),
        SpeechPaused(frame=14),
        SpeechEnded(frame=14, reason=EndReason.SILENCE),
    ]


def test_end_now_ends_a_paused_turn_where_its_silence_began() -> None:
    detector = TurnDetector(PAUSING)
    for p in [0.9] * 5 + [0.1]:
        detector.push(p)
    assert detector.end_now() is None  # one silent frame is not a pause yet
    assert detector.push(0.1) == SpeechPaused(frame=5)
    assert detector.end_now() == SpeechEnded(frame=5, reason=EndReason.SEMANTIC)
    assert not detector.speaking and not detector.paused
    assert detector.end_now() is None
    # The next speech is a new turn.
    assert [detector.push(0.9) for _ in range(3)][-1] == SpeechStarted(frame=7)
