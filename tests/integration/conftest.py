"""What the tiny-family modules share: three spoken turns, and the window for the third for the module's
`tiny` model."""

from __future__ import annotations

import pytest

from tests.support.families import Turns, spoken_turns, third_turn_window
from voice_assistant.model.hf_local import TransformersAudioLM
from voice_assistant.session.window import Window


@pytest.fixture(scope="module")
def turns() -> Turns:
    return spoken_turns()


@pytest.fixture
def third_turn(tiny: TransformersAudioLM, turns: Turns) -> Window:
    return third_turn_window(tiny, turns)
