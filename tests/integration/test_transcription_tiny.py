"""`transcribe` on the tiny Qwen2-Audio and Voxtral: greedy whatever the replies' sampling, and through the
family's own transcription request where it has one (Voxtral's `[TRANSCRIBE]`)."""

from __future__ import annotations

import pytest
import torch

from benchmarks.speech import speak
from voice_assistant.config import ModelSettings
from voice_assistant.model.base import Sampling
from voice_assistant.model.hf_local import TransformersAudioLM
from voice_assistant.model.tiny import build_tiny_model

pytestmark = pytest.mark.integration


def greedy_transcript(lm: TransformersAudioLM, inputs: object) -> str:
    """What generate() writes greedily after the transcription prompt, decoded as `transcribe` decodes."""
    with torch.inference_mode():
        output = lm._model.generate(**inputs, max_new_tokens=200, do_sample=False)  # type: ignore[arg-type]
    words = output[:, inputs["input_ids"].shape[1] :]  # type: ignore[index]
    return str(lm._processor.batch_decode(words, skip_special_tokens=True)[0]).strip()


async def test_qwen2_audio_transcribes_greedily_with_its_prompt(tiny_lm: TransformersAudioLM) -> None:
    assert tiny_lm._sampling.temperature > 0  # the replies sample
    clip = speak("What is the weather like?")
    inputs = tiny_lm._transcription_inputs(clip)
    prompt = tiny_lm._processor.tokenizer.decode(inputs["input_ids"][0])
    assert f"<|audio_eos|>\n{tiny_lm.family.transcribe_prompt}<|im_end|>" in prompt

    first, again = await tiny_lm.transcribe(clip), await tiny_lm.transcribe(clip)

    assert first and first == again == greedy_transcript(tiny_lm, inputs)


async def test_voxtral_transcribes_through_its_transcription_request(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    directory = build_tiny_model(tmp_path_factory.mktemp("tiny") / "voxtral", "voxtral")
    voxtral = TransformersAudioLM.load(
        str(directory),
        device="cpu",
        sampling=Sampling.from_settings(ModelSettings(max_new_tokens=8, temperature=1.0)),
    )
    clip = speak("What is the weather like?")
    inputs = voxtral._transcription_inputs(clip)
    tokenizer = voxtral._processor.tokenizer
    ids = [int(i) for i in inputs["input_ids"][0] if i != voxtral._model.config.audio_token_id]
    # mistral-common's request: the clip alone, then [TRANSCRIBE]; no chat prompt, no language given.
    assert tokenizer.decode(ids) == "<s>[INST][BEGIN_AUDIO][/INST][TRANSCRIBE]"
    assert tuple(inputs["input_features"].shape) == (1, 128, 3000)

    first, again = await voxtral.transcribe(clip), await voxtral.transcribe(clip)

    assert first and first == again == greedy_transcript(voxtral, inputs)
