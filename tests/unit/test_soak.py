"""The soak's judgement on synthetic samples: the warm-up left out, a flat series (noise, a sawtooth)
flat, a leak not, whichever of the two measures (thirds, slope) sees it."""

from __future__ import annotations

import math
import os
import random

import pytest

from benchmarks import soak
from benchmarks.soak import Tolerance, growth, judge

pytestmark = pytest.mark.unit

TIMES = [5.0 * i for i in range(121)]  # 10 minutes, every 5 s
WARMUP_S = 120.0
RSS = Tolerance(0.03, 15.0)


def test_a_steady_series_after_a_steep_warmup_is_flat() -> None:
    rng = random.Random(1)
    values = [200 + min(t, WARMUP_S) * 3 + rng.gauss(0, 4) for t in TIMES]  # +360 MB while warming up
    verdict = growth(TIMES, values, warmup_s=WARMUP_S, tolerance=RSS)
    assert verdict is not None and verdict["flat"]
    assert verdict["samples"] == 97  # from 120 s on
    assert abs(verdict["slope_per_min"]) < 1.0
    assert verdict["middle_mean"] == pytest.approx(560, abs=3)


def test_a_leak_is_not_flat_and_its_slope_is_per_minute() -> None:
    values = [500 + 4 * t / 60 for t in TIMES]  # 4 MB a minute: 32 MB over the 8 measured minutes
    verdict = growth(TIMES, values, warmup_s=WARMUP_S, tolerance=RSS)
    assert verdict is not None and not verdict["flat"]
    assert verdict["slope_per_min"] == pytest.approx(4.0)
    assert verdict["rise"] == pytest.approx(32.0)
    # The last third's mean sits a third of the span (8/3 min) above the middle's.
    assert verdict["growth"] == pytest.approx(4 * 8 / 3, abs=0.3)


def test_a_slow_leak_within_the_tolerance_is_flat() -> None:
    values = [500 + 1 * t / 60 for t in TIMES]  # 8 MB over the span: under 15 MB
    verdict = growth(TIMES, values, warmup_s=WARMUP_S, tolerance=RSS)
    assert verdict is not None and verdict["flat"]


def test_a_step_in_the_last_third_is_seen_by_the_thirds() -> None:
    values = [100.0 if t < 480 else 130.0 for t in TIMES]  # fds: one jump of 30, late
    verdict = growth(TIMES, values, warmup_s=WARMUP_S, tolerance=Tolerance(0.05, 10.0))
    assert verdict is not None and not verdict["flat"]
    assert verdict["growth"] > 10


def test_shrinking_and_a_sawtooth_are_flat() -> None:
    shrinking = [1000 - t / 10 for t in TIMES]
    sawtooth = [300 + 40 * ((t % 60) / 60) for t in TIMES]  # a pool filling and emptying every minute
    for values in (shrinking, sawtooth):
        verdict = growth(TIMES, values, warmup_s=WARMUP_S, tolerance=Tolerance(0.05, 25.0))
        assert verdict is not None and verdict["flat"]


def test_gaps_and_too_few_samples() -> None:
    values: list[float | None] = [None if i % 2 else 50.0 for i in range(len(TIMES))]
    values[-1] = math.nan
    verdict = growth(TIMES, values, warmup_s=WARMUP_S, tolerance=RSS)
    assert verdict is not None and verdict["flat"] and verdict["samples"] == 48
    assert (
        growth(
            TIMES[:28],
            [1.0] * 28,  # 4 after the warm-up
            warmup_s=WARMUP_S,
            tolerance=RSS,
        )
        is None
    )


def test_the_tolerance_is_a_share_of_the_level_or_its_floor() -> None:
    assert RSS.allowed(1000) == pytest.approx(30)
    assert RSS.allowed(100) == 15


def test_every_process_and_series_is_judged_and_one_leak_makes_it_not_flat() -> None:
    def moment(t: float, leak: float) -> dict[str, object]:
        steady = {"rss_mb": 80.0, "fds": 20.0, "threads": 5.0}
        worker = {"rss_mb": 700.0, "fds": 150.0, "threads": 30.0, "tasks": 300.0 + leak * t, "sessions": 15}
        return {"t": t, "processes": {"proxy": steady, "worker 0": worker}}

    verdicts = judge([moment(t, 0.0) for t in TIMES], warmup_s=WARMUP_S)
    assert set(verdicts["proxy"]) == {"rss_mb", "fds", "threads"}  # no loop tasks from the proxy
    assert set(verdicts["worker 0"]) == {"rss_mb", "fds", "threads", "tasks"}
    assert soak.flat(verdicts)
    leaking = judge([moment(t, 0.2) for t in TIMES], warmup_s=WARMUP_S)  # 12 tasks a minute
    assert not leaking["worker 0"]["tasks"]["flat"] and not soak.flat(leaking)
    assert leaking["worker 0"]["rss_mb"]["flat"]


def test_a_process_is_read_from_proc_and_a_gone_one_is_none() -> None:
    figures = soak.proc_figures(os.getpid())
    assert figures is not None
    assert figures["rss_mb"] > 1 and figures["fds"] >= 3 and figures["threads"] >= 1
    assert soak.proc_figures(2**22 + 1) is None  # above the kernel's pid_max: never a process


def test_the_workers_gauges_are_read_from_the_proxys_metrics() -> None:
    metrics = "\n".join(
        [
            "# TYPE va_asyncio_tasks gauge",
            'va_asyncio_tasks{worker="0"} 41.0',
            'va_asyncio_tasks{worker="1"} 38.0',
            "# TYPE va_live_sessions gauge",
            'va_live_sessions{worker="0"} 3.0',
            'va_live_sessions{worker="1"} 2.0',
            "# TYPE va_event_loop_lag_seconds gauge",
            'va_event_loop_lag_seconds{worker="1"} 0.25',
            "# TYPE va_turns counter",
            'va_turns_total{end="silence",worker="0"} 7.0',
        ]
    )
    assert soak.worker_gauges(metrics + "\n") == {
        "0": {"tasks": 41.0, "sessions": 3.0},
        "1": {"tasks": 38.0, "sessions": 2.0, "lag_s": 0.25},
    }
