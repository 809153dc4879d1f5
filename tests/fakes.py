"""One fake per interface, for the model seam only: everything else in the tests is real."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from voice_assistant.audio.pcm import Samples
from voice_assistant.errors import ModelError
from voice_assistant.events import Event
from voice_assistant.model.base import Message
from voice_assistant.session.sink import Playout
from voice_assistant.tts.base import SynthesisError


@dataclass
class FakeAudioLM:
    """Streams scripted replies (a list of deltas, or an exception to raise) and records what it heard."""

    replies: list[list[str] | Exception]
    delay: float = 0.0
    name: str = "fake"
    max_clips: int | None = None
    heard: list[Sequence[Message]] = field(default_factory=list)
    stopped: int = 0

    async def stream_reply(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        self.heard.append(messages)
        reply = self.replies.pop(0) if self.replies else ["ok"]
        if isinstance(reply, Exception):
            raise reply
        try:
            for delta in reply:
                if self.delay:
                    await asyncio.sleep(self.delay)
                yield delta
        except (asyncio.CancelledError, GeneratorExit):
            self.stopped += 1
            raise

    transcripts: list[str] = field(default_factory=list)
    transcribe_delay: float = 0.0
    transcriptions_stopped: int = 0

    def audio_tokens(self, seconds: float) -> int:
        return audio_tokens_25_per_second(seconds)

    async def transcribe(self, audio: Samples) -> str:
        try:
            await asyncio.sleep(self.transcribe_delay)
        except asyncio.CancelledError:
            self.transcriptions_stopped += 1
            raise
        return self.transcripts.pop(0) if self.transcripts else f"{len(audio) / 16_000:.1f} seconds of speech"

    async def warm_up(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def audio_tokens_25_per_second(seconds: float) -> int:
    """Qwen2-Audio's rate, as a window policy's token counter."""
    return math.ceil(seconds * 25) + 8


def failing(message: str = "the GPU fell over") -> ModelError:
    return ModelError(message)


@dataclass
class EventLog:
    events: list[Event] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self.changed.set()

    def of(self, kind: str) -> list[Event]:
        return [event for event in self.events if event.type == kind]

    async def wait_for(self, kind: str, count: int = 1, timeout: float = 10.0) -> list[Event]:
        async def until() -> None:
            while len(self.of(kind)) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout)
        return self.of(kind)


@dataclass
class FakeSynthesizer:
    """A synthesizer whose audio is one sample per character, so what was spoken can be read back.
    While `hold` is clear it waits before each text: a test steps synthesis by setting it."""

    sample_rate: int = 8000
    spoken: list[str] = field(default_factory=list)
    fail_on: str | None = None
    hold: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.hold.set()

    async def synthesize(self, text: str) -> AsyncIterator[Samples]:
        await self.hold.wait()
        if text == self.fail_on:
            raise SynthesisError("engine crashed")
        self.spoken.append(text)
        yield np.ones(len(text), np.float32)


@dataclass
class RecordingSink:
    """An `AudioSink` that plays nothing by itself: the test says which pieces have played (`finish`)."""

    pieces: list[tuple[str, int]] = field(default_factory=list)
    """(label, samples) of every piece, in the order it was given."""
    clears: int = 0
    playout: Playout = field(default_factory=Playout)

    async def play(self, samples: Samples, rate: int, label: str) -> None:
        self.pieces.append((label, len(samples)))
        self.playout.sent(label)

    def clear(self) -> set[str]:
        self.clears += 1
        return self.playout.clear()

    async def played(self, label: str) -> None:
        await self.playout.played(label)

    def finish(self, *labels: str) -> None:
        """These pieces have played (all that were given, when none is named)."""
        for label in labels or [label for label, _ in self.pieces]:
            self.playout.finished(label)

    @property
    def labels(self) -> list[str]:
        return [label for label, _ in self.pieces]


async def settle(rounds: int = 20) -> None:
    """Let every task that can run do so, without waiting on the clock."""
    for _ in range(rounds):
        await asyncio.sleep(0)


@dataclass
class ScriptedReply:
    """A reply's text source that the test feeds delta by delta (`say`, `fail`, `end`)."""

    queue: asyncio.Queue[str | Exception | None] = field(default_factory=asyncio.Queue)
    closed: bool = False

    def say(self, *deltas: str) -> None:
        for delta in deltas:
            self.queue.put_nowait(delta)

    def fail(self, error: Exception) -> None:
        self.queue.put_nowait(error)

    def end(self) -> None:
        self.queue.put_nowait(None)

    async def stream(self) -> AsyncIterator[str]:
        try:
            while (item := await self.queue.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.closed = True
