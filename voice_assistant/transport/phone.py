"""One phone call over a Twilio media stream: the caller's audio to the turn detector, replies spoken back.

The stream is accepted only with a valid, unused one-time token (issued with the call's TwiML and sent
back in the `start` message's custom parameters). Garbage is ignored without harm to the call (and
never to other calls); a message far larger than Twilio's own, or messages far faster, close the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from voice_assistant.audio.g711 import TELEPHONE_RATE, decode_g711, encode_g711
from voice_assistant.audio.pcm import Samples
from voice_assistant.audio.resample import StreamResampler, resample
from voice_assistant.audio_rate import AudioStreams, ReceivedSeconds
from voice_assistant.clock import utc_now
from voice_assistant.metrics import Metrics
from voice_assistant.redaction import session_tag
from voice_assistant.session.pipeline import Pipelines, SessionPipeline
from voice_assistant.session.sink import Playout
from voice_assistant.session.store_failures import store_failure
from voice_assistant.transport import twilio
from voice_assistant.transport.message_rate import MessageRate

logger = logging.getLogger(__name__)

FRAME_BYTES = TELEPHONE_RATE // 50
"""20 ms of 8 kHz mu-law: what each outgoing media message carries, as Twilio's own do."""
MULAW_SILENCE = b"\xff"
NORMAL_CLOSURE = 1000
UNSUPPORTED_DATA, POLICY_VIOLATION, MESSAGE_TOO_BIG, INTERNAL_ERROR = 1003, 1008, 1009, 1011
MAX_GARBAGE_IN_A_ROW = 50
FAREWELL = "I have to hang up now. Call again and we will carry on where we left off. Goodbye."
"""Said when the server drains: a call cannot move to another instance, the caller's next call can."""


class TwilioSink:
    """Replies for the caller: mu-law media messages and a mark after each piece, queued for a writer.

    Twilio plays what it is sent in order and echoes each mark once the audio before it has played,
    so the marks still out say whether anything is playing; `clear` is sent only then.

    Media is sent as soon as it is synthesized, ahead of playout (Twilio holds whole sentences), so
    holding back media could not stop a reply that speech over it pauses: the pause clears too, within
    a round trip, and a resume sends the held sentences again. The marks that a clear makes Twilio echo
    reach us long before a resume sends those labels again (a resume waits for the speech to end), so
    they find nothing to finish.
    """

    def __init__(self, stream_sid: str) -> None:
        self.stream_sid = stream_sid
        self.outbox: asyncio.Queue[str] = asyncio.Queue()
        self._playout = Playout()
        """Each piece is followed by a mark, which Twilio echoes once the piece has played."""

    async def play(self, samples: Samples, rate: int, label: str) -> None:
        mulaw = encode_g711(resample(samples, rate, TELEPHONE_RATE))
        mulaw += MULAW_SILENCE * (-len(mulaw) % FRAME_BYTES)  # whole 20 ms frames only
        for start in range(0, len(mulaw), FRAME_BYTES):
            self.outbox.put_nowait(twilio.media(self.stream_sid, mulaw[start : start + FRAME_BYTES]))
        self.outbox.put_nowait(twilio.mark(self.stream_sid, label))
        self._playout.sent(label)

    def clear(self) -> set[str]:
        unplayed = self._playout.clear()
        if unplayed:
            while not self.outbox.empty():
                self.outbox.get_nowait()
            self.outbox.put_nowait(twilio.clear(self.stream_sid))
        return unplayed

    async def played(self, label: str) -> None:
        await self._playout.played(label)

    def mark_played(self, label: str) -> None:
        """Twilio echoed a mark: the audio sent before it has played."""
        self._playout.finished(label)


SpendToken = Callable[[str], Awaitable[str | None]]
"""A stream's one-time token -> its call's session, spent now; None when it is unknown, used or stale."""


