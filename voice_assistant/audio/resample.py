"""Streaming resampling to the model rate with soxr: one resampler per stream, no chunk-size coupling."""

from __future__ import annotations

import numpy as np
import soxr

from voice_assistant.audio.pcm import MODEL_RATE, Samples
from voice_assistant.errors import BadAudio

MIN_RATE, MAX_RATE = 4_000, 192_000


class StreamResampler:
    """Turns chunks at any (even changing) input rate into MODEL_RATE samples as they arrive.

    soxr keeps the filter state between chunks, so a 20 ms frame in gives about 20 ms out, instead
    of the 60 ms re-buffering of fastrtc's av resampler. The quality is chosen for latency: soxr's
    high quality holds back 21 ms at 48 kHz (66 ms at 8 kHz), its low quality 6 ms when downsampling,
    and cubic interpolation next to nothing when upsampling (nothing can alias then). Speech under
    8 kHz is all the VAD and the models use.
    """

    def __init__(self, out_rate: int = MODEL_RATE) -> None:
        self.out_rate = out_rate
        self._in_rate: int | None = None
        self._stream: soxr.ResampleStream | None = None

    def __call__(self, samples: Samples, rate: int) -> Samples:
        if not MIN_RATE <= rate <= MAX_RATE:
            raise BadAudio(f"unsupported sample rate {rate} Hz (accepted: {MIN_RATE}-{MAX_RATE})")
        if rate == self.out_rate:
            return samples
        if rate != self._in_rate:
            self._in_rate = rate
            quality = "LQ" if rate > self.out_rate else "QQ"
            self._stream = soxr.ResampleStream(rate, self.out_rate, 1, dtype="float32", quality=quality)
        assert self._stream is not None
        return np.asarray(self._stream.resample_chunk(samples), dtype=np.float32)


def resample(samples: Samples, rate: int, out_rate: int) -> Samples:
    """Whole-clip resampling (files, TTS output)."""
    if rate == out_rate:
        return samples
    return np.asarray(soxr.resample(samples, rate, out_rate, quality="HQ"), dtype=np.float32)
