"""How aiortc receives a caller's audio here: released as soon as it is in order, decoded on the loop, mono.

aiortc's receiver is built to play media back. Nothing here plays the caller's audio, so three of its costs
buy nothing and are dropped; measured on this machine they were a quarter of a silent connection's CPU:

- Its jitter buffer holds 4 audio packets (80 ms), and then waits for the next packet to know that a frame
  is whole (20 ms more), before it decodes the oldest. Every Opus packet is a whole frame, so each packet
  is released the moment it is next in sequence; a gap waits for its packet (order is kept) while fewer
  than GAP_WAIT packets have come after it, then it is given up for lost, and every packet held behind it
  is released at once. Over loopback this takes about 80 ms off every end of turn. (aiortc's buffer, and
  this one before, released one frame per packet that arrived: after a packet lost, it stayed 15 packets,
  300 ms, behind for the rest of the call, and discarded one whole frame at every loss after that.)
- It decodes in one thread per receiver: every 20 ms packet crosses to that thread and back through a
  queue, `run_coroutine_threadsafe` and the GIL. Decoding a 20 ms Opus packet takes ~65 us, less than the
  crossing, so audio is decoded on the event loop as it is released.
- It decodes to 48 kHz stereo, which fastrtc then downmixes with a per-frame av resampler. The decoder
  here gives mono (libopus mixes a stereo stream down itself); the handler resamples it to 16 kHz once.
"""

from __future__ import annotations

import logging
from typing import Any

import aiortc.rtcpeerconnection as peer_connection
import aiortc.rtcrtpreceiver as receiver
import av
from aiortc.codecs import get_decoder
from aiortc.codecs.base import Decoder
from aiortc.codecs.opus import SAMPLE_RATE, OpusDecoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.utils import uint16_add, uint32_add
from av import CodecContext

logger = logging.getLogger(__name__)


GAP_WAIT = 4
"""How many packets may come after a missing one before it is given up for lost (80 ms of reordering)."""


class Released(JitterFrame):
    """The frames released together: this one, then `following`, whose timestamps are offsets from its own
    (aiortc maps the first's RTP timestamp to the stream's; InlineAudioDecoder maps the others from it)."""

    def __init__(self, data: bytes, timestamp: int, following: list[JitterFrame]) -> None:
        super().__init__(data, timestamp)
        self.following = following


class InOrderAudioBuffer(JitterBuffer):
    def __init__(self, capacity: int, prefetch: int = 0, is_video: bool = False) -> None:
        super().__init__(capacity, prefetch, is_video)

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        """Every packet in sequence from the oldest, once the oldest is here or given up for lost."""
        if self._is_video:
            return super()._remove_frame(sequence_number)
        if self._origin is None:
            return None
        if self._packets[self._origin % self._capacity] is None:
            if uint16_add(sequence_number, -self._origin) < GAP_WAIT:
                return None  # it may still come
            while self._packets[self._origin % self._capacity] is None:  # `sequence_number` is held
                self._origin = uint16_add(self._origin, 1)
        # `_data` is the depayloaded frame: aiortc's receiver sets it before `add`, its own buffer reads it.
        packets = []
        while (packet := self._packets[self._origin % self._capacity]) is not None:
            packets.append(packet)
            self.remove(1)
        first = packets[0]
        following = [
            JitterFrame(p._data, uint32_add(p.timestamp, -first.timestamp))  # type: ignore[attr-defined]
            for p in packets[1:]
        ]
        return Released(first._data, first.timestamp, following)  # type: ignore[attr-defined]


class MonoOpusDecoder(OpusDecoder):
    """aiortc's Opus decoder, giving mono frames (48 kHz: libavcodec's libopus decodes at no other rate)."""

    def __init__(self) -> None:
        self.codec = CodecContext.create("libopus", "r")
        self.codec.format = "s16"
        self.codec.layout = "mono"
        self.codec.sample_rate = SAMPLE_RATE


class InlineAudioDecoder:
    """Takes the place of an audio receiver's decoder queue: what aiortc puts in is decoded at once, on the
    event loop, and the frames go to the receiver's track. `None` (aiortc's stop) ends the track."""

    def __init__(self, owner: receiver.RTCRtpReceiver) -> None:
        self._owner = owner
        self._codec: str | None = None
        self._decoder: Decoder | None = None

    def put(self, task: tuple[RTCRtpCodecParameters, JitterFrame] | None) -> None:
        track = self._owner._track
        assert track is not None  # aiortc gives a receiver its track before it starts receiving
        if task is None:
            track._queue.put_nowait(None)
            return
        codec, encoded = task
        if self._decoder is None or codec.name != self._codec:
            self._decoder = MonoOpusDecoder() if codec.name.lower() == "opus" else get_decoder(codec)
            self._codec = codec.name
        following = encoded.following if isinstance(encoded, Released) else []
        for frame in (encoded, *following):
            if frame is not encoded:
                frame.timestamp = uint32_add(encoded.timestamp, frame.timestamp)
            self._decode(frame)

    def _decode(self, encoded: JitterFrame) -> None:
        assert self._decoder is not None and self._owner._track is not None
        try:
            frames = self._decoder.decode(encoded)
        except av.FFmpegError:
            # One bad packet is 20 ms of silence for the VAD; the decoder keeps its state for the next.
            logger.warning("an audio packet could not be decoded", exc_info=True)
            return
        for frame in frames:
            self._owner._track._queue.put_nowait(frame)


class ListeningReceiver(receiver.RTCRtpReceiver):
    """aiortc's receiver, decoding audio on the loop (video, which no route here takes, keeps its thread)."""

    def __init__(self, kind: str, transport: Any) -> None:
        super().__init__(kind, transport)
        if kind == "audio":
            # The queue is private to aiortc's class; its thread reads it, `_handle_rtp_packet` and
            # `__stop_decoder` only ever `put` into it.
            self._RTCRtpReceiver__decoder_queue = InlineAudioDecoder(self)


_threaded_decoder_worker = receiver.decoder_worker


def _decoder_worker(loop: Any, input_q: Any, output_q: Any, decode_error: Any) -> None:
    """The receiver's decoder thread: none is needed (it ends at once) where audio is decoded inline."""
    if not isinstance(input_q, InlineAudioDecoder):
        _threaded_decoder_worker(loop, input_q, output_q, decode_error)


def receive_audio_promptly() -> None:
    """Applies to every aiortc peer connection created afterwards in this process (idempotent)."""
    receiver.JitterBuffer = InOrderAudioBuffer  # type: ignore[attr-defined]
    receiver.decoder_worker = _decoder_worker
    peer_connection.RTCRtpReceiver = ListeningReceiver  # type: ignore[attr-defined]
