"""`python -m benchmarks realtime`: the OpenAI Realtime endpoint against our WebRTC contract, one server.

One server process (the tiny model, `VA_END_OF_TURN=silence`: the same, deterministic endpointing on
every path, `VA_MAX_NEW_TOKENS=24`) takes the same real human speech (Asterisk prompts of one sentence)
over three paths, each turn on a fresh connection (so a fresh session: no path's history grows), the
paths taking turns prompt by prompt, their order rotated, so that drift hits them alike:

- `webrtc`: our contract, `VoiceClient` (aiortc, 20 ms Opus packets paced in real time);
- `realtime-text`: `GET /v1/realtime` with the official `openai` SDK, `output_modalities: ["text"]`;
- `realtime-audio`: the same with `output_modalities: ["audio"]` (the reply spoken as pcm16 deltas).

Both Realtime sessions ask for `turn_detection: {"type": "server_vad"}` (this server's silence rule).
The Realtime client sends 24 kHz pcm16 as `input_audio_buffer.append` chunks of 100 ms, each once its
last sample is "captured" (every 100 ms, the trailing silence too); the speech is placed so that it ends
on a chunk's last sample, so the wall time that chunk is sent is the true end of speech. The WebRTC
microphone dates its clip's last sample itself. Every interval runs from the true end of speech to an
event's arrival at the client (`time.time()` on both: one machine, one clock; the SDK's events are dated
once parsed): `turn_ended` and the first `reply_delta` (webrtc), `input_audio_buffer.committed` and the
first `response.output_text.delta` (text), the first `response.output_audio_transcript.delta` and the
first `response.output_audio.delta` (audio). A turn is over at `reply_done` / `response.done`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection

from benchmarks.human_set import trimmed
from benchmarks.human_speech import asterisk_prompt
from benchmarks.report import RESULTS, format_table, machine, now, seconds, write_json
from benchmarks.server import ServerProcess, keep_webrtc_on_loopback
from benchmarks.speech import RATE
from voice_assistant.audio.resample import resample
from voice_assistant.client import VoiceClient

PROMPTS = (
    "conf-onlyperson",
    "cannot-complete-as-dialed",
    "conf-getpin",
    "conf-locked",
    "conf-noempty",
    "conf-kicked",
)
"""One sentence each, 1.5-2.9 s of speech once trimmed."""
ENV = {"VA_END_OF_TURN": "silence", "VA_MAX_NEW_TOKENS": "24"}
REALTIME_RATE = 24_000
CHUNK_S = 0.1
CHUNK_SAMPLES = int(CHUNK_S * REALTIME_RATE)
LEAD_S = 0.5
"""Silence before the speech, at least (up to a chunk more, so that the speech ends on a chunk's end)."""
TAIL_S = 1.5
TURN_S = 60.0
"""How long one turn may take, connection to the reply's end."""

PATHS = ("webrtc", "realtime-text", "realtime-audio")
INTERVALS = {
    "webrtc": ("turn_ended", "reply_delta"),
    "realtime-text": ("input_audio_buffer.committed", "response.output_text.delta"),
    "realtime-audio": (
        "input_audio_buffer.committed",
        "response.output_audio_transcript.delta",
        "response.output_audio.delta",
    ),
}
"""What is measured on each path: the first event of each kind, from the true end of speech."""
FIRST_TEXT = {
    "webrtc": "reply_delta",
    "realtime-text": "response.output_text.delta",
    "realtime-audio": "response.output_audio_transcript.delta",
}


def placed(speech: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Silence before `speech` (16 kHz) that ends it on a 100 ms boundary, and the silence after."""
    step = int(CHUNK_S * RATE)
    lead = int(LEAD_S * RATE)
    lead += -(lead + len(speech)) % step
    return np.zeros(lead, np.float32), np.zeros(int(TAIL_S * RATE), np.float32)


def pcm16(*parts: np.ndarray) -> bytes:
    audio = resample(np.concatenate(parts), RATE, REALTIME_RATE)
    return bytes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


async def webrtc_turn(url: str, speech: np.ndarray) -> dict[str, float]:
    lead, tail = placed(speech)
    client = VoiceClient(url)
    await client.connect()
    try:
        client.microphone.play(lead)
        end = client.microphone.play(speech)
        client.microphone.play(tail)
        async with asyncio.timeout(TURN_S):
            spoken = await end
            await client.wait_for("reply_done", 1)
        return {kind: client.events(kind)[0].at - spoken for kind in INTERVALS["webrtc"]}
    finally:
        await client.close()


async def send_paced(connection: AsyncRealtimeConnection, pcm: bytes, last_speech_chunk: int) -> float:
    """Every 100 ms chunk once its last sample is due; the wall time the one ending the speech went out."""
    loop = asyncio.get_running_loop()
    start, spoken = loop.time(), float("nan")
    step = CHUNK_SAMPLES * 2
    for index, offset in enumerate(range(0, len(pcm), step)):
        await asyncio.sleep(max(0.0, start + (index + 1) * CHUNK_S - loop.time()))
        chunk = base64.b64encode(pcm[offset : offset + step]).decode()
        await connection.input_audio_buffer.append(audio=chunk)
        if index == last_speech_chunk:
            spoken = time.time()
    return spoken


async def first_arrivals(connection: AsyncRealtimeConnection, last: str) -> dict[str, float]:
    """When the first event of each kind arrived, up to and including `last`; an `error` fails the turn."""
    firsts: dict[str, float] = {}
    async for event in connection:
        firsts.setdefault(event.type, time.time())
        if event.type == "error":
            raise RuntimeError(f"error event: {event.error}")
        if event.type == last:
            return firsts
    raise RuntimeError(f"the connection closed before {last}: saw {sorted(firsts)}")


async def realtime_turn(url: str, speech: np.ndarray, modality: str) -> dict[str, float]:
    lead, tail = placed(speech)
    last_speech_chunk = (len(lead) + len(speech)) // int(CHUNK_S * RATE) - 1
    session = {
        "type": "realtime",
        "output_modalities": [modality],
        "audio": {"input": {"turn_detection": {"type": "server_vad"}}},
    }
    client = AsyncOpenAI(base_url=f"{url}/v1", api_key="benchmark")
    async with asyncio.timeout(TURN_S), client.realtime.connect(model="tiny") as connection:
        await first_arrivals(connection, "session.created")
        await connection.session.update(session=session)  # type: ignore[arg-type]
        await first_arrivals(connection, "session.updated")
        sender = asyncio.create_task(send_paced(connection, pcm16(lead, speech, tail), last_speech_chunk))
        try:
            arrivals = await first_arrivals(connection, "response.done")
        finally:
            spoken = await sender
    path = f"realtime-{modality}"
    missing = [kind for kind in INTERVALS[path] if kind not in arrivals]
    if missing:
        raise RuntimeError(f"no {missing} before response.done")
    return {kind: arrivals[kind] - spoken for kind in INTERVALS[path]}


def turn_of(path: str) -> Callable[[str, np.ndarray], Awaitable[dict[str, float]]]:
    if path == "webrtc":
        return webrtc_turn
    modality = path.removeprefix("realtime-")
    return lambda url, speech: realtime_turn(url, speech, modality)


async def measure(url: str, prompts: Sequence[str], rounds: int) -> list[dict[str, Any]]:
    """One unscored turn per path, then each prompt on every path, round after round."""
    speeches = {name: trimmed(asterisk_prompt(name)) for name in prompts}
    for path in PATHS:
        await turn_of(path)(url, speeches[prompts[0]])
    samples: list[dict[str, Any]] = []
    for round_ in range(rounds):
        for name in prompts:
            shift = len(samples) // len(PATHS) % len(PATHS)
            for path in PATHS[shift:] + PATHS[:shift]:
                sample: dict[str, Any] = {"round": round_, "prompt": name, "path": path}
                try:
                    sample["intervals_s"] = await turn_of(path)(url, speeches[name])
                except (TimeoutError, RuntimeError) as failed:
                    sample["failed"] = repr(failed)
                samples.append(sample)
                shown = sample.get("intervals_s") or sample["failed"]
                print(f"[{len(samples)}] {name} {path}: {shown}", flush=True)
                await asyncio.sleep(0.5)  # let the connection close before the next one opens
    return samples


def summarize(samples: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """p50, p95 and mean of each path's intervals over its answered turns; the failed ones counted."""
    rows = []
    for path in PATHS:
        turns = [s for s in samples if s["path"] == path]
        answered = [s["intervals_s"] for s in turns if "intervals_s" in s]
        for kind in INTERVALS[path]:
            values = [a[kind] for a in answered]
            rows.append(
                {
                    "path": path,
                    "event": kind,
                    "p50_s": float(np.percentile(values, 50)) if values else None,
                    "p95_s": float(np.percentile(values, 95)) if values else None,
                    "mean_s": float(np.mean(values)) if values else None,
                    "n": len(values),
                    "failed": len(turns) - len(answered),
                }
            )
    return rows


def ratios(summary: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Each Realtime path's first text delta over WebRTC's first `reply_delta`, per statistic."""
    first = {row["path"]: row for row in summary if row["event"] == FIRST_TEXT[row["path"]]}
    ours = first["webrtc"]
    return {
        path: {
            stat: first[path][stat] / ours[stat] if first[path][stat] and ours[stat] else None
            for stat in ("p50_s", "p95_s", "mean_s")
        }
        for path in PATHS[1:]
    }


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks realtime", description=__doc__)
    parser.add_argument("--rounds", type=int, default=2, help="times each prompt is spoken on each path")
    parser.add_argument("--prompts", type=int, default=len(PROMPTS), help="how many of the prompts")
    parser.add_argument("--quick", action="store_true", help="2 prompts, 1 round")
    parser.add_argument("--out", type=Path, default=RESULTS / "realtime.json")
    args = parser.parse_args(argv)
    prompts, rounds = (PROMPTS[:2], 1) if args.quick else (PROMPTS[: args.prompts], args.rounds)
    keep_webrtc_on_loopback()

    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp), env=ENV)
        server.start()
        try:
            samples = asyncio.run(measure(server.url, prompts, rounds))
        finally:
            server.stop()

    summary = summarize(samples)
    rows = [
        [row["path"], row["event"], *(seconds(row[k]) for k in ("p50_s", "p95_s", "mean_s")), row["n"]]
        for row in summary
    ]
    print("\ntrue end of speech -> the first event of each kind at the client\n")
    print(format_table(["path", "event", "p50 s", "p95 s", "mean s", "n"], rows))
    found = ratios(summary)
    for path, ratio in found.items():
        shown = ", ".join(f"{k[:-2]} {v:.2f}x" if v else f"{k[:-2]} -" for k, v in ratio.items())
        print(f"{path} / webrtc, first text: {shown}")
    failed = [s for s in samples if "failed" in s]
    for sample in failed:
        print(f"failed: {sample['prompt']} {sample['path']}: {sample['failed']}")
    write_json(
        args.out,
        {
            "benchmark": "realtime",
            "date": now(),
            "machine": machine(),
            "settings": {
                "env": ENV,
                "prompts": list(prompts),
                "rounds": rounds,
                "lead_s": LEAD_S,
                "tail_s": TAIL_S,
                "chunk_s": CHUNK_S,
            },
            "summary": summary,
            "ratios_first_text": found,
            "samples": samples,
        },
    )
    print(f"\nwritten to {args.out}")
