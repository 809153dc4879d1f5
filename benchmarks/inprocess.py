"""Turn-taking run in process on a recording, on the audio's own clock: ours and Pipecat's default.

The endpointing benchmark's main table plays recordings to real servers over WebRTC. This module runs
the same decisions without a transport, frame by frame as fast as the CPU allows, so that a
configuration can be swept over a whole set in seconds (the latency / false cut-off curve, the
tuning of the defaults) and so that Pipecat, which has no server of ours to stand in for it, is
measured on the same audio:

- ours: `TurnTaker` with real Silero and real Smart Turn v3.2, configured by `TurnSettings`;
- Pipecat's default stop strategy: pipecat-ai's own `SileroVADAnalyzer` (stop_secs 0.2, the rest as
  shipped) and `LocalSmartTurnAnalyzerV3` with its 3 s fallback, stepped the way
  `TurnAnalyzerUserTurnStopStrategy` steps them with `wait_for_transcript=False` (the mode for an
  audio-native model, which is what we compare with), on a virtual clock.

A detection is the audio time at which the turn was judged over; model inference is counted as
instant on both sides (the server run measures the rest). Silero's probabilities and Smart Turn's
verdicts depend only on the audio, so they are computed once per recording and reused across a sweep.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np

from voice_assistant.audio.pcm import MODEL_RATE, Samples
from voice_assistant.config import TurnSettings
from voice_assistant.turn.policy import EndOfTurnPolicy
from voice_assistant.turn.segmenter import TurnSegmenter
from voice_assistant.turn.semantic import SmartTurn, packaged_smart_turn
from voice_assistant.turn.taker import CompletedTurn, TurnTaker
from voice_assistant.turn.vad import FRAME_SAMPLES, SileroModel

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
"""The audio's first sample, for the arrival times that stamp a turn (which nothing here reads)."""
Detect = Callable[[np.ndarray], list[float]]
"""A system run in process: a recording's 16 kHz audio -> when each turn was judged over (seconds)."""
PIPECAT_CHUNK = 320
"""20 ms: the audio frames a Pipecat transport hands its VAD."""


def fingerprint(audio: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(audio).tobytes(), digest_size=16).digest()


class ReplayedVad:
    """A `FrameVad` that gives back probabilities computed once for the whole recording."""

    def __init__(self, probabilities: Sequence[float]) -> None:
        self._probabilities = probabilities
        self._next = 0

    def prob(self, frame: Samples) -> float:
        probability = self._probabilities[self._next]
        self._next += 1
        return probability


class MemoSmartTurn:
    """Smart Turn with its verdicts kept by the audio they judged: a sweep asks the same turn again."""

    def __init__(self, model: SmartTurn) -> None:
        self._model = model
        self._seen: dict[bytes, float] = {}

    def complete_probability(self, audio: Samples) -> float:
        key = fingerprint(audio)
        if key not in self._seen:
            self._seen[key] = self._model.complete_probability(audio)
        return self._seen[key]


class _Ends:
    """A `TurnListener` that keeps when each turn was judged over, on the audio's clock."""

    def __init__(self, segmenter: TurnSegmenter) -> None:
        self._segmenter = segmenter
        self.at: list[float] = []

    def speech_started(self) -> None:
        pass

    def speech_paused(self, audio: Samples) -> None:
        pass

    def speech_silent(self) -> None:
        pass

    def speech_resumed(self) -> None:
        pass

    def turn_finished(self, turn: CompletedTurn) -> None:
        self.at.append(self._segmenter.samples_scored / MODEL_RATE)


async def _at_once(fn: Callable[[Samples], float], audio: Samples) -> float:
    return fn(audio)


