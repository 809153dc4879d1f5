"""`python -m benchmarks pipeline`: what the audio path and the turn machinery cost, in process.

- the turn detector (Silero VAD + state machine) as a real-time factor, fed 20 ms chunks of speech;
- one Smart Turn verdict (the semantic end of turn asked at each pause);
- from the end-of-turn decision to the model's first call: history read, window, commit (SQLite),
  without and with a speculative start (then the model has been running since the pause).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import RESULTS, format_table, machine, now, write_json
from benchmarks.speech import RATE, Utterance
from voice_assistant.clock import utc_now
from voice_assistant.config import ModelSettings, TurnSettings
from voice_assistant.history.store import HistoryStore
from voice_assistant.metrics import Metrics
from voice_assistant.model.base import Message
from voice_assistant.session.conversation import Conversation
from voice_assistant.session.held_writes import HeldWrites
from voice_assistant.session.window import WindowPolicy
from voice_assistant.turn.detector import EndReason
from voice_assistant.turn.segmenter import TurnSegmenter
from voice_assistant.turn.semantic import SmartTurn, packaged_smart_turn
from voice_assistant.turn.taker import CompletedTurn
from voice_assistant.turn.vad import SileroModel

SPEECH = [
    Utterance(("Hello there,", "how are you today?"), inner_pause=0.3, gap_after=1.5),
    Utterance(("Can you tell me", "a short story", "about a robot?"), inner_pause=0.4, gap_after=1.5),
    Utterance(("Please remind me to call my sister at five.",), gap_after=1.5),
]


def conversation_audio(repeat: int) -> np.ndarray:
    parts = []
    for utterance in SPEECH * repeat:
        parts += [utterance.audio(), np.zeros(int(utterance.gap_after * RATE), np.float32)]
    return np.concatenate(parts)


def detector_rtf(audio: np.ndarray) -> dict[str, float]:
    segmenter = TurnSegmenter.from_settings(
        SileroModel().stream(), TurnSettings(end_of_turn="silence", min_silence_ms=700)
    )
    chunk = RATE // 50
    started = time.perf_counter()
    for offset in range(0, len(audio), chunk):
        segmenter.feed(audio[offset : offset + chunk])
    spent = time.perf_counter() - started
    seconds = len(audio) / RATE
    return {"audio_s": round(seconds, 1), "cpu_s": round(spent, 3), "rtf": spent / seconds}


def smart_turn_ms(audio: np.ndarray, calls: int) -> dict[str, float] | None:
    path = packaged_smart_turn()
    if path is None:
        return None
    model = SmartTurn(path)
    model.complete_probability(audio[: RATE * 8])
    times = []
    for i in range(calls):
        clip = audio[i * RATE : i * RATE + RATE * 8]
        started = time.perf_counter()
        model.complete_probability(clip)
        times.append((time.perf_counter() - started) * 1000)
    return {"mean_ms": statistics.mean(times), "p95_ms": float(np.percentile(times, 95))}


@dataclass
class CallTimer:
    """An AudioLM that notes when it is called and answers at once (only the pipeline is timed)."""

    name: str = "timer"
    max_clips: int | None = None
    calls: list[float] = field(default_factory=list)

    def audio_tokens(self, seconds: float) -> int:
        return int(seconds * 25) + 8

    async def stream_reply(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        self.calls.append(time.perf_counter())
        yield "ok"

    async def transcribe(self, audio: np.ndarray) -> str:
        return ""

    async def warm_up(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def decision_to_model(turns: int, *, speculative: bool) -> list[float]:
    """Milliseconds from the end-of-turn decision to the model's call (negative: called before it)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = HistoryStore(f"sqlite:///{Path(tmp) / 'bench.db'}")
        model = CallTimer()
        done = asyncio.Event()
        conversation = Conversation(
            session_id=await store.create_session(now=utc_now()),
            next_index=0,
            store=store,
            held=HeldWrites(store, metrics=Metrics(), capacity_s=600.0),
            model=model,
            policy=WindowPolicy(
                "Be brief.", audio_turns=4, max_turns=16, token_budget=8000, audio_tokens=model.audio_tokens
            ),
            publish=lambda event: done.set() if event.type == "reply_done" else None,
            metrics=Metrics(),
            reply_timeout_s=ModelSettings().reply_timeout_s,
            speculative=speculative,
            transcripts=False,
        )
        audio = SPEECH[0].audio()
        delays = []
        for _ in range(turns):
            done.clear()
            conversation.speech_started()
            conversation.speech_paused(audio)
            await asyncio.sleep(0.2)  # the rest of the silence, while a speculation runs
            decided, end = time.perf_counter(), utc_now()
            conversation.turn_finished(
                CompletedTurn(audio, end - timedelta(seconds=2), end, end, EndReason.SILENCE)
            )
            await done.wait()
            await asyncio.sleep(0.05)  # the worker settles before the user speaks again
            delays.append((model.calls[-1] - decided) * 1000)
        await conversation.close()
        store.close()
        return delays


def summary(values: list[float]) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(values, 50)), "p95_ms": float(np.percentile(values, 95))}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks pipeline", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="less audio and fewer turns")
    parser.add_argument("--out", type=Path, default=RESULTS / "pipeline.json")
    args = parser.parse_args(argv)

    audio = conversation_audio(1 if args.quick else 4)
    detector = detector_rtf(audio)
    smart_turn = smart_turn_ms(audio, 10 if args.quick else 40)
    turns = 10 if args.quick else 40
    plain = summary(asyncio.run(decision_to_model(turns, speculative=False)))
    speculated = summary(asyncio.run(decision_to_model(turns, speculative=True)))

    rows: list[list[object]] = [
        ["turn detector (Silero + state machine), real-time factor", f"{detector['rtf']:.4f}", "-"],
        ["turn detector, CPU per second of audio (ms)", f"{detector['rtf'] * 1000:.1f}", "-"],
        ["Smart Turn verdict (ms)", *(f"{smart_turn[k]:.1f}" for k in ("mean_ms", "p95_ms"))]
        if smart_turn
        else ["Smart Turn verdict (ms)", "not installed", "-"],
        ["decision -> model called, no speculation (ms)", f"{plain['p50_ms']:.1f}", f"{plain['p95_ms']:.1f}"],
        [
            "decision -> model called, speculative start (ms)",
            f"{speculated['p50_ms']:.1f}",
            f"{speculated['p95_ms']:.1f}",
        ],
    ]
    print(format_table(["pipeline", "p50 / value", "p95"], rows))
    payload: dict[str, Any] = {
        "benchmark": "pipeline",
        "date": now(),
        "machine": machine(),
        "detector": detector,
        "smart_turn": smart_turn,
        "decision_to_model_call_ms": {"plain": plain, "speculative": speculated},
    }
    write_json(args.out, payload)
    print(f"\nwritten to {args.out}")
