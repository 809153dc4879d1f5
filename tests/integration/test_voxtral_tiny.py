"""The transformers backend on a tiny random Voxtral: Tekken tokenizer (mistral-common), audio in the chat."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmarks.speech import speak
from tests.support.families import Turns, load_tiny
from voice_assistant.model.base import AudioPart, Message
from voice_assistant.model.hf_local import TransformersAudioLM
from voice_assistant.session.window import Window

pytestmark = pytest.mark.integration

CHUNK_SAMPLES = 30 * 16_000
"""Voxtral pads every clip to a multiple of 30 s: one encoder chunk of 375 audio tokens each."""
TOKENS_PER_CHUNK = 375


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TransformersAudioLM:
    return load_tiny(tmp_path_factory, "voxtral", temperature=0.0)


def test_the_checkpoint_reloads_with_the_mistral_tokenizer(tiny: TransformersAudioLM) -> None:
    tokenizer = tiny._processor.tokenizer
    assert type(tokenizer).__name__ == "MistralCommonBackend"
    assert tokenizer.convert_tokens_to_ids("[AUDIO]") == tiny._model.config.audio_token_id == 24
    assert tiny._model.config.text_config.vocab_size == len(tokenizer)
    assert tokenizer.decode(tokenizer.encode("What is the weather like?", add_special_tokens=False)) == (
        "What is the weather like?"
    )


def test_the_model_input_of_turn_three_holds_the_audio_of_turns_one_and_two(
    tiny: TransformersAudioLM, turns: Turns, third_turn: Window
) -> None:
    inputs = tiny.build_inputs(third_turn.messages)

    ids = inputs["input_ids"][0]
    tokenizer = tiny._processor.tokenizer
    assert int((ids == tiny._model.config.audio_token_id).sum()) == 3 * TOKENS_PER_CHUNK
    assert int((ids == tokenizer.convert_tokens_to_ids("[BEGIN_AUDIO]")).sum()) == 3
    # One mel spectrogram per turn, in order, and the very clip of that turn (the WAV hand-over is lossless).
    assert tuple(inputs["input_features"].shape) == (3, 128, 3000)
    extractor = tiny._processor.feature_extractor
    for features, clip in zip(inputs["input_features"], turns, strict=True):
        padded = np.pad(clip, (0, CHUNK_SAMPLES - len(clip)))
        expected = extractor(padded, sampling_rate=16_000, return_tensors="pt")["input_features"][0]
        assert torch.allclose(features, expected, atol=1e-5)
    # No system message: Voxtral takes none with audio, so the prompt leads the first user turn.
    text = tokenizer.decode([int(i) for i in ids if i != tiny._model.config.audio_token_id])
    assert text == (
        "<s>[INST]Be brief.\n\n[BEGIN_AUDIO][/INST]Hi!</s>"
        "[INST][BEGIN_AUDIO][/INST]Noon.</s>"
        "[INST][BEGIN_AUDIO][/INST]"
    )


def test_a_turn_longer_than_one_encoder_chunk_is_split_not_trimmed(tiny: TransformersAudioLM) -> None:
    long_turn = np.tile(speak("Tell me a long story."), 40)[: 45 * 16_000]
    inputs = tiny.build_inputs([Message("user", (AudioPart(long_turn),))])

    assert tuple(inputs["input_features"].shape) == (2, 128, 3000)
    audio_tokens = int((inputs["input_ids"] == tiny._model.config.audio_token_id).sum())
    assert audio_tokens == math.ceil(len(long_turn) / CHUNK_SAMPLES) * TOKENS_PER_CHUNK


async def test_a_reply_to_turn_three_streams_as_the_model_generates_it(
    tiny: TransformersAudioLM, third_turn: Window
) -> None:
    deltas = [delta async for delta in tiny.stream_reply(third_turn.messages)]

    assert deltas and all(isinstance(d, str) and d for d in deltas)
    # Greedy decoding: the streamed text is what generate() produces, decoded by the Tekken backend.
    inputs = tiny.build_inputs(third_turn.messages)
    with torch.inference_mode():
        output = tiny._model.generate(**inputs, max_new_tokens=8, do_sample=False)
    reply = tiny._processor.tokenizer.decode(
        output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True
    )
    assert "".join(deltas) == reply


def test_a_transcript_is_asked_for_with_mistral_common_s_request(
    tiny: TransformersAudioLM, turns: Turns
) -> None:
    inputs = tiny._transcription_inputs(turns[0])
    ids = [int(i) for i in inputs["input_ids"][0] if i != tiny._model.config.audio_token_id]
    # The clip alone, then [TRANSCRIBE]: no chat prompt, no language given.
    assert tiny._processor.tokenizer.decode(ids) == "<s>[INST][BEGIN_AUDIO][/INST][TRANSCRIBE]"
    assert tuple(inputs["input_features"].shape) == (1, 128, 3000)
