"""`python -m benchmarks load`: N concurrent WebRTC sessions speaking at once, on this machine.

For each N (10, 25, 50 by default) and each worker count (`serve --workers`: 1 and 2 by default) a fresh
server (tiny model) takes N real aiortc clients that speak the same two turns at the same moment, in real
time; the offers it refuses with 503 (admission control: it is full or overloaded) are counted, and the
rest measured. Reported: endpointing under load (true end of speech -> `turn_ended` at the client),
missed turns, the server's CPU and memory per session, the load generator's own CPU (it shares the
cores), and audio lost on the way (sent vs received).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import random
import time
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


def received_seconds(metrics: str) -> float:
    """Audio the server has received, summed over its workers (one sample each, labelled)."""
    name = "va_audio_received_seconds_total"
    samples = [line for line in metrics.splitlines() if line.startswith((name + " ", name + "{"))]
    return sum(float(line.rsplit(" ", 1)[1]) for line in samples)


async def connect_all(url: str, count: int) -> tuple[list[VoiceClient], int]:
    """The clients the server admitted, and how many it refused with 503 (admission control)."""
    clients = [VoiceClient(url, timeout=60) for _ in range(count)]
    limit = asyncio.Semaphore(5)

    async def connect(client: VoiceClient) -> bool:
        async with limit:
            try:
                await client.connect()
            except OfferRefused as refused:
                if refused.status != 503:
                    raise
                await client.close()
                return False
            return True

    admitted = await asyncio.gather(*(connect(client) for client in clients))
    return [client for client, ok in zip(clients, admitted, strict=True) if ok], admitted.count(False)


async def speak(client: VoiceClient, offset: float) -> list[float]:
    """Both turns, after `offset` seconds; returns each turn's true end of speech."""
    client.microphone.play(np.zeros(int(offset * RATE), np.float32))
    ends = []
    for utterance in SCRIPT:
        ends.append(client.microphone.play(utterance.audio()))
        client.microphone.play(np.zeros(int(utterance.gap_after * RATE), np.float32))
    return list(await asyncio.gather(*ends))


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


async def run_level(sessions: int, data_dir: Path, *, workers: int) -> dict[str, Any]:
    server = ServerProcess(
        data_dir,
        env={
            "VA_WORKERS": str(workers),
            "VA_MAX_NEW_TOKENS": "8",
            "VA_MAX_SESSIONS": str(sessions + 8),
            # Every client connects from this one address.
            "VA_OFFERS_PER_MINUTE_PER_ADDRESS": str(sessions * 2),
        },
    )
    server.start()
    try:
        await asyncio.sleep(1.0)
        rss_before = server.rss_mb()
        clients, refused = await connect_all(server.url, sessions)
        await asyncio.sleep(2.0)
        rss_connected = server.rss_mb()
        rng = random.Random(sessions)
        server_cpu, own_cpu, started = (
            server.cpu_seconds(),
            process_cpu_seconds(os.getpid()),
            time.monotonic(),
        )
        sent_before = sum(c.microphone.sent_seconds for c in clients)
        async with httpx.AsyncClient(base_url=server.url) as http:
            received_before = received_seconds((await http.get("/metrics")).text)
            ends = await asyncio.gather(*(speak(c, rng.uniform(0.0, 0.3)) for c in clients))
            await asyncio.sleep(1.0)
            elapsed = time.monotonic() - started
            server_cores = (server.cpu_seconds() - server_cpu) / elapsed
            client_cores = (process_cpu_seconds(os.getpid()) - own_cpu) / elapsed
            received = received_seconds((await http.get("/metrics")).text) - received_before
        sent = sum(c.microphone.sent_seconds for c in clients) - sent_before
        delays: list[float] = []
        missed = 0
        for client, client_ends in zip(clients, ends, strict=True):
            found, lost = delays_of(client, client_ends)
            delays += found
            missed += lost
        for client in clients:
            await client.close()
    finally:
        server.stop()
    admitted = len(clients)
    return {
        "sessions": sessions,
        "workers": workers,
        "refused": refused,
        "turns": admitted * len(SCRIPT),
        "endpointing_p50_s": float(np.percentile(delays, 50)) if delays else None,
        "endpointing_p95_s": float(np.percentile(delays, 95)) if delays else None,
        "endpointing_max_s": max(delays) if delays else None,
        "missed_turns": missed,
        "server_cores": server_cores,
        "server_cpu_per_session": server_cores / admitted if admitted else None,
        "load_generator_cores": client_cores,
        "memory_per_session_mb": (rss_connected - rss_before) / admitted if admitted else None,
        "audio_lost_pct": max(0.0, 100 * (1 - received / sent)) if sent else None,
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks load", description=__doc__)
    parser.add_argument("--sessions", default="10,25,50", help="comma-separated session counts")
    parser.add_argument(
        "--workers", default="1,2", help="comma-separated worker counts: each level runs on each"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "load.json")
    args = parser.parse_args(argv)
    keep_webrtc_on_loopback()

    levels = []
    for workers in (int(n) for n in args.workers.split(",")):
        print(f"-- {workers} worker(s)", flush=True)
        levels += run_levels(args.sessions, "sessions", functools.partial(run_level, workers=workers))

    rows = [
        [
            str(level["sessions"]),
            str(level["workers"]),
            str(level["refused"]),
            seconds(level["endpointing_p50_s"]),
            seconds(level["endpointing_p95_s"]),
            seconds(level["endpointing_max_s"]),
            f"{level['missed_turns']}/{level['turns']}",
            f"{level['server_cores']:.2f}",
            "-" if level["server_cpu_per_session"] is None else f"{level['server_cpu_per_session']:.1%}",
            "-" if level["memory_per_session_mb"] is None else f"{level['memory_per_session_mb']:.1f}",
            f"{level['load_generator_cores']:.2f}",
            f"{level['audio_lost_pct']:.1f}%",
        ]
        for level in levels
    ]
    header = [
        "sessions",
        "workers",
        "refused",
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
    write_levels("load", args.out, levels)