class Ours:
    """Our turn-taking in process; `detections` takes any `TurnSettings`."""

    def __init__(self, smart_turn: MemoSmartTurn) -> None:
        self._silero = SileroModel()
        self._smart_turn = smart_turn
        self._probabilities: dict[bytes, list[float]] = {}

    def _vad(self, audio: np.ndarray) -> ReplayedVad:
        key = fingerprint(audio)
        if key not in self._probabilities:
            stream = self._silero.stream()
            frames = len(audio) // FRAME_SAMPLES
            self._probabilities[key] = [
                stream.prob(audio[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]) for i in range(frames)
            ]
        return ReplayedVad(self._probabilities[key])

    def detections(self, audio: np.ndarray, settings: TurnSettings) -> list[float]:
        return asyncio.run(self._run(audio, settings))

    async def _run(self, audio: np.ndarray, settings: TurnSettings) -> list[float]:
        segmenter = TurnSegmenter.from_settings(self._vad(audio), settings)
        ends = _Ends(segmenter)
        model = self._smart_turn if settings.end_of_turn == "smart-turn" else None
        taker = TurnTaker(
            segmenter,
            ends,
            end_of_turn=model,
            policy=EndOfTurnPolicy.from_settings(settings),
            offload=_at_once,
        )
        for offset in range(0, len(audio) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
            taker.feed(audio[offset : offset + FRAME_SAMPLES], EPOCH + timedelta(seconds=offset / MODEL_RATE))
            for _ in range(3):  # the verdict task: asked, answered, weighed
                await asyncio.sleep(0)
        await taker.close()
        return ends.at


class _VirtualTime:
    """Stands in for the `time` module inside Pipecat's Smart Turn, which stamps its buffer with it."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def perf_counter(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now


class PipecatDefault:
    """Pipecat's default end of turn (Silero stop_secs 0.2 + Smart Turn v3 with its fallback), in process."""

    def __init__(self) -> None:
        from loguru import logger
        from pipecat.audio.turn.smart_turn import base_smart_turn

        logger.disable("pipecat")  # a debug line per verdict and per analyzer otherwise

        self._clock = _VirtualTime()
        base_smart_turn.time = SimpleNamespace(  # type: ignore[attr-defined]
            monotonic=self._clock.monotonic, perf_counter=self._clock.perf_counter, time=self._clock.time
        )

    def detections(self, audio: np.ndarray, stop_secs: float = 0.2) -> list[float]:
        """`stop_secs`: the VAD's silence before Smart Turn is asked (0.2 as shipped)."""
        return asyncio.run(self._run(audio, stop_secs))

    def with_stop_secs(self, stop_secs: float) -> Detect:
        return lambda audio: self.detections(audio, stop_secs)

    async def _run(self, audio: np.ndarray, stop_secs: float) -> list[float]:
        from pipecat.audio.turn.base_turn_analyzer import EndOfTurnState
        from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
        from pipecat.audio.vad.silero import SileroVADAnalyzer
        from pipecat.audio.vad.vad_analyzer import VADParams, VADState

        vad = SileroVADAnalyzer(sample_rate=MODEL_RATE, params=VADParams(stop_secs=stop_secs))
        turn = LocalSmartTurnAnalyzerV3(sample_rate=MODEL_RATE)
        vad.set_sample_rate(MODEL_RATE)  # what a pipeline's start does
        turn.set_sample_rate(MODEL_RATE)
        pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
        speaking, ends = False, []
        for offset in range(0, len(pcm) - PIPECAT_CHUNK + 1, PIPECAT_CHUNK):
            self._clock.now = (offset + PIPECAT_CHUNK) / MODEL_RATE
            chunk = pcm[offset : offset + PIPECAT_CHUNK].tobytes()
            state = await vad.analyze_audio(chunk)
            if state is VADState.SPEAKING and not speaking:
                speaking = True
                turn.update_vad_start_secs(vad.params.start_secs)
            elif state is VADState.QUIET and speaking:
                speaking = False
                complete, _ = await turn.analyze_end_of_turn()
                if complete is EndOfTurnState.COMPLETE:
                    ends.append(self._clock.now)
            if turn.append_audio(chunk, speaking) is EndOfTurnState.COMPLETE:
                ends.append(self._clock.now)  # the fallback: stop_secs of silence since the speech
        await turn.cleanup()
        return ends


def smart_turn() -> MemoSmartTurn:
    path = packaged_smart_turn()
    if path is None:
        raise SystemExit("Smart Turn needs pipecat-ai's ONNX file: pip install pipecat-ai")
    return MemoSmartTurn(SmartTurn(path))
