"""The latency / false cut-off trade-off of each end-of-turn strategy, the way eot-bench reports it.

Every strategy has knobs that trade speed for safety. Each is swept over the same recordings, in
process (benchmarks/inprocess.py: the same Silero and Smart Turn, no transport), and for a budget of
false cut-offs (5 % and 10 % of the turns) the table gives the lowest delay a setting reaches within
it: a strategy that is fast only because it cuts people off shows it here. The delays are from the
true end of speech to the decision, on the audio's clock (inference counted as instant on all sides;
the server benchmark, `python -m benchmarks endpointing`, measures what a client sees).

- ours: the Smart Turn policy (turn/policy.py), over the silences that end a turn called over and a
  doubted one, and the probability that calls it over;
- the silence rule (ours with `VA_END_OF_TURN=silence`; LiveKit's open default is this rule at 1.05 s),
  over the silence;
- Pipecat's default stop strategy (Silero + Smart Turn v3 with its 3 s fallback), over its VAD stop_secs.

    python -m benchmarks tradeoff [--set human|synthetic] [--split tune|held-out|all] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.dataset import Recording, read_audio
from benchmarks.endpointing import CACHE, SETS
from benchmarks.inprocess import Detect, Ours, PipecatDefault, smart_turn
from benchmarks.report import RESULTS, format_table, machine, now, seconds, write_json
from benchmarks.scoring import Summary, score_turns, summarize
from voice_assistant.config import TurnSettings

BUDGETS = (0.05, 0.10)
QUICK_MS = (160, 250, 300, 350, 400, 500)
DOUBT_MS = (500, 600, 700, 800, 900, 1200)
SURE = (0.5, 0.8, 0.9, 0.95, 0.97)
SILENCE_MS = (200, 300, 400, 500, 600, 650, 700, 800, 900, 1050, 1200)
STOP_SECS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)


@dataclass(frozen=True)
class Point:
    system: str
    setting: str
    summary: Summary

    @property
    def cut_off_rate(self) -> float:
        return self.summary.false_splits / max(self.summary.turns, 1)


def sweep(
    system: str, settings: dict[str, Detect], folder: Path, recordings: Sequence[Recording]
) -> list[Point]:
    points = []
    audio = {r.name: read_audio(folder, r) for r in recordings}
    for label, detect in settings.items():
        scores = []
        for recording in recordings:
            spans = [(turn.start, turn.end) for turn in recording.turns]
            scores += score_turns(spans, detect(audio[recording.name]), recording.duration)
        points.append(Point(system, label, summarize(scores)))
        print(f"  {system} {label}: {points[-1].summary}")
    return points


def systems(default: TurnSettings) -> dict[str, dict[str, Detect]]:
    ours = Ours(smart_turn())
    pipecat = PipecatDefault()

    def ours_with(**changes: Any) -> Detect:
        settings = default.model_copy(update=changes)
        return lambda audio: ours.detections(audio, settings)

    return {
        "ours (Smart Turn policy)": {
            f"over {q} ms, doubt {d} ms, sure {p:g}": ours_with(
                end_of_turn_quick_ms=q, end_of_turn_doubt_ms=d, end_of_turn_sure=p, end_of_turn_unsure=p
            )
            for q, d, p in itertools.product(QUICK_MS, DOUBT_MS, SURE)
        },
        "silence rule": {
            f"{ms} ms": ours_with(end_of_turn="silence", min_silence_ms=ms) for ms in SILENCE_MS
        },
        "Pipecat default": {f"stop_secs {s:g}": pipecat.with_stop_secs(s) for s in STOP_SECS},
    }


def best_within(points: Sequence[Point], budget: float) -> Point | None:
    """The setting with the lowest p50 delay whose false cut-offs stay within `budget` and that misses
    nothing."""
    fits = [
        p for p in points if p.cut_off_rate <= budget and p.summary.p50 is not None and not p.summary.missed
    ]
    return min(fits, key=lambda p: p.summary.p50 or 0.0) if fits else None


def budget_rows(points: Sequence[Point]) -> list[list[object]]:
    rows = []
    for system in dict.fromkeys(p.system for p in points):
        mine = [p for p in points if p.system == system]
        for budget in BUDGETS:
            best = best_within(mine, budget)
            if best is None:
                rows.append([system, f"{budget:.0%}", "-", "-", "-", "-"])
                continue
            s = best.summary
            rows.append(
                [
                    system,
                    f"{budget:.0%}",
                    best.setting,
                    seconds(s.p50),
                    seconds(s.p95),
                    f"{best.cut_off_rate:.1%}",
                ]
            )
    return rows


def budget_json(points: Sequence[Point]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    for budget in BUDGETS:
        result[f"{budget:.0%}"] = {}
        for system in dict.fromkeys(p.system for p in points):
            best = best_within([p for p in points if p.system == system], budget)
            result[f"{budget:.0%}"][system] = (
                None if best is None else {"setting": best.setting, **asdict(best.summary)}
            )
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks tradeoff", description=__doc__)
    parser.add_argument("--set", choices=("human", "synthetic"), default="human")
    parser.add_argument("--split", choices=("tune", "held-out", "all"), default="all")
    parser.add_argument("--quick", action="store_true", help="a few recordings")
    parser.add_argument("--output", type=Path, help="default: benchmarks/results/tradeoff-SET.json")
    args = parser.parse_args(argv)
    output = args.output or RESULTS / f"tradeoff-{args.set}.json"
    began = time.monotonic()
    folder, recordings = SETS[args.set](CACHE, quick=args.quick)
    if args.split != "all":
        recordings = [r for r in recordings if r.split == args.split]
    turns = sum(len(r.turns) for r in recordings)
    print(f"tradeoff: {len(recordings)} recordings, {turns} turns ({args.set}, {args.split}); sweeping")
    points = [
        point
        for system, settings in systems(TurnSettings()).items()
        for point in sweep(system, settings, folder, recordings)
    ]
    print(f"\nthe lowest delay within a false cut-off budget ({turns} turns, nothing missed)\n")
    header = ("system", "budget", "setting", "p50 s", "p95 s", "cut-offs")
    print(format_table(header, budget_rows(points)))
    elapsed = time.monotonic() - began
    print(f"\n{elapsed:.0f} s in all; written {output}")
    head = {"benchmark": "tradeoff", "date": now(), "machine": machine(), "quick": args.quick}
    write_json(
        output,
        {
            **head,
            "set": args.set,
            "split": args.split,
            "wall_seconds": round(elapsed, 1),
            "budgets": budget_json(points),
            "points": [{"system": p.system, "setting": p.setting, **asdict(p.summary)} for p in points],
        },
    )
