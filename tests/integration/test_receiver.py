"""The server's aiortc receiver (transport/receiver.py) between two real peer connections on loopback: the
caller's audio arrives whole, mono and in order, decoded on the event loop with no decoder thread, and the
track ends when the caller hangs up."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from benchmarks.server import keep_webrtc_on_loopback
from voice_assistant.client import MicrophoneTrack
from voice_assistant.transport.receiver import receive_audio_promptly

pytestmark = pytest.mark.integration

RATE = 48_000


def decoder_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.endswith("-decoder")]


@pytest.fixture
async def call() -> AsyncIterator[
    tuple[MicrophoneTrack, asyncio.Future[MediaStreamTrack], RTCPeerConnection]
]:
    """A caller whose microphone reaches a listener: (microphone, the listener's track, the caller)."""
    keep_webrtc_on_loopback()
    receive_audio_promptly()
    caller, listener = RTCPeerConnection(), RTCPeerConnection()
    microphone = MicrophoneTrack()
    caller.addTrack(microphone)
    arrived: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()

    @listener.on("track")
    def _track(track: MediaStreamTrack) -> None:
        arrived.set_result(track)

    await caller.setLocalDescription(await caller.createOffer())
    await listener.setRemoteDescription(caller.localDescription)
    await listener.setLocalDescription(await listener.createAnswer())
    await caller.setRemoteDescription(listener.localDescription)
    yield microphone, arrived, caller
    await caller.close()
    await listener.close()


async def test_audio_arrives_mono_in_order_and_whole_without_a_decoder_thread(
    call: tuple[MicrophoneTrack, asyncio.Future[MediaStreamTrack], RTCPeerConnection],
) -> None:
    microphone, arrived, _ = call
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(16_000) / 16_000)).astype(np.float32)  # 1 s at 16 kHz
    microphone.play(tone)
    track = await asyncio.wait_for(arrived, 10)
    frames: list[AudioFrame] = []
    async with asyncio.timeout(10):
        while len(frames) < 60:
            frame = await track.recv()
            assert isinstance(frame, AudioFrame)
            frames.append(frame)
    assert {(f.layout.name, f.format.name, f.sample_rate, f.samples) for f in frames} == {
        ("mono", "s16", RATE, 960)
    }
    assert [f.pts for f in frames] == sorted(f.pts for f in frames)
    assert decoder_threads() == []  # aiortc would run one "audio-decoder" thread per receiver
    audio = np.concatenate([f.to_ndarray()[0] for f in frames]).astype(np.float32) / 32768
    # The tone is there at its level (Opus is lossy and delays it a little): its 440 Hz bin dominates.
    spoken = audio[len(audio) // 4 : len(audio) // 4 + RATE // 2]
    spectrum = np.abs(np.fft.rfft(spoken))
    assert abs(np.argmax(spectrum) * RATE / len(spoken) - 440) < 5
    # RMS 0.35 at 0.5 peak; aiortc's encoder mixes mono into stereo 3 dB down (0.25), as it always has.
    assert 0.22 < float(np.sqrt(np.mean(spoken**2))) < 0.28


async def test_the_track_ends_when_the_caller_hangs_up(
    call: tuple[MicrophoneTrack, asyncio.Future[MediaStreamTrack], RTCPeerConnection],
) -> None:
    microphone, arrived, caller = call
    microphone.play(np.zeros(1_600, np.float32))
    track = await asyncio.wait_for(arrived, 10)
    await asyncio.wait_for(track.recv(), 10)
    await caller.close()
    with pytest.raises(MediaStreamError):
        async with asyncio.timeout(10):
            while True:
                await track.recv()
