"""`python -m benchmarks load`: N concurrent WebRTC sessions speaking at once, on this machine.

For each N (10, 25, 50 by default) and each system (ours with each worker count of `--workers`, 1 and 2
by default, then stock fastrtc's ReplyOnPause, the endpointing benchmark's peer, unless `--no-peer`) a
fresh server (ours: the tiny model) takes N real aiortc clients that speak the same two turns at the same
moment, in real time; the offers it refuses with 503 (admission control: it is full or overloaded) are
counted, and the rest measured. Reported: endpointing under load (true end of speech -> `turn_ended` at
the client), missed turns, the connections the server dropped mid-level, the server's CPU and memory per
session, the load generator's own CPU (it shares the cores), and audio lost on the way (sent vs received;
ours only: the peer does not count what it receives).
Every wait is bounded: a stuck step fails its level, with what was stuck, and the next level runs.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.report import RESULTS, format_table, run_levels, seconds, write_levels
from benchmarks.server import ServerProcess, keep_webrtc_on_loopback, process_cpu_seconds
from benchmarks.speech import RATE, Utterance
from voice_assistant.client import OfferRefused, VoiceClient

SCRIPT = [
    Utterance(("Hello there,", "how are you today?"), inner_pause=0.3, gap_after=2.5),
    Utterance(("Please remind me", "to call my sister at five."), inner_pause=0.3, gap_after=2.5),
]
WEBRTC_RATE = 48_000


class LevelFailed(Exception):
    """A step of a level did not finish in time (a stuck client or server): the level is reported as
    failed, with what was stuck, and the next level runs."""


def received_seconds(metrics: str) -> float:
    """Audio the server has received, summed over its workers (one sample each, labelled)."""
    name = "va_audio_received_seconds_total"
    samples = [line for line in metrics.splitlines() if line.startswith((name + " ", name + "{"))]
    return sum(float(line.rsplit(" ", 1)[1]) for line in samples)


async def audio_received(http: httpx.AsyncClient) -> float:
    """`received_seconds` now; a server that does not answer (httpx's 5 s) fails the level."""
    try:
        response = await http.get("/metrics")
        response.raise_for_status()
    except httpx.HTTPError as error:
        raise LevelFailed(f"GET /metrics: {error!r}") from error
    return received_seconds(response.text)


CONNECT_S = 90.0
"""How long one client's connect (offer, answer, data channel) may take under load."""
SLACK_S = 30.0
"""How late, after the script's own length, the speech may still be going out."""
CLOSE_S = 15.0


def states(clients: list[VoiceClient]) -> str:
    """The clients' connection states, counted: what a stuck step's message says."""
    counts = Counter(client.pc.connectionState for client in clients)
    return ", ".join(f"{count} {state}" for state, count in counts.most_common())


async def connect_all(clients: list[VoiceClient]) -> list[VoiceClient]:
    """The clients the server admitted, five connecting at a time; the others it refused with 503
    (admission control). Any other refusal, or a client not connected within `CONNECT_S`, fails the
    level."""
    limit = asyncio.Semaphore(5)

    async def connect(index: int, client: VoiceClient) -> bool:
        async with limit:
            try:
                async with asyncio.timeout(CONNECT_S):
                    await client.connect()
            except OfferRefused as refused:
                if refused.status == 503:
                    return False
                raise LevelFailed(f"client {index}: offer refused with {refused}") from refused
            except httpx.HTTPError as error:
                raise LevelFailed(f"client {index}: no answer to its offer: {error!r}") from error
            except TimeoutError as stuck:  # the client's own timeout, or ours
                raise LevelFailed(
                    f"client {index}: not connected after {CONNECT_S:.0f} s at most ({states([client])})"
                ) from stuck
            return True

    try:
        async with asyncio.TaskGroup() as group:
            admitted = [group.create_task(connect(i, client)) for i, client in enumerate(clients)]
    except* LevelFailed as failed:
        raise failed.exceptions[0] from None
    return [client for client, ok in zip(clients, admitted, strict=True) if ok.result()]


def speak(client: VoiceClient, offset: float) -> list[asyncio.Future[float]]:
    """Queue both turns, after `offset` seconds; each turn's true end of speech, to come."""
    client.microphone.play(np.zeros(int(offset * RATE), np.float32))
    ends = []
    for utterance in SCRIPT:
        ends.append(client.microphone.play(utterance.audio()))
        client.microphone.play(np.zeros(int(utterance.gap_after * RATE), np.float32))
    return ends


async def spoken(clients: list[VoiceClient], ends: list[list[asyncio.Future[float]]]) -> list[list[float]]:
    """Each client's true ends of speech once sent, or [] for a client whose connection closed first
    (dropped: its turns are missed). Speech not out within `SLACK_S` of the longest script's end fails
    the level."""
    longest = max((c.microphone.queued_seconds for c in clients), default=0.0)
    pending = [turn for turns in ends for turn in turns]
    if pending:
        _, late = await asyncio.wait(pending, timeout=longest + SLACK_S)
        if late:
            stuck = [c for c, turns in zip(clients, ends, strict=True) if not all(t.done() for t in turns)]
            raise LevelFailed(
                f"{len(stuck)} of {len(clients)} clients' speech not sent {longest + SLACK_S:.0f} s after"
                f" it was queued ({states(stuck)})"
            )
    return [[] if any(t.cancelled() for t in turns) else [t.result() for t in turns] for turns in ends]


async def close_all(clients: list[VoiceClient]) -> None:
    """Hang up every client, admitted or not, however the level went (a warning if that gets stuck)."""
    try:
        async with asyncio.timeout(CLOSE_S):
            await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)
    except TimeoutError:
        print(f"warning: clients not closed after {CLOSE_S:.0f} s ({states(clients)})", flush=True)


