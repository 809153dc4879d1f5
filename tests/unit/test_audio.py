"""Audio in at any rate, channel count and sample type comes out as 16 kHz mono float32."""

from __future__ import annotations

import numpy as np
import pytest

from voice_assistant.audio.codec import decode, encode_flac
from voice_assistant.audio.pcm import to_float32_mono, to_int16
from voice_assistant.audio.resample import StreamResampler
from voice_assistant.errors import BadAudio

pytestmark = pytest.mark.unit


def tone(rate: int, seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_int16_planar_stereo_is_averaged_to_mono() -> None:
    left = np.full(100, 16384, dtype=np.int16)
    right = np.zeros(100, dtype=np.int16)
    mono = to_float32_mono(np.stack([left, right]))
    assert mono.dtype == np.float32 and mono.shape == (100,)
    assert np.allclose(mono, 0.25)


def test_float_input_is_clipped_and_int16_round_trips() -> None:
    assert to_float32_mono(np.array([2.0, -3.0, 0.5])).tolist() == [1.0, -1.0, 0.5]
    samples = tone(16_000, 0.1)
    assert np.allclose(to_float32_mono(to_int16(samples)), samples, atol=1e-4)


@pytest.mark.parametrize("shape", [(2, 3, 4), (20, 100)])
def test_shapes_that_are_not_audio_are_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(BadAudio):
        to_float32_mono(np.zeros(shape, dtype=np.float32))


def test_unsupported_sample_types_are_refused() -> None:
    with pytest.raises(BadAudio, match="sample type"):
        to_float32_mono(np.zeros(10, dtype=np.uint8))


# The WebRTC (48 kHz) and telephone (8 kHz) paths must add almost no delay; other rates some.
@pytest.mark.parametrize(
    ("rate", "max_delay"),
    [(8_000, 0.002), (11_025, 0.035), (22_050, 0.035), (24_000, 0.035), (44_100, 0.035), (48_000, 0.008)],
)
def test_streaming_resampler_keeps_duration_and_pitch_with_little_delay(rate: int, max_delay: float) -> None:
    resampler = StreamResampler()
    source = tone(rate, 1.0)
    chunk = rate // 50  # 20 ms chunks, as WebRTC delivers them
    out = np.concatenate([resampler(source[i : i + chunk], rate) for i in range(0, len(source), chunk)])
    assert 0 <= 16_000 - len(out) <= max_delay * 16_000  # what the filter holds back
    spectrum = np.abs(np.fft.rfft(out[2000:14000]))
    peak_hz = np.argmax(spectrum) * 16_000 / 12_000
    assert abs(peak_hz - 440) < 5


def test_a_rate_change_mid_stream_is_followed() -> None:
    resampler = StreamResampler()
    first = resampler(tone(48_000, 0.5), 48_000)
    second = resampler(tone(8_000, 0.5), 8_000)
    assert len(first) + len(second) > 12_000


@pytest.mark.parametrize("rate", [0, 100, 1_000_000])
def test_absurd_rates_are_refused_clearly(rate: int) -> None:
    with pytest.raises(BadAudio, match="sample rate"):
        StreamResampler()(tone(8_000, 0.1), rate)


def test_flac_round_trip_is_lossless_at_16_bit() -> None:
    samples = tone(16_000, 0.5)
    decoded, rate = decode(encode_flac(samples, 16_000))
    assert rate == 16_000
    assert np.max(np.abs(decoded - samples)) < 1e-4
