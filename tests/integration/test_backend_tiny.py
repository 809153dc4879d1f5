"""The transformers backend on a tiny random Qwen2-Audio built offline and loaded by `from_pretrained`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.speech import speak
from tests.support.families import spoken_turns, third_turn_window
from voice_assistant.config import ModelSettings
from voice_assistant.errors import ModelError
from voice_assistant.model.base import AudioPart, Message, Sampling
from voice_assistant.model.hf_local import TransformersAudioLM

pytestmark = pytest.mark.integration


def test_the_cli_builds_a_checkpoint_that_reloads_with_the_real_classes(tmp_path: Path) -> None:
    target = tmp_path / "tiny"
    subprocess.run(
        [sys.executable, "-m", "voice_assistant", "make-tiny-model", str(target)],
        check=True,
        capture_output=True,
    )
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "chat_template.jinja",
        "processor_config.json",
    } <= {p.name for p in target.iterdir()}
    lm = TransformersAudioLM.load(str(target), device="cpu", sampling=Sampling.from_settings(ModelSettings()))
    assert lm.family.model_type == "qwen2_audio"
    assert type(lm._processor).__name__ == "Qwen2AudioProcessor"


def test_the_model_input_of_turn_three_holds_the_audio_of_turns_one_and_two(
    tiny_lm: TransformersAudioLM,
) -> None:
    turns = spoken_turns()
    inputs = tiny_lm.build_inputs(third_turn_window(tiny_lm, turns).messages)

    assert inputs["input_features"].shape[0] == 3  # one mel spectrogram per turn
    audio_token = tiny_lm._model.config.audio_token_index
    expected = sum(((((int(len(clip) / 160)) - 1) // 2 + 1) - 2) // 2 + 1 for clip in turns)
    assert abs(int((inputs["input_ids"] == audio_token).sum()) - expected) <= 3
    text = tiny_lm._processor.tokenizer.decode(inputs["input_ids"][0])
    assert text.index("Be brief.") < text.index("Hi!") < text.index("Noon.")
    assert text.count("<|audio_bos|>") == 3
    assert text.endswith("<|im_start|>assistant\n")


async def test_closing_the_stream_stops_generation_and_frees_the_model(tiny_lm: TransformersAudioLM) -> None:
    messages = [Message("user", (AudioPart(speak("Tell me a long story.")),))]
    stream = tiny_lm.stream_reply(messages, max_new_tokens=5000)
    first = await anext(stream)
    assert first
    await asyncio.wait_for(stream.aclose(), timeout=2.0)  # 5000 tokens would take far longer
    # The device lock was released: the next generation runs.
    assert [d async for d in tiny_lm.stream_reply(messages, max_new_tokens=3)]


async def test_a_failing_model_surfaces_as_model_error(
    tiny_lm: TransformersAudioLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**_: object) -> None:
        raise RuntimeError("CUDA error: out of memory")

    monkeypatch.setattr(tiny_lm._model, "generate", broken)
    with pytest.raises(ModelError, match="out of memory"):
        async for _ in tiny_lm.stream_reply([Message("user", (AudioPart(np.zeros(16_000, np.float32)),))]):
            pass
