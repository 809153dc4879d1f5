"""The history window: newest turns as audio, older as text, under a token budget."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from tests.fakes import audio_tokens_25_per_second
from voice_assistant.history.store import PastTurn, SummaryRecord
from voice_assistant.model.base import AudioPart, TextPart
from voice_assistant.session.window import WindowPolicy, build_window, summary_text, untranscribed

pytestmark = pytest.mark.unit


def policy(**overrides: object) -> WindowPolicy:
    values: dict[str, object] = {
        "system_prompt": "Be brief.",
        "audio_turns": 3,
        "max_turns": 10,
        "token_budget": 100_000,
        "audio_tokens": audio_tokens_25_per_second,
    }
    values.update(overrides)
    return WindowPolicy(**values)  # type: ignore[arg-type]


def past(n: int, *, seconds: float = 1.0, with_audio_last: int = 10) -> list[PastTurn]:
    return [
        PastTurn(
            index=i,
            audio=np.full(int(seconds * 16_000), i, dtype=np.float32) if i >= n - with_audio_last else None,
            audio_seconds=seconds,
            transcript=f"words of turn {i}" if i % 2 == 0 else None,
            reply_text=f"reply {i}",
        )
        for i in range(n)
    ]


def test_the_newest_turns_are_audio_and_older_ones_text() -> None:
    window = build_window(policy(), past(5), np.zeros(16_000, dtype=np.float32))
    roles = [m.role for m in window.messages]
    assert roles == ["system"] + ["user", "assistant"] * 5 + ["user"]
    # K = 3 counts the current turn: turns 3 and 4 are heard as audio, 0-2 as text.
    assert window.context["audio_turns"] == [3, 4]
    assert window.context["text_turns"] == [0, 1, 2]
    users = [m for m in window.messages if m.role == "user"]
    assert isinstance(users[3].parts[0], AudioPart) and users[3].parts[0].samples[0] == 3
    assert users[0].parts[0] == TextPart("words of turn 0")
    assert "no transcript" in users[1].text
    assert isinstance(users[-1].parts[0], AudioPart)


def test_a_turn_whose_audio_was_not_loaded_is_heard_as_text() -> None:
    window = build_window(policy(audio_turns=5), past(4, with_audio_last=1), np.zeros(1600, dtype=np.float32))
    assert window.context["audio_turns"] == [3]


def test_the_budget_drops_the_oldest_turns_first() -> None:
    # Each past audio turn costs 25 * 10 + 8 audio tokens plus its reply: only the newest fit.
    window = build_window(
        policy(token_budget=900, audio_turns=10),
        past(6, seconds=10.0),
        np.zeros(16_000 * 10, dtype=np.float32),
    )
    assert window.context["audio_turns"] == [4, 5]
    assert window.context["estimated_tokens"] <= 900


def test_max_turns_bounds_the_window() -> None:
    window = build_window(policy(max_turns=3), past(8), np.zeros(1600, dtype=np.float32))
    assert window.context["audio_turns"] + window.context["text_turns"] == [6, 7]


def test_a_turn_without_reply_merges_with_the_next_user_message() -> None:
    turns = past(2)
    turns[1] = PastTurn(index=1, audio=turns[1].audio, audio_seconds=1.0, transcript=None, reply_text=None)
    window = build_window(policy(), turns, np.zeros(1600, dtype=np.float32))
    assert [m.role for m in window.messages] == ["system", "user", "assistant", "user"]
    assert len(window.messages[-1].audio) == 2


def test_a_typed_turn_is_heard_as_its_words_and_costs_their_tokens() -> None:
    window = build_window(policy(), past(2), "What is the time?")
    last = window.messages[-1]
    assert last.role == "user" and isinstance(last.parts[-1], TextPart)
    assert last.parts[-1].text == "What is the time?"
    spoken = build_window(policy(), past(2), np.zeros(16_000 * 10, np.float32))
    assert window.context["estimated_tokens"] < spoken.context["estimated_tokens"]


SUMMARY = SummaryRecord(
    from_turn=0, through_turn=2, text="The user is Ada; she asked about trains.", created_at=datetime.now(UTC)
)


def test_the_summary_goes_in_the_system_message_and_its_turns_are_heard_through_it_alone() -> None:
    without = build_window(policy(), past(6), np.zeros(16_000, dtype=np.float32))
    window = build_window(policy(), past(6), np.zeros(16_000, dtype=np.float32), SUMMARY)
    system = window.messages[0]
    assert system.role == "system" and system.text.startswith("Be brief.")
    assert "(turns 0-2): The user is Ada; she asked about trains." in system.text
    assert window.context["text_turns"] == [3] and window.context["audio_turns"] == [4, 5]
    assert window.context["summary_through"] == 2
    assert window.context["summary_tokens"] == WindowPolicy.text_tokens(summary_text(SUMMARY))
    assert without.context["summary_through"] is None and without.context["summary_tokens"] == 0
    assert not any("words of turn 0" in m.text for m in window.messages)


def test_the_summary_counts_against_the_budget() -> None:
    turns = past(6, with_audio_last=0)
    fits_two = (
        WindowPolicy.text_tokens("Be brief.")
        + audio_tokens_25_per_second(1.0)
        + sum(
            WindowPolicy.text_tokens(t.transcript or untranscribed(t.index))
            + WindowPolicy.text_tokens(t.reply_text or "")
            for t in turns[4:]
        )
        + WindowPolicy.text_tokens(summary_text(SUMMARY))
    )
    window = build_window(
        policy(audio_turns=1, token_budget=fits_two), turns, np.zeros(16_000, np.float32), SUMMARY
    )
    assert window.context["text_turns"] == [4, 5]
    assert window.context["estimated_tokens"] <= fits_two
