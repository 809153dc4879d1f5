"""Endpointing benchmark: how soon after the user stops talking does each system end the turn, and how
often does it cut a sentence at a pause or miss the end of a turn?

Our server and a stock fastrtc `ReplyOnPause` server (benchmarks/peer_fastrtc.py) run side by side. The
same WebRTC client (aiortc, paced in real time) plays each labeled recording to one system at a time, so
that they never compete for the cores, and keeps the wall time at which each `turn_ended` arrived.
Scoring is benchmarks/scoring.py.

Two sets, reported apart: `human` (benchmarks/human_set.py: real people's turns; its table comes first,
then its tune and held-out splits apart, then per kind of turn) and `synthetic` (benchmarks/dataset.py:
espeak-ng and Kokoro, per SNR and per voice). `--set` plays one of them; `--quick` a few recordings of each.

LiveKit Agents' open defaults run too, as a configuration of ours (LIVEKIT; `--no-livekit` leaves it
out): VAD-only turn detection ends the turn `min_endpointing_delay` (0.5 s) after the last speech that
Silero reported, and Silero reports the end of speech after `min_silence_duration` (0.55 s) of
silence, so the two do not add up: the turn ends max(0.55, 0.5) = 0.55 s after speech
(livekit-agents `voice/audio_recognition.py`: `last_speaking_time = now - silence_duration`, then
`sleep(last_speaking_time + endpointing_delay - now)`; the agents-js docs of `minDelay` say the same).
With an STT or LiveKit's turn-detector model it can only be later (their transcript, or a 3 s
`max_endpointing_delay` when the model doubts), so the silence rule at 550 ms is its best case.

Pipecat's default stop strategy (PIPECAT; `--no-pipecat` leaves it out) has no server here: its own
`SileroVADAnalyzer` (stop_secs 0.2) and `LocalSmartTurnAnalyzerV3` (3 s fallback) run in process on the
same audio after the servers are done (benchmarks/inprocess.py), so its delays carry no transport or
inference time, which favours it slightly.

    python -m benchmarks endpointing [--quick] [--set human|synthetic|all] [--label NAME]
        [--env VA_MIN_SILENCE_MS=400 ...] [--variant LABEL:KEY=VALUE,...] [--no-livekit] [--no-pipecat]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.dataset import Recording, load_dataset, read_audio, voice_kind
from benchmarks.human_set import load_human_set
from benchmarks.inprocess import Detect, PipecatDefault
from benchmarks.report import RESULTS, format_table, machine, now, seconds, write_json
from benchmarks.scoring import Summary, TurnScore, reply_delays, score_turns, summarize
from benchmarks.server import ServerProcess, keep_webrtc_on_loopback
from benchmarks.speech import RATE, Utterance
from voice_assistant.client import VoiceClient

CACHE = Path(__file__).parent / ".cache"
PEER = "fastrtc ReplyOnPause"
OUR_DEFAULTS = {"VA_MAX_NEW_TOKENS": "8"}
"""Short replies: the benchmark measures turn ends, not generation."""
WARM_UP = Utterance(("Hello there,", "are you awake?"), inner_pause=0.3, gap_after=2.5)
SETS = {"human": load_human_set, "synthetic": load_dataset}
"""In the report's order."""
PIPECAT = "Pipecat default, in process"
"""pipecat-ai's own Silero + Smart Turn v3 stop strategy on the same audio (benchmarks/inprocess.py): no
server of ours stands in for it, and no transport delay is added to its figures."""
LIVEKIT = ("livekit defaults", {"VA_END_OF_TURN": "silence", "VA_MIN_SILENCE_MS": "550"})
"""LiveKit Agents' VAD-only endpointing as a configuration of ours (see the module's docstring)."""


@dataclass
class System:
    name: str
    server: ServerProcess
    settings: dict[str, Any]


@dataclass(frozen=True)
class Run:
    detections: list[float]
    """When each `turn_ended` arrived, in seconds from the recording's first sample."""
    cpu: float
    """The server's CPU during playback, as a share of one core."""
    replies: list[float]
    """When the first `reply_delta` of each answered turn arrived (ours only: the peer sends no text)."""


