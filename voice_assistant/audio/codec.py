"""Audio <-> bytes for the store: FLAC (lossless, about half the size of WAV)."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from voice_assistant.audio.pcm import Samples


def encode_flac(samples: Samples, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def decode(data: bytes) -> tuple[Samples, int]:
    """Any format libsndfile reads (FLAC, WAV, OGG): mono float32 and its rate."""
    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return np.ascontiguousarray(samples.mean(axis=1), dtype=np.float32), int(rate)