def delays_of(client: VoiceClient, ends: list[float]) -> tuple[list[float], int]:
    """Delay of the first turn_ended after each true end (before the next turn starts); misses."""
    arrivals = [r.at for r in client.events("turn_ended")]
    delays, missed = [], 0
    for i, end in enumerate(ends):
        limit = ends[i + 1] - len(SCRIPT[i + 1].audio()) / RATE if i + 1 < len(ends) else float("inf")
        found = [at - end for at in arrivals if end <= at < limit]
        if found:
            delays.append(found[0])
        else:
            missed += 1
    return delays, missed


def our_server(data_dir: Path, sessions: int, workers: int) -> ServerProcess:
    return ServerProcess(
        data_dir,
        env={
            "VA_WORKERS": str(workers),
            "VA_MAX_NEW_TOKENS": "8",
            "VA_MAX_SESSIONS": str(sessions + 8),
            # Every client connects from this one address.
            "VA_OFFERS_PER_MINUTE_PER_ADDRESS": str(sessions * 2),
            "VA_MAX_SESSIONS_PER_ADDRESS": str(sessions + 8),
        },
    )


def fastrtc_server(data_dir: Path, sessions: int) -> ServerProcess:
    """The stock fastrtc ReplyOnPause server of the endpointing benchmark, allowed every session."""
    command = [sys.executable, "-m", "benchmarks.peer_fastrtc", "--concurrency-limit", str(sessions + 8)]
    return ServerProcess(data_dir, command=command)


async def run_level(sessions: int, data_dir: Path, *, system: str) -> dict[str, Any]:
    """`system`: "ours-N" (our server with N workers) or "fastrtc" (the stock peer, one process)."""
    ours = system.startswith("ours-")
    server = our_server(data_dir, sessions, int(system[5:])) if ours else fastrtc_server(data_dir, sessions)
    server.start()
    clients = [VoiceClient(server.url, timeout=60) for _ in range(sessions)]
    try:
        return await measure(server, clients, system=system, counts_audio=ours)
    except LevelFailed as failed:
        print(f"failed: {failed}", flush=True)
        return {"sessions": sessions, "system": system, "failed": str(failed)}
    finally:
        await close_all(clients)
        server.stop()


