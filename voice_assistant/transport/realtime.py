"""One OpenAI Realtime connection over a WebSocket: one of our sessions, spoken to in that protocol.

Audio comes in as `input_audio_buffer.append` (24 kHz PCM or 8 kHz G.711) and goes to the session's
turn-taking, which the client's `turn_detection` tunes (`server_vad`: a silence rule, `semantic_vad`:
the end-of-turn model and its eagerness), or, with `turn_detection: null`, waits in a buffer for the
client's `commit`. The session's events come back as the protocol's: a turn's start and end are
`speech_started` / `speech_stopped` / `committed` and the user item, its reply a response (text or
audio transcript deltas, and audio deltas as each sentence is synthesized), `response.done` at its end,
`cancelled` when the user spoke over it (plain barge-in: a Realtime client stops its playback at
`speech_started`, so a reply is never paused and resumed here).

The client plays the audio, not this server, so a sentence counts as heard once sent; the client's
`conversation.item.truncate` then says where playback stopped, and the stored reply keeps the sentences
heard up to there. Bad events get an `error` event and change nothing; the connection goes on. A client
that sends faster than `VA_MAX_MESSAGES_PER_SECOND` gets an `error` that says so and is closed (1008).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import WebSocket, WebSocketDisconnect

from voice_assistant.audio.g711 import decode_g711, encode_g711
from voice_assistant.audio.pcm import MODEL_RATE, Samples
from voice_assistant.audio.resample import StreamResampler, resample
from voice_assistant.clock import utc_now
from voice_assistant.config import TurnSettings
from voice_assistant.events import (
    ErrorRaised,
    Event,
    ReplyDelta,
    ReplyDone,
    Transcribed,
    TurnEnded,
    TurnStarted,
)
from voice_assistant.history.store import HistoryStore
from voice_assistant.history.text import storable
from voice_assistant.metrics import Metrics
from voice_assistant.redaction import session_tag
from voice_assistant.session.pipeline import SessionPipeline
from voice_assistant.session.store_failures import store_failure
from voice_assistant.transport import realtime_protocol as rt
from voice_assistant.transport.message_rate import MessageRate
from voice_assistant.transport.realtime_turns import default_detection, described, turn_settings
from voice_assistant.tts.sentences import spoken_sentences
from voice_assistant.turn.detector import EndReason
from voice_assistant.turn.taker import CompletedTurn

logger = logging.getLogger(__name__)

MIN_COMMIT_MS = 100
"""OpenAI's own minimum for a committed buffer."""
DELTA_MS = 200
"""Audio deltas carry at most this much audio each."""
POLICY_VIOLATION, INTERNAL_ERROR, SERVICE_RESTART = 1008, 1011, 1012


@dataclass
class SessionState:
    """What `session.update` has set so far."""

    instructions: str
    turn_detection: rt.TurnDetection | None
    input_format: rt.AudioFormat = "pcm16"
    output_format: rt.AudioFormat = "pcm16"
    output_modalities: tuple[rt.Modality, ...] = ("audio",)
    voice: str = "default"


@dataclass
class _Response:
    """One reply as a response: its ids, what it has sent, and where the client's playback stopped."""

    turn: int
    modalities: tuple[rt.Modality, ...]
    audio_ms: list[tuple[str, float]] = field(default_factory=list)
    """(label, audio end in ms) of each piece sent, in order."""
    done: ReplyDone | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled_by_client: bool = False
    failed: str | None = None

    @property
    def id(self) -> str:
        return f"resp_{self.turn:06d}"

    @property
    def item_id(self) -> str:
        return assistant_item(self.turn)

    @property
    def spoken(self) -> bool:
        return "audio" in self.modalities

    @property
    def sent_ms(self) -> float:
        return self.audio_ms[-1][1] if self.audio_ms else 0.0


def check_text_length(text: str, limit: int, *, param: str, event_id: str | None = None) -> None:
    """Typed words are sent to the model whole, whatever the history's budget: ones longer than that whole
    budget (`limit` characters) could never fit the window, and would cost the model without bound."""
    if len(text) > limit:
        raise rt.ProtocolError(
            f"{param} holds {len(text)} characters; at most {limit} are taken (VA_HISTORY_TOKEN_BUDGET)",
            code="text_too_large",
            event_id=event_id,
            param=param,
        )


