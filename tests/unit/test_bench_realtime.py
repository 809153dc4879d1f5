"""The realtime benchmark's summary, on hand-made samples: each path's intervals, failed turns counted
apart, and each Realtime path's first text over WebRTC's."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from benchmarks.realtime import INTERVALS, PATHS, placed, ratios, summarize

pytestmark = pytest.mark.unit


def sample(path: str, first_text: float) -> dict[str, Any]:
    """A turn whose every interval is `first_text`, but the first (turn end, commit): 0.1 s sooner."""
    kinds = INTERVALS[path]
    return {
        "path": path,
        "prompt": "p",
        "intervals_s": {kinds[0]: first_text - 0.1} | dict.fromkeys(kinds[1:], first_text),
    }


def test_each_path_is_summarized_over_its_answered_turns_and_compared_with_webrtc() -> None:
    samples = [sample("webrtc", t) for t in (0.6, 0.8, 1.0)]
    samples += [sample("realtime-text", t) for t in (0.9, 1.2)]
    samples += [sample("realtime-audio", 1.5), {"path": "realtime-audio", "prompt": "p", "failed": "x"}]
    rows = {(row["path"], row["event"]): row for row in summarize(samples)}

    assert len(rows) == sum(len(INTERVALS[path]) for path in PATHS)
    reply = rows["webrtc", "reply_delta"]
    assert (reply["p50_s"], reply["mean_s"], reply["n"], reply["failed"]) == (0.8, pytest.approx(0.8), 3, 0)
    assert rows["webrtc", "turn_ended"]["p50_s"] == pytest.approx(0.7)
    assert reply["p95_s"] == pytest.approx(0.98)
    audio = rows["realtime-audio", "response.output_audio_transcript.delta"]
    assert (audio["n"], audio["failed"]) == (1, 1)

    found = ratios(list(rows.values()))
    assert found["realtime-text"]["p50_s"] == pytest.approx(1.05 / 0.8)
    assert found["realtime-audio"]["mean_s"] == pytest.approx(1.5 / 0.8)


def test_a_path_without_an_answered_turn_has_no_figures_and_no_ratio() -> None:
    samples = [sample("webrtc", 0.8), {"path": "realtime-text", "prompt": "p", "failed": "timeout"}]
    rows = summarize(samples)
    text = next(row for row in rows if row["event"] == "response.output_text.delta")
    assert (text["p50_s"], text["n"], text["failed"]) == (None, 0, 1)
    assert ratios(rows)["realtime-text"] == {"p50_s": None, "p95_s": None, "mean_s": None}


@pytest.mark.parametrize("seconds", [0.3, 1.0, 2.345, 2.85])
def test_speech_is_placed_to_end_on_a_100_ms_chunk(seconds: float) -> None:
    speech_samples = int(seconds * 16_000)
    lead, tail = placed(np.ones(speech_samples, "float32"))
    assert (len(lead) + speech_samples) % 1600 == 0
    assert 0.5 <= len(lead) / 16_000 < 0.6 and len(tail) == 24_000
