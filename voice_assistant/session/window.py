"""What the model hears: the system prompt and a window of the latest turns, within a token budget.

The newest turns go in as audio, older ones as text (their transcript, when known, and the reply),
so a long conversation neither overflows the context nor slows every turn down linearly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from voice_assistant.audio.pcm import MODEL_RATE, Samples
from voice_assistant.history.store import PastTurn
from voice_assistant.model.base import AudioPart, Message, Part, TextPart

CHARS_PER_TOKEN = 4
"""How text is counted against the token budget (no tokenizer here): about right for English."""


@dataclass(frozen=True)
class WindowPolicy:
    system_prompt: str
    audio_turns: int
    """The newest K turns (the current one included) are heard as audio."""
    max_turns: int
    token_budget: int
    audio_tokens: Callable[[float], int]
    """The model's own count of a clip's prompt tokens."""

    @staticmethod
    def text_tokens(text: str) -> int:
        return math.ceil(len(text) / CHARS_PER_TOKEN) + 4


def untranscribed(index: int) -> str:
    return f"[turn {index}: spoken, no transcript]"


@dataclass(frozen=True)
class Window:
    messages: list[Message]
    context: dict[str, Any]
    """Stored with the turn: which earlier turns the model heard as audio and which as text."""


def build_window(policy: WindowPolicy, past: Sequence[PastTurn], current: Samples | str) -> Window:
    """`current`: the new turn's audio, or its words when it was typed."""
    budget = (
        policy.token_budget
        - policy.text_tokens(policy.system_prompt)
        - (
            policy.text_tokens(current)
            if isinstance(current, str)
            else policy.audio_tokens(len(current) / MODEL_RATE)
        )
    )
    kept: list[tuple[PastTurn, bool]] = []
    for age, turn in enumerate(
        reversed(past[-(policy.max_turns - 1) :] if policy.max_turns > 1 else []), start=2
    ):
        as_audio = age <= policy.audio_turns and turn.audio is not None
        cost = (
            policy.audio_tokens(turn.audio_seconds)
            if as_audio
            else policy.text_tokens(turn.transcript or untranscribed(turn.index))
        )
        cost += policy.text_tokens(turn.reply_text or "")
        if cost > budget:
            break
        budget -= cost
        kept.append((turn, as_audio))
    kept.reverse()

    messages: list[Message] = [Message("system", (TextPart(policy.system_prompt),))]
    for turn, as_audio in kept:
        user: Part = (
            AudioPart(turn.audio)
            if as_audio and turn.audio is not None
            else TextPart(turn.transcript or untranscribed(turn.index))
        )
        _append(messages, Message("user", (user,)))
        if turn.reply_text:
            _append(messages, Message("assistant", (TextPart(turn.reply_text),)))
    _append(
        messages, Message("user", (TextPart(current) if isinstance(current, str) else AudioPart(current),))
    )
    return Window(
        messages=messages,
        context={
            "audio_turns": [turn.index for turn, as_audio in kept if as_audio],
            "text_turns": [turn.index for turn, as_audio in kept if not as_audio],
            "estimated_tokens": policy.token_budget - budget,
        },
    )


def _append(messages: list[Message], message: Message) -> None:
    """Merge consecutive messages of one role (a turn without a reply), as strict templates require."""
    if messages and messages[-1].role == message.role:
        messages[-1] = Message(message.role, messages[-1].parts + message.parts)
    else:
        messages.append(message)
