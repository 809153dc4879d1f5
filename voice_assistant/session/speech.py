"""A session's voice: text, sentence by sentence, through a synthesizer into a sink.

Each spoken text is an `Utterance`: its sentences are synthesized as soon as they are complete (the
first plays while the rest is still being generated) and it keeps, piece by piece, what went to the
sink, so that when it is stopped it can say which sentences the user actually heard. It can also be
paused (the unplayed pieces are taken back from the sink) and resumed (they are played again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from voice_assistant.audio.pcm import Samples
from voice_assistant.errors import VoiceAssistantError
from voice_assistant.session.sink import AudioSink
from voice_assistant.tts.base import Synthesizer
from voice_assistant.tts.sentences import speak_sentences

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class _Piece:
    label: str
    text: str
    samples: Samples
    rate: int


class Utterance:
    """The spoken form of one stream of text. `feed` text, `end` it, await `finished`, or `stop` it."""

    def __init__(
        self, synthesizer: Synthesizer, sink: AudioSink, label: str, *, report: Callable[[str], None]
    ) -> None:
        self._synthesizer = synthesizer
        self._sink = sink
        self._label = label
        self._report = report
        self._text: asyncio.Queue[str | None] = asyncio.Queue()
        self._pieces: list[_Piece] = []
        """Every piece that went to the sink, in order; the unplayed ones are left out once stopped."""
        self._held: list[_Piece] = []
        """Pieces taken back from the sink by a pause, played again on resume."""
        self._going = asyncio.Event()
        self._going.set()
        self._stopped = False
        self._voice = asyncio.create_task(self._speak(), name=f"voice-{label}")

    def feed(self, text: str) -> None:
        self._text.put_nowait(text)

    def end(self) -> None:
        """No more text: the last sentence is spoken even without a final mark."""
        self._text.put_nowait(None)

    async def queued(self) -> None:
        """Returns once every sentence is synthesized and queued in the sink (or the utterance stopped)."""
        await asyncio.wait([self._voice])

    async def finished(self) -> None:
        """Returns once everything was played (or the utterance stopped)."""
        await self.queued()
        while not self._stopped and self._pieces:
            await self._sink.played(self._pieces[-1].label)
            if self._going.is_set():
                return
            await self._going.wait()  # paused meanwhile: the held pieces play again after resume

    @property
    def heard(self) -> str:
        """The sentences played so far (all of them once finished)."""
        seen: dict[str, str] = {}
        for piece in self._pieces:
            if piece not in self._held:
                seen.setdefault(piece.label, piece.text)
        return " ".join(seen.values())

    def stop(self) -> bool:
        """Silence now: no more synthesis, and the sink drops what it has not played. True when
        something was still to be heard (speech was cut, not merely over)."""
        if self._stopped:
            return False
        self._stopped = True
        cut = not self._voice.done() or bool(self._held)
        self._voice.cancel()
        unplayed = self._sink.clear()
        held = {piece.label for piece in self._held}
        self._pieces = [p for p in self._pieces if p.label not in unplayed and p.label not in held]
        self._held = []
        self._going.set()
        return cut or bool(unplayed)

    def pause(self) -> None:
        """Hold the voice: what the sink had not played is taken back, and nothing new goes to it."""
        if self._stopped or not self._going.is_set():
            return
        self._going.clear()
        unplayed = self._sink.clear()
        self._held = [piece for piece in self._pieces if piece.label in unplayed]

    async def resume(self) -> None:
        """Play again what the pause took back, then go on."""
        if self._stopped or self._going.is_set():
            return
        held, self._held = self._held, []
        for piece in held:
            await self._sink.play(piece.samples, piece.rate, piece.label)
        self._going.set()

    async def close(self) -> None:
        self.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await self._voice

    async def _deltas(self) -> AsyncIterator[str]:
        while (delta := await self._text.get()) is not None:
            yield delta

    async def _speak(self) -> None:
        rate = self._synthesizer.sample_rate
        try:
            async for chunk in speak_sentences(self._deltas(), self._synthesizer):
                await self._going.wait()
                piece = _Piece(f"{self._label}.{chunk.sentence}", chunk.text, chunk.samples, rate)
                self._pieces.append(piece)
                await self._sink.play(piece.samples, rate, piece.label)
        except VoiceAssistantError as exc:  # the text was delivered; only the voice failed
            logger.warning("speech failed: %s", exc)
            self._report(f"the reply could not be spoken: {exc}")


class Voice:
    """A session's synthesizer and sink; one utterance speaks at a time."""

    def __init__(self, synthesizer: Synthesizer, sink: AudioSink, *, report: Callable[[str], None]) -> None:
        self._synthesizer = synthesizer
        self._sink = sink
        self._report = report
        self._current: Utterance | None = None

    def utterance(self, label: str) -> Utterance:
        """A new utterance; whatever was speaking stops first."""
        self.silence()
        self._current = Utterance(self._synthesizer, self._sink, label, report=self._report)
        return self._current

    async def say(self, text: str, label: str, *, until_played: bool = False) -> None:
        """Speak a fixed text (a greeting, a farewell); returns once it is queued in the sink (or, with
        `until_played`, once it has played), or cut."""
        utterance = self.utterance(label)
        utterance.feed(text)
        utterance.end()
        await (utterance.finished() if until_played else utterance.queued())

    def silence(self) -> None:
        """Stop whatever is speaking (new speech from the user)."""
        if self._current is not None:
            self._current.stop()
            self._current = None

    async def close(self) -> None:
        if self._current is not None:
            await self._current.close()
            self._current = None
