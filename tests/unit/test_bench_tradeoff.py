"""The trade-off benchmark's budgets: the fastest setting whose cut-offs fit, missing nothing."""

from __future__ import annotations

import pytest

from benchmarks.scoring import Summary
from benchmarks.tradeoff import Point, best_within, budget_json

pytestmark = pytest.mark.unit


def point(setting: str, p50: float, cut_offs: int, missed: int = 0) -> Point:
    summary = Summary(
        turns=40, ended=40 - missed, p50=p50, p95=p50 + 0.1, max=p50 + 0.2,
        false_splits=cut_offs, missed=missed, merged=0,
    )  # fmt: skip
    return Point("ours", setting, summary)


def test_the_fastest_setting_within_the_budget_that_misses_nothing() -> None:
    points = [
        point("fast, cuts", 0.2, cut_offs=8),  # 20 %
        point("fast, misses", 0.25, cut_offs=0, missed=1),
        point("middle", 0.4, cut_offs=4),  # 10 %
        point("safe", 0.7, cut_offs=1),  # 2.5 %
    ]
    assert best_within(points, 0.05) == points[3]
    assert best_within(points, 0.10) == points[2]
    assert best_within(points, 0.01) is None
    budgets = budget_json(points)
    assert budgets["5%"]["ours"]["setting"] == "safe" and budgets["10%"]["ours"]["p50"] == 0.4
