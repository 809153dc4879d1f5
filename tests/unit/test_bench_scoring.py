"""The endpointing benchmark's judge, on hand-made timelines."""

from __future__ import annotations

import pytest

from benchmarks.scoring import TurnScore, reply_delays, score_turns, summarize

pytestmark = pytest.mark.unit

SPANS = [(1.0, 3.0), (5.0, 7.0), (9.0, 10.0)]
DURATION = 13.0


def test_each_turn_is_ended_by_its_first_detection_after_the_end_of_speech() -> None:
    scores = score_turns(SPANS, [3.5, 7.25, 10.75], DURATION)

    assert [s.outcome for s in scores] == ["ended"] * 3
    assert [s.delay for s in scores] == pytest.approx([0.5, 0.25, 0.75])
    assert [s.false_splits for s in scores] == [0, 0, 0]


def test_a_detection_inside_a_turn_or_a_second_one_after_it_is_a_false_split() -> None:
    scores = score_turns(SPANS, [2.0, 3.5, 4.0, 7.25, 10.75], DURATION)

    assert scores[0] == TurnScore(turn=0, outcome="ended", delay=pytest.approx(0.5), false_splits=2)
    assert [s.false_splits for s in scores[1:]] == [0, 0]


def test_a_detection_in_the_silence_before_the_first_turn_is_a_false_split() -> None:
    assert score_turns(SPANS, [0.5, 3.5, 7.25, 10.75], DURATION)[0].false_splits == 1


def test_a_turn_whose_gap_was_not_recognised_is_merged_into_the_next() -> None:
    scores = score_turns(SPANS, [7.5, 10.75], DURATION)

    assert scores[0] == TurnScore(turn=0, outcome="merged", delay=None, false_splits=0)
    assert scores[1].outcome == "ended" and scores[1].delay == pytest.approx(0.5)


def test_a_turn_with_no_end_detected_and_none_after_it_is_missed() -> None:
    scores = score_turns(SPANS, [3.5, 13.5], DURATION)  # 13.5: after the recording, not counted

    assert [s.outcome for s in scores] == ["ended", "missed", "missed"]
    assert scores[2].delay is None


def test_a_turn_cut_at_a_pause_and_never_ended_counts_the_split_and_the_miss() -> None:
    scores = score_turns(SPANS, [3.5, 7.25, 9.5], DURATION)

    assert scores[2] == TurnScore(turn=2, outcome="missed", delay=None, false_splits=1)


def test_the_summary_gives_percentiles_over_ended_turns_and_counts_the_rest() -> None:
    scores = score_turns(SPANS, [2.0, 3.5, 7.25], DURATION) + score_turns(SPANS, [7.5, 10.75], DURATION)

    summary = summarize(scores)

    assert (summary.turns, summary.ended) == (6, 4)
    assert (summary.false_splits, summary.missed, summary.merged) == (1, 1, 1)
    assert summary.p50 == pytest.approx(0.5)  # of 0.25, 0.5, 0.5, 0.75
    assert summary.max == pytest.approx(0.75)
    assert summary.p95 == pytest.approx(0.7125)


def test_reply_delay_is_the_first_reply_text_after_each_true_end() -> None:
    spans = [(1.0, 3.0), (6.0, 8.0), (11.0, 12.0)]
    # A reply to turn 0 at 3.9 (and a later piece at 4.5), none for turn 1, one for turn 2 at 12.4;
    # a reply text before the end of a turn does not count for it.
    assert reply_delays(spans, [2.5, 3.9, 4.5, 12.4], duration=15.0) == [
        pytest.approx(0.9),
        None,
        pytest.approx(0.4),
    ]
