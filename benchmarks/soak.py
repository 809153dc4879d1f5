"""`python -m benchmarks soak`: many sessions for a long while against `serve --workers 2`; does it stay flat?

`--sessions` real aiortc callers (the reliability scenarios' `Caller`) talk to a fresh multi-worker server
(the load benchmark's, the tiny model) for `--minutes`: each speaks the Asterisk sentences turn after turn,
waits for the reply, pauses a few seconds and speaks again, and every few minutes (`--reconnect-minutes`,
jittered) hangs up and resumes its session on a new connection, so the connect and close path is soaked
too. Every `SAMPLE_EVERY_S` each server process (the proxy and each worker) is sampled from /proc: its
resident memory, open file descriptors and threads; and each worker's event loop tasks and live sessions
from `/metrics` (`va_asyncio_tasks`, counted at the scrape; the proxy has no such gauge of its own).

The first `--warmup-minutes` are left out (caches, pools and the allocator's arenas fill up); over the
rest each series is judged by the mean of its last third against the mean of its middle third and by its
least-squares slope: it is flat when neither its growth nor its fitted rise over the measured span passes
its tolerance (`TOLERANCES`: a share of its level, or an absolute floor where the level is small). The
turns are counted too: spoken, committed (`turn_ended`), stored (the REST API, per session at the end)
and lost (committed but not stored), with the connections that ended without the caller hanging up
(dropped) and the load generator's ICE connections whose consent expired. Written: results/soak.json and
results/soak.png (each series over time, per process; matplotlib: `pip install -e '.[bench]'`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import math
import os
import random
import re
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.load import CLOSE_S, CONNECT_S, our_server
from benchmarks.reliability.scenario import Caller, stored_turns
from benchmarks.report import RESULTS, format_table, machine, now, write_json
from benchmarks.server import ServerProcess, keep_webrtc_on_loopback, process_cpu_seconds
from voice_assistant.client import OfferRefused, VoiceClient

SAMPLE_EVERY_S = 5.0
PAUSE_S = (1.0, 4.0)
"""A caller's pause after a reply (or a turn that got none) before its next turn, drawn uniformly."""
RETRY_S = 2.0
"""A caller's wait before offering again after a failed connect (or the server's Retry-After)."""
STAGGER_S = 30.0
"""The callers' first connections are spread over this long (at most half the warm-up)."""
START_S = 600.0
"""How long the server may take to be ready: the machine may be busy with others' work."""
SERIES = ("rss_mb", "fds", "threads", "tasks")
PER_WORKER = ("tasks", "sessions", "lag_s")
"""Read from /metrics, for the workers only."""


@dataclass(frozen=True)
class Tolerance:
    """How much a series may grow and still be flat: `relative` of its level, at least `absolute`."""

    relative: float
    absolute: float

    def allowed(self, level: float) -> float:
        return max(self.relative * abs(level), self.absolute)


TOLERANCES = {
    "rss_mb": Tolerance(0.03, 15.0),
    "fds": Tolerance(0.05, 10.0),
    "threads": Tolerance(0.05, 4.0),
    "tasks": Tolerance(0.05, 25.0),
}
"""The absolute floors are about one session's worth (its sockets, its tasks) or the allocator's noise:
with reconnects the count of live connections at a sample moves by a few."""
MIN_POINTS = 6


def growth(
    times_s: Sequence[float], values: Sequence[float | None], *, warmup_s: float, tolerance: Tolerance
) -> dict[str, Any] | None:
    """One series judged after its warm-up: the mean of its last third of the time against its middle
    third, the least-squares slope per minute and the rise it fits over the span; flat when neither the
    growth nor the rise passes `tolerance` of the middle third's level (a series may shrink). None when
    too few samples are left (`MIN_POINTS`)."""
    points = [
        (t, float(v))
        for t, v in zip(times_s, values, strict=True)
        if t >= warmup_s and v is not None and math.isfinite(v)
    ]
    if len(points) < MIN_POINTS:
        return None
    t, v = np.array([p[0] for p in points]), np.array([p[1] for p in points])
    start, span = float(t[0]), float(t[-1] - t[0])
    middle = v[(t >= start + span / 3) & (t < start + 2 * span / 3)]
    last = v[t >= start + 2 * span / 3]
    if not len(middle) or not len(last):
        return None
    slope_per_s = float(np.polyfit(t, v, 1)[0]) if span > 0 else 0.0
    middle_mean, last_mean = float(middle.mean()), float(last.mean())
    allowed = tolerance.allowed(middle_mean)
    rise = slope_per_s * span
    return {
        "samples": len(points),
        "middle_mean": middle_mean,
        "last_mean": last_mean,
        "growth": last_mean - middle_mean,
        "growth_pct": 100 * (last_mean - middle_mean) / middle_mean if middle_mean else None,
        "slope_per_min": slope_per_s * 60,
        "rise": rise,
        "allowed": allowed,
        "flat": last_mean - middle_mean <= allowed and rise <= allowed,
    }


