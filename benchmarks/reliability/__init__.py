"""`python -m benchmarks reliability`: faults injected into real servers mid-conversation, and what survived.

Each scenario (a module here) starts its own real server processes on SQLite or PostgreSQL, holds a real
WebRTC conversation with real human speech, injects one fault and counts the turns spoken, committed,
stored and lost, the errors the client saw and the time to recover. `--short` is CI's form (shorter
outages, the same checks); the full form writes results/reliability.json, which the README shows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import traceback
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from benchmarks.reliability.database import database_outage
from benchmarks.reliability.disk_full import disk_full
from benchmarks.reliability.model_faults import MODEL_SCENARIOS
from benchmarks.reliability.network import jitter, loss_5, loss_15, outage_3s, outage_3s_turn
from benchmarks.reliability.scenario import Context, Outcome
from benchmarks.reliability.server_kill import server_kill
from benchmarks.report import RESULTS, format_table, machine, now, write_json
from benchmarks.server import keep_webrtc_on_loopback

Scenario = Callable[[Context], Awaitable[Outcome]]
SCENARIOS: dict[str, Scenario] = {
    "server-kill": server_kill,
    "database-outage": database_outage,
    **MODEL_SCENARIOS,
    "disk-full": disk_full,
    "loss-5": loss_5,
    "loss-15": loss_15,
    "outage-3s": outage_3s,
    "outage-3s-turn": outage_3s_turn,
    "jitter": jitter,
}


def row(outcome: Outcome) -> list[object]:
    if outcome.skipped is not None:
        return [outcome.scenario, outcome.injected, *["-"] * 6, f"skipped: {outcome.skipped}"]
    errors = len(outcome.client_errors)
    return [
        outcome.scenario,
        outcome.injected,
        outcome.spoken,
        outcome.committed,
        outcome.stored,
        outcome.lost,
        f"{errors}: {outcome.client_errors[0][:60]}" if errors else "0",
        "-" if outcome.recovery_s is None else f"{outcome.recovery_s:.1f} s",
        "yes" if outcome.passed else "NO: " + ", ".join(k for k, v in outcome.checks.items() if not v),
    ]


HEADER = ("scenario", "injected", "spoken", "committed", "stored", "lost", "client errors", "recovery", "ok")


async def run(names: Sequence[str], context: Context) -> list[Outcome]:
    keep_webrtc_on_loopback()
    outcomes = []
    for name in names:
        try:
            outcome = await SCENARIOS[name](context)
        except Exception as exc:  # the scenario itself broke: a failed row, and the others still run
            traceback.print_exc()
            outcome = Outcome(name, "-", checks={"scenario ran": False}, notes=f"{type(exc).__name__}: {exc}")
        print(format_table(HEADER, [row(outcome)]), flush=True)
        outcomes.append(outcome)
    return outcomes


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks reliability", description=__doc__)
    parser.add_argument("--short", action="store_true", help="CI's form: shorter faults, the same checks")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated, of: %(default)s")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("VA_TEST_POSTGRES_URL"),
        help="a PostgreSQL the scenarios may stop and start (default: $VA_TEST_POSTGRES_URL)",
    )
    parser.add_argument("--out", type=Path, default=None, help="default: results/reliability[-short].json")
    parser.add_argument(
        "--keep", action="store_true", help="keep the servers' folders and logs, and say where"
    )
    args = parser.parse_args(argv)
    names = [name for name in args.scenarios.split(",") if name]
    if unknown := set(names) - set(SCENARIOS):
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    root = Path(tempfile.mkdtemp(prefix="va-reliability-"))
    root.chmod(0o755)  # a scenario's PostgreSQL runs as the postgres user, and must reach its folder
    try:
        outcomes = asyncio.run(run(names, Context(root, args.postgres_url, args.short)))
    finally:
        if args.keep:
            print(f"the servers' folders and logs: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(format_table(HEADER, [row(outcome) for outcome in outcomes]))
    out = args.out or RESULTS / ("reliability-short.json" if args.short else "reliability.json")
    write_json(
        out,
        {
            "benchmark": "reliability",
            "when": now(),
            "machine": machine(),
            "short": args.short,
            "scenarios": [outcome.to_json() for outcome in outcomes],
        },
    )
    print(f"wrote {out}")
    if not all(outcome.passed for outcome in outcomes):
        raise SystemExit("some scenarios lost turns or failed a check")
