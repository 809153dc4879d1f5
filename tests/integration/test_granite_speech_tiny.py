"""The transformers backend on a tiny random Granite Speech: text-only chat template with `<|audio|>` written
into it, a conformer encoder whose projector turns each 0.3 s window into 3 tokens.

Granite's feature extractor needs torchaudio (and its checkpoints peft): without them this module is
skipped, as it is beside the CPU build of torch 2.13, for which PyPI has no torchaudio that loads. .ci/run
runs it in its second environment (torch 2.11.0, torchaudio 2.11.0), where it must pass.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.support.families import (
    Turns,
    load_tiny,
    make_tiny_model,
    require_module,
    spoken_turns,
    third_turn_window,
)
from voice_assistant.model.hf_local import TransformersAudioLM
from voice_assistant.session.window import Window

pytestmark = pytest.mark.integration
require_module("torchaudio", reason="GraniteSpeechFeatureExtractor computes mel features with torchaudio")
require_module("peft", reason="Granite Speech checkpoints carry a LoRA adapter: the family needs peft")


def granite_tokens(samples: int) -> int:
    """Projector windows of 15 encoder frames (two 10 ms mel frames each), 3 tokens per window."""
    encoder_frames = (samples // 160 + 1) // 2
    return math.ceil(encoder_frames / 15) * 3


@pytest.fixture(scope="module")
def granite(tmp_path_factory: pytest.TempPathFactory) -> TransformersAudioLM:
    return load_tiny(tmp_path_factory, "granite_speech")


@pytest.fixture(scope="module")
def turns() -> Turns:
    return spoken_turns()


@pytest.fixture
def third_turn(granite: TransformersAudioLM, turns: Turns) -> Window:
    return third_turn_window(granite, turns)


def audio_lora(granite: TransformersAudioLM) -> list[torch.nn.Module]:
    """The LoRA-adapted decoder projections (peft's tuner layers)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [module for module in granite._model.modules() if isinstance(module, BaseTunerLayer)]


def test_make_tiny_model_writes_the_checkpoint_with_its_adapter_beside_it(tmp_path: Path) -> None:
    directory = make_tiny_model(tmp_path / "granite", "granite_speech")
    written = {path.name for path in directory.iterdir()}
    assert {"config.json", "model.safetensors", "adapter_config.json", "adapter_model.safetensors"} <= written
    assert TransformersAudioLM.load(str(directory), device="cpu").family.model_type == "granite_speech"


def test_the_checkpoint_reloads_with_the_real_granite_classes(granite: TransformersAudioLM) -> None:
    assert type(granite._model).__name__ == "GraniteSpeechForConditionalGeneration"
    assert granite._model._hf_peft_config_loaded  # the adapter beside the weights came with them
    assert len(audio_lora(granite)) == 2 * granite._model.config.text_config.num_hidden_layers  # q and v
    assert type(granite._processor).__name__ == "GraniteSpeechProcessor"
    assert type(granite._processor.audio_processor).__name__ == "GraniteSpeechFeatureExtractor"
    tokenizer = granite._processor.tokenizer
    assert tokenizer.convert_tokens_to_ids("<|audio|>") == granite._model.config.audio_token_index
    for special in ("<|start_of_role|>", "<|end_of_role|>", "<|end_of_text|>", "<|audio|>"):
        assert len(tokenizer.encode(special, add_special_tokens=False)) == 1, special


def test_the_model_input_of_turn_three_holds_the_audio_of_turns_one_and_two(
    granite: TransformersAudioLM, turns: Turns, third_turn: Window
) -> None:
    inputs = granite.build_inputs(third_turn.messages)

    ids = inputs["input_ids"][0]
    audio_token = granite._model.config.audio_token_index
    assert int((ids == audio_token).sum()) == sum(granite_tokens(len(clip)) for clip in turns)
    # One stacked mel spectrogram per turn, in order, each the very clip of its turn (but the last frame,
    # whose window reaches into the batch's padding).
    assert inputs["input_features"].shape[0] == 3
    extractor = granite._processor.audio_processor
    for features, clip in zip(inputs["input_features"], turns, strict=True):
        alone = extractor(torch.from_numpy(clip))["input_features"][0, :-1]
        assert torch.allclose(features[: len(alone)], alone, atol=1e-5)
    text = granite._processor.tokenizer.decode([int(i) for i in ids if i != audio_token])
    assert text == (
        "<|start_of_role|>system<|end_of_role|>Be brief.<|end_of_text|>\n"
        "<|start_of_role|>user<|end_of_role|><|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>Hi!"
        "<|end_of_text|>\n<|start_of_role|>user<|end_of_role|><|end_of_text|>\n"
        "<|start_of_role|>assistant<|end_of_role|>Noon.<|end_of_text|>\n"
        "<|start_of_role|>user<|end_of_role|><|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>"
    )
    for clip in turns:
        assert granite.audio_tokens(len(clip) / 16_000) >= granite_tokens(len(clip))


async def test_a_reply_to_turn_three_streams_with_the_audio_adapter_on(
    granite: TransformersAudioLM, third_turn: Window
) -> None:
    granite._model.disable_adapters()

    deltas = [delta async for delta in granite.stream_reply(third_turn.messages)]

    assert deltas and all(isinstance(d, str) and d for d in deltas)
    # Granite's generate() switched its LoRA back on for the audio (peft's version checked on the way).
    assert not any(layer.disable_adapters for layer in audio_lora(granite))


async def test_transcribe_asks_granite_s_own_question_greedily(
    granite: TransformersAudioLM, turns: Turns
) -> None:
    inputs = granite._transcription_inputs(turns[0])
    prompt = granite._processor.tokenizer.decode(inputs["input_ids"][0])
    assert "can you transcribe the speech into a written format?<|end_of_text|>" in prompt

    first, again = await granite.transcribe(turns[0]), await granite.transcribe(turns[0])

    assert isinstance(first, str) and first == again  # the replies sample; a transcript does not
    with torch.inference_mode():
        output = granite._model.generate(**inputs, max_new_tokens=200, do_sample=False)
    words = output[:, inputs["input_ids"].shape[1] :]
    assert first == granite._processor.batch_decode(words, skip_special_tokens=True)[0].strip()
