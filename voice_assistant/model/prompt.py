"""What both backends do to a conversation before their own encoding, so the two shape it alike.

A family without a system role hears the system prompt at the opening of the first user message; a
family that takes fewer clips than the conversation holds hears the older ones as a note; a clip is the
end of its turn, as much as the family's encoder takes; clips travel as base64 WAV; a transcript is asked
for with the family's prompt, greedily, within what the clip's words can take (`transcribing`).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import soundfile as sf

from voice_assistant.audio.pcm import MODEL_RATE, Samples
from voice_assistant.model.base import AudioPart, Message, Part, Sampling, TextPart
from voice_assistant.model.families import Family

TRANSCRIPT_TOKENS_PER_SECOND = 8.0
"""Twice fast speech (about 4 words, 5-6 tokens, a second)."""
TRANSCRIPT_BASE_TOKENS = 16
EARLIER_CLIP = "[an earlier spoken turn]"
"""Stands for a clip that the family cannot take in the same prompt as a newer one."""


def with_system_role(messages: Sequence[Message], family: Family | None) -> list[Message]:
    """The messages as the family takes them: unchanged where it has a system role (or is unknown), else
    the system prompt folded into the opening of the first user message."""
    if family is None or family.system_prompt:
        return list(messages)
    system = "".join(message.text for message in messages if message.role == "system")
    folded = [message for message in messages if message.role != "system"]
    first_user = next((i for i, message in enumerate(folded) if message.role == "user"), None)
    if system and first_user is not None:
        message = folded[first_user]
        folded[first_user] = Message("user", (TextPart(system + "\n\n"), *message.parts))
    return folded


def within_clip_limit(messages: Sequence[Message], limit: int | None) -> list[Message]:
    """The newest clips, as many as the family takes in one prompt; older ones become a short note, so
    the conversation keeps its shape (the history window sends their transcripts where it knows them)."""
    if limit is None:
        return list(messages)
    heard = 0
    kept: list[Message] = []
    for message in reversed(messages):
        parts: list[Part] = []
        for part in reversed(message.parts):
            if isinstance(part, AudioPart):
                heard += 1
                if heard > limit:
                    part = TextPart(EARLIER_CLIP)
            parts.append(part)
        kept.append(Message(message.role, tuple(reversed(parts))))
    return kept[::-1]


def clip_end(samples: Samples, family: Family) -> np.ndarray:
    """The end of the turn, as much as the family's encoder takes."""
    return np.asarray(samples[-int(family.max_clip_seconds * MODEL_RATE) :], dtype=np.float32)


def wav_base64(samples: Samples, *, subtype: Literal["FLOAT", "PCM_16"]) -> str:
    """A clip as base64 mono WAV at MODEL_RATE. FLOAT is lossless (how mistral-common's chat takes audio
    held in memory); PCM_16 is lossless enough for speech, half the size, and what every server's audio
    loader (librosa, soundfile, ffmpeg) reads; samples beyond [-1, 1] are clipped to it, not wrapped."""
    if subtype == "PCM_16":
        samples = np.clip(samples, -1.0, 1.0)
    buffer = io.BytesIO()
    sf.write(buffer, samples, MODEL_RATE, format="WAV", subtype=subtype)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def transcription_request(audio: Samples, family: Family | None) -> list[Message]:
    """The turn's audio and the family's request for its words (the default one for an unknown family)."""
    prompt = family.transcribe_prompt if family else Family.transcribe_prompt
    return [Message("user", (AudioPart(audio), TextPart(prompt)))]


def transcribing(audio: Samples) -> Sampling:
    """Greedy, within what the words of `audio` can take: a model that loops instead of stopping (a
    hallucinating one, or random weights) is cut soon after the words run out, not after a fixed budget
    that costs a short turn as much as a long reply."""
    seconds = len(audio) / MODEL_RATE
    return Sampling.greedy(TRANSCRIPT_BASE_TOKENS + math.ceil(TRANSCRIPT_TOKENS_PER_SECOND * seconds))
