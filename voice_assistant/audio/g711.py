"""G.711, the telephone's 8 kHz audio (mu-law and A-law), through libsndfile (no hand-written codec,
no audioop)."""

from __future__ import annotations

import io
from typing import Literal

import numpy as np
import soundfile as sf

from voice_assistant.audio.pcm import Samples

TELEPHONE_RATE = 8_000

Law = Literal["ULAW", "ALAW"]
"""libsndfile's names: mu-law (North America, Japan; Twilio) and A-law (the rest of the world)."""


def decode_g711(data: bytes, law: Law = "ULAW") -> Samples:
    """G.711 bytes (one per sample) -> float32 in [-1, 1]."""
    if not data:
        return np.zeros(0, dtype=np.float32)
    samples, _ = sf.read(
        io.BytesIO(data), format="RAW", subtype=law, samplerate=TELEPHONE_RATE, channels=1, dtype="float32"
    )
    return np.asarray(samples, dtype=np.float32)


def encode_g711(samples: Samples, law: Law = "ULAW") -> bytes:
    """float32 at 8 kHz -> G.711 bytes."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(samples, -1.0, 1.0), TELEPHONE_RATE, format="RAW", subtype=law)
    return buffer.getvalue()
