"""The benchmark programs themselves run (quick settings, the tiny model on the CPU) and write their JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import gpu, pipeline, realtime

pytestmark = pytest.mark.integration


def test_the_gpu_benchmark_code_runs_on_the_tiny_architecture(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    gpu.main(
        ["--device", "cpu", "--config", "tiny", "--sessions", "1,3", "--new-tokens", "4", "--out", str(out)]
    )
    levels = json.loads(out.read_text())["levels"]
    assert [level["sessions"] for level in levels] == [1, 3]
    # Served one at a time: the last of three waits for the two before it.
    assert levels[1]["ttft_max_s"] > levels[1]["ttft_first_s"]
    assert all(level["tokens_per_s_per_session"] > 0 for level in levels)


def test_without_cuda_the_gpu_benchmark_says_it_was_skipped(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    out = tmp_path / "gpu.json"
    gpu.main(["--out", str(out)])
    assert json.loads(out.read_text())["skipped"] == "no CUDA device"


def test_the_pipeline_benchmark_measures_detector_and_speculation(tmp_path: Path) -> None:
    out = tmp_path / "pipeline.json"
    pipeline.main(["--quick", "--out", str(out)])
    result = json.loads(out.read_text())
    assert 0 < result["detector"]["rtf"] < 1
    calls = result["decision_to_model_call_ms"]
    assert calls["plain"]["p50_ms"] > 0  # the model is called after the turn is committed
    assert calls["speculative"]["p95_ms"] < 0  # ... or already at the pause, before the decision


def test_the_realtime_benchmark_times_every_path_from_the_true_end_of_speech(tmp_path: Path) -> None:
    out = tmp_path / "realtime.json"
    realtime.main(["--prompts", "1", "--rounds", "1", "--out", str(out)])
    result = json.loads(out.read_text())
    assert [row["n"] for row in result["summary"]] == [1] * 7, result["samples"]
    for sample in result["samples"]:
        intervals = list(sample["intervals_s"].values())
        # The silence rule waits 650 ms after the speech (from where Silero hears it end, which may be
        # a little before the level rule's end): an end of speech dated 0.4 s late or more (the last
        # chunk's time, say) or early (the first's) would show here; the tiny model answers in less.
        assert all(0.45 < interval < 3.0 for interval in intervals), sample
        assert intervals == sorted(intervals), sample  # the turn ends, then the reply: text, then audio
