"""The history window follows what the served model can take."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes import FakeAudioLM
from voice_assistant.assistant import Assistant
from voice_assistant.config import Settings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("max_clips", "expected"), [(None, 4), (1, 1), (10, 4)])
async def test_a_model_that_takes_fewer_clips_hears_older_turns_as_text(
    tmp_path: Path, max_clips: int | None, expected: int
) -> None:
    # Silence ends turns and espeak-ng speaks: the window policy needs neither model, so none is loaded.
    settings = Settings(
        model="fake",
        data_dir=tmp_path,
        warmup=False,
        history_audio_turns=4,
        end_of_turn="silence",
        tts="espeak",
    )
    assistant = Assistant(settings, model_loader=lambda _: FakeAudioLM([], max_clips=max_clips))
    await assistant.start()
    try:
        assert assistant.window_policy().audio_turns == expected
    finally:
        await assistant.close()
