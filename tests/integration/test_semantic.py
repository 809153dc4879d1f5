"""Smart Turn v3 (the ONNX model pipecat-ai ships) on real speech, as the end-of-turn model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.speech import RATE, speak
from voice_assistant.errors import VoiceAssistantError
from voice_assistant.turn.semantic import SmartTurn, load_end_of_turn

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smart_turn() -> SmartTurn:
    model = load_end_of_turn("smart-turn", None)
    assert isinstance(model, SmartTurn)
    return model


def paused(text: str) -> np.ndarray:
    """The turn as the model hears it at a pause: speech, then 200 ms of silence."""
    return np.concatenate([speak(text, voice="en-gb"), np.zeros(RATE // 5, np.float32)])


def test_a_finished_request_sounds_finished_and_a_dangling_one_does_not(smart_turn: SmartTurn) -> None:
    finished = smart_turn.complete_probability(paused("Please remind me to call my sister at five."))
    dangling = smart_turn.complete_probability(paused("I want to"))
    assert finished > 0.8
    assert dangling < 0.3


def test_long_turns_are_judged_on_their_last_eight_seconds(smart_turn: SmartTurn) -> None:
    tail = paused("Please remind me to call my sister at five.")
    long_turn = np.concatenate([np.random.default_rng(0).normal(0, 0.1, RATE * 20).astype(np.float32), tail])
    assert smart_turn.complete_probability(long_turn) == pytest.approx(
        smart_turn.complete_probability(tail), abs=0.05
    )


def test_silence_mode_loads_nothing_and_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    assert load_end_of_turn("silence", None) is None
    with pytest.raises(VoiceAssistantError, match="pipecat-ai"):
        load_end_of_turn("smart-turn", tmp_path / "nowhere.onnx")
