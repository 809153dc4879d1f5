"""`VoiceClient`: a Python client of the voice assistant over WebRTC (aiortc), speaking as a browser does.

It follows the client contract (README, "The client contract"): an offer to `/webrtc/offer`, a data
channel for the events, and a microphone track that sends 20 ms Opus packets paced by the wall clock:
the audio queued with `microphone.play()`, silence otherwise (after its speech the server hears a pause).
Each clip is encoded once and its packets are shared by every client that plays it (client_microphone),
and one ticker paces every microphone of the loop (client_pacing): tens of clients fit beside the server.
Every event is kept with the wall time it arrived, and each queued clip tells when its last sample was
"spoken": tests and benchmarks measure from the true end of speech to an event. README, "Python client",
has an example.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from voice_assistant.client_microphone import MicrophoneTrack

CONTRACT_EVENTS = frozenset(
    {
        "turn_started",
        "turn_ended",
        "reply_delta",
        "reply_paused",
        "reply_resumed",
        "reply_done",
        "transcript",
        "error",
        "reconnect",
    }
)
"""The events of the client contract (fastrtc's own messages share the data channel)."""


class OfferRefused(ConnectionRefusedError):
    """The server answered the offer with an error: its status, its `{"error": ...}` and, when it said
    when to come back (429, 503), `Retry-After` in seconds."""

    def __init__(self, status: int, answer: dict[str, Any], retry_after: int | None) -> None:
        super().__init__(f"{status}: {answer}")
        self.status = status
        self.error = answer.get("error")
        self.retry_after = retry_after


@dataclass
class Received:
    """One data-channel message: `{"type": ..., "data": {...}}`, and the wall time it arrived."""

    at: float
    message: dict[str, Any]


@dataclass
class VoiceClient:
    """One WebRTC connection to the server at `base_url` (`http://host:port`): `connect()`, speak with
    `microphone.play()`, read `events()` or await `wait_for()`, `close()`. One per connection."""

    base_url: str
    session_id: str | None = None
    """The session to resume; set from the server's answer once connected (a new one when None)."""
    timeout: float = 20.0
    """For the offer and the data channel to open."""
    webrtc_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    headers: dict[str, str] = field(default_factory=dict)
    """Sent with the offer: e.g. `Origin` and `X-Site-Key`, as a page embedding the widget sends them."""
    messages: list[Received] = field(default_factory=list)
    """Every message received, in order: the contract's events and fastrtc's own."""
    configuration: RTCConfiguration | None = None
    """The peer connection's, e.g. the servers of `GET /webrtc/ice-servers` (default: aiortc's STUN)."""

    def __post_init__(self) -> None:
        self.pc = RTCPeerConnection(self.configuration)
        self.microphone = MicrophoneTrack()
        self._new_message = asyncio.Event()
        self.speaker: list[tuple[float, float]] = []
        """(arrival time, RMS) of every audio frame the server sent: its spoken replies."""
        self._listening: asyncio.Task[None] | None = None

        @self.pc.on("track")
        def _track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self._listening = asyncio.ensure_future(self._listen(track))

        @self.pc.on("connectionstatechange")
        def _state() -> None:
            # A connection gone (closed by either side, or failed) no longer reads the microphone.
            if self.pc.connectionState in ("closed", "failed"):
                self.microphone.stop()

    async def _listen(self, track: MediaStreamTrack) -> None:
        """Drain the server's audio track (as a speaker would), noting how loud each frame is."""
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                assert isinstance(frame, AudioFrame)
                samples = frame.to_ndarray().astype(np.float32) / 32768.0
                self.speaker.append((time.time(), float(np.sqrt(np.mean(samples**2)))))
                self._new_message.set()

    async def connect(self) -> dict[str, Any]:
        """Offer, answer, and wait for the data channel: the events flow once this returns. Returns the
        answer; a refused offer raises `OfferRefused` (a `ConnectionRefusedError`) with the status, the
        server's error and its `Retry-After`."""
        self.pc.addTrack(self.microphone)
        channel = self.pc.createDataChannel("text")
        opened = asyncio.get_running_loop().create_future()

        @channel.on("open")
        def _open() -> None:
            channel.send("handshake")
            if not opened.done():
                opened.set_result(True)

        @channel.on("message")
        def _message(raw: str) -> None:
            try:
                message = json.loads(raw)
            except ValueError:
                return
            self.messages.append(Received(time.time(), message))
            self._new_message.set()

        await self.pc.setLocalDescription(await self.pc.createOffer())
        body: dict[str, Any] = {
            "sdp": self.pc.localDescription.sdp,
            "type": "offer",
            "webrtc_id": self.webrtc_id,
        }
        if self.session_id:
            body["session_id"] = self.session_id
        async with httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout) as http:
            response = await http.post("/webrtc/offer", json=body, headers=self.headers)
        answer: dict[str, Any] = response.json()
        if response.status_code != 200:
            retry_after = response.headers.get("Retry-After")
            raise OfferRefused(response.status_code, answer, int(retry_after) if retry_after else None)
        self.session_id = answer.get("session_id")  # absent from a stock fastrtc server's answer
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        await asyncio.wait_for(opened, self.timeout)
        return answer

    def events(self, kind: str | None = None) -> list[Received]:
        """The contract's events received so far (of one `kind`, e.g. "reply_done"), fastrtc's left out."""
        return [
            m
            for m in self.messages
            if m.message.get("type") in CONTRACT_EVENTS and (kind is None or m.message["type"] == kind)
        ]

    async def wait_for(self, kind: str, count: int) -> list[Received]:
        """Until `count` events of `kind` have arrived (bound it with `asyncio.timeout`)."""
        await self.until(lambda: len(self.events(kind)) >= count)
        return self.events(kind)

    async def until(self, condition: Callable[[], object]) -> None:
        """Until `condition()` holds, checked at every message and audio frame (bound it with a timeout)."""
        while not condition():
            self._new_message.clear()
            await self._new_message.wait()

    async def close(self) -> None:
        """Hang up; the session stays on the server (resume it with `session_id`)."""
        self.microphone.stop()
        await self.pc.close()
        if self._listening is not None:
            self._listening.cancel()
