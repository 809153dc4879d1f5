"""G.711 mu-law, the telephone's 8 kHz audio, through libsndfile (no hand-written codec, no audioop)."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from voice_assistant.audio.pcm import Samples

TELEPHONE_RATE = 8_000


def decode_mulaw(data: bytes) -> Samples:
    """mu-law bytes (one per sample) -> float32 in [-1, 1]."""
    if not data:
        return np.zeros(0, dtype=np.float32)
    samples, _ = sf.read(
        io.BytesIO(data), format="RAW", subtype="ULAW", samplerate=TELEPHONE_RATE, channels=1, dtype="float32"
    )
    return np.asarray(samples, dtype=np.float32)


def encode_mulaw(samples: Samples) -> bytes:
    """float32 at 8 kHz -> mu-law bytes."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(samples, -1.0, 1.0), TELEPHONE_RATE, format="RAW", subtype="ULAW")
    return buffer.getvalue()
