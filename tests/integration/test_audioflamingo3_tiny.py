"""The transformers backend on a tiny random Audio Flamingo 3: loaded through the class its config names
(no multimodal auto class maps it), one clip per prompt, transcripts through its own ASR request."""

from __future__ import annotations

import pytest
import torch
from transformers.models.auto.modeling_auto import MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES

from tests.support.families import Turns, load_tiny, spoken_turns, third_turn_window
from voice_assistant.model.hf_local import TransformersAudioLM
from voice_assistant.model.prompt import EARLIER_CLIP
from voice_assistant.session.window import Window

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def af3(tmp_path_factory: pytest.TempPathFactory) -> TransformersAudioLM:
    return load_tiny(tmp_path_factory, "audioflamingo3")


@pytest.fixture(scope="module")
def turns() -> Turns:
    return spoken_turns()


@pytest.fixture
def third_turn(af3: TransformersAudioLM, turns: Turns) -> Window:
    return third_turn_window(af3, turns)


def test_the_checkpoint_loads_through_the_class_named_in_its_config(af3: TransformersAudioLM) -> None:
    assert (
        "audioflamingo3" not in MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES
    )  # why the table says auto_class=False
    assert type(af3._model).__name__ == "AudioFlamingo3ForConditionalGeneration"
    assert type(af3._processor).__name__ == "AudioFlamingo3Processor"
    tokenizer = af3._processor.tokenizer
    assert tokenizer.convert_tokens_to_ids("<sound>") == af3._model.config.audio_token_id
    for special in ("<|im_start|>", "<|im_end|>", "<sound>"):
        assert len(tokenizer.encode(special, add_special_tokens=False)) == 1, special


def test_turn_three_hears_its_own_clip_and_earlier_turns_as_text(
    af3: TransformersAudioLM, turns: Turns, third_turn: Window
) -> None:
    # The window offers all three clips; AF3's processor expands a single <sound> per prompt.
    assert sum(len(message.audio) for message in third_turn.messages) == 3
    inputs = af3.build_inputs(third_turn.messages)

    ids = inputs["input_ids"][0]
    audio_token = af3._model.config.audio_token_id
    third = turns[2]
    assert abs(int((ids == audio_token).sum()) - 25 * len(third) / 16_000) <= 2  # 25 tokens/s after pooling
    # One 30 s window of features, and it is the newest turn's clip.
    expected = af3._processor.feature_extractor(third, sampling_rate=16_000, return_tensors="pt")
    assert torch.allclose(inputs["input_features"], expected["input_features"], atol=1e-5)
    text = af3._processor.tokenizer.decode([int(i) for i in ids if i != audio_token])
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        f"<|im_start|>user\n{EARLIER_CLIP}<|im_end|>\n<|im_start|>assistant\nHi!<|im_end|>\n"
        f"<|im_start|>user\n{EARLIER_CLIP}<|im_end|>\n<|im_start|>assistant\nNoon.<|im_end|>\n"
        "<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n"
    )
    assert af3.audio_tokens(len(third) / 16_000) >= int((ids == audio_token).sum())


async def test_a_reply_to_turn_three_streams(af3: TransformersAudioLM, third_turn: Window) -> None:
    deltas = [delta async for delta in af3.stream_reply(third_turn.messages)]
    assert deltas and all(isinstance(d, str) and d for d in deltas)


async def test_transcribe_is_greedy_through_the_native_asr_request(
    af3: TransformersAudioLM, turns: Turns
) -> None:
    clip = turns[0]
    inputs = af3._transcription_inputs(clip)
    tokenizer = af3._processor.tokenizer
    assert "Transcribe the input speech.<|im_end|>" in tokenizer.decode(inputs["input_ids"][0])

    first, again = await af3.transcribe(clip), await af3.transcribe(clip)

    assert first and first == again  # the replies sample; a transcript does not
    with torch.inference_mode():
        output = af3._model.generate(**inputs, max_new_tokens=200, do_sample=False)
    words = output[:, inputs["input_ids"].shape[1] :]
    assert first == af3._processor.batch_decode(words, skip_special_tokens=True, strip_prefix=True)[0].strip()
