"""How aiortc receives a caller's audio here: released as soon as it is in order, decoded on the loop, mono.

aiortc's receiver is built to play media back. Nothing here plays the caller's audio, so three of its costs
buy nothing and are dropped; measured on this machine they were a quarter of a silent connection's CPU:

- Its jitter buffer holds 4 audio packets (80 ms), and then waits for the next packet to know that a frame
  is whole (20 ms more), before it decodes the oldest. Every Opus packet is a whole frame, so each packet
  is released the moment it is next in sequence; a gap still waits for its packet (order is kept). Over
  loopback this takes about 80 ms off every end of turn.
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
from av import CodecContext

logger = logging.getLogger(__name__)


class InOrderAudioBuffer(JitterBuffer):
    def __init__(self, capacity: int, prefetch: int = 0, is_video: bool = False) -> None:
        super().__init__(capacity, prefetch, is_video)

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        if self._is_video:
            return super()._remove_frame(sequence_number)
        packet = self._packets[self._origin % self._capacity] if self._origin is not None else None
        if packet is None:
            return None
        self.remove(1)
        # `_data` is the depayloaded frame: aiortc's receiver sets it before `add`, its own buffer reads it.
        return JitterFrame(data=packet._data, timestamp=packet.timestamp)  # type: ignore[attr-defined]


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
        try:
            frames = self._decoder.decode(encoded)
        except av.FFmpegError:
            # One bad packet is 20 ms of silence for the VAD; the decoder keeps its state for the next.
            logger.warning("an audio packet could not be decoded", exc_info=True)
            return
        for frame in frames:
            track._queue.put_nowait(frame)


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
