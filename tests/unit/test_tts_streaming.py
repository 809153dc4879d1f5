"""Speaking a reply while it streams: sentence cuts, first audio before the text ends, flush, barge-in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

import pytest

from tests.fakes import FakeSynthesizer, Steps
from voice_assistant.tts import SentenceSplitter, SpeechChunk, speak_sentences
from voice_assistant.tts.kokoro import MAX_TOKENS, tokenize
from voice_assistant.tts.kokoro_vocab import VOCAB

pytestmark = pytest.mark.unit


async def stream(pieces: Iterable[str]) -> AsyncIterator[str]:
    for piece in pieces:
        yield piece


async def collect(pieces: Iterable[str], synthesizer: FakeSynthesizer) -> list[SpeechChunk]:
    return [chunk async for chunk in speak_sentences(stream(pieces), synthesizer)]


def split(pieces: Iterable[str]) -> list[str]:
    splitter = SentenceSplitter()
    sentences = [sentence for piece in pieces for sentence in splitter.push(piece)]
    rest = splitter.flush()
    return sentences + ([rest] if rest is not None else [])


def test_sentences_end_at_full_stops_question_and_exclamation_marks_and_line_breaks() -> None:
    text = "Sure! It costs 3.5 dollars. Want more?\nHere is a list\n- apples\n- pears"
    assert split([text]) == [
        "Sure!",
        "It costs 3.5 dollars.",
        "Want more?",
        "Here is a list",
        "- apples",
        "- pears",
    ]


def test_a_mark_at_the_end_of_a_delta_waits_for_the_next_one() -> None:
    splitter = SentenceSplitter()
    assert splitter.push("It costs 3.") == []
    assert splitter.push("5 dollars. Then") == ["It costs 3.5 dollars."]
    assert splitter.push(' "quoted." ') == ['Then "quoted."']


def test_pieces_without_words_are_not_spoken() -> None:
    assert split(["... ", "Hi. ", "?! ", "\n\n", " - "]) == ["Hi."]


async def test_every_sentence_is_spoken_in_order_and_the_rest_is_flushed_at_the_end() -> None:
    synthesizer = FakeSynthesizer(chunk=10)
    chunks = await collect(["Hel", "lo there. How a", "re you today? Fine", " thanks"], synthesizer)
    assert synthesizer.started == ["Hello there.", "How are you today?", "Fine thanks"]
    assert [(chunk.sentence, chunk.text) for chunk in chunks] == [
        (0, "Hello there."),
        (0, "Hello there."),
        (1, "How are you today?"),
        (1, "How are you today?"),
        (2, "Fine thanks"),
        (2, "Fine thanks"),
    ]
    assert sum(len(chunk.samples) for chunk in chunks) == len("Hello there.How are you today?Fine thanks")


async def test_markdown_marks_are_not_read_out() -> None:
    synthesizer = FakeSynthesizer()
    chunks = await collect(["## Plan\n**Bold** move, `code` and _this_.\n___\n"], synthesizer)
    assert synthesizer.started == ["Plan", "Bold move, code and this."]
    assert [chunk.text for chunk in chunks] == ["## Plan", "**Bold** move, `code` and _this_."]


async def test_the_first_sentence_is_heard_before_the_reply_is_written() -> None:
    written: list[str] = []

    async def reply() -> AsyncIterator[str]:
        yield "First sentence. Sec"
        written.append("ond sentence.")  # the model goes on only when asked for more
        yield "ond sentence."

    chunks = speak_sentences(reply(), FakeSynthesizer())
    first = await anext(chunks)
    assert first.text == "First sentence." and written == []
    assert [chunk.text async for chunk in chunks] == ["Second sentence."]


async def test_cancelling_the_consumer_stops_the_synthesis_in_progress() -> None:
    synthesizer = FakeSynthesizer(pace=Steps())  # never released: the first chunk never comes
    received: list[SpeechChunk] = []

    async def play() -> None:
        async for chunk in speak_sentences(stream(["One. Two. Three."]), synthesizer):
            received.append(chunk)

    task = asyncio.create_task(play())
    await synthesizer.speaking.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert synthesizer.started == ["One."]
    assert synthesizer.cancelled == 1
    assert received == []


def spoken(pieces: list[list[int]]) -> list[str]:
    symbols = {token: symbol for symbol, token in VOCAB.items()}
    return ["".join(symbols[token] for token in piece) for piece in pieces]


def test_long_phonemes_are_cut_after_punctuation_into_pieces_kokoro_takes() -> None:
    phonemes = "hˈɛlO wˈɜɹld, " * 80  # 1120 symbols
    pieces = tokenize(phonemes)
    assert len(pieces) == 3
    assert all(len(piece) <= MAX_TOKENS for piece in pieces)
    assert all(piece.endswith(",") for piece in spoken(pieces))
    assert " ".join(spoken(pieces)) == phonemes.strip()


def test_phonemes_without_punctuation_are_cut_between_words() -> None:
    phonemes = "wˈʌn tˈu θɹˈi " * 60  # 840 symbols
    pieces = tokenize(phonemes)
    assert len(pieces) == 2
    assert all(len(piece) <= MAX_TOKENS for piece in pieces)
    assert " ".join(spoken(pieces)) == phonemes.strip()


def test_symbols_outside_kokoros_vocabulary_are_dropped() -> None:
    assert tokenize("hˈaɪ") == [[VOCAB["h"], VOCAB["ˈ"], VOCAB["a"], VOCAB["ɪ"]]]
    assert tokenize("h#i^") == [[VOCAB["h"], VOCAB["i"]]]
    assert tokenize("") == []
