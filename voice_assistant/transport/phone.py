"""One phone call over a Twilio media stream: the caller's audio to the turn detector, replies spoken back.

The stream is accepted only with a valid, unused one-time token (issued with the call's TwiML and sent
back in the `start` message's custom parameters). Garbage is ignored without harm to the call (and
never to other calls); a message far larger than Twilio's own closes the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from fastapi import WebSocket, WebSocketDisconnect

from voice_assistant.assistant import Assistant
from voice_assistant.audio.mulaw import TELEPHONE_RATE, decode_mulaw, encode_mulaw
from voice_assistant.audio.pcm import Samples
from voice_assistant.audio.resample import StreamResampler, resample
from voice_assistant.clock import utc_now
from voice_assistant.session.speech import SpeechOutput
from voice_assistant.transport import twilio

logger = logging.getLogger(__name__)

FRAME_BYTES = TELEPHONE_RATE // 50
"""20 ms of 8 kHz mu-law: what each outgoing media message carries, as Twilio's own do."""
MULAW_SILENCE = b"\xff"
POLICY_VIOLATION, MESSAGE_TOO_BIG = 1008, 1009
MAX_GARBAGE_IN_A_ROW = 50


class TwilioSink:
    """Replies for the caller: mu-law media messages and a mark after each piece, queued for a writer.

    Twilio plays what it is sent in order and echoes each mark once the audio before it has played,
    so the marks still out say whether anything is playing; `clear` is sent only then.
    """

    def __init__(self, stream_sid: str) -> None:
        self.stream_sid = stream_sid
        self.outbox: asyncio.Queue[str] = asyncio.Queue()
        self._unplayed: set[str] = set()

    async def play(self, samples: Samples, rate: int, label: str) -> None:
        mulaw = encode_mulaw(resample(samples, rate, TELEPHONE_RATE))
        mulaw += MULAW_SILENCE * (-len(mulaw) % FRAME_BYTES)  # whole 20 ms frames only
        for start in range(0, len(mulaw), FRAME_BYTES):
            self.outbox.put_nowait(twilio.media(self.stream_sid, mulaw[start : start + FRAME_BYTES]))
        self.outbox.put_nowait(twilio.mark(self.stream_sid, label))
        self._unplayed.add(label)

    def clear(self) -> set[str]:
        unplayed, self._unplayed = self._unplayed, set()
        if unplayed:
            while not self.outbox.empty():
                self.outbox.get_nowait()
            self.outbox.put_nowait(twilio.clear(self.stream_sid))
        return unplayed

    def played(self, label: str) -> None:
        self._unplayed.discard(label)


class PhoneCall:
    def __init__(self, assistant: Assistant, websocket: WebSocket) -> None:
        self._assistant = assistant
        self._socket = websocket
        self._to_model_rate = StreamResampler()
        self._garbage_in_a_row = 0

    async def run(self) -> None:
        await self._socket.accept()
        start = await self._await_start()
        if start is None:
            return
        session_id = await self._assistant.store.spend_call_token(
            start.start.custom_parameters.get("token", ""),
            now=utc_now(),
            ttl=timedelta(seconds=self._assistant.settings.phone.call_token_ttl_s),
        )
        if session_id is None or self._assistant.synthesizer is None:
            await self._socket.close(POLICY_VIOLATION, "a valid, unused call token is required")
            return
        await self._converse(session_id, start.start.stream_sid)

    async def _await_start(self) -> twilio.Start | None:
        """Skips `connected` (and garbage); anything else before `start` closes the stream."""
        while True:
            message = await self._receive()
            if isinstance(message, twilio.Start):
                return message
            if isinstance(message, twilio.Connected) or message is None:
                continue
            await self._socket.close(POLICY_VIOLATION, "expected a start message")
            return None

    async def _receive(self) -> twilio.Incoming | None:
        """The next useful message; None for garbage or events this bridge ignores."""
        text = await self._socket.receive_text()
        if len(text) > twilio.MAX_MESSAGE_CHARS:
            await self._socket.close(MESSAGE_TOO_BIG, "message too large for a media stream")
            raise WebSocketDisconnect(MESSAGE_TOO_BIG)
        try:
            message = twilio.parse(text)
        except twilio.ProtocolError as exc:
            self._garbage_in_a_row += 1
            self._assistant.metrics.errors.labels("phone-protocol").inc()
            logger.warning("ignored a bad media-stream message: %s", exc)
            if self._garbage_in_a_row > MAX_GARBAGE_IN_A_ROW:
                await self._socket.close(POLICY_VIOLATION, "too many malformed messages")
                raise WebSocketDisconnect(POLICY_VIOLATION) from exc
            return None
        self._garbage_in_a_row = 0
        return message

    async def _converse(self, session_id: str, stream_sid: str) -> None:
        assert self._assistant.synthesizer is not None
        metrics = self._assistant.metrics
        sink = TwilioSink(stream_sid)
        writer = asyncio.create_task(self._write(sink))
        speech = SpeechOutput(
            self._assistant.synthesizer, sink, report=lambda message: logger.warning("%s", message)
        )
        conversation = await self._assistant.open_conversation(session_id, speech.on_event)
        speech.on_cut = conversation.reply_cut
        turns = self._assistant.turn_taker(conversation)
        metrics.live_calls.inc()
        self._assistant.live_calls += 1
        logger.info("call on session %s (stream %s)", session_id, stream_sid)
        try:
            if self._assistant.settings.phone.greeting:
                await speech.say(self._assistant.settings.phone.greeting, "greeting")
            while True:
                message = await self._receive()
                if isinstance(message, twilio.Media):
                    try:
                        audio = decode_mulaw(message.audio())
                    except twilio.ProtocolError as exc:
                        logger.warning("ignored a media message: %s", exc)
                        continue
                    samples = self._to_model_rate(audio, TELEPHONE_RATE)
                    metrics.audio_received.inc(len(audio) / TELEPHONE_RATE)
                    turns.feed(samples, utc_now())
                elif isinstance(message, twilio.Mark):
                    sink.played(message.mark.name)
                elif isinstance(message, twilio.Stop):
                    break
        except WebSocketDisconnect:
            pass
        finally:
            metrics.live_calls.dec()
            self._assistant.live_calls -= 1
            await turns.close()
            await speech.close()
            await conversation.close()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            logger.info("call on session %s ended", session_id)

    async def _write(self, sink: TwilioSink) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while True:
                await self._socket.send_text(await sink.outbox.get())