def user_item(turn: int) -> str:
    return f"item_{turn:06d}_user"


def assistant_item(turn: int) -> str:
    return f"item_{turn:06d}_assistant"


class RealtimeConnection:
    """Serves one accepted WebSocket until either side closes it. It is the session's `AudioSink` too."""

    def __init__(
        self,
        websocket: WebSocket,
        *,
        session_id: str,
        open_pipeline: Callable[[RealtimeConnection], Awaitable[SessionPipeline]],
        store: HistoryStore,
        metrics: Metrics,
        model_name: str,
        instructions: str,
        events: rt.ServerEvents,
        messages: MessageRate,
        max_text_chars: int,
        start: rt.SessionChange | None = None,
    ) -> None:
        """`messages`: how fast the client may send; `max_text_chars`: the longest typed turn or
        instructions taken (`check_text_length`); `start`: the session settings the client's key was minted
        with (before `session.created`)."""
        self._socket = websocket
        self._messages = messages
        self._max_text_chars = max_text_chars
        self.session_id = session_id
        self._open_pipeline = open_pipeline
        self._store = store
        self._metrics = metrics
        self._model_name = model_name
        self._events = events
        self._start = start
        self._outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._pipeline: SessionPipeline | None = None
        self._server_turns: TurnSettings | None = None
        self._state: SessionState | None = None
        self._instructions = instructions
        self._to_model_rate = StreamResampler()
        self._received_ms = 0.0
        self._buffer: list[Samples] = []
        self._buffer_started: float | None = None
        self._awaiting = 0
        """Turns committed by the client since the last `response.create`."""
        self._responses: dict[int, _Response] = {}
        self._current: _Response | None = None
        self._next_modalities: tuple[rt.Modality, ...] | None = None
        self._previous_item: str | None = None
        self._close: tuple[int, str | None] = (1000, None)
        """The code and reason the writer closes the socket with, once it has sent everything."""
        self._committing: list[str | None] = []
        """The turn the client is committing (its words, None when spoken), until `turn_started` names it."""
        self._typed: dict[int, str] = {}

    # -- the connection's life

    async def run(self) -> None:
        writer = asyncio.create_task(self._write(), name="realtime writer")
        try:
            try:
                pipeline = self._pipeline = await self._open_pipeline(self)
            except (
                Exception
            ) as exc:  # the store is away: this connection ends, the next works once it is back
                failed = store_failure(
                    "the session could not be opened", exc, metrics=self._metrics, session_id=None
                )
                self._send_error(
                    rt.ProtocolError(failed.message, code="session_unavailable"), kind="server_error"
                )
                self._close = (INTERNAL_ERROR, "the session could not be opened")
                return
            self._server_turns = server = pipeline.turn_taking.settings
            self._state = SessionState(
                instructions=self._instructions, turn_detection=default_detection(server)
            )
            if self._start is not None:
                await self._update(self._start, announce=False)
            self._send("session.created", session=self._session_object())
            with self._metrics.live_sessions.held():
                await self._listen()
        except WebSocketDisconnect:
            pass
        except Exception as exc:  # a bug: the client is told and the socket closed, not dropped (1006)
            logger.exception("the Realtime connection failed", extra={"session": self.session_id})
            failure = f"the server failed on this connection ({type(exc).__name__}): connect again"
            self._send_error(rt.ProtocolError(failure, code="internal_error"), kind="server_error")
            self._close = (INTERNAL_ERROR, "the server failed on this connection")
        finally:
            if self._pipeline is not None:
                await self._pipeline.close()
            self._outbox.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError, OSError):
                await writer

    async def drain(self) -> None:
        """The server drains: once the conversation is quiet, say so and close; the client reconnects
        (elsewhere) with `session_id` and carries on."""
        self._close = (SERVICE_RESTART, "the server is shutting down")
        try:
            if self._pipeline is not None:
                await self._pipeline.settled()
        finally:
            self._send_error(
                rt.ProtocolError(
                    "the server is shutting down: connect again with session_id=" + self.session_id,
                    code="server_shutting_down",
                ),
                kind="server_error",
            )
            self._outbox.put_nowait(None)

    async def _write(self) -> None:
        # A client gone mid-reply: Starlette says so with WebSocketDisconnect or RuntimeError, uvicorn's
        # protocol with an OSError (ClientDisconnected); the listener then ends the session.
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            while (message := await self._outbox.get()) is not None:
                # ASCII JSON: what a client sent is echoed (instructions, typed text, event ids), and a lone
                # surrogate in it (a JSON escape) cannot be UTF-8, which killed the writer (send_json).
                await self._socket.send_text(json.dumps(message))
            await self._socket.close(*self._close)

    def _send(self, kind: str, **fields: Any) -> None:
        event = self._events.make(kind, **fields)
        if event is not None:
            self._outbox.put_nowait(event)

    def _send_error(self, problem: rt.ProtocolError, *, kind: str = "invalid_request_error") -> None:
        self._metrics.errors.labels("realtime-protocol").inc()
        self._outbox.put_nowait(self._events.error(problem, kind=kind))

    async def _listen(self) -> None:
        while True:
            message = await self._socket.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            if not self._messages.take():  # said, then closed: nothing more is read
                reason = self._messages.refusal()
                self._send_error(rt.ProtocolError(reason, code="rate_limit_exceeded"))
                self._close = (POLICY_VIOLATION, reason)
                return
            text = message.get("text")
            if text is None:
                self._send_error(rt.ProtocolError("events are JSON text messages", code="invalid_event"))
                continue
            try:
                await self._handle(rt.parse(text))
            except rt.ProtocolError as problem:
                self._send_error(problem)

    # -- client events

    async def _handle(self, event: rt.ClientEvent) -> None:
        match event:
            case rt.AudioAppend():
                self._append(event)
            case rt.SessionUpdate():
                await self._update(rt.session_change(event.session))
            case rt.AudioCommit():
                self._commit(event.event_id)
            case rt.AudioClear():
                self._buffer, self._buffer_started = [], None
                self._send("input_audio_buffer.cleared")
            case rt.OutputAudioClear():
                self._send(
                    "output_audio_buffer.cleared", response_id=self._current.id if self._current else None
                )
            case rt.ItemCreate():
                self._create_item(event)
            case rt.ItemTruncate():
                await self._truncate(event)
            case rt.ItemRetrieve():
                await self._retrieve(event)
            case rt.ItemDelete():
                raise rt.ProtocolError(
                    "items are not deleted here: a session's history is kept (delete the whole session"
                    " with DELETE /api/sessions/<id>)",
                    code="item_delete_unsupported",
                    event_id=event.event_id,
                    param="item_id",
                )
            case rt.ResponseCreate():
                self._create_response(event)
            case rt.ResponseCancel():
                if self._pipeline is None or not self._pipeline.conversation.cancel_reply():
                    raise rt.ProtocolError(
                        "there is no response in progress to cancel",
                        code="response_cancel_not_active",
                        event_id=event.event_id,
                    )
                if self._current is not None:
                    self._current.cancelled_by_client = True

    def _decode(self, data: bytes, event_id: str | None) -> Samples:
        """The client's audio, in the session's input format, at 16 kHz."""
        state = self._session
        audio_format = state.input_format
        if audio_format == "pcm16":
            if len(data) % 2:
                raise rt.ProtocolError(
                    "pcm16 audio is whole 16-bit samples (an even number of bytes)",
                    code="invalid_value",
                    event_id=event_id,
                    param="audio",
                )
            samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        else:
            samples = decode_g711(data, "ULAW" if audio_format == "g711_ulaw" else "ALAW")
        return self._to_model_rate(samples, rt.FORMAT_RATES[audio_format])

    def _append(self, event: rt.AudioAppend) -> None:
        samples = self._decode(event.data(), event.event_id)
        seconds = len(samples) / MODEL_RATE
        self._metrics.audio_received.inc(seconds)
        self._received_ms += seconds * 1000
        if self._session.turn_detection is not None:
            assert self._pipeline is not None
            self._pipeline.feed(samples, utc_now())
            return
        limit = self._turn_limit_s()
        held = sum(len(piece) for piece in self._buffer) / MODEL_RATE
        if held + seconds > limit:
            raise rt.ProtocolError(
                f"the input audio buffer holds at most {limit:g} s (VA_MAX_TURN_SECONDS): commit it first;"
                " this append was not added",
                code="input_audio_buffer_too_large",
                event_id=event.event_id,
                param="audio",
            )
        if self._buffer_started is None:
            self._buffer_started = time.time() - seconds
        self._buffer.append(samples)

    def _turn_limit_s(self) -> float:
        assert self._server_turns is not None
        return self._server_turns.max_turn_seconds

    def _commit(self, event_id: str | None) -> None:
        if self._session.turn_detection is not None:
            raise rt.ProtocolError(
                "turns are cut by the server's turn detection: set turn_detection to null to commit them",
                code="input_audio_buffer_commit_unavailable",
                event_id=event_id,
            )
        audio = np.concatenate(self._buffer) if self._buffer else np.zeros(0, dtype=np.float32)
        if len(audio) < MODEL_RATE * MIN_COMMIT_MS // 1000:
            raise rt.ProtocolError(
                f"the input audio buffer holds {len(audio) / MODEL_RATE * 1000:.0f} ms of audio;"
                f" a commit needs at least {MIN_COMMIT_MS} ms",
                code="input_audio_buffer_commit_empty",
                event_id=event_id,
            )
        started = self._buffer_started or time.time()
        self._buffer, self._buffer_started = [], None
        self._commit_audio(audio, started)

    def _commit_audio(self, audio: Samples, started: float, *, text: str | None = None) -> None:
        """A turn the client cut (a commit, or an item; `text`: typed): stored, answered on request."""
        assert self._pipeline is not None
        now = utc_now()
        start = now.fromtimestamp(started, tz=now.tzinfo)
        self._awaiting += 1
        self._committing = [text]
        try:  # its `turn_started` comes back at once, with its index
            self._pipeline.conversation.commit(
                CompletedTurn(
                    audio=audio,
                    speech_start=start,
                    speech_end=now,
                    decided_at=now,
                    reason=EndReason.CLIENT,
                    text=text,
                ),
                answer=False,
            )
        finally:
            self._committing = []

    def _create_item(self, event: rt.ItemCreate) -> None:
        """A user message of audio, or of text (typed turns, such as the context Pipecat sends first)."""
        item = event.item
        content = (
            item.get("content") if item.get("type") == "message" and item.get("role") == "user" else None
        )
        # Anything but a list of objects is no content this server takes: it has no kinds.
        parts = content if isinstance(content, list) and all(isinstance(p, dict) for p in content) else []
        kinds = {str(part.get("type")) for part in parts}
        if kinds == {"input_audio"} and all(isinstance(part.get("audio"), str) for part in parts):
            clips = [rt.AudioAppend(type="input_audio_buffer.append", audio=part["audio"]) for part in parts]
            audio = np.concatenate([self._decode(clip.data(), event.event_id) for clip in clips])
            if len(audio) > self._turn_limit_s() * MODEL_RATE:
                raise rt.ProtocolError(
                    f"an audio item holds at most {self._turn_limit_s():g} s (VA_MAX_TURN_SECONDS)",
                    code="input_audio_too_large",
                    event_id=event.event_id,
                    param="item.content",
                )
            self._commit_audio(audio, time.time() - len(audio) / MODEL_RATE)
            return
        if kinds == {"input_text"} and all(isinstance(part.get("text"), str) for part in parts):
            text = storable("\n".join(part["text"] for part in parts))
            check_text_length(text, self._max_text_chars, param="item.content", event_id=event.event_id)
            self._commit_audio(np.zeros(0, dtype=np.float32), time.time(), text=text)
            return
        raise rt.ProtocolError(
            "only user messages of input_audio or input_text are taken here (no assistant, system, image"
            " or function-call items: set instructions with session.update)",
            code="unsupported_item",
            event_id=event.event_id,
            param="item",
        )

    def _create_response(self, event: rt.ResponseCreate) -> None:
        assert self._pipeline is not None
        if self._pipeline.conversation.reply is not None:
            raise rt.ProtocolError(
                "the conversation already has an active response: cancel it or wait for response.done",
                code="conversation_already_has_active_response",
                event_id=event.event_id,
            )
        if self._awaiting == 0:
            raise rt.ProtocolError(
                "there is no user turn awaiting a response: commit audio (or create an audio item) first",
                code="no_turn_to_respond",
                event_id=event.event_id,
            )
        self._awaiting = 0
        self._next_modalities = event.modalities
        self._pipeline.conversation.speak = "audio" in (event.modalities or self._session.output_modalities)
        self._pipeline.conversation.respond(event.instructions)

    async def _truncate(self, event: rt.ItemTruncate) -> None:
        response = next((r for r in self._responses.values() if r.item_id == event.item_id), None)
        if response is None:
            raise rt.ProtocolError(
                f"no assistant item {event.item_id!r} in this connection",
                code="item_not_found",
                event_id=event.event_id,
                param="item_id",
            )
        if event.audio_end_ms > response.sent_ms or event.audio_end_ms < 0:
            raise rt.ProtocolError(
                f"the item's audio is {response.sent_ms:.0f} ms long:"
                f" cannot truncate it at {event.audio_end_ms} ms",
                code="invalid_value",
                event_id=event.event_id,
                param="audio_end_ms",
            )
        assert self._pipeline is not None
        if response.done is None:  # still in progress: it ends here, and is stored with what was heard
            self._pipeline.conversation.cancel_reply()
            await response.ended.wait()
        assert response.done is not None
        # audio_end_ms is whole milliseconds (Pipecat sends the length it played, floored): a piece ending
        # within that millisecond was heard.
        heard_labels = {label for label, end_ms in response.audio_ms if end_ms < event.audio_end_ms + 1}
        if response.done.interrupted or len(heard_labels) < len(response.audio_ms):
            await self._store_heard(response, heard_labels, event.event_id)
        # else: played to its end (Pipecat truncates so when the user next speaks): nothing was cut
        self._send(
            "conversation.item.truncated",
            item_id=event.item_id,
            content_index=event.content_index,
            audio_end_ms=event.audio_end_ms,
        )

    async def _store_heard(self, response: _Response, labels: set[str], event_id: str | None) -> None:
        assert response.done is not None
        numbers = sorted({int(label.rsplit(".", 1)[1]) for label in labels})
        sentences = spoken_sentences(response.done.text)
        heard = " ".join(sentences[n] for n in numbers if n < len(sentences))
        try:
            await self._store.set_heard(self.session_id, response.turn, heard)
        except Exception as exc:
            logger.warning("truncate not stored: %s", exc, extra={"session": session_tag(self.session_id)})
            raise rt.ProtocolError(
                "the truncation could not be stored", code="store_unavailable", event_id=event_id
            ) from exc

    async def _retrieve(self, event: rt.ItemRetrieve) -> None:
        try:
            record = await self._store.get_session(self.session_id)
        except Exception as exc:  # the store is away, or the session was deleted meanwhile
            logger.warning("item not read: %s", exc, extra={"session": self.session_id})
            raise rt.ProtocolError(
                "the item could not be read", code="store_unavailable", event_id=event.event_id
            ) from exc
        for turn in record.turns:
            if event.item_id == user_item(turn.index):
                typed = turn.audio_seconds == 0
                content = (
                    {"type": "input_text", "text": turn.transcript}
                    if typed
                    else {"type": "input_audio", "transcript": turn.transcript}
                )
                self._send("conversation.item.retrieved", item=self._item(event.item_id, "user", content))
                return
            if event.item_id == assistant_item(turn.index) and turn.reply_text is not None:
                content = {"type": "output_text", "text": turn.heard_text or turn.reply_text}
                self._send(
                    "conversation.item.retrieved", item=self._item(event.item_id, "assistant", content)
                )
                return
        raise rt.ProtocolError(
            f"no item {event.item_id!r} in this session",
            code="item_not_found",
            event_id=event.event_id,
            param="item_id",
        )

    async def _update(self, change: rt.SessionChange, *, announce: bool = True) -> None:
        state, pipeline, server = self._session, self._pipeline, self._server_turns
        assert pipeline is not None and server is not None
        if change.instructions is not None:
            check_text_length(change.instructions, self._max_text_chars, param="session.instructions")
            state.instructions = change.instructions
            pipeline.conversation.instructions = change.instructions
        if change.turn_detection != "keep":
            detection = change.turn_detection
            state.turn_detection = detection
            await pipeline.retune(turn_settings(detection, server) if detection is not None else None)
            pipeline.conversation.auto_reply = detection is not None and detection.create_response
            pipeline.conversation.barge_in = detection is None or detection.interrupt_response
            self._buffer, self._buffer_started = [], None
        if change.input_format is not None and change.input_format != state.input_format:
            state.input_format = change.input_format
            self._to_model_rate = StreamResampler()
        state.output_format = change.output_format or state.output_format
        state.output_modalities = change.output_modalities or state.output_modalities
        pipeline.conversation.speak = "audio" in state.output_modalities
        state.voice = change.voice or state.voice
        if announce:
            self._send("session.updated", session=self._session_object())

    # -- the session's events

    def publish(self, event: Event) -> None:
        match event:
            case TurnStarted(turn=turn) if self._committing:  # the client's own: no speech_started
                if (typed := self._committing[0]) is not None:
                    self._typed[turn] = typed
            case TurnStarted(turn=turn) if self._session.turn_detection is not None:
                self._send(
                    "input_audio_buffer.speech_started",
                    audio_start_ms=round(self._received_ms),
                    item_id=user_item(turn),
                )
            case TurnEnded(turn=turn):
                self._turn_ended(turn)
            case ReplyDelta(turn=turn, text=text):
                response = self._response(turn)
                kind = (
                    "response.output_audio_transcript.delta"
                    if response.spoken
                    else "response.output_text.delta"
                )
                self._send(kind, **self._where(response), delta=text)
            case ReplyDone(turn=turn):
                self._reply_done(self._response(turn), event)
            case Transcribed(turn=turn, text=text):
                self._send(
                    "conversation.item.input_audio_transcription.completed",
                    item_id=user_item(turn),
                    content_index=0,
                    transcript=text,
                )
            case ErrorRaised(message=message, turn=turn):
                if turn is not None and turn in self._responses:
                    self._responses[turn].failed = message
                self._send_error(rt.ProtocolError(message, code="session_error"), kind="server_error")

    def _turn_ended(self, turn: int) -> None:
        item = user_item(turn)
        typed = self._typed.pop(turn, None)
        if self._session.turn_detection is not None:
            self._send(
                "input_audio_buffer.speech_stopped", audio_end_ms=round(self._received_ms), item_id=item
            )
        self._send("input_audio_buffer.committed", item_id=item, previous_item_id=self._previous_item)
        content = (
            {"type": "input_audio", "transcript": None}
            if typed is None
            else {"type": "input_text", "text": typed}
        )
        user = self._item(item, "user", content)
        self._send("conversation.item.added", previous_item_id=self._previous_item, item=user)
        self._send("conversation.item.done", previous_item_id=self._previous_item, item=user)
        self._previous_item = item

    def _response(self, turn: int) -> _Response:
        """The response of `turn`'s reply, announced (`response.created` and the rest) when it begins."""
        response = self._responses.get(turn)
        if response is not None:
            return response
        modalities = self._next_modalities or self._session.output_modalities
        self._next_modalities = None
        assert self._pipeline is not None
        self._pipeline.conversation.speak = "audio" in self._session.output_modalities  # the next one's
        response = self._responses[turn] = self._current = _Response(turn, modalities)
        self._send("response.created", response=self._response_object(response, "in_progress"))
        item = self._item(response.item_id, "assistant", None, status="in_progress")
        self._send("response.output_item.added", response_id=response.id, output_index=0, item=item)
        # In the conversation too, as OpenAI adds it (Pipecat starts a reply it did not ask for on this).
        self._send("conversation.item.added", previous_item_id=self._previous_item, item=item)
        self._send("response.content_part.added", **self._where(response), part=self._part(response, ""))
        return response

    def _reply_done(self, response: _Response, done: ReplyDone) -> None:
        response.done = done
        response.ended.set()
        where = self._where(response)
        if response.spoken:
            self._send("response.output_audio.done", **where)
            self._send("response.output_audio_transcript.done", **where, transcript=done.text)
        else:
            self._send("response.output_text.done", **where, text=done.text)
        self._send("response.content_part.done", **where, part=self._part(response, done.text))
        status = self._status(response)
        item = self._item(
            response.item_id,
            "assistant",
            self._part(response, done.text, item=True),
            status="completed" if status == "completed" else "incomplete",
        )
        self._send("response.output_item.done", response_id=response.id, output_index=0, item=item)
        self._send("conversation.item.done", previous_item_id=self._previous_item, item=item)
        self._send("response.done", response=self._response_object(response, status, item=item))
        self._previous_item = response.item_id
        if self._current is response:
            self._current = None

    # -- the spoken reply, as an AudioSink: audio deltas as each sentence is synthesized

    async def play(self, samples: Samples, rate: int, label: str) -> None:
        response = self._current
        if response is None or not response.spoken or response.done is not None:
            return  # a text-only response, or speech that is no reply: nothing to send
        audio_format = self._session.output_format
        out_rate = rt.FORMAT_RATES[audio_format]
        audio = resample(samples, rate, out_rate)
        step = out_rate * DELTA_MS // 1000
        for start in range(0, len(audio), step):
            chunk = audio[start : start + step]
            if audio_format == "pcm16":
                data = (np.clip(chunk, -1.0, 1.0) * 32767).astype("<i2").tobytes()
            else:
                data = encode_g711(chunk, "ULAW" if audio_format == "g711_ulaw" else "ALAW")
            self._send(
                "response.output_audio.delta", **self._where(response), delta=base64.b64encode(data).decode()
            )
        response.audio_ms.append((label, response.sent_ms + len(audio) / out_rate * 1000))

    def clear(self) -> set[str]:
        """Nothing is taken back: the client has it, and its `truncate` says what it played."""
        return set()

    async def played(self, label: str) -> None:
        return None

    # -- shapes

    @property
    def _session(self) -> SessionState:
        assert self._state is not None, "the session is not open yet"
        return self._state

    def _where(self, response: _Response) -> dict[str, Any]:
        return {
            "response_id": response.id,
            "item_id": response.item_id,
            "output_index": 0,
            "content_index": 0,
        }

    def _part(self, response: _Response, text: str, *, item: bool = False) -> dict[str, Any]:
        if response.spoken:
            return {"type": "output_audio" if item else "audio", "transcript": text}
        return {"type": "output_text" if item else "text", "text": text}

    def _item(
        self, item_id: str, role: str, content: dict[str, Any] | None, *, status: str = "completed"
    ) -> dict[str, Any]:
        return {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": role,
            "status": status,
            "content": [content] if content is not None else [],
        }

    def _status(self, response: _Response) -> str:
        if response.done is not None and response.done.interrupted:
            return "cancelled"
        return "failed" if response.failed else "completed"

    def _response_object(
        self, response: _Response, status: str, *, item: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        details: dict[str, Any] | None = None
        if status == "cancelled":
            details = {
                "type": "cancelled",
                "reason": "client_cancelled" if response.cancelled_by_client else "turn_detected",
            }
        elif status == "failed":
            details = {"type": "failed", "error": {"type": "server_error", "message": response.failed}}
        text = response.done.text if response.done is not None else ""
        shown: dict[str, Any] = {
            "object": "realtime.response",
            "id": response.id,
            "status": status,
            "status_details": details,
            "output": [item] if item is not None else [],
            "conversation_id": self.session_id,
            "output_modalities": list(response.modalities),
            "metadata": {"session_id": self.session_id, "turn": str(response.turn)},
        }
        if status != "in_progress":
            # Estimated as the history window estimates text (4 characters a token): no tokenizer here.
            output_tokens = (len(text) + 3) // 4
            shown["usage"] = {
                "total_tokens": output_tokens,
                "input_tokens": 0,
                "output_tokens": output_tokens,
            }
        if self._events.beta:
            shown["modalities"] = shown.pop("output_modalities")
        return shown

    def _session_object(self) -> dict[str, Any]:
        state, server = self._session, self._server_turns
        assert server is not None
        detection = described(state.turn_detection, server)
        shown: dict[str, Any] = {
            "object": "realtime.session",
            "id": self.session_id,
            "type": "realtime",
            "model": self._model_name,
            "instructions": state.instructions,
            "output_modalities": list(state.output_modalities),
            "audio": {
                "input": {
                    "format": rt.format_object(state.input_format, beta=False),
                    "turn_detection": detection,
                },
                "output": {"format": rt.format_object(state.output_format, beta=False), "voice": state.voice},
            },
        }
        if self._events.beta:
            shown |= {
                "modalities": shown.pop("output_modalities"),
                "input_audio_format": state.input_format,
                "output_audio_format": state.output_format,
                "turn_detection": detection,
                "voice": state.voice,
            }
            del shown["audio"], shown["type"]
        return shown
