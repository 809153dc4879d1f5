"""The in-order audio buffer: each packet out as soon as it is next in sequence, order kept."""

from __future__ import annotations

import pytest
from aiortc.rtp import RtpPacket

from voice_assistant.transport.receiver import InOrderAudioBuffer

pytestmark = pytest.mark.unit


def packet(sequence: int) -> RtpPacket:
    rtp = RtpPacket(payload_type=111, sequence_number=sequence, timestamp=sequence * 960)
    rtp._data = bytes([sequence % 256])  # type: ignore[attr-defined]  # as aiortc's receiver sets it
    return rtp


def released(buffer: InOrderAudioBuffer, sequence: int) -> int | None:
    _, frame = buffer.add(packet(sequence))
    return None if frame is None else frame.data[0]


def test_each_packet_in_order_is_released_at_once() -> None:
    buffer = InOrderAudioBuffer(capacity=16, prefetch=4)
    assert [released(buffer, n) for n in range(5)] == [0, 1, 2, 3, 4]


def test_a_gap_waits_for_its_packet_and_order_is_kept() -> None:
    buffer = InOrderAudioBuffer(capacity=16)
    assert released(buffer, 10) == 10
    assert released(buffer, 12) is None  # 11 is late
    assert released(buffer, 11) == 11
    assert released(buffer, 13) == 12  # one frame behind after a reorder, never out of order


def test_video_keeps_aiortc_s_own_behaviour() -> None:
    buffer = InOrderAudioBuffer(capacity=16, is_video=True)
    assert released(buffer, 0) is None  # a video frame is whole only when the next one starts
