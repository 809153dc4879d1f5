"""A session's voice: sentences spoken as they complete, silence at once, what was heard kept."""

from __future__ import annotations

import pytest

from tests.fakes import FakeSynthesizer, RecordingSink, Steps, settle
from voice_assistant.session.speech import Voice

pytestmark = pytest.mark.unit


async def test_each_sentence_is_spoken_as_soon_as_it_is_complete() -> None:
    synthesizer, sink, errors = FakeSynthesizer(), RecordingSink(), []
    utterance = Voice(synthesizer, sink, report=errors.append).utterance("turn-0")
    for delta in ["Hello", " there.", " How are", " you?", " Fine"]:
        utterance.feed(delta)
    await settle()
    assert synthesizer.spoken == ["Hello there.", "How are you?"]  # the unfinished one waits
    utterance.end()
    await utterance.queued()
    assert synthesizer.spoken[-1] == "Fine"
    assert sink.labels == ["turn-0.0", "turn-0.1", "turn-0.2"]
    sink.finish()
    await utterance.finished()
    assert utterance.heard == "Hello there. How are you? Fine"
    assert errors == []


async def test_new_speech_silences_the_voice_at_once() -> None:
    pace = Steps()
    synthesizer, sink = FakeSynthesizer(pace=pace), RecordingSink()
    voice = Voice(synthesizer, sink, report=lambda _: None)
    utterance = voice.utterance("turn-0")
    utterance.feed("One. Two. Three. Four. ")
    pace.release(2)  # two sentences are synthesized; the third is still being made
    await settle()
    assert synthesizer.spoken == ["One.", "Two."] and sink.labels == ["turn-0.0", "turn-0.1"]
    clears = sink.clears
    voice.silence()  # barge-in
    pace.release(10)
    await settle()
    assert sink.clears == clears + 1  # the clear caused by the interruption itself
    assert synthesizer.spoken == ["One.", "Two."] and synthesizer.cancelled == 1  # nothing more is made
    assert sink.labels == ["turn-0.0", "turn-0.1"]
    assert utterance.heard == ""  # none of it had played


async def test_a_failing_engine_is_reported_and_a_fixed_text_can_still_be_said() -> None:
    synthesizer, sink, errors = FakeSynthesizer(fail_on="Boom."), RecordingSink(), []
    voice = Voice(synthesizer, sink, report=errors.append)
    utterance = voice.utterance("turn-2")
    utterance.feed("Boom. ")
    await settle()
    assert errors and "could not be spoken" in errors[0]
    await voice.say("Goodbye.", "bye")
    assert sink.labels[-1] == "bye.0" and len(sink.pieces[-1].samples) == len("Goodbye.")
    await voice.close()


async def test_stopping_reports_a_cut_only_while_something_was_left_to_hear() -> None:
    sink = RecordingSink()
    voice = Voice(FakeSynthesizer(), sink, report=lambda _: None)
    first = voice.utterance("turn-4")
    first.feed("First one. Second one. Third one.")
    first.end()
    await first.queued()
    sink.finish("turn-4.0")
    assert first.stop() is True
    assert first.heard == "First one."
    second = voice.utterance("turn-5")
    second.feed("Short.")
    second.end()
    await second.queued()
    sink.finish()
    assert second.stop() is False  # everything had played: nothing was cut
    assert second.heard == "Short."
