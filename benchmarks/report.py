"""What every benchmark hands back: a plain-text table for the terminal and a JSON file that says on
which machine, when, and with which settings the figures were measured."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import platform
import tempfile
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "processor": platform.machine(), "cpu_count": os.cpu_count()}


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def seconds(value: float | None) -> str | None:
    """A duration for a table cell (None stays empty)."""
    return None if value is None else f"{value:.3f}"


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Monospaced columns: the first (the names) left-aligned, the figures right-aligned, None as '-'."""
    cells = [list(header), *[["-" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        padded = [c.rjust(w) for c, w in zip(row, widths, strict=True)]
        return "  ".join([row[0].ljust(widths[0]), *padded[1:]])

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Written whole or not at all: a run that dies half-way leaves the previous result in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(payload, indent=1) + "\n")
    partial.replace(path)


Level = dict[str, Any]


def run_levels(
    counts: str, unit: str, run_level: Callable[[int, Path], Coroutine[Any, Any, Level]]
) -> list[Level]:
    """One level per count of a comma-separated list ("1,5,10"), one after the other, each in a fresh
    folder (its server's data) that is gone afterwards."""
    levels = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in (int(n) for n in counts.split(",")):
            print(f"{count} {unit} ...", flush=True)
            levels.append(asyncio.run(run_level(count, Path(tmp) / f"n{count}")))
    return levels


def write_levels(benchmark: str, path: Path, levels: list[Level]) -> None:
    write_json(path, {"benchmark": benchmark, "date": now(), "machine": machine(), "levels": levels})
    print(f"\nwritten to {path}")
