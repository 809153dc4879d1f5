"""Speak a reply while it is still being written: cut the model's text deltas into sentences and
synthesize each one as soon as it is complete, so the first sentence plays while the rest is generated.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from voice_assistant.audio.pcm import Samples
from voice_assistant.tts.base import Synthesizer

_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*\s+|\n+")
"""A full stop, question or exclamation mark with a space after it ("3.5" goes on), or a line break."""

_SPEAKABLE = re.compile(r"\w")

_MARKUP = re.compile(r"[*_`#]+")
"""Markdown emphasis, code and heading marks, which engines would read out ("asterisk")."""


@dataclass
class SentenceSplitter:
    """Pure: text pieces in, finished sentences out. A mark at the very end of the text so far waits
    for the next piece, which tells "Hello." from "3." + "5"."""

    _pending: str = ""

    def push(self, text: str) -> list[str]:
        self._pending += text
        sentences = []
        start = 0
        for end in _SENTENCE_END.finditer(self._pending):
            sentences.append(self._pending[start : end.end()])
            start = end.end()
        self._pending = self._pending[start:]
        return [sentence.strip() for sentence in sentences if _SPEAKABLE.search(sentence)]

    def flush(self) -> str | None:
        """The rest of the text once it has ended: the last sentence, even without a mark."""
        rest, self._pending = self._pending.strip(), ""
        return rest if _SPEAKABLE.search(rest) else None


@dataclass(frozen=True)
class SpeechChunk:
    sentence: int
    """The sentence's number in the reply, from 0; a long sentence may come in several chunks."""
    text: str
    """The sentence this audio speaks, as written."""
    samples: Samples
    """Mono float32 at the synthesizer's `sample_rate`."""


async def sentences(deltas: AsyncIterable[str]) -> AsyncIterator[str]:
    """The sentences of a streamed text, each as soon as it is complete, the unfinished rest at the end."""
    splitter = SentenceSplitter()
    async for delta in deltas:
        for sentence in splitter.push(delta):
            yield sentence
    rest = splitter.flush()
    if rest is not None:
        yield rest


def spoken_sentences(text: str) -> list[str]:
    """The sentences of a whole text that `speak_sentences` speaks, by their number."""
    splitter = SentenceSplitter()
    found = splitter.push(text)
    rest = splitter.flush()
    return [sentence for sentence in [*found, *([rest] if rest else [])] if _MARKUP.sub("", sentence).strip()]


async def speak_sentences(deltas: AsyncIterable[str], synthesizer: Synthesizer) -> AsyncIterator[SpeechChunk]:
    """Audio sentence by sentence, each as soon as its text is complete and synthesized.

    Pulls the next deltas only after a sentence's audio was taken, so hand the chunks to a buffering
    sink (which plays one sentence while the next is synthesized) rather than await their playback.
    Cancelling the consumer stops the synthesis in progress; closing `deltas` is the caller's part.
    """
    number = 0
    async for sentence in sentences(deltas):
        words = _MARKUP.sub("", sentence).strip()
        if not words:
            continue
        async for samples in synthesizer.synthesize(words):
            yield SpeechChunk(number, sentence, samples)
        number += 1