def cpu_meter(server: ServerProcess) -> Callable[[], float]:
    """Starts now; each call gives the server's CPU since then, as a share of one core."""
    cpu, wall = server.cpu_seconds(), time.monotonic()
    return lambda: (server.cpu_seconds() - cpu) / (time.monotonic() - wall)


async def play(system: System, audio: np.ndarray) -> Run:
    """Play one recording to one system over a fresh connection, in real time."""
    duration = len(audio) / RATE
    client = VoiceClient(system.server.url)
    await client.connect()
    try:
        meter = cpu_meter(system.server)
        last_sample = await asyncio.wait_for(client.microphone.play(audio), duration + 30)
        cpu = meter()
        first_sample = last_sample - duration
        first_delta: dict[int, float] = {}
        for delta in client.events("reply_delta"):
            first_delta.setdefault(delta.message["data"]["turn"], delta.at - first_sample)
        return Run(
            [r.at - first_sample for r in client.events("turn_ended")], cpu, sorted(first_delta.values())
        )
    finally:
        await client.close()


async def warm_up(system: System) -> dict[str, float]:
    """One unscored turn, so that no first-connection cost lands on a measured turn; meanwhile, what
    the server costs while a client is connected but silent, and once nobody is connected."""
    client = VoiceClient(system.server.url)
    await client.connect()
    try:
        client.microphone.play(WARM_UP.audio())
        await client.microphone.play(np.zeros(int(WARM_UP.gap_after * RATE), dtype=np.float32))
        meter = cpu_meter(system.server)
        await asyncio.sleep(4.0)
        connected = meter()
    finally:
        await client.close()
    await asyncio.sleep(1.0)
    meter = cpu_meter(system.server)
    await asyncio.sleep(3.0)
    return {"cpu_connected_silent": connected, "cpu_no_connection": meter()}


Measured = tuple[dict[str, dict[str, float]], dict[tuple[str, str], Run]]
"""Each system's CPU outside playback, and the run of each (recording, system)."""


Played = Sequence[tuple[Path, Recording]]
"""Each recording to play, with the folder of its set."""


async def measure(systems: Sequence[System], played: Played) -> Measured:
    """Warm every system up, then play each recording to each system in turn."""
    costs = {system.name: await warm_up(system) for system in systems}
    runs: dict[tuple[str, str], Run] = {}
    for i, (folder, recording) in enumerate(played, 1):
        audio = read_audio(folder, recording)
        for system in systems:
            runs[recording.name, system.name] = run = await play(system, audio)
            print(f"[{i}/{len(played)}] {recording.name} {system.name}: {len(run.detections)} turn_ended")
            await asyncio.sleep(0.5)  # let the connection close before the next one opens
    return costs, runs


def turn_rows(recording: Recording, system: str, run: Run) -> list[dict[str, Any]]:
    spans = [(turn.start, turn.end) for turn in recording.turns]
    scores = score_turns(spans, run.detections, recording.duration)
    replies = reply_delays(spans, run.replies, recording.duration)
    conditions = {k: getattr(recording, k) for k in ("voice", "speed", "snr_db", "noise", "split")}
    return [
        {
            "recording": recording.name,
            **conditions,
            "system": system,
            **turn.model_dump(),
            **asdict(score),
            "reply_delay": reply,
        }
        for turn, score, reply in zip(recording.turns, scores, replies, strict=True)
    ]


HEADER = ("turns", "ended", "p50 s", "p95 s", "max s", "false splits", "missed", "merged")


def summary_cells(summary: Summary) -> list[object]:
    return [
        summary.turns,
        summary.ended,
        seconds(summary.p50),
        seconds(summary.p95),
        seconds(summary.max),
        summary.false_splits,
        summary.missed,
        summary.merged,
    ]


def scores_of(rows: Sequence[dict[str, Any]]) -> list[TurnScore]:
    fields = TurnScore.__dataclass_fields__
    return [TurnScore(**{k: row[k] for k in fields}) for row in rows]


def snr_name(snr_db: float | None) -> str:
    return "clean" if snr_db is None else f"{snr_db:g} dB"


Condition = Callable[[dict[str, Any]], str]


