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

from tests.support.families import Turns, load_tiny, make_tiny_model, tiny_family
from voice_assistant.model.base import Sampling
from voice_assistant.model.hf_local import TransformersAudioLM
from voice_assistant.session.window import Window

pytestmark = pytest.mark.integration
tiny_family("granite_speech").skip_unless_installed()


def granite_tokens(samples: int) -> int:
    """Projector windows of 15 encoder frames (two 10 ms mel frames each), 3 tokens per window."""
    encoder_frames = (samples // 160 + 1) // 2
    return math.ceil(encoder_frames / 15) * 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TransformersAudioLM:
    return load_tiny(tmp_path_factory, "granite_speech")


def audio_lora(tiny: TransformersAudioLM) -> list[torch.nn.Module]:
    """The LoRA-adapted decoder projections (peft's tuner layers)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [module for module in tiny._model.modules() if isinstance(module, BaseTunerLayer)]


def test_make_tiny_model_writes_the_checkpoint_with_its_adapter_beside_it(tmp_path: Path) -> None:
    directory = make_tiny_model(tmp_path / "granite", "granite_speech")
    written = {path.name for path in directory.iterdir()}
    assert {"config.json", "model.safetensors", "adapter_config.json", "adapter_model.safetensors"} <= written
    assert (
        TransformersAudioLM.load(str(directory), device="cpu", sampling=Sampling.greedy(8)).family.model_type
        == "granite_speech"
    )


def test_the_checkpoint_reloads_with_granite_s_adapter_and_feature_extractor(
    tiny: TransformersAudioLM,
) -> None:
    assert tiny._model._hf_peft_config_loaded  # the adapter beside the weights came with them
    assert len(audio_lora(tiny)) == 2 * tiny._model.config.text_config.num_hidden_layers  # q and v
    assert type(tiny._processor.audio_processor).__name__ == "GraniteSpeechFeatureExtractor"
    assert (
        tiny._processor.tokenizer.convert_tokens_to_ids("<|audio|>") == tiny._model.config.audio_token_index
    )


def test_the_model_input_of_turn_three_holds_the_audio_of_turns_one_and_two(
    tiny: TransformersAudioLM, turns: Turns, third_turn: Window
) -> None:
    inputs = tiny.build_inputs(third_turn.messages)

    ids = inputs["input_ids"][0]
    audio_token = tiny._model.config.audio_token_index
    assert int((ids == audio_token).sum()) == sum(granite_tokens(len(clip)) for clip in turns)
    # One stacked mel spectrogram per turn, in order, each the very clip of its turn (but the last frame,
    # whose window reaches into the batch's padding).
    assert inputs["input_features"].shape[0] == 3
    extractor = tiny._processor.audio_processor
    for features, clip in zip(inputs["input_features"], turns, strict=True):
        alone = extractor(torch.from_numpy(clip))["input_features"][0, :-1]
        assert torch.allclose(features[: len(alone)], alone, atol=1e-5)
    text = tiny._processor.tokenizer.decode([int(i) for i in ids if i != audio_token])
    assert text == (
        "<|start_of_role|>system<|end_of_role|>Be brief.<|end_of_text|>\n"
        "<|start_of_role|>user<|end_of_role|><|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>Hi!"
        "<|end_of_text|>\n<|start_of_role|>user<|end_of_role|><|end_of_text|>\n"
        "<|start_of_role|>assistant<|end_of_role|>Noon.<|end_of_text|>\n"
        "<|start_of_role|>user<|end_of_role|><|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>"
    )
    for clip in turns:
        assert tiny.audio_tokens(len(clip) / 16_000) >= granite_tokens(len(clip))


async def test_a_reply_to_turn_three_streams_with_the_audio_adapter_on(
    tiny: TransformersAudioLM, third_turn: Window
) -> None:
    tiny._model.disable_adapters()

    deltas = [delta async for delta in tiny.stream_reply(third_turn.messages)]

    assert deltas and all(isinstance(d, str) and d for d in deltas)
    # Granite's generate() switched its LoRA back on for the audio (peft's version checked on the way).
    assert not any(layer.disable_adapters for layer in audio_lora(tiny))
