"""The transformers backend on a tiny random Audio Flamingo 3: loaded through the class its config names
(no multimodal auto class maps it), one clip per prompt, transcripts through its own ASR request."""

from __future__ import annotations

import pytest
import torch
from transformers.models.auto.modeling_auto import MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES

from tests.support.families import Turns, load_tiny
from voice_assistant.model.hf_local import TransformersAudioLM
from voice_assistant.model.prompt import EARLIER_CLIP
from voice_assistant.session.window import Window

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TransformersAudioLM:
    return load_tiny(tmp_path_factory, "audioflamingo3")


def test_the_checkpoint_loads_through_the_class_named_in_its_config(tiny: TransformersAudioLM) -> None:
    # Why the family table says auto_class=False: no multimodal auto class maps it, yet it loads.
    assert "audioflamingo3" not in MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES
    assert tiny._processor.tokenizer.convert_tokens_to_ids("<sound>") == tiny._model.config.audio_token_id


def test_turn_three_hears_its_own_clip_and_earlier_turns_as_text(
    tiny: TransformersAudioLM, turns: Turns, third_turn: Window
) -> None:
    # The window offers all three clips; AF3's processor expands a single <sound> per prompt.
    assert sum(len(message.audio) for message in third_turn.messages) == 3
    inputs = tiny.build_inputs(third_turn.messages)

    ids = inputs["input_ids"][0]
    audio_token = tiny._model.config.audio_token_id
    third = turns[2]
    assert abs(int((ids == audio_token).sum()) - 25 * len(third) / 16_000) <= 2  # 25 tokens/s after pooling
    # One 30 s window of features, and it is the newest turn's clip.
    expected = tiny._processor.feature_extractor(third, sampling_rate=16_000, return_tensors="pt")
    assert torch.allclose(inputs["input_features"], expected["input_features"], atol=1e-5)
    text = tiny._processor.tokenizer.decode([int(i) for i in ids if i != audio_token])
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        f"<|im_start|>user\n{EARLIER_CLIP}<|im_end|>\n<|im_start|>assistant\nHi!<|im_end|>\n"
        f"<|im_start|>user\n{EARLIER_CLIP}<|im_end|>\n<|im_start|>assistant\nNoon.<|im_end|>\n"
        "<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tiny.audio_tokens(len(third) / 16_000) >= int((ids == audio_token).sum())
