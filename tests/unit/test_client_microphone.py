"""The Python client's microphone sends Opus packets encoded once per clip: they decode back to the clip,
pauses to silence, and every microphone playing a clip sends the same packets."""

from __future__ import annotations

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, CodecContext, Packet

from benchmarks.speech import speak
from voice_assistant.client_microphone import FRAME, RATE, TIME_BASE, MicrophoneTrack, clip_packets, to_pcm

pytestmark = pytest.mark.unit


class InstantPacer:
    """Every packet is due when asked for (no test waits in real time); the ticks start at 1000 s."""

    def __init__(self) -> None:
        self.dues: list[float] = []

    def now(self) -> float:
        return 1_000.0

    async def until(self, due: float) -> None:
        self.dues.append(due)


def decoded(payloads: list[bytes]) -> np.ndarray:
    """What a receiver hears: the packets through PyAV's libopus decoder (s16, interleaved stereo), as
    float mono."""
    decoder = CodecContext.create("libopus", "r")
    decoder.sample_rate = RATE
    samples = []
    for payload in payloads:
        for frame in decoder.decode(Packet(payload)):
            assert isinstance(frame, AudioFrame) and frame.format.name == "s16"
            samples.append(frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0])
    return np.concatenate(samples).astype(np.float32) / 32768.0


async def sent(microphone: MicrophoneTrack, count: int) -> list[bytes]:
    payloads = []
    for _ in range(count):
        expected_pts = round(microphone.sent_seconds * RATE)  # aiortc's RTP timestamps: samples so far
        packet = await microphone.recv()
        assert (packet.pts, packet.time_base) == (expected_pts, TIME_BASE)
        payloads.append(bytes(packet))
    return payloads


async def test_a_clip_decodes_back_to_itself_and_a_pause_to_silence() -> None:
    pacer = InstantPacer()
    microphone = MicrophoneTrack(pacer=pacer)
    clip = speak("Hello there, how are you today?")  # espeak-ng
    spoken = microphone.play(clip)
    microphone.play(np.zeros(8_000, np.float32))  # 0.5 s
    clip_frames = -(-3 * len(clip) // FRAME)
    assert microphone.queued_seconds >= (clip_frames + 25) * FRAME / RATE

    payloads = await sent(microphone, clip_frames - 1)
    assert not spoken.done()  # its last sample goes out in the next packet
    payloads += await sent(microphone, 1)
    assert spoken.result() == pytest.approx(1_000.0 + 3 * len(clip) / RATE)
    payloads += await sent(microphone, 40)  # the pause, then silence of the microphone's own
    assert microphone.queued_seconds == 0
    assert microphone.sent_seconds == pytest.approx(len(payloads) * FRAME / RATE)
    assert pacer.dues == pytest.approx([1_000.0 + (i + 1) * FRAME / RATE for i in range(len(payloads))])

    heard = decoded(payloads)
    assert len(heard) == len(payloads) * FRAME
    original = to_pcm(clip).astype(np.float32) / 32768.0
    # libopus delays by its lookahead (6.5 ms): the clip is where it matches best, within a packet.
    lag = int(np.argmax(np.correlate(heard[: len(original) + FRAME], original, mode="valid")))
    assert lag < FRAME
    assert np.corrcoef(heard[lag : lag + len(original)], original)[0, 1] > 0.9
    assert np.abs(heard[lag + len(original) + FRAME :]).max() < 1e-3  # near-silence after it


async def test_microphones_playing_one_clip_share_its_packets_and_pauses_are_not_encoded() -> None:
    clip_packets.cache_clear()
    first, second = MicrophoneTrack(pacer=InstantPacer()), MicrophoneTrack(pacer=InstantPacer())
    clip = speak("Please remind me.")
    first.play(clip)
    second.play(clip.copy())
    first.play(np.zeros(4_000, np.float32))
    assert (clip_packets.cache_info().misses, clip_packets.cache_info().hits) == (1, 1)

    count = len(clip_packets(clip.tobytes())) + 20
    mine, theirs = await sent(first, count), await sent(second, count)
    assert first.sent_seconds == second.sent_seconds == count * FRAME / RATE
    assert mine == theirs  # the second's pause is the microphone's silence, the first's a queued one
    assert len(set(mine[-20:])) == 1


async def test_a_stopped_microphone_cancels_what_it_will_never_send() -> None:
    microphone = MicrophoneTrack(pacer=InstantPacer())
    sent_clip = microphone.play(np.zeros(1_600, np.float32))  # 0.1 s: five packets
    await sent(microphone, 5)
    unsent = microphone.play(speak("Please remind me."))
    microphone.stop()  # its connection closed
    assert sent_clip.done() and not sent_clip.cancelled()
    assert unsent.cancelled()
    assert microphone.queued_seconds == 0
    with pytest.raises(MediaStreamError):
        await microphone.recv()
