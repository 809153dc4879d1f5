"""The transformers backend on a tiny random Granite Speech: text-only chat template with `<|audio|>` written
into it, a conformer encoder whose projector turns each 0.3 s window into 3 tokens.

Granite's feature extractor needs torchaudio (and its checkpoints peft): without them this module is
skipped, as it is beside the CPU build of torch 2.13, for which PyPI has no torchaudio that loads.
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.support.families import Turns, load_tiny
from voice_assistant.model.hf_local import TransformersAudioLM
from voice_assistant.session.window import Window

pytestmark = pytest.mark.integration
pytest.importorskip(
    "torchaudio", reason="GraniteSpeechFeatureExtractor computes mel features with torchaudio"
)
pytest.importorskip("peft", reason="Granite Speech checkpoints carry a LoRA adapter: the family needs peft")


def granite_tokens(samples: int) -> int:
    """Projector windows of 15 encoder frames (two 10 ms mel frames each), 3 tokens per window."""
    encoder_frames = (samples // 160 + 1) // 2
    return math.ceil(encoder_frames / 15) * 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TransformersAudioLM:
    return load_tiny(tmp_path_factory, "granite_speech")


def test_the_checkpoint_reloads_with_granite_s_feature_extractor(tiny: TransformersAudioLM) -> None:
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
