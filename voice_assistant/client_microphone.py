"""The Python client's microphone (`VoiceClient.microphone`): Opus packets, encoded once, sent in real time.

A load generator runs tens of clients on the cores the server uses, so a client must cost next to
nothing. aiortc's sender takes a track that hands over `av.Packet`s (already encoded) and then only packs
them into RTP, skipping its per-frame encode, audio-level measure and thread hop. So a clip is encoded
once, the way aiortc's own `OpusEncoder` does it (48 kHz, 20 ms frames, its bitrate and options), and its
packets are shared by every client that plays the same clip; silence is one encoded packet, reused.
The packets go out on the ticks that every microphone of the event loop shares (client_pacing).
"""

from __future__ import annotations

import asyncio
import fractions
import functools
from collections import deque

import numpy as np
import soxr
from aiortc import MediaStreamTrack
from aiortc.codecs.opus import OpusEncoder
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, Packet
from av.stream import Stream

from voice_assistant.client_pacing import Pacer, ticker

RATE = 48_000
FRAME = 960  # 20 ms
TIME_BASE = fractions.Fraction(1, RATE)


def _pcm_frame(chunk: np.ndarray, pts: int) -> AudioFrame:
    """One 20 ms mono s16 frame for aiortc's encoder (zero-padded when the clip ends inside it)."""
    padded = np.zeros(FRAME, dtype=np.int16)
    padded[: len(chunk)] = chunk
    frame = AudioFrame.from_ndarray(padded.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = RATE
    frame.pts = pts
    frame.time_base = TIME_BASE
    return frame


def _lookahead(encoder: OpusEncoder) -> int:
    """Samples by which libopus delays what it encodes (its first packet's pts is minus that)."""
    return -encoder.first_packet_pts if encoder.first_packet_pts is not None else 0


def encode(pcm: np.ndarray) -> tuple[bytes, ...]:
    """The Opus packets of 48 kHz mono s16 audio, one per 20 ms, by a fresh aiortc `OpusEncoder`.

    libopus holds back its lookahead (6.5 ms), which a continuous stream carries in the next packet; a
    clip's packets are followed by other clips' or by silence, so they run on until that tail is out."""
    encoder = OpusEncoder()
    packets: list[bytes] = []
    frames = 0
    while frames * FRAME < len(pcm) + _lookahead(encoder):
        payloads, _ = encoder.encode(_pcm_frame(pcm[frames * FRAME : (frames + 1) * FRAME], frames * FRAME))
        packets += payloads
        frames += 1
    if len(packets) != frames:
        raise RuntimeError(f"the Opus encoder gave {len(packets)} packets for {frames} frames, not one each")
    return tuple(packets)


@functools.cache
def silent_packet() -> bytes:
    """20 ms of silence, encoded: the packet libopus settles on after a few silent frames."""
    return encode(np.zeros(3 * FRAME, dtype=np.int16))[-1]


def to_pcm(samples_16k: np.ndarray) -> np.ndarray:
    """Mono float32 16 kHz audio (-1..1) as the microphone sends it: 48 kHz s16."""
    upsampled: np.ndarray = soxr.resample(samples_16k.astype(np.float32), 16_000, RATE)
    return (np.clip(upsampled, -1, 1) * 32767).astype(np.int16)


@functools.lru_cache(maxsize=64)
def clip_packets(samples_16k: bytes) -> tuple[bytes, ...]:
    """The packets of a clip (float32 16 kHz, as bytes: the cache's key), shared by every microphone that
    plays it: a benchmark's clients speak the same script."""
    return encode(to_pcm(np.frombuffer(samples_16k, dtype=np.float32)))


class MicrophoneTrack(MediaStreamTrack):
    """The client's microphone: 20 ms Opus packets (48 kHz mono) of queued speech, or of silence, in real
    time. Each clip queued starts on a packet of its own (its last one padded with silence)."""

    kind = "audio"

    def __init__(self, *, pacer: Pacer | None = None) -> None:
        """`pacer`: what paces the packets and dates the clips' ends (a test's own); by default the ticker
        that the event loop's microphones share."""
        super().__init__()
        self._pacer = pacer
        self._queue: deque[bytes] = deque()
        self._start: float | None = None
        self._sent = 0
        self._marks: list[tuple[int, asyncio.Future[float]]] = []

    def play(self, samples_16k: np.ndarray) -> asyncio.Future[float]:
        """Queue mono float32 16 kHz audio (-1..1) behind what is still playing; the future is the wall
        time (`time.time()`, or the pacer's) at which its last sample goes out, cancelled if the
        microphone stops first (its connection closed)."""
        samples = samples_16k.astype(np.float32)
        end = self._sent + len(self._queue) * FRAME + 3 * len(samples)  # 16 -> 48 kHz
        if samples.any():
            self._queue.extend(clip_packets(samples.tobytes()))
        else:  # pauses come in every length: not worth encoding, nor caching
            self._queue.extend([silent_packet()] * -(-3 * len(samples) // FRAME))
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._marks.append((end, future))
        return future

    @property
    def queued_seconds(self) -> float:
        """Audio queued and not sent yet (whole packets)."""
        return len(self._queue) * FRAME / RATE

    @property
    def sent_seconds(self) -> float:
        """Audio (speech or silence) sent so far."""
        return self._sent / RATE

    def stop(self) -> None:
        """End the track: what is still queued never goes out, so its futures are cancelled."""
        super().stop()
        self._queue.clear()
        for _, future in self._marks:
            future.cancel()
        self._marks.clear()

    async def recv(self) -> Packet[Stream]:
        if self.readyState != "live":
            raise MediaStreamError  # aiortc's sender ends on it
        if self._pacer is None:
            self._pacer = ticker()
        if self._start is None:
            self._start = self._pacer.now()
        # A real microphone hands over a frame once its last sample is captured.
        await self._pacer.until(self._start + (self._sent + FRAME) / RATE)
        packet = Packet(self._queue.popleft() if self._queue else silent_packet())
        # aiortc's RTP timestamp: the first sample's, counted from the start as its encoder counts it.
        packet.pts = self._sent
        packet.time_base = TIME_BASE
        self._sent += FRAME
        for mark in [m for m in self._marks if m[0] <= self._sent]:
            if not mark[1].done():
                mark[1].set_result(self._start + mark[0] / RATE)  # when that sample was "spoken"
            self._marks.remove(mark)
        return packet
