"""How the endpointing benchmark judges a system: its `turn_ended` times against the labeled turns.

Pure functions on seconds from the start of a recording, so they are tested on hand-made timelines.

Turn j owns the window [start_j, start_{j+1}) (the first window also owns the silence before it, the
last one runs to the end of the recording). In its window:
- a detection before end_j is a **false split** (the user had not finished);
- the first detection at or after end_j ends the turn; its **delay** is time - end_j;
- any further detection is a false split too (one turn answered twice).
A turn with no detection at or after its end is **merged** when the next turn's window has a detection
(the gap was not recognised: the two turns became one), and **missed** otherwise.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Outcome = Literal["ended", "missed", "merged"]


@dataclass(frozen=True)
class TurnScore:
    turn: int
    outcome: Outcome
    delay: float | None
    """Seconds from the true end of speech to the detection that ended the turn (None unless ended)."""
    false_splits: int


@dataclass(frozen=True)
class Summary:
    turns: int
    ended: int
    p50: float | None
    p95: float | None
    max: float | None
    false_splits: int
    missed: int
    merged: int


def score_turns(
    spans: Sequence[tuple[float, float]], detections: Sequence[float], duration: float
) -> list[TurnScore]:
    """Score one recording: `spans` are the turns' true (start, end), in order; `detections` the times
    at which the system said a turn ended; `duration` the recording's length (later ones are ignored)."""
    starts = [start for start, _ in spans]
    bounds = [-math.inf, *starts[1:], duration]
    windows = [sorted(t for t in detections if low <= t < high) for low, high in itertools.pairwise(bounds)]
    scores = []
    for j, ((_, end), inside) in enumerate(zip(spans, windows, strict=True)):
        first = bisect.bisect_left(inside, end)
        if first < len(inside):
            delay: float | None = inside[first] - end
            outcome: Outcome = "ended"
            false_splits = len(inside) - 1
        else:
            delay, false_splits = None, len(inside)
            outcome = "merged" if j + 1 < len(windows) and windows[j + 1] else "missed"
        scores.append(TurnScore(turn=j, outcome=outcome, delay=delay, false_splits=false_splits))
    return scores


def reply_delays(
    spans: Sequence[tuple[float, float]], replies: Sequence[float], duration: float
) -> list[float | None]:
    """For each turn, seconds from its true end to the first reply text that arrived after it (before
    the next turn starts), or None: how soon the user sees an answer."""
    starts = [start for start, _ in spans]
    bounds = [*starts[1:], duration]
    delays: list[float | None] = []
    for (_, end), high in zip(spans, bounds, strict=True):
        after = [t - end for t in replies if end <= t < high]
        delays.append(min(after) if after else None)
    return delays


def summarize(scores: Sequence[TurnScore]) -> Summary:
    """Totals, and percentiles of the delay over the turns that were ended."""
    delays = np.array([s.delay for s in scores if s.delay is not None], dtype=np.float64)

    def percentile(q: float) -> float | None:
        return float(np.percentile(delays, q)) if len(delays) else None

    return Summary(
        turns=len(scores),
        ended=len(delays),
        p50=percentile(50),
        p95=percentile(95),
        max=percentile(100),
        false_splits=sum(s.false_splits for s in scores),
        missed=sum(s.outcome == "missed" for s in scores),
        merged=sum(s.outcome == "merged" for s in scores),
    )