async def measure(
    server: ServerProcess, clients: list[VoiceClient], *, system: str, counts_audio: bool
) -> dict[str, Any]:
    """One level on its server: connect every client, speak the script on the admitted ones, measure.
    Audio lost is measured where the server counts what it receives (`counts_audio`: ours)."""
    await asyncio.sleep(1.0)
    rss_before = server.rss_mb()
    admitted = await connect_all(clients)
    refused = len(clients) - len(admitted)
    await asyncio.sleep(2.0)
    rss_connected = server.rss_mb()
    rng = random.Random(len(clients))
    server_cpu, own_cpu, started = (
        server.cpu_seconds(),
        process_cpu_seconds(os.getpid()),
        time.monotonic(),
    )
    sent_before = sum(c.microphone.sent_seconds for c in admitted)
    async with httpx.AsyncClient(base_url=server.url) as http:  # its own timeouts: 5 s
        received_before = await audio_received(http) if counts_audio else 0.0
        ends = await spoken(admitted, [speak(c, rng.uniform(0.0, 0.3)) for c in admitted])
        await asyncio.sleep(1.0)
        elapsed = time.monotonic() - started
        server_cores = (server.cpu_seconds() - server_cpu) / elapsed
        client_cores = (process_cpu_seconds(os.getpid()) - own_cpu) / elapsed
        received = await audio_received(http) - received_before if counts_audio else None
    sent = sum(c.microphone.sent_seconds for c in admitted) - sent_before
    delays: list[float] = []
    missed = 0
    for client, client_ends in zip(admitted, ends, strict=True):
        found, lost = delays_of(client, client_ends) if client_ends else ([], len(SCRIPT))
        delays += found
        missed += lost
    count = len(admitted)
    return {
        "sessions": len(clients),
        "system": system,
        "refused": refused,
        "dropped": sum(not client_ends for client_ends in ends),
        "turns": count * len(SCRIPT),
        "endpointing_p50_s": float(np.percentile(delays, 50)) if delays else None,
        "endpointing_p95_s": float(np.percentile(delays, 95)) if delays else None,
        "endpointing_max_s": max(delays) if delays else None,
        "missed_turns": missed,
        "server_cores": server_cores,
        "server_cpu_per_session": server_cores / count if count else None,
        "load_generator_cores": client_cores,
        "memory_per_session_mb": (rss_connected - rss_before) / count if count else None,
        "audio_lost_pct": max(0.0, 100 * (1 - received / sent)) if sent and received is not None else None,
    }


def row(level: dict[str, Any]) -> list[str | None]:
    """A level's line of the table: a failed one has only its counts (its message comes below)."""

    def figure(key: str, spec: str) -> str | None:
        return None if level.get(key) is None else format(level[key], spec)

    if "failed" in level:
        return [str(level["sessions"]), level["system"], "failed", *[None] * 10]
    return [
        str(level["sessions"]),
        level["system"],
        str(level["refused"]),
        str(level["dropped"]),
        seconds(level["endpointing_p50_s"]),
        seconds(level["endpointing_p95_s"]),
        seconds(level["endpointing_max_s"]),
        f"{level['missed_turns']}/{level['turns']}",
        figure("server_cores", ".2f"),
        figure("server_cpu_per_session", ".1%"),
        figure("memory_per_session_mb", ".1f"),
        figure("load_generator_cores", ".2f"),
        None if level["audio_lost_pct"] is None else f"{level['audio_lost_pct']:.1f}%",
    ]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks load", description=__doc__)
    parser.add_argument("--sessions", default="10,25,50", help="comma-separated session counts")
    parser.add_argument(
        "--workers", default="1,2", help="comma-separated worker counts of ours: each level runs on each"
    )
    parser.add_argument(
        "--peer", action=argparse.BooleanOptionalAction, default=True, help="the same levels on stock fastrtc"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "load.json")
    args = parser.parse_args(argv)
    keep_webrtc_on_loopback()

    systems = [f"ours-{int(n)}" for n in args.workers.split(",")] + (["fastrtc"] if args.peer else [])
    levels = []
    for system in systems:
        print(f"-- {system}", flush=True)
        levels += run_levels(args.sessions, "sessions", functools.partial(run_level, system=system))

    rows = [row(level) for level in levels]
    header = [
        "sessions",
        "server",
        "refused",
        "dropped",
        "p50 s",
        "p95 s",
        "max s",
        "missed",
        "server cores",
        "cpu/session",
        "MB/session",
        "client cores",
        "audio lost",
    ]
    print(format_table(header, rows))
    for level in levels:
        if "failed" in level:
            print(f"{level['sessions']} sessions on {level['system']} failed: {level['failed']}")
    write_levels("load", args.out, levels)
