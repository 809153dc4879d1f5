"""Spoken replies follow the conversation's events: sentences as they complete, silence on barge-in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
import pytest

from voice_assistant.audio.pcm import Samples
from voice_assistant.events import ReplyDelta, ReplyDone, TurnStarted
from voice_assistant.session.speech import SpeechOutput
from voice_assistant.tts.base import SynthesisError

pytestmark = pytest.mark.unit


@dataclass
class WordCountVoice:
    """A synthesizer whose audio is one sample per character, so what was spoken can be read back."""

    sample_rate: int = 8000
    delay: float = 0.0
    spoken: list[str] = field(default_factory=list)
    fail_on: str | None = None

    async def synthesize(self, text: str) -> AsyncIterator[Samples]:
        if text == self.fail_on:
            raise SynthesisError("engine crashed")
        await asyncio.sleep(self.delay)
        self.spoken.append(text)
        yield np.ones(len(text), np.float32)


@dataclass
class RecordingSink:
    """Takes every piece at once; `heard` says which ones have finished playing."""

    played: list[tuple[str, int]] = field(default_factory=list)
    heard: set[str] = field(default_factory=set)
    clears: int = 0

    async def play(self, samples: Samples, rate: int, label: str) -> None:
        self.played.append((label, len(samples)))

    def clear(self) -> set[str]:
        self.clears += 1
        unplayed = {label for label, _ in self.played} - self.heard
        self.heard |= unplayed
        return unplayed


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)


async def test_each_sentence_is_spoken_as_soon_as_it_is_complete() -> None:
    voice, sink, errors = WordCountVoice(), RecordingSink(), []
    speech = SpeechOutput(voice, sink, report=errors.append)
    for delta in ["Hello", " there.", " How are", " you?", " Fine"]:
        speech.on_event(ReplyDelta(turn=0, text=delta))
    await settle()
    assert voice.spoken == ["Hello there.", "How are you?"]  # the unfinished one waits
    speech.on_event(ReplyDone(turn=0, text="", interrupted=False))
    await settle()
    assert voice.spoken[-1] == "Fine"
    assert [label for label, _ in sink.played] == ["turn-0.0", "turn-0.1", "turn-0.2"]
    assert errors == []
    await speech.close()


async def test_new_speech_silences_the_reply_at_once() -> None:
    voice, sink = WordCountVoice(delay=0.05), RecordingSink()
    speech = SpeechOutput(voice, sink, report=lambda _: None)
    speech.on_event(ReplyDelta(turn=0, text="One. Two. Three. Four. "))
    await asyncio.sleep(0.07)
    clears_before = sink.clears
    speech.on_event(TurnStarted(turn=1))  # barge-in
    await settle()
    spoken = len(voice.spoken)
    await asyncio.sleep(0.2)
    assert sink.clears == clears_before + 1
    assert len(voice.spoken) == spoken < 4  # nothing more is synthesized
    await speech.close()


async def test_an_interrupted_reply_is_cut_and_a_failing_engine_is_reported() -> None:
    voice, sink, errors = WordCountVoice(fail_on="Boom."), RecordingSink(), []
    speech = SpeechOutput(voice, sink, report=errors.append)
    speech.on_event(ReplyDelta(turn=2, text="Boom. "))
    await settle()
    assert errors and "could not be spoken" in errors[0]
    speech.on_event(ReplyDelta(turn=3, text="Hi. "))
    await settle()
    speech.on_event(ReplyDone(turn=3, text="Hi.", interrupted=True))
    assert sink.clears >= 1
    await speech.say("Goodbye.", "bye")
    assert sink.played[-1] == ("bye.0", len("Goodbye."))
    await speech.close()


async def test_a_reply_cut_short_reports_only_the_sentences_that_were_heard() -> None:
    voice, sink = WordCountVoice(), RecordingSink()
    speech = SpeechOutput(voice, sink, report=lambda _: None)
    cuts: list[tuple[int, str]] = []
    speech.on_cut = lambda turn, heard: cuts.append((turn, heard))
    speech.on_event(ReplyDelta(turn=4, text="First one. Second one. Third one."))
    speech.on_event(ReplyDone(turn=4, text="", interrupted=False))
    await settle()
    sink.heard = {"turn-4.0"}  # only the first sentence has played when the user speaks
    speech.on_event(TurnStarted(turn=5))
    assert cuts == [(4, "First one.")]
    speech.on_event(TurnStarted(turn=6))  # nothing was playing any more: no second cut
    assert len(cuts) == 1
    await speech.close()
