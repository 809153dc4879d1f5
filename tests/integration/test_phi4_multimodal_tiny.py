"""The transformers backend on a tiny random Phi-4-multimodal: typed chat content with `<|audio|>`, 12.5 audio
tokens per second, and the speech LoRA loaded from its subfolder (Phi-4 does not listen without it).

Phi-4's processor holds its image processor, which needs torchvision, and the adapter needs peft:
without them this module is skipped, as it is beside the CPU build of torch 2.13, for which PyPI's
torchvision (a CUDA build) does not load. .ci/run runs it in its second environment (torch 2.11.0,
torchvision 0.26.0), where it must pass.
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
tiny_family("phi4_multimodal").skip_unless_installed()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TransformersAudioLM:
    return load_tiny(tmp_path_factory, "phi4_multimodal")


def test_make_tiny_model_writes_the_checkpoint_with_its_speech_adapter(tmp_path: Path) -> None:
    directory = make_tiny_model(tmp_path / "phi4", "phi4_multimodal")
    written = {path.relative_to(directory).as_posix() for path in directory.rglob("*")}
    assert {"config.json", "model.safetensors", "processor_config.json"} <= written
    assert {"speech-lora/adapter_config.json", "speech-lora/adapter_model.safetensors"} <= written
    assert (
        TransformersAudioLM.load(str(directory), device="cpu", sampling=Sampling.greedy(8)).family.model_type
        == "phi4_multimodal"
    )


def test_the_checkpoint_loads_with_its_speech_adapter_active(tiny: TransformersAudioLM) -> None:
    assert tiny._model._hf_peft_config_loaded
    adapted = [name for name, _ in tiny._model.named_modules() if name.endswith("qkv_proj.lora_A")]
    assert len(adapted) == tiny._model.config.num_hidden_layers
    assert tiny._processor.tokenizer.audio_token_id == tiny._model.config.audio_config.audio_token_id


def test_the_model_input_of_turn_three_holds_the_audio_of_turns_one_and_two(
    tiny: TransformersAudioLM, turns: Turns, third_turn: Window
) -> None:
    inputs = tiny.build_inputs(third_turn.messages)

    ids = inputs["input_ids"][0]
    audio_token = tiny._processor.tokenizer.audio_token_id
    sizes = [int(size) for size in inputs["audio_embed_sizes"]]
    assert sizes == [math.ceil((len(clip) - 400) // 160 / 8) for clip in turns]  # 10 ms frames, 8 per token
    assert int((ids == audio_token).sum()) == sum(sizes)
    # One 80-bin log-mel spectrogram per turn, in order, each the very clip of its turn.
    extractor = tiny._processor.audio_processor
    for features, clip in zip(inputs["audio_input_features"], turns, strict=True):
        alone = extractor(clip, sampling_rate=16_000, return_tensors="pt")["audio_input_features"][0]
        assert torch.allclose(features[: len(alone)], alone, atol=1e-4)
    text = tiny._processor.tokenizer.decode([int(i) for i in ids if i != audio_token])
    assert text == (
        "<|system|>Be brief.<|end|><|user|><|end|><|assistant|>Hi!<|end|>"
        "<|user|><|end|><|assistant|>Noon.<|end|><|user|><|end|><|assistant|>"
    )
    for clip, size in zip(turns, sizes, strict=True):
        assert tiny.audio_tokens(len(clip) / 16_000) >= size
