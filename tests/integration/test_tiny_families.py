"""What every family does alike, on its tiny random checkpoint: it loads with its own classes, its prompt
tokens stay whole, a reply to turn three streams, and a transcript is greedy through the family's own
request. What sets a family apart is tested in its own module."""

from __future__ import annotations

import pytest

from tests.support.families import FAMILIES, TinyFamily, Turns, greedy_transcript, load_tiny
from voice_assistant.model.hf_local import TransformersAudioLM
from voice_assistant.model.prompt import transcribing
from voice_assistant.session.window import Window

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=FAMILIES, ids=lambda family: family.name)
def family(request: pytest.FixtureRequest) -> TinyFamily:
    expected: TinyFamily = request.param
    expected.skip_unless_installed()
    return expected


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, family: TinyFamily) -> TransformersAudioLM:
    return load_tiny(tmp_path_factory, family.name)


def test_the_checkpoint_reloads_with_the_family_s_classes(
    tiny: TransformersAudioLM, family: TinyFamily
) -> None:
    assert tiny.family.model_type == family.name
    assert type(tiny._model).__name__ == family.model_class
    assert type(tiny._processor).__name__ == family.processor_class
    tokenizer = tiny._processor.tokenizer
    for special in family.specials:
        assert len(tokenizer.encode(special, add_special_tokens=False)) == 1, special


async def test_a_reply_to_turn_three_streams(tiny: TransformersAudioLM, third_turn: Window) -> None:
    deltas = [delta async for delta in tiny.stream_reply(third_turn.messages)]
    assert deltas and all(isinstance(d, str) and d for d in deltas)


async def test_transcribe_is_greedy_through_the_family_s_own_request(
    tiny: TransformersAudioLM, family: TinyFamily, turns: Turns
) -> None:
    assert tiny._sampling.temperature > 0  # the replies sample
    clip = turns[0]
    inputs = tiny._transcription_inputs(clip)
    assert family.transcription in tiny._processor.tokenizer.decode(inputs["input_ids"][0])

    first, again = await tiny.transcribe(clip), await tiny.transcribe(clip)

    assert isinstance(first, str) and (first or not family.transcribes_words)
    budget = transcribing(clip).max_new_tokens  # random weights never stop by themselves: they hit it
    assert first == again == greedy_transcript(tiny, inputs, family.transcript_decode, budget)