class PhoneCall:
    def __init__(
        self,
        websocket: WebSocket,
        *,
        pipelines: Pipelines,
        metrics: Metrics,
        audio: AudioStreams,
        spend_token: SpendToken,
        greeting: str,
        messages: MessageRate,
    ) -> None:
        """`audio`: where the call reports the audio it receives, for the load sensor (load.py);
        `messages`: how fast the stream may send (Twilio sends 50 media messages a second)."""
        self._socket = websocket
        self._messages = messages
        self._pipelines = pipelines
        self._metrics = metrics
        self._audio = audio
        self._spend_token = spend_token
        self._greeting = greeting
        self._to_model_rate = StreamResampler()
        self._garbage_in_a_row = 0
        self._pipeline: SessionPipeline | None = None

    async def drain(self) -> None:
        """The server drains: once the conversation is quiet (the reply in progress played out), say
        goodbye and hang up. A call still starting is left to the shutdown."""
        pipeline = self._pipeline
        if pipeline is None:
            return
        await pipeline.settled()
        if self._pipeline is None:  # the caller hung up meanwhile
            return
        await pipeline.say(FAREWELL, "farewell", until_played=True)
        await self._close(NORMAL_CLOSURE, "the server is shutting down")

    async def run(self) -> None:
        await self._socket.accept()
        try:
            await self._answer()
        except WebSocketDisconnect:
            raise
        except Exception:  # a bug: the stream is closed with why, not dropped (1006); other calls go on
            logger.exception("the call failed")
            with contextlib.suppress(WebSocketDisconnect):
                await self._close(INTERNAL_ERROR, "the assistant failed on this call")

    async def _close(self, code: int, reason: str) -> None:
        """Close the stream with why, unless the caller is gone already: a send that failed (the writer's,
        as the caller hung up) has marked it closed, and Starlette refuses to close it again."""
        if self._socket.application_state is WebSocketState.CONNECTED:
            await self._socket.close(code, reason)

    async def _answer(self) -> None:
        start = await self._await_start()
        if start is None:
            return
        sink = TwilioSink(start.start.stream_sid)
        try:
            session_id = await self._spend_token(start.start.custom_parameters.get("token", ""))
            pipeline = (
                await self._pipelines.open(session_id, publish=lambda _event: None, sink=sink)
                if session_id is not None and self._pipelines.can_speak
                else None
            )
        except Exception as exc:  # the store is away: this call ends, the next works once it is back
            store_failure("the call could not be started", exc, metrics=self._metrics, session_id=None)
            await self._close(INTERNAL_ERROR, "the assistant cannot take this call right now")
            return
        if pipeline is None:
            await self._close(POLICY_VIOLATION, "a valid, unused call token is required")
            return
        await self._converse(pipeline, sink)

    async def _await_start(self) -> twilio.Start | None:
        """Skips `connected` (and garbage); anything else before `start` closes the stream."""
        while True:
            message = await self._receive()
            if isinstance(message, twilio.Start):
                return message
            if isinstance(message, twilio.Connected) or message is None:
                continue
            await self._close(POLICY_VIOLATION, "expected a start message")
            return None

    async def _receive(self) -> twilio.Incoming | None:
        """The next useful message; None for garbage or events this bridge ignores. A binary frame is
        no Media Streams message at all (Twilio sends JSON text): the stream is closed with why."""
        frame = await self._socket.receive()
        if frame["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(frame.get("code", 1000))
        if not self._messages.take():
            await self._socket.close(POLICY_VIOLATION, self._messages.refusal())
            raise WebSocketDisconnect(POLICY_VIOLATION)
        text = frame.get("text")
        if text is None:
            await self._close(UNSUPPORTED_DATA, "media streams are JSON text messages, not binary")
            raise WebSocketDisconnect(UNSUPPORTED_DATA)
        if len(text) > twilio.MAX_MESSAGE_CHARS:
            await self._close(MESSAGE_TOO_BIG, "message too large for a media stream")
            raise WebSocketDisconnect(MESSAGE_TOO_BIG)
        try:
            message = twilio.parse(text)
        except twilio.ProtocolError as exc:
            self._garbage_in_a_row += 1
            self._metrics.errors.labels("phone-protocol").inc()
            logger.warning("ignored a bad media-stream message: %s", exc)
            if self._garbage_in_a_row > MAX_GARBAGE_IN_A_ROW:
                await self._close(POLICY_VIOLATION, "too many malformed messages")
                raise WebSocketDisconnect(POLICY_VIOLATION) from exc
            return None
        self._garbage_in_a_row = 0
        return message

    async def _converse(self, pipeline: SessionPipeline, sink: TwilioSink) -> None:
        session_id, stream_sid = pipeline.session_id, sink.stream_sid
        writer = asyncio.create_task(self._write(sink))
        self._pipeline = pipeline
        logger.info("call started", extra={"session": session_tag(session_id), "stream": stream_sid})
        try:
            with self._metrics.live_calls.held():
                if self._greeting:
                    await pipeline.say(self._greeting, "greeting")
                with self._audio.connected() as received:
                    await self._listen(pipeline.feed, received, sink)
        except WebSocketDisconnect:
            pass
        finally:
            self._pipeline = None
            await pipeline.close()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            logger.info("call ended", extra={"session": session_tag(session_id), "stream": stream_sid})

    async def _listen(
        self, feed: Callable[[Samples, datetime], None], received: ReceivedSeconds, sink: TwilioSink
    ) -> None:
        while True:
            message = await self._receive()
            if isinstance(message, twilio.Media):
                try:
                    audio = decode_g711(message.audio())
                except twilio.ProtocolError as exc:
                    logger.warning("ignored a media message: %s", exc)
                    continue
                seconds = len(audio) / TELEPHONE_RATE
                self._metrics.audio_received.inc(seconds)
                received(seconds)
                feed(self._to_model_rate(audio, TELEPHONE_RATE), utc_now())
            elif isinstance(message, twilio.Mark):
                sink.mark_played(message.mark.name)
            elif isinstance(message, twilio.Stop):
                # The call is over. Closed here: a stream its handler leaves open, uvicorn drops without a
                # close frame (1006).
                await self._close(NORMAL_CLOSURE, "the call ended")
                return

    async def _write(self, sink: TwilioSink) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while True:
                await self._socket.send_text(await sink.outbox.get())
