"""The in-order audio buffer: each packet out as soon as it is next in sequence, order kept, a lost one given
up after GAP_WAIT more, and the inline decoder that decodes what it releases together, in order."""

from __future__ import annotations

import asyncio
import fractions
import random
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from aiortc.codecs.opus import OpusEncoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket
from av import AudioFrame

from voice_assistant.transport.receiver import GAP_WAIT, InlineAudioDecoder, InOrderAudioBuffer, Released

pytestmark = pytest.mark.unit


def packet(sequence: int) -> RtpPacket:
    rtp = RtpPacket(payload_type=111, sequence_number=sequence % 65536, timestamp=sequence * 960 % 2**32)
    rtp._data = bytes([sequence % 256])  # type: ignore[attr-defined]  # as aiortc's receiver sets it
    return rtp


def released(buffer: InOrderAudioBuffer, sequence: int) -> list[int]:
    """The packets (their first byte) that `sequence`'s arrival releases, in the order they go out."""
    _, frame = buffer.add(packet(sequence))
    if frame is None:
        return []
    assert isinstance(frame, Released)
    return [frame.data[0]] + [later.data[0] for later in frame.following]


def test_each_packet_in_order_is_released_at_once() -> None:
    buffer = InOrderAudioBuffer(capacity=16, prefetch=4)
    assert [released(buffer, n) for n in range(5)] == [[0], [1], [2], [3], [4]]


def test_a_late_packet_is_waited_for_then_it_and_those_behind_it_go_out_together() -> None:
    buffer = InOrderAudioBuffer(capacity=16)
    assert released(buffer, 10) == [10]
    assert released(buffer, 12) == []  # 11 is late
    assert released(buffer, 11) == [11, 12]
    assert released(buffer, 13) == [13]  # not a frame behind: caught up


def test_a_lost_packet_is_given_up_after_gap_wait_more_and_a_later_arrival_is_dropped() -> None:
    buffer = InOrderAudioBuffer(capacity=16)
    assert released(buffer, 0) == [0]
    # 1 is lost: 2..GAP_WAIT wait for it, GAP_WAIT + 1 gives it up.
    assert [released(buffer, n) for n in range(2, GAP_WAIT + 1)] == [[]] * (GAP_WAIT - 1)
    assert released(buffer, GAP_WAIT + 1) == list(range(2, GAP_WAIT + 2))
    assert released(buffer, 1) == []  # too late: never out of order
    assert released(buffer, GAP_WAIT + 2) == [GAP_WAIT + 2]


def test_a_lossy_path_costs_only_the_packets_lost_and_no_lasting_delay() -> None:
    # aiortc's buffer released one frame per packet: after the first loss it stayed 15 packets (300 ms)
    # behind, and dropped a whole frame at every loss after that (5 % lost became 13 %).
    buffer, rng = InOrderAudioBuffer(capacity=16, prefetch=4), random.Random(5)
    arrived = [n for n in range(65_000, 67_000) if rng.random() >= 0.05]  # across the wrap of 16 bits
    out = [byte for n in arrived for byte in released(buffer, n)]
    assert out == [n % 256 for n in arrived]  # every packet that arrived, in order, by the last arrival


async def test_frames_released_together_are_decoded_in_order_with_their_timestamps() -> None:
    encoder = OpusEncoder()
    payloads: list[bytes] = []
    for index in range(3):
        frame = AudioFrame.from_ndarray(np.zeros((1, 960), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48_000, index * 960, fractions.Fraction(1, 48_000)
        payloads += encoder.encode(frame)[0]
    queue: asyncio.Queue[Any] = asyncio.Queue()
    decoder = InlineAudioDecoder(SimpleNamespace(_track=SimpleNamespace(_queue=queue)))  # type: ignore[arg-type]
    codec = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48_000, channels=2, payloadType=111)
    # As aiortc hands it over: the first timestamp mapped onto the stream's, the others offsets from it.
    released = Released(
        payloads[0], 96_000, [Released(p, 960 * i, []) for i, p in enumerate(payloads[1:], 1)]
    )
    decoder.put((codec, released))
    frames = [queue.get_nowait() for _ in range(queue.qsize())]
    assert [f.pts for f in frames] == [96_000, 96_960, 97_920]
    assert {(f.layout.name, f.samples) for f in frames} == {("mono", 960)}
