"""One fake per interface, for the model seam only: everything else in the tests is real."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from voice_assistant.audio.pcm import Samples
from voice_assistant.errors import ModelError
from voice_assistant.events import Event
from voice_assistant.model.base import Message


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