def judge(samples: Sequence[dict[str, Any]], *, warmup_s: float) -> dict[str, dict[str, Any]]:
    """Every process's every series (`SERIES`), judged by `growth`: {process: {series: verdict}}; a
    series with too few samples reads None (and is not flat)."""
    names = list(dict.fromkeys(name for sample in samples for name in sample["processes"]))
    verdicts: dict[str, dict[str, Any]] = {}
    for name in names:
        verdicts[name] = {}
        for series in SERIES:
            if series in PER_WORKER and name == "proxy":
                continue
            times = [s["t"] for s in samples if name in s["processes"]]
            values = [s["processes"][name].get(series) for s in samples if name in s["processes"]]
            verdicts[name][series] = growth(times, values, warmup_s=warmup_s, tolerance=TOLERANCES[series])
    return verdicts


def flat(verdicts: dict[str, dict[str, Any]]) -> bool:
    return all(v is not None and v["flat"] for series in verdicts.values() for v in series.values())


# -- sampling


def proc_figures(pid: int) -> dict[str, float] | None:
    """Resident memory (MB), open file descriptors and threads of a process (Linux /proc); None once it
    is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status if ":" in line)
    return {
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
        "fds": fds,
        "threads": int(fields["Threads"]),
    }


def worker_gauges(metrics: str) -> dict[str, dict[str, float]]:
    """Per worker label: its loop's tasks, live sessions and loop lag, of the proxy's /metrics."""
    wanted = {
        "va_asyncio_tasks": "tasks",
        "va_live_sessions": "sessions",
        "va_event_loop_lag_seconds": "lag_s",
    }
    found: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(metrics):
        if family.name in wanted:
            for sample in family.samples:
                found.setdefault(sample.labels.get("worker", "0"), {})[wanted[family.name]] = sample.value
    return found


async def sample(server: ServerProcess, http: httpx.AsyncClient, started: float) -> dict[str, Any]:
    """One moment: the proxy and each worker (their pids from the proxy's /readyz) from /proc, the
    workers' gauges from its /metrics; what does not answer in time is left out of this sample."""
    assert server.process is not None
    at = time.monotonic() - started
    pids = {"proxy": server.process.pid}
    gauges: dict[str, dict[str, float]] = {}
    try:
        ready = (await http.get("/readyz")).json()
        for index, worker in enumerate(ready.get("workers", [])):
            if worker.get("pid"):
                pids[f"worker {index}"] = int(worker["pid"])
        gauges = worker_gauges((await http.get("/metrics")).text)
    except (httpx.HTTPError, ValueError) as error:
        print(f"  {at:5.0f} s: sample incomplete: {error!r}", flush=True)
    processes: dict[str, dict[str, float]] = {}
    for name, pid in pids.items():
        figures = proc_figures(pid)
        if figures is not None:
            processes[name] = {"pid": pid, **figures, **gauges.get(name.removeprefix("worker "), {})}
    return {"t": round(at, 2), "load_average": os.getloadavg()[0], "processes": processes}


async def sample_until(
    server: ServerProcess, started: float, until: float, into: list[dict[str, Any]]
) -> None:
    """Every `SAMPLE_EVERY_S` from now to `until` (the loop's time): the callers' last turns, still
    finishing after it, are not sampled."""
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(base_url=server.url, timeout=5.0) as http:
        while loop.time() <= until:
            into.append(await sample(server, http, started))
            if len(into) % 12 == 1:
                line = ", ".join(
                    f"{name} {p['rss_mb']:.0f} MB {p['fds']:.0f} fds {p.get('tasks', float('nan')):.0f} tasks"
                    for name, p in into[-1]["processes"].items()
                )
                print(f"  {into[-1]['t']:5.0f} s: {line}", flush=True)
            await asyncio.sleep(SAMPLE_EVERY_S)


# -- the callers


@dataclass
class Session:
    """One caller's soak, beyond what `Caller` counts."""

    connections: int = 0
    refused: int = 0
    """Offers answered with a refusal (503 full or overloaded, 429), offered again later."""
    failed_connects: int = 0
    """Offers that got no answer or whose connection did not open in time."""
    dropped: int = 0
    """Connections that closed or failed without the caller hanging up (the server, or ICE, ended them)."""
    hanging_up: bool = False
    unanswered: int = 0
    """Turns with no `reply_done` within the scenario's `TURN_S`."""
    timeline: list[str] = field(default_factory=list)
    """What happened when (seconds into the soak): connections, their states, turns that went wrong."""
    started: float = 0.0

    def note(self, what: str) -> None:
        self.timeline.append(f"{time.monotonic() - self.started:.1f} {what}")


async def connect(caller: Caller, session: Session, until: float) -> bool:
    """Until the caller is connected (resuming its session) or the soak is over."""
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        try:
            async with asyncio.timeout(CONNECT_S):
                session.hanging_up = True  # Caller.connect hangs up the previous connection first
                try:
                    await caller.hang_up()
                finally:
                    session.hanging_up = False
                await caller.connect()
            session.connections += 1
            assert caller.client is not None
            watch(session, caller.client)
            return True
        except OfferRefused as refused:
            session.refused += 1
            session.note(f"refused {refused.status}")
            wait = float(refused.retry_after or RETRY_S)
        except (TimeoutError, httpx.HTTPError, OSError) as error:
            session.failed_connects += 1
            caller.errors.append(f"connect: {error!r}")
            wait = RETRY_S
        await asyncio.sleep(wait * random.uniform(1.0, 1.5))
    return False


def watch(session: Session, client: VoiceClient) -> None:
    """The connection's states from now on, in the session's timeline; one that ends without the caller
    hanging up counts as dropped."""
    label, ended = client.webrtc_id[:6], False
    session.note(f"{label} connected")

    @client.pc.on("connectionstatechange")
    def _state() -> None:
        nonlocal ended
        state = client.pc.connectionState
        session.note(f"{label} {state}")
        if state in ("closed", "failed") and not ended:
            ended = True
            session.dropped += not session.hanging_up


class ConsentExpiries(logging.Filter):
    """Counts this process's ICE connections whose consent expired (aioice says so at INFO: its checks
    went unanswered for half a minute), and lets none of aioice's records through."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        self.count += "Consent to send expired" in str(record.msg)
        return False

    @contextlib.contextmanager
    def installed(self) -> Iterator[ConsentExpiries]:
        logger = logging.getLogger("aioice.ice")
        level = logger.level
        logger.setLevel(logging.INFO)
        logger.addFilter(self)
        try:
            yield self
        finally:
            logger.removeFilter(self)
            logger.setLevel(level)


def dropped(caller: Caller) -> bool:
    return caller.client is None or caller.client.pc.connectionState in ("closed", "failed")


async def converse(
    caller: Caller, session: Session, *, first: int, until: float, reconnect_s: float, rng: random.Random
) -> None:
    """Turn after turn until `until`, resuming on a new connection every `reconnect_s` or so (0: never)."""
    loop = asyncio.get_running_loop()
    if not await connect(caller, session, until):
        return
    hang_up_at = loop.time() + rng.uniform(0.3, 1.0) * reconnect_s
    turn = first
    while loop.time() < until:
        if dropped(caller):
            if not await connect(caller, session, until):
                return
        try:
            answered = await caller.turn(turn)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            continue  # the speech itself was cancelled: its connection closed (counted above)
        turn += 1
        if not answered:
            session.unanswered += 1
            state = caller.client.pc.connectionState if caller.client else "none"
            session.note(f"turn {turn - 1} unanswered ({state})")
        await asyncio.sleep(rng.uniform(*PAUSE_S))
        if reconnect_s and loop.time() >= hang_up_at and loop.time() < until:
            if not await connect(caller, session, until):
                return
            hang_up_at = loop.time() + rng.uniform(0.5, 1.5) * reconnect_s


async def soak(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    server = our_server(data_dir, args.sessions, args.workers)
    await asyncio.to_thread(functools.partial(server.start, timeout=START_S))
    callers = [Caller(server.url, timeout=CONNECT_S) for _ in range(args.sessions)]
    samples: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    started, until = time.monotonic(), loop.time() + args.minutes * 60
    sessions = [Session(started=started) for _ in callers]
    stagger = min(STAGGER_S, args.warmup_minutes * 30)
    rng = random.Random(args.sessions)
    server_cpu, own_cpu = server.cpu_seconds(), process_cpu_seconds(os.getpid())

    async def run(index: int) -> None:
        await asyncio.sleep(stagger * index / max(len(callers), 1))
        await converse(
            callers[index],
            sessions[index],
            first=index,
            until=until,
            reconnect_s=args.reconnect_minutes * 60,
            rng=random.Random(rng.random()),
        )

    sampler = asyncio.create_task(sample_until(server, started, until, samples))
    try:
        with ConsentExpiries().installed() as expiries:
            await asyncio.gather(*(run(i) for i in range(len(callers))))
        elapsed = time.monotonic() - started
        server_cores = (server.cpu_seconds() - server_cpu) / elapsed
        client_cores = (process_cpu_seconds(os.getpid()) - own_cpu) / elapsed
        await sampler
        try:
            async with asyncio.timeout(CLOSE_S):
                for session in sessions:
                    session.hanging_up = True
                await asyncio.gather(*(caller.hang_up() for caller in callers), return_exceptions=True)
        except TimeoutError:
            print(f"warning: callers not hung up after {CLOSE_S:.0f} s", flush=True)
        stored = [
            len(await stored_turns(server.url, caller.session_id)) if caller.session_id else 0
            for caller in callers
        ]
    finally:
        sampler.cancel()
        await asyncio.to_thread(server.stop)
    per_session = [
        {
            "session_id": caller.session_id,
            "spoken": caller.spoken,
            "committed": caller.committed,
            "stored": count,
            "lost": max(caller.committed - count, 0),
            **{k: v for k, v in asdict(session).items() if k != "started"},
            "errors": caller.errors,
        }
        for caller, session, count in zip(callers, sessions, stored, strict=True)
    ]
    verdicts = judge(samples, warmup_s=args.warmup_minutes * 60)
    totals = {
        key: sum(s[key] for s in per_session)
        for key in ("spoken", "committed", "stored", "lost", "unanswered", "connections", "refused")
    }
    totals |= {
        "failed_connects": sum(s["failed_connects"] for s in per_session),
        "dropped": sum(s["dropped"] for s in per_session),
        "client_errors": sum(len(s["errors"]) for s in per_session),
        "reconnects": totals["connections"] - sum(1 for s in per_session if s["connections"]),
        "client_consent_expired": expiries.count,
    }
    kinds = Counter(re.sub(r"\d+", "N", error) for s in per_session for error in s["errors"])
    return {
        "benchmark": "soak",
        "date": now(),
        "machine": machine(),
        "settings": {
            "sessions": args.sessions,
            "minutes": args.minutes,
            "workers": args.workers,
            "warmup_minutes": args.warmup_minutes,
            "reconnect_minutes": args.reconnect_minutes,
            "sample_every_s": SAMPLE_EVERY_S,
            "pause_s": PAUSE_S,
            "model": "tiny",
        },
        "tolerances": {name: asdict(tolerance) for name, tolerance in TOLERANCES.items()},
        "flat": flat(verdicts),
        "growth": verdicts,
        "turns": totals,
        "client_errors": dict(kinds.most_common()),
        "server_cores": server_cores,
        "load_generator_cores": client_cores,
        "load_average_mean": float(np.mean([s["load_average"] for s in samples])) if samples else None,
        "sessions": per_session,
        "samples": samples,
    }


# -- the report


UNITS = {"rss_mb": "MB", "fds": "fds", "threads": "threads", "tasks": "tasks"}


def growth_rows(verdicts: dict[str, dict[str, Any]]) -> list[list[object]]:
    rows: list[list[object]] = []
    for name, series in verdicts.items():
        for key, v in series.items():
            if v is None:
                rows.append([name, UNITS[key], "too few samples", None, None, None, None, None, "NO"])
                continue
            rows.append(
                [
                    name,
                    UNITS[key],
                    f"{v['middle_mean']:.1f}",
                    f"{v['last_mean']:.1f}",
                    f"{v['growth']:+.1f}",
                    None if v["growth_pct"] is None else f"{v['growth_pct']:+.1f}%",
                    f"{v['slope_per_min']:+.2f}",
                    f"{v['allowed']:.1f}",
                    "yes" if v["flat"] else "NO",
                ]
            )
    return rows


GROWTH_HEADER = (
    "process",
    "series",
    "middle mean",
    "last mean",
    "growth",
    "growth %",
    "slope/min",
    "allowed",
    "flat",
)
TURNS_HEADER = (
    "sessions",
    "spoken",
    "committed",
    "stored",
    "lost",
    "unanswered",
    "reconnects",
    "refused",
    "failed connects",
    "dropped",
    "client errors",
    "ICE consent expired",
)


def turns_row(result: dict[str, Any]) -> list[object]:
    t = result["turns"]
    return [
        result["settings"]["sessions"],
        *(
            t[key]
            for key in (
                "spoken",
                "committed",
                "stored",
                "lost",
                "unanswered",
                "reconnects",
                "refused",
                "failed_connects",
                "dropped",
                "client_errors",
                "client_consent_expired",
            )
        ),
    ]


def plot(result: dict[str, Any], path: Path) -> None:
    """Each series over time, a line per process, the warm-up shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [*SERIES, "sessions", "lag_s"]
    titles = {
        **{k: f"{UNITS[k]}" for k in SERIES},
        "rss_mb": "RSS (MB)",
        "sessions": "live sessions",
        "lag_s": "loop lag (s)",
    }
    samples = result["samples"]
    names = list(dict.fromkeys(name for s in samples for name in s["processes"]))
    figure, axes = plt.subplots(len(panels), 1, figsize=(10, 2.3 * len(panels)), sharex=True)
    warmup_min = result["settings"]["warmup_minutes"]
    for axis, panel in zip(axes, panels, strict=True):
        for colour, name in enumerate(names):
            points = [
                (s["t"] / 60, s["processes"][name][panel])
                for s in samples
                if panel in s["processes"].get(name, {})
            ]
            if points:
                axis.plot(*zip(*points, strict=True), label=name, color=f"C{colour}", linewidth=1.2)
        axis.axvspan(0, warmup_min, color="0.9", label="warm-up (left out)")
        axis.set_ylabel(titles[panel])
        axis.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize="small", ncol=len(names) + 1)
    axes[-1].set_xlabel("minutes")
    settings = result["settings"]
    figure.suptitle(
        f"soak: {settings['sessions']} sessions, {settings['workers']} workers, {settings['minutes']:g} min"
        f" ({'flat' if result['flat'] else 'NOT flat'})"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks soak", description=__doc__)
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--warmup-minutes", type=float, default=2.0, help="left out of the judgement")
    parser.add_argument(
        "--reconnect-minutes",
        type=float,
        default=3.0,
        help="each caller resumes on a new connection (0: never)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the server's database and log, kept (default: a temporary one)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    parser.add_argument("--plot", type=Path, default=None, help="default: the --out path with .png")
    args = parser.parse_args(argv)
    keep_webrtc_on_loopback()
    print(f"soak: {args.sessions} sessions for {args.minutes:g} min on {args.workers} workers", flush=True)
    with tempfile.TemporaryDirectory(prefix="va-soak-") as tmp:
        data_dir = args.data_dir or Path(tmp)
        print(f"server data and log in {data_dir}", flush=True)
        result = asyncio.run(soak(args, data_dir))
    print(format_table(GROWTH_HEADER, growth_rows(result["growth"])))
    print()
    print(format_table(TURNS_HEADER, [turns_row(result)]))
    print(
        f"\nserver {result['server_cores']:.2f} cores,"
        f" load generator {result['load_generator_cores']:.2f} cores,"
        f" machine load average {result['load_average_mean'] or 0:.2f}"
    )
    print(
        "verdict:", "flat" if result["flat"] else "NOT flat", "(tolerances: TOLERANCES in benchmarks/soak.py)"
    )
    write_json(args.out, result)
    picture = args.plot or args.out.with_suffix(".png")
    plot(result, picture)
    print(f"written to {args.out} and {picture}")
