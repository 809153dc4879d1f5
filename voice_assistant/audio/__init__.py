"""Audio in: any sample rate and channel count -> 16 kHz mono float32, in one place."""

from voice_assistant.audio.pcm import MODEL_RATE, to_float32_mono
from voice_assistant.audio.resample import StreamResampler

__all__ = ["MODEL_RATE", "StreamResampler", "to_float32_mono"]
