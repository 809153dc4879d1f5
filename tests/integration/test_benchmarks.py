"""The benchmark programs themselves run (quick settings, the tiny model on the CPU) and write their JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import gpu, pipeline

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
