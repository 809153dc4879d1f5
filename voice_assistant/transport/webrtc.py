"""The fastrtc handler: one per WebRTC connection, from the audio track to the conversation.

It serves both ways in: `POST /webrtc/offer` (the session is bound to the connection before the
offer is answered) and the Gradio UI's own negotiation route (the session comes from the UI's
session box, fetched through fastrtc's `send_input` round trip).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from fastrtc import AdditionalOutputs, AsyncStreamHandler
from fastrtc.utils import get_current_context

from voice_assistant.assistant import Assistant
from voice_assistant.audio.pcm import MODEL_RATE, Samples, to_float32_mono
from voice_assistant.audio.resample import StreamResampler
from voice_assistant.clock import utc_now
from voice_assistant.errors import UnknownSession, VoiceAssistantError
from voice_assistant.events import ErrorRaised, Event, ReplyDelta, ReplyDone, Transcribed, TurnEnded
from voice_assistant.session.conversation import Conversation
from voice_assistant.session.speech import SpeechOutput
from voice_assistant.turn.taker import TurnTaker

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


class VoiceHandler(AsyncStreamHandler):
    """fastrtc copies the prototype once per connection; `live` is shared by all copies."""

    def __init__(self, assistant: Assistant, live: set[VoiceHandler] | None = None) -> None:
        # fastrtc's own resampler only downmixes at the WebRTC rate (20 ms in, 20 ms out);
        # the one resampling to 16 kHz is ours, without re-buffering.
        super().__init__(expected_layout="mono", output_sample_rate=24_000, input_sample_rate=WEBRTC_RATE)
        self._assistant = assistant
        self._to_model_rate = StreamResampler()
        self._conversation: Conversation | None = None
        self._turns: TurnTaker | None = None
        self._pending: list[tuple[datetime, int, np.ndarray]] = []
        self._pending_seconds = 0.0
        self._outbox: asyncio.Queue[Outgoing] = asyncio.Queue()
        self._speech: SpeechOutput | None = None
        self._playing: list[tuple[float, str]] = []
        """(when its playback ends, label) of each spoken piece handed to fastrtc."""
        self._playout_end = 0.0
        self._ui: UiTranscript | None = None
        self._closed = False
        self._audio_problem: str | None = None
        self.live: set[VoiceHandler] = live if live is not None else set()

    def copy(self) -> VoiceHandler:
        return VoiceHandler(self._assistant, self.live)

    @property
    def session_id(self) -> str | None:
        return self._conversation.session_id if self._conversation else None

    # -- start: which session is this?

    async def start_up(self) -> None:
        webrtc_id = get_current_context().webrtc_id
        session_id = self._assistant.unbind(webrtc_id)
        notice = None
        if session_id is None:
            self._ui = UiTranscript()
            session_id, notice = await self._session_from_ui()
        self._conversation = await self._assistant.open_conversation(session_id, self._publish)
        self._turns = self._assistant.turn_taker(self._conversation)
        if self._assistant.settings.speech.webrtc and self._assistant.synthesizer is not None:
            self._speech = SpeechOutput(self._assistant.synthesizer, self, report=self._report)
            self._speech.on_cut = self._conversation.reply_cut
        self.live.add(self)
        self._assistant.metrics.live_sessions.inc()
        logger.info("connection %s on session %s", webrtc_id, session_id)
        if self._ui is not None:
            await self._ui.load_history(self._assistant, session_id, notice)
            self._outbox.put_nowait(self._ui.outputs(session_id))
        pending, self._pending = self._pending, []
        for arrived, rate, array in pending:
            self._consume(rate, array, arrived)

    async def _session_from_ui(self) -> tuple[str, str | None]:
        await self.wait_for_args()
        # fastrtc prefixes the UI inputs with the WebRTC value, itself behind a marker when it is a bare id.
        inputs = self.latest_args[2:] if self.latest_args[0] == "__webrtc_value__" else self.latest_args[1:]
        requested = str(inputs[0] or "").strip() if inputs else ""
        if requested:
            if await self._assistant.store.session_exists(requested):
                return requested, None
            return await self._assistant.new_session(), f"Unknown session {requested!r}: started a new one."
        return await self._assistant.new_session(), None

    # -- audio in

    async def receive(self, frame: tuple[int, np.ndarray]) -> None:
        rate, array = frame
        if self._turns is None:
            if self._pending_seconds < MAX_PENDING_SECONDS:
                self._pending.append((utc_now(), rate, array))
                self._pending_seconds += array.shape[-1] / rate
            return
        self._consume(rate, array, utc_now())

    def _consume(self, rate: int, array: np.ndarray, arrived: datetime) -> None:
        assert self._turns is not None
        try:
            samples = self._to_model_rate(to_float32_mono(array), rate)
        except VoiceAssistantError as exc:
            if str(exc) != self._audio_problem:  # once per problem, not once per 20 ms frame
                self._audio_problem = str(exc)
                self._publish(ErrorRaised(message=str(exc)))
            return
        self._assistant.metrics.audio_received.inc(len(samples) / MODEL_RATE)
        self._turns.feed(samples, arrived)

    # -- events out

    def _report(self, message: str) -> None:
        self._publish(ErrorRaised(message=message))

    def _publish(self, event: Event) -> None:
        if self._speech is not None:
            self._speech.on_event(event)
        channel = self.channel
        if channel is not None and getattr(channel, "readyState", "open") == "open":
            try:
                channel.send(event.to_json())
            except Exception:  # the channel closed between the check and the send
                logger.debug("data channel send failed", exc_info=True)
        if self._ui is not None and self._ui.apply(event):
            assert self.session_id is not None
            self._outbox.put_nowait(self._ui.outputs(self.session_id))

    async def emit(self) -> Any:
        """Waits for the next piece of spoken reply or UI update: never returns None in a loop."""
        item = await self._outbox.get()
        if not isinstance(item, SpokenPiece):
            return item
        # fastrtc plays what it takes in real time after what it already has: note when this piece ends.
        starts = max(time.monotonic(), self._playout_end)
        self._playout_end = starts + len(item.samples) / item.rate
        self._playing.append((self._playout_end, item.label))
        return item.rate, item.samples

    # -- the spoken reply, as an AudioSink: fastrtc paces what emit() returns onto the audio track

    async def play(self, samples: Samples, rate: int, label: str) -> None:
        self._outbox.put_nowait(SpokenPiece(rate, samples, label))

    def clear(self) -> set[str]:
        """Unplayed: the pieces still queued here, and those fastrtc took whose playback (it reports no
        position, so by the clock) had not ended."""
        now = time.monotonic()
        unplayed = {label for ends, label in self._playing if ends > now}
        self._playing, self._playout_end = [], now
        kept = []
        while not self._outbox.empty():
            item = self._outbox.get_nowait()
            if isinstance(item, SpokenPiece):
                unplayed.add(item.label)
            else:
                kept.append(item)  # UI updates stay; only audio is dropped
        for item in kept:
            self._outbox.put_nowait(item)
        if self._clear_queue is not None:
            self.clear_queue()  # what fastrtc had already cut into frames
        return unplayed

    async def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.live.discard(self)
        if self._turns is not None:
            await self._turns.close()
        if self._speech is not None:
            await self._speech.close()
        if self._conversation is not None:
            self._assistant.metrics.live_sessions.dec()
            await self._conversation.close()
        self._outbox.put_nowait(None)


class UiTranscript:
    """The Gradio chat of one connection: past turns from the store, then the live turn events."""

    def __init__(self) -> None:
        self.messages: list[dict[str, str]] = []
        self._reply_at: dict[int, int] = {}
        self._user_at: dict[int, tuple[int, float]] = {}
        """Turn -> (its message's position, its seconds of audio), to add the transcript when it comes."""

    async def load_history(self, assistant: Assistant, session_id: str, notice: str | None) -> None:
        if notice:
            self.messages.append({"role": "assistant", "content": f"⚠️ {notice}"})
        try:
            record = await assistant.store.get_session(session_id)
        except UnknownSession:
            return
        for turn in record.turns:
            self._add_user(turn.index, turn.audio_seconds, turn.transcript)
            if turn.reply_text:
                self.messages.append({"role": "assistant", "content": turn.reply_text})

    def _add_user(self, index: int, seconds: float, transcript: str | None) -> None:
        self._user_at[index] = (len(self.messages), seconds)
        self.messages.append({"role": "user", "content": self._user_text(index, seconds, transcript)})

    @staticmethod
    def _user_text(index: int, seconds: float, transcript: str | None) -> str:
        return f"🎤 turn {index} ({seconds:.1f} s)" + (f": {transcript}" if transcript else "")

    def apply(self, event: Event) -> bool:
        """Update the chat from an event; True when it changed."""
        match event:
            case TurnEnded(turn=turn, audio_seconds=seconds):
                self._add_user(turn, seconds, None)
            case ReplyDelta(turn=turn, text=text):
                if turn not in self._reply_at:
                    self._reply_at[turn] = len(self.messages)
                    self.messages.append({"role": "assistant", "content": ""})
                self.messages[self._reply_at[turn]]["content"] += text
            case ReplyDone(turn=turn, interrupted=True) if turn in self._reply_at:
                self.messages[self._reply_at[turn]]["content"] += " …"
            case Transcribed(turn=turn, text=text) if turn in self._user_at:
                position, seconds = self._user_at[turn]
                self.messages[position]["content"] = self._user_text(turn, seconds, text)
            case ErrorRaised(message=message):
                self.messages.append({"role": "assistant", "content": f"⚠️ {message}"})
            case _:
                return False
        return True

    def outputs(self, session_id: str) -> AdditionalOutputs:
        return AdditionalOutputs(session_id, [dict(message) for message in self.messages])
