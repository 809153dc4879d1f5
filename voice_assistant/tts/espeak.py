"""espeak-ng as a speech engine: offline, tiny, robotic, about fifty times faster than real time."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import numpy as np
import soundfile as sf
import soxr

from voice_assistant.audio.pcm import Samples
from voice_assistant.tts.espeak_cli import find_espeak, run_espeak

ESPEAK_RATE = 22_050
"""espeak-ng's own voices speak at 22.05 kHz (MBROLA voices at 16 kHz: resampled to `sample_rate`)."""

NORMAL_WPM = 175
"""espeak-ng's default speaking rate; `speed` scales it."""


class EspeakSynthesizer:
    """Runs `espeak-ng --stdout` once per sentence in a worker thread."""

    def __init__(
        self, *, executable: str, voice: str = "en-us", speed: float = 1.0, sample_rate: int = ESPEAK_RATE
    ) -> None:
        if not 0.5 <= speed <= 2.5:
            raise ValueError(f"speed must be within 0.5-2.5 (1.0 is normal), got {speed}")
        self.sample_rate = sample_rate
        self._executable = executable
        self._options = ["--stdout", "-v", voice, "-s", str(round(NORMAL_WPM * speed))]

    @classmethod
    def find(cls, *, voice: str = "en-us", speed: float = 1.0) -> EspeakSynthesizer:
        """The engine on the espeak-ng found on PATH; a clear error when there is none."""
        return cls(executable=find_espeak(), voice=voice, speed=speed)

    def speak(self, text: str) -> Samples:
        """Blocking: the whole speech of `text`."""
        wav = run_espeak(self._executable, self._options, text)
        samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
        if rate != self.sample_rate:
            samples = soxr.resample(samples, rate, self.sample_rate)
        return np.asarray(samples, dtype=np.float32)

    async def synthesize(self, text: str) -> AsyncIterator[Samples]:
        yield await asyncio.to_thread(self.speak, text)
