"""Spoken replies: each reply's text, sentence by sentence, through a synthesizer into a sink.

It follows the conversation's events, so it needs no hook inside the conversation: a reply's deltas
feed the sentence streamer as they arrive (the first sentence plays while the rest is generated),
the reply's end flushes the last sentence, and new speech from the user (barge-in) or an interrupted
reply stops the voice at once and clears what the sink had queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from voice_assistant.errors import VoiceAssistantError
from voice_assistant.events import Event, ReplyDelta, ReplyDone, TurnStarted
from voice_assistant.transport.sink import AudioSink
from voice_assistant.tts.base import Synthesizer
from voice_assistant.tts.sentences import speak_sentences

logger = logging.getLogger(__name__)


CutReply = Callable[[int, str], None]
"""A spoken reply was cut short: its turn, and the text of the sentences the user did hear."""


class SpeechOutput:
    def __init__(
        self,
        synthesizer: Synthesizer,
        sink: AudioSink,
        *,
        report: Callable[[str], None],
    ) -> None:
        self._synthesizer = synthesizer
        self._sink = sink
        self._report = report
        self.on_cut: CutReply | None = None
        """Told when a reply is cut short (set once the conversation that keeps the history exists)."""
        self._turn: int | None = None
        self._text: asyncio.Queue[str | None] | None = None
        self._voice: asyncio.Task[None] | None = None
        self._pieces: list[tuple[str, str]] = []
        """(label, sentence) of the reply being spoken, as they went to the sink."""

    def on_event(self, event: Event) -> None:
        match event:
            case TurnStarted():
                self.stop()
            case ReplyDelta(turn=turn, text=text):
                if turn != self._turn or self._text is None:
                    self._speak_reply(turn)
                assert self._text is not None
                self._text.put_nowait(text)
            case ReplyDone(turn=turn, interrupted=interrupted) if (
                turn == self._turn and self._text is not None
            ):
                if interrupted:
                    self.stop()
                else:
                    self._text.put_nowait(None)

    async def say(self, text: str, label: str) -> None:
        """Speak a fixed text (a greeting, a refusal); returns once it is queued in the sink, or cut."""
        self.stop()
        self._voice = voice = asyncio.create_task(self._play(_once(text), label))
        await asyncio.wait([voice])

    def stop(self) -> None:
        """Silence now: stop synthesizing and drop what the sink has not played."""
        speaking = self._voice is not None and not self._voice.done()
        if self._voice is not None and speaking:
            self._voice.cancel()
        unplayed = self._sink.clear()
        if self._turn is not None and self.on_cut is not None:
            if speaking or any(label in unplayed for label, _ in self._pieces):
                heard = " ".join(sentence for label, sentence in self._pieces if label not in unplayed)
                self.on_cut(self._turn, heard)
        self._voice, self._text, self._turn, self._pieces = None, None, None, []

    async def close(self) -> None:
        voice = self._voice
        self.stop()
        if voice is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await voice

    def _speak_reply(self, turn: int) -> None:
        self.stop()
        text: asyncio.Queue[str | None] = asyncio.Queue()
        self._turn, self._text = turn, text

        async def deltas() -> AsyncIterator[str]:
            while (delta := await text.get()) is not None:
                yield delta

        self._voice = asyncio.create_task(self._play(deltas(), f"turn-{turn}"))

    async def _play(self, text: AsyncIterator[str], label: str) -> None:
        try:
            async for chunk in speak_sentences(text, self._synthesizer):
                piece = f"{label}.{chunk.sentence}"
                await self._sink.play(chunk.samples, self._synthesizer.sample_rate, piece)
                self._pieces.append((piece, chunk.text))
        except VoiceAssistantError as exc:  # the text was delivered; only the voice failed
            logger.warning("speech failed: %s", exc)
            self._report(f"the reply could not be spoken: {exc}")


async def _once(text: str) -> AsyncIterator[str]:
    yield text
