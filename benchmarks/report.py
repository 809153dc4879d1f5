"""What every benchmark hands back: a plain-text table for the terminal and a JSON file that says on
which machine, when, and with which settings the figures were measured."""

from __future__ import annotations

import datetime
import json
import os
import platform
from collections.abc import Sequence
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
