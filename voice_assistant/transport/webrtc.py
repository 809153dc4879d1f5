"""The fastrtc handler: one per WebRTC connection, from the audio track to the session's pipeline.

It serves both ways in: `POST /webrtc/offer` (the session is bound to the connection before the
offer is answered, and `bound_session` hands it over) and the Gradio UI's own negotiation route (the
session comes from the UI's inputs, fetched through fastrtc's `send_input` round trip, and a
`UiConnection` turns the session's events into the UI's updates).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import numpy as np
from av import AudioFrame
from fastrtc import AdditionalOutputs, AsyncStreamHandler
from fastrtc.utils import get_current_context

from voice_assistant.audio.pcm import MODEL_RATE, Samples, to_float32_mono
from voice_assistant.audio.resample import StreamResampler
from voice_assistant.audio_rate import AudioStreams, ReceivedSeconds
from voice_assistant.clock import utc_now
from voice_assistant.errors import VoiceAssistantError
from voice_assistant.events import ErrorRaised, Event, ReconnectRequested
from voice_assistant.metrics import Metrics
from voice_assistant.redaction import session_tag
from voice_assistant.session.pipeline import Pipelines, SessionPipeline
from voice_assistant.session.sink import Playout
from voice_assistant.session.store_failures import store_failure

logger = logging.getLogger(__name__)

WEBRTC_RATE = 48_000


@dataclass(frozen=True)
class SpokenPiece:
    rate: int
    samples: Samples
    label: str


Outgoing = AdditionalOutputs | SpokenPiece | None
"""What emit() hands fastrtc: a UI update, a piece of spoken reply, or None once closed."""
MAX_PENDING_SECONDS = 10.0
"""Audio that arrives before the session is resolved is kept, up to this much."""


class UiConnection(Protocol):
    """What a UI shows of one connection (the Gradio UI's is in web/): its session and its updates."""

    async def session(self, inputs: Sequence[Any]) -> str:
        """The session the UI's inputs name (or a new one)."""
        ...

    async def opened(self, session_id: str) -> AdditionalOutputs:
        """The UI's first update: the session id and its history so far."""
        ...

    def apply(self, event: Event) -> AdditionalOutputs | None:
        """The UI's update for an event, if it changes anything."""
        ...


@dataclass(frozen=True)
class Connections:
    """What every connection's handler needs: fastrtc copies the prototype once per connection."""

    pipelines: Pipelines
    metrics: Metrics
    audio: AudioStreams
    """Where each connection reports the audio it receives, for the load sensor (voice_assistant/load.py)."""
    bound_session: Callable[[str], str | None]
    """The session `POST /webrtc/offer` bound to a connection id (taken once), else None."""
    ui: Callable[[], UiConnection]
    speak: bool
    """Speak replies on the connection's audio track too."""


class VoiceHandler(AsyncStreamHandler):
    """One per connection; `live` (the handlers of the open connections) is shared by all copies."""

    def __init__(self, connections: Connections, live: set[VoiceHandler] | None = None) -> None:
        # fastrtc's own resampler only downmixes at the WebRTC rate (20 ms in, 20 ms out);
        # the one resampling to 16 kHz is ours, without re-buffering.
        super().__init__(expected_layout="mono", output_sample_rate=24_000, input_sample_rate=WEBRTC_RATE)
        self._connections = connections
        self._to_model_rate = StreamResampler()
        self._pipeline: SessionPipeline | None = None
        self._received: ReceivedSeconds | None = None
        self._pending: list[tuple[datetime, int, np.ndarray]] = []
        self._pending_seconds = 0.0
        self._outbox: asyncio.Queue[Outgoing] = asyncio.Queue()
        self._playout = Playout()
        self._playout_end = 0.0
        self._playout_timers: list[asyncio.TimerHandle] = []
        self._ui: UiConnection | None = None
        self._closed = False
        self._audio_problem: str | None = None
        self._live = contextlib.ExitStack()
        self.live: set[VoiceHandler] = live if live is not None else set()

    def copy(self) -> VoiceHandler:
        return VoiceHandler(self._connections, self.live)

    @property
    def session_id(self) -> str | None:
        return self._pipeline.session_id if self._pipeline else None

    # -- start: which session is this?

    async def start_up(self) -> None:
        connections = self._connections
        try:
            session_id = await self._session_id_of_connection()
            # Without a speech engine the browser still gets every reply as text.
            speaks = connections.speak and connections.pipelines.can_speak
            self._pipeline = await connections.pipelines.open(
                session_id, publish=self._publish, sink=self if speaks else None
            )
        except Exception as exc:
            # The store is away: the client is told, and this connection stays without a session (its
            # audio is dropped); a new one works once the database is back.
            self._store_failed("the session could not be opened", exc, None)
            return
        self.live.add(self)
        self._live.enter_context(connections.metrics.live_sessions.held())
        self._received = self._live.enter_context(connections.audio.connected())
        logger.info("connection opened", extra={"session": session_tag(session_id)})
        if self._ui is not None:
            try:
                self._outbox.put_nowait(await self._ui.opened(session_id))
            except Exception as exc:  # the session works; only its past turns are not shown
                self._store_failed("the session's history could not be read", exc, session_id)
        pending, self._pending = self._pending, []
        for arrived, rate, array in pending:
            self._consume(rate, array, arrived)

    async def _session_id_of_connection(self) -> str:
        session_id = self._connections.bound_session(get_current_context().webrtc_id)
        if session_id is None:
            await self.wait_for_args()
            # fastrtc puts the WebRTC value before the UI inputs, behind a marker when it is a bare id.
            args = self.latest_args
            self._ui = self._connections.ui()
            session_id = await self._ui.session(args[2:] if args[0] == "__webrtc_value__" else args[1:])
        return session_id

    def _store_failed(self, what: str, error: Exception, session_id: str | None) -> None:
        metrics = self._connections.metrics
        self._publish(store_failure(what, error, metrics=metrics, session_id=session_id))

    # -- audio in

    def resample(self, frame: AudioFrame) -> Generator[AudioFrame, None, None]:
        """fastrtc runs every frame through an av resampler to its input format: a mono frame (what this
        server's receiver decodes, see transport/receiver.py) goes on as it is, to the one resampler to
        16 kHz in `_consume`; anything else still takes fastrtc's way."""
        if frame.layout.name == "mono" and frame.format.name == "s16":
            yield frame
        else:
            yield from super().resample(frame)

    async def receive(self, frame: tuple[int, np.ndarray]) -> None:
        rate, array = frame
        if self._pipeline is None:
            if self._pending_seconds < MAX_PENDING_SECONDS:
                self._pending.append((utc_now(), rate, array))
                self._pending_seconds += array.shape[-1] / rate
            return
        self._consume(rate, array, utc_now())

    def _consume(self, rate: int, array: np.ndarray, arrived: datetime) -> None:
        assert self._pipeline is not None and self._received is not None
        try:
            samples = self._to_model_rate(to_float32_mono(array), rate)
        except VoiceAssistantError as exc:
            if str(exc) != self._audio_problem:  # once per problem, not once per 20 ms frame
                self._audio_problem = str(exc)
                self._publish(ErrorRaised(message=str(exc)))
            return
        seconds = len(samples) / MODEL_RATE
        self._connections.metrics.audio_received.inc(seconds)
        self._received(seconds)
        self._pipeline.feed(samples, arrived)

    # -- events out

    def _publish(self, event: Event) -> None:
        channel = self.channel
        if channel is not None and getattr(channel, "readyState", "open") == "open":
            try:
                channel.send(event.to_json())
            except Exception:  # the channel closed between the check and the send
                logger.debug("data channel send failed", exc_info=True)
        if self._ui is not None and (update := self._ui.apply(event)) is not None:
            self._outbox.put_nowait(update)

    async def emit(self) -> Any:
        """Waits for the next piece of spoken reply or UI update: never returns None in a loop."""
        item = await self._outbox.get()
        if not isinstance(item, SpokenPiece):
            return item
        # fastrtc plays what it takes in real time after what it already has (it reports no position):
        # the piece has played when that much time has passed.
        loop = asyncio.get_running_loop()
        self._playout_end = max(loop.time(), self._playout_end) + len(item.samples) / item.rate
        self._playout_timers.append(loop.call_at(self._playout_end, self._playout.finished, item.label))
        return item.rate, item.samples

    # -- the spoken reply, as an AudioSink: fastrtc paces what emit() returns onto the audio track

    async def play(self, samples: Samples, rate: int, label: str) -> None:
        self._playout.sent(label)
        self._outbox.put_nowait(SpokenPiece(rate, samples, label))

    def clear(self) -> set[str]:
        """Unplayed: the pieces still queued here, and those fastrtc took whose playback had not ended."""
        unplayed = self._playout.clear()
        for timer in self._playout_timers:
            timer.cancel()
        self._playout_timers = []
        self._playout_end = asyncio.get_running_loop().time()
        kept = []
        while not self._outbox.empty():
            item = self._outbox.get_nowait()
            if not isinstance(item, SpokenPiece):
                kept.append(item)  # UI updates stay; only audio is dropped
        for item in kept:
            self._outbox.put_nowait(item)
        if self._clear_queue is not None:
            self.clear_queue()  # what fastrtc had already cut into frames
        return unplayed

    async def played(self, label: str) -> None:
        await self._playout.played(label)

    async def drain(self) -> None:
        """The server drains: once the conversation is quiet (the turn being spoken answered, its reply
        played out), tell the client to connect again (elsewhere) and close. Cancelled because the
        drain's time is up, it still tells the client; the shutdown that follows cuts the reply."""
        try:
            if self._pipeline is not None:
                await self._pipeline.settled()
        finally:
            self._publish(ReconnectRequested())
        await self.shutdown()

    async def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.live.discard(self)
        if self._pipeline is not None:
            await self._pipeline.close()
            logger.info("connection closed", extra={"session": session_tag(self._pipeline.session_id)})
        self._live.close()
        self._outbox.put_nowait(None)
