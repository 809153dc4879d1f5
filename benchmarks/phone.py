"""`python -m benchmarks phone`: concurrent phone calls over Twilio Media Streams, replies spoken aloud.

For each N (1, 5, 10 by default) a fresh server (tiny model, espeak-ng voice) takes N calls placed the
way Twilio places them (benchmarks/phone_client.py: webhook, TwiML, WebSocket, 8 kHz mu-law in real
time). Every caller says two turns at the same moment. Reported: from the true end of the caller's
speech to the first non-silent reply audio frame at the caller, and the server's CPU per call.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.phone_client import TwilioCall
from benchmarks.report import RESULTS, format_table, run_levels, seconds, write_levels
from benchmarks.server import ServerProcess
from benchmarks.speech import RATE, Utterance

SCRIPT = [
    Utterance(("Hello there,", "how are you today?"), inner_pause=0.3, gap_after=4.0),
    Utterance(("Please remind me", "to call my sister at five."), inner_pause=0.3, gap_after=4.0),
]
GREETING_S = 3.0
"""Silence before the first turn: the greeting plays meanwhile."""


async def converse(call: TwilioCall, offset: float) -> list[float]:
    call.play(np.zeros(int((GREETING_S + offset) * RATE), np.float32))
    ends = []
    for utterance in SCRIPT:
        ends.append(call.play(utterance.audio()))
        call.play(np.zeros(int(utterance.gap_after * RATE), np.float32))
    return list(await asyncio.gather(*ends))


async def run_level(calls: int, data_dir: Path) -> dict[str, Any]:
    server = ServerProcess(data_dir, env={"VA_MAX_NEW_TOKENS": "16", "VA_MAX_CALLS": str(calls + 2)})
    server.start()
    try:
        lines = [TwilioCall(server.url, caller=f"+1555010{i:04d}") for i in range(calls)]
        for line in lines:
            await line.dial()
        rng = random.Random(calls)
        cpu, started = server.cpu_seconds(), time.monotonic()
        ends = await asyncio.gather(*(converse(line, rng.uniform(0.0, 0.3)) for line in lines))
        await asyncio.sleep(3.0)
        cores = (server.cpu_seconds() - cpu) / (time.monotonic() - started)
        delays, unanswered = [], 0
        for line, line_ends in zip(lines, ends, strict=True):
            for end in line_ends:
                audio = line.reply_audio(after=end)
                if audio and audio[0].at - end < SCRIPT[0].gap_after:
                    delays.append(audio[0].at - end)
                else:
                    unanswered += 1
        for line in lines:
            await line.hang_up()
    finally:
        server.stop()
    return {
        "calls": calls,
        "turns": calls * len(SCRIPT),
        "first_audio_p50_s": float(np.percentile(delays, 50)) if delays else None,
        "first_audio_p95_s": float(np.percentile(delays, 95)) if delays else None,
        "unanswered": unanswered,
        "server_cores": cores,
        "cpu_per_call": cores / calls,
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks phone", description=__doc__)
    parser.add_argument("--calls", default="1,5,10", help="comma-separated numbers of concurrent calls")
    parser.add_argument("--out", type=Path, default=RESULTS / "phone.json")
    args = parser.parse_args(argv)
    levels = run_levels(args.calls, "calls", run_level)

    rows = [
        [
            str(level["calls"]),
            seconds(level["first_audio_p50_s"]),
            seconds(level["first_audio_p95_s"]),
            f"{level['unanswered']}/{level['turns']}",
            f"{level['server_cores']:.2f}",
            f"{level['cpu_per_call'] * 100:.1f}%",
        ]
        for level in levels
    ]
    print("true end of the caller's speech -> first reply audio frame at the caller (espeak-ng voice)")
    print(format_table(["calls", "p50 s", "p95 s", "unanswered", "server cores", "cpu/call"], rows))
    write_levels("phone", args.out, levels)
