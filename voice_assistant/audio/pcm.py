"""Sample formats: whatever a transport hands over, as mono float32 in [-1, 1]."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from voice_assistant.errors import BadAudio

MODEL_RATE = 16_000
"""The rate the VAD and every supported audio-language model take."""

MAX_CHANNELS = 8

Samples = npt.NDArray[np.float32]


def to_float32_mono(data: npt.NDArray[np.generic]) -> Samples:
    """Accept 1-D mono or 2-D planar `(channels, samples)` audio of an integer or float dtype."""
    array = np.asarray(data)
    if array.ndim == 2 and array.shape[0] > MAX_CHANNELS:
        raise BadAudio(
            f"expected (channels, samples) with at most {MAX_CHANNELS} channels, got {array.shape}"
        )
    if array.ndim not in (1, 2):
        raise BadAudio(f"expected 1-D or 2-D audio, got shape {array.shape}")
    if array.dtype == np.int16:
        scaled = array.astype(np.float32) / 32768.0
    elif array.dtype == np.int32:
        scaled = (array.astype(np.float64) / 2147483648.0).astype(np.float32)
    elif np.issubdtype(array.dtype, np.floating):
        scaled = array.astype(np.float32, copy=False)
    else:
        raise BadAudio(f"unsupported sample type {array.dtype}")
    if scaled.ndim == 2:
        scaled = scaled.mean(axis=0, dtype=np.float32) if scaled.shape[0] > 1 else scaled[0]
    return np.clip(scaled, -1.0, 1.0)


def to_int16(samples: Samples) -> npt.NDArray[np.int16]:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
