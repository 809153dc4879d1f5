"""The model seam: a conversation in, text deltas out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from voice_assistant.audio.pcm import MODEL_RATE, Samples
from voice_assistant.config import ModelSettings


@dataclass(frozen=True)
class AudioPart:
    samples: Samples
    """Mono float32 at MODEL_RATE."""

    @property
    def seconds(self) -> float:
        return len(self.samples) / MODEL_RATE


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class Sampling:
    """How a reply's tokens are drawn, whichever backend draws them. Temperature 0 is greedy."""

    max_new_tokens: int
    temperature: float
    top_p: float

    @classmethod
    def from_settings(cls, model: ModelSettings) -> Sampling:
        return cls(max_new_tokens=model.max_new_tokens, temperature=model.temperature, top_p=model.top_p)

    @classmethod
    def greedy(cls, max_new_tokens: int) -> Sampling:
        """The most likely tokens: transcripts, warm-up."""
        return cls(max_new_tokens=max_new_tokens, temperature=0.0, top_p=1.0)


Part = AudioPart | TextPart
Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    parts: tuple[Part, ...]

    @property
    def audio(self) -> list[AudioPart]:
        return [part for part in self.parts if isinstance(part, AudioPart)]

    @property
    def text(self) -> str:
        return "".join(part.text for part in self.parts if isinstance(part, TextPart))


class AudioLM(Protocol):
    """A backend hears a conversation (system prompt, earlier turns, the new turn) and streams its reply.

    Cancel by cancelling the consuming task: a backend stops generating when its iterator is closed.
    Failures surface as `ModelError`.
    """

    name: str
    max_clips: int | None
    """How many audio clips one prompt may carry (None: no limit): the history window keeps to it."""

    def audio_tokens(self, seconds: float) -> int:
        """Prompt tokens that a clip of this length costs (the history window's budget counts them)."""
        ...

    def stream_reply(self, messages: Sequence[Message]) -> AsyncIterator[str]: ...

    async def transcribe(self, audio: Samples) -> str:
        """The words spoken in `audio`: the stored transcript of a turn, and how older turns (beyond the
        audio window) appear in the model's history. Runs off the critical path, after replies."""
        ...

    async def warm_up(self) -> None: ...

    async def aclose(self) -> None:
        """Release what the backend holds open (connections to a model server)."""
        ...