def condition_summaries(
    names: Sequence[str], rows: Sequence[dict[str, Any]], condition: Condition
) -> dict[str, Summary]:
    """A summary per system and value of `condition` (a turn row's SNR, split...), keyed
    `system, value`, in order."""
    return {
        f"{n}, {value}": summarize(scores_of([r for r in rows if r["system"] == n and condition(r) == value]))
        for n in names
        for value in dict.fromkeys(condition(r) for r in rows)
    }


def ratio(ours: float | None, peer: float | None) -> float | None:
    return None if ours is None or not peer else ours / peer


def parse_env(pairs: Sequence[str]) -> dict[str, str]:
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--env wants KEY=VALUE, not {pair!r}")
        settings[key] = value
    return settings


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """`LABEL:KEY=VALUE,KEY=VALUE`: one configuration of ours."""
    label, _, pairs = text.partition(":")
    return label, parse_env([pair for pair in pairs.split(",") if pair])


def make_systems(variants: Sequence[tuple[str, dict[str, str]]]) -> list[System]:
    """Each configuration of ours (its env on top of this process's), then the peer; folders start empty."""
    servers = CACHE / "servers"
    shutil.rmtree(servers, ignore_errors=True)
    peer_command = [sys.executable, "-m", "benchmarks.peer_fastrtc"]
    ours = []
    for i, (label, env) in enumerate(variants):
        server = ServerProcess(servers / f"ours-{i}", env=env)
        settings = {k: v for k, v in server.environment().items() if k.startswith("VA_")}
        ours.append(System(label, server, settings))
    return [*ours, System(PEER, ServerProcess(servers / "peer", command=peer_command), {})]


def run_all(systems: Sequence[System], played: Played) -> Measured:
    """Start the servers, measure, and stop them whatever happens."""
    try:
        for system in systems:
            system.server.start()
            system.settings["ready_after_s"] = system.server.ready_after_s
        peer = systems[-1]
        peer.settings.update(httpx.get(f"{peer.server.url}/readyz").json())
        return asyncio.run(measure(systems, played))
    finally:
        for system in systems:
            system.server.stop()


CONDITIONS: dict[str, tuple[tuple[str, Condition], ...]] = {
    "human": (("split", lambda r: r["split"]), ("turn", lambda r: r["kind"])),
    "synthetic": (("SNR", lambda r: snr_name(r["snr_db"])), ("voice", lambda r: voice_kind(r["voice"]))),
}
"""The tables after each set's main one: a row per system and value of the condition."""


def play_in_process(played: Played, detectors: dict[str, Detect]) -> dict[tuple[str, str], Run]:
    """Each in-process system's detections on each recording (no server: no CPU figure, no replies)."""
    runs = {}
    for folder, recording in played:
        audio = read_audio(folder, recording)
        for name, detect in detectors.items():
            runs[recording.name, name] = Run(detect(audio), math.nan, [])
    return runs


def system_names(systems: Sequence[System], in_process: Sequence[str]) -> list[str]:
    """Ours, then the in-process peers, then the fastrtc peer last (the ratios' denominator)."""
    return [*(s.name for s in systems[:-1]), *in_process, systems[-1].name]


