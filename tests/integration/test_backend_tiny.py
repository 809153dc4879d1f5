"""The transformers backend on a tiny random Qwen2-Audio built offline and loaded by `from_pretrained`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.speech import speak
from voice_assistant.config import ModelSettings
from voice_assistant.errors import ModelError
from voice_assistant.history.store import PastTurn
from voice_assistant.model.base import AudioPart, Message, Sampling, TextPart
from voice_assistant.model.hf_local import TransformersAudioLM
from voice_assistant.session.window import WindowPolicy, build_window

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
    tokenizer = lm._processor.tokenizer
    for special in ("<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"):
        assert len(tokenizer.encode(special, add_special_tokens=False)) == 1, special


def test_the_model_input_of_turn_three_holds_the_audio_of_turns_one_and_two(
    tiny_lm: TransformersAudioLM,
) -> None:
    first, second, third = speak("Hello there."), speak("What is the time?"), speak("And the date?")
    past = [
        PastTurn(index=0, audio=first, audio_seconds=len(first) / 16_000, transcript=None, reply_text="Hi!"),
        PastTurn(
            index=1, audio=second, audio_seconds=len(second) / 16_000, transcript=None, reply_text="Noon."
        ),
    ]
    policy = WindowPolicy(
        "Be brief.", audio_turns=3, max_turns=8, token_budget=8000, audio_tokens=tiny_lm.audio_tokens
    )
    window = build_window(policy, past, third)
    inputs = tiny_lm.build_inputs(window.messages)

    assert inputs["input_features"].shape[0] == 3  # one mel spectrogram per turn
    audio_token = tiny_lm._model.config.audio_token_index
    expected = sum(((((int(len(clip) / 160)) - 1) // 2 + 1) - 2) // 2 + 1 for clip in (first, second, third))
    assert abs(int((inputs["input_ids"] == audio_token).sum()) - expected) <= 3
    text = tiny_lm._processor.tokenizer.decode(inputs["input_ids"][0])
    assert text.index("Be brief.") < text.index("Hi!") < text.index("Noon.")
    assert text.count("<|audio_bos|>") == 3
    assert text.endswith("<|im_start|>assistant\n")


async def test_a_reply_streams_as_text_deltas(tiny_lm: TransformersAudioLM) -> None:
    messages = [Message("system", (TextPart("Be brief."),)), Message("user", (AudioPart(speak("Hello.")),))]
    deltas = [delta async for delta in tiny_lm.stream_reply(messages)]
    assert deltas and all(isinstance(d, str) and d for d in deltas)


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
