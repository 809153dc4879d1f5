"""The history window follows what the served model can take."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes import FakeAudioLM
from voice_assistant.assistant import window_policy
from voice_assistant.config import Settings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("max_clips", "expected"), [(None, 4), (1, 1), (10, 4)])
def test_a_model_that_takes_fewer_clips_hears_older_turns_as_text(
    tmp_path: Path, max_clips: int | None, expected: int
) -> None:
    settings = Settings(model="fake", data_dir=tmp_path, history_audio_turns=4)
    policy = window_policy(settings, FakeAudioLM([], max_clips=max_clips))
    assert policy.audio_turns == expected
