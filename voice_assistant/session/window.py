"""What the model hears: the system prompt, the running summary, and a window of the latest turns, within
a token budget.

The newest turns go in as audio, older ones as text (their transcript, when known, and the reply), and the
turns before those as the running summary (session/summaries.py), so a long conversation neither overflows
the context nor slows every turn down linearly, and still remembers how it began.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from voice_assistant.audio.pcm import MODEL_RATE, Samples
from voice_assistant.history.store import PastTurn, SummaryRecord
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
    summary_every: int = 0
    """Fold this many turns at a time into the running summary once the window is full; 0: no summary."""
    summary_max_tokens: int = 200

    @staticmethod
    def text_tokens(text: str) -> int:
        return math.ceil(len(text) / CHARS_PER_TOKEN) + 4


def untranscribed(index: int) -> str:
    return f"[turn {index}: spoken, no transcript]"


def summary_text(summary: SummaryRecord) -> str:
    """How the summary reads in the system message."""
    return f"Earlier in this conversation (turns {summary.from_turn}-{summary.through_turn}): {summary.text}"


@dataclass(frozen=True)
class Window:
    messages: list[Message]
    context: dict[str, Any]
    """Stored with the turn: which earlier turns the model heard as audio and which as text."""


def build_window(
    policy: WindowPolicy,
    past: Sequence[PastTurn],
    current: Samples | str,
    summary: SummaryRecord | None = None,
) -> Window:
    """`current`: the new turn's audio, or its words when it was typed. The turns `summary` covers are
    heard through it alone."""
    if summary is not None:
        past = [turn for turn in past if turn.index > summary.through_turn]
    summary_tokens = policy.text_tokens(summary_text(summary)) if summary is not None else 0
    budget = (
        policy.token_budget
        - policy.text_tokens(policy.system_prompt)
        - summary_tokens
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

    system = policy.system_prompt if summary is None else f"{policy.system_prompt}\n\n{summary_text(summary)}"
    messages: list[Message] = [Message("system", (TextPart(system),))]
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
            "summary_through": summary.through_turn if summary is not None else None,
            "summary_tokens": summary_tokens,
            "estimated_tokens": policy.token_budget - budget,
        },
    )


def _append(messages: list[Message], message: Message) -> None:
    """Merge consecutive messages of one role (a turn without a reply), as strict templates require."""
    if messages and messages[-1].role == message.role:
        messages[-1] = Message(message.role, messages[-1].parts + message.parts)
    else:
        messages.append(message)