def report_set(
    title: str, names: Sequence[str], recordings: Sequence[Recording], runs: dict[tuple[str, str], Run]
) -> dict[str, Any]:
    """Print one set's tables; return what goes into its part of the JSON file."""
    mine = {(n, s): run for (n, s), run in runs.items() if n in {r.name for r in recordings}}
    by_name = {r.name: r for r in recordings}
    rows = [row for (name, system), run in mine.items() for row in turn_rows(by_name[name], system, run)]
    summaries = {n: summarize(scores_of([r for r in rows if r["system"] == n])) for n in names}
    cpu = {n: float(np.mean([run.cpu for (_, s), run in mine.items() if s == n])) for n in names}
    peer = PEER
    ratios = {
        f"{ours}/{peer}": {
            q: ratio(getattr(summaries[ours], q), getattr(summaries[peer], q)) for q in ("p50", "p95")
        }
        for ours in names[:-1]
    }

    turns = sum(len(r.turns) for r in recordings)
    print(f"\n{title} set: {len(recordings)} recordings, {turns} turns, true end of speech -> turn_ended\n")
    main_rows = [
        [n, *summary_cells(summaries[n]), "-" if math.isnan(cpu[n]) else f"{cpu[n]:.0%}"] for n in names
    ]
    print(format_table(("system", *HEADER, "cpu"), main_rows))
    print()
    for pair, values in ratios.items():
        shown = {q: "-" if v is None else f"{v:.2f}x" for q, v in values.items()}
        print(f"{pair}: p50 {shown['p50']}, p95 {shown['p95']}")
    by_condition = {}
    for label, condition in CONDITIONS[title]:
        by_condition[label] = summaries_by = condition_summaries(names, rows, condition)
        table = [[key, *summary_cells(summary)] for key, summary in summaries_by.items()]
        print()
        print(format_table((f"system, {label}", *HEADER), table))
    reply_rows = []
    for n in names[:-1]:
        delays = [r["reply_delay"] for r in rows if r["system"] == n and r["reply_delay"] is not None]
        if delays:
            reply_rows.append(
                [n, len(delays), *(f"{np.percentile(delays, q):.3f}" for q in (50, 95)), f"{max(delays):.3f}"]
            )
    if reply_rows:
        print("\nreply visible: true end of speech -> first reply_delta at the client\n")
        print(format_table(("system", "turns", "p50 s", "p95 s", "max s"), reply_rows))
    return {
        "summary": {
            n: {**asdict(summaries[n]), "cpu": None if math.isnan(cpu[n]) else cpu[n]} for n in names
        },
        "ratio": ratios,
        "by": {label: {k: asdict(v) for k, v in by.items()} for label, by in by_condition.items()},
        "runs": [{"recording": n, "system": s, **asdict(run)} for (n, s), run in mine.items()],
        "turns": rows,
    }


def report(
    names: Sequence[str],
    systems: Sequence[System],
    sets: dict[str, tuple[Path, list[Recording]]],
    measured: Measured,
) -> dict[str, Any]:
    """Print every set's tables, in SETS' order; return what goes into the JSON file."""
    costs, runs = measured
    results = {}
    for title, (folder, recordings) in sets.items():
        dataset = {"folder": folder.name, "recordings": [r.model_dump() for r in recordings]}
        results[title] = {"dataset": dataset, **report_set(title, names, recordings, runs)}
    print("\ncpu: the server's share of one core during playback")
    return {
        "settings": {s.name: s.settings for s in systems},
        "server_cpu_outside_playback": costs,
        "sets": results,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks endpointing", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="four recordings of each set")
    parser.add_argument("--set", choices=[*SETS, "all"], default="all", help="which recordings to play")
    parser.add_argument("--label", default="ours", help="the name of our system's row")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="for our server")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL:KEY=VALUE,...",
        help="a configuration of ours (repeatable; replaces --label/--env): all are measured in one run",
    )
    parser.add_argument("--no-livekit", action="store_true", help="leave LiveKit's defaults (LIVEKIT) out")
    parser.add_argument("--no-pipecat", action="store_true", help="leave Pipecat's default (PIPECAT) out")
    parser.add_argument("--output", type=Path, default=RESULTS / "endpointing.json")
    args = parser.parse_args(argv)
    keep_webrtc_on_loopback()
    began = time.monotonic()
    chosen = list(SETS) if args.set == "all" else [args.set]
    sets = {name: SETS[name](CACHE, quick=args.quick) for name in chosen}
    variants = [parse_variant(v) for v in args.variant] or [(args.label, parse_env(args.env))]
    variants += [] if args.no_livekit else [LIVEKIT]
    systems = make_systems([(label, {**OUR_DEFAULTS, **env}) for label, env in variants])
    played = [(folder, recording) for folder, recordings in sets.values() for recording in recordings]
    in_process = {} if args.no_pipecat else {PIPECAT: PipecatDefault().detections}
    costs, runs = run_all(systems, played)
    runs.update(play_in_process(played, in_process))
    results = report(system_names(systems, list(in_process)), systems, sets, (costs, runs))
    elapsed = time.monotonic() - began
    print(f"{elapsed:.0f} s in all; written {args.output}")
    head = {"benchmark": "endpointing", "date": now(), "machine": machine(), "quick": args.quick}
    write_json(args.output, {**head, "wall_seconds": round(elapsed, 1), **results})
