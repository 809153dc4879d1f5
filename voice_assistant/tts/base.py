"""The text-to-speech seam: text in, audio out, so that engines are swappable and fakeable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from voice_assistant.audio.pcm import Samples
from voice_assistant.errors import VoiceAssistantError


class SynthesisError(VoiceAssistantError):
    """A speech engine that is missing, misconfigured or failed on a sentence."""


class Synthesizer(Protocol):
    """Speaks one piece of text (usually a sentence) as mono float32 chunks at `sample_rate`.

    Several chunks only when the engine cuts a long text; their concatenation is the whole speech.
    Blocking work runs in a worker thread. Cancel by cancelling the consuming task: an engine stops
    at its next chunk at the latest and never touches the event loop from its thread.
    """

    sample_rate: int

    def synthesize(self, text: str) -> AsyncIterator[Samples]: ...
