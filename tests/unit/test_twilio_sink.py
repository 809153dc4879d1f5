"""The phone's sink: mu-law frames and a mark per piece; Twilio's echoed marks say what was heard."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from tests.fakes import FakeSynthesizer, settle
from voice_assistant.session.speech import Voice
from voice_assistant.transport.phone import TwilioSink

pytestmark = pytest.mark.unit


def sent(sink: TwilioSink) -> list[str]:
    events = []
    while not sink.outbox.empty():
        events.append(json.loads(sink.outbox.get_nowait())["event"])
    return events


async def test_a_piece_has_played_once_its_mark_comes_back() -> None:
    sink = TwilioSink("MZ1")
    await sink.play(np.zeros(1600, np.float32), 16_000, "turn-0.0")  # 100 ms: five 20 ms frames
    assert sent(sink) == ["media"] * 5 + ["mark"]
    waiting = asyncio.create_task(sink.played("turn-0.0"))
    await settle()
    assert not waiting.done()
    sink.mark_played("turn-0.0")
    await settle()
    assert waiting.done()
    assert sink.clear() == set() and sent(sink) == []  # nothing was left to play: no clear


async def test_clearing_drops_what_is_queued_and_tells_twilio_only_while_something_plays() -> None:
    sink = TwilioSink("MZ1")
    await sink.play(np.zeros(800, np.float32), 16_000, "turn-1.0")
    await sink.play(np.zeros(800, np.float32), 16_000, "turn-1.1")
    sink.mark_played("turn-1.0")
    waiting = asyncio.create_task(sink.played("turn-1.1"))
    assert sink.clear() == {"turn-1.1"}
    assert sent(sink) == ["clear"]
    await settle()
    assert waiting.done()  # a cleared piece no longer keeps anyone waiting


async def test_a_paused_reply_is_cleared_at_twilio_at_once_and_sent_again_on_resume() -> None:
    """Media goes out as fast as it is made, so Twilio holds the whole sentence: only `clear` stops it
    within the 100 ms a false interruption allows; the resume sends the held sentence again."""
    sink = TwilioSink("MZ1")
    utterance = Voice(FakeSynthesizer(seconds_per_char=0.01), sink, report=lambda _: None).utterance("turn-0")
    utterance.feed("First one. Second one.")
    utterance.end()
    await utterance.queued()
    assert sent(sink).count("mark") == 2
    sink.mark_played("turn-0.0")

    utterance.pause()
    assert sent(sink) == ["clear"]
    sink.mark_played("turn-0.1")  # Twilio echoes the marks a clear dropped: no piece is playing
    await utterance.resume()
    again = sent(sink)
    assert again[-1] == "mark" and set(again[:-1]) == {"media"}  # "Second one." once more, whole
    finished = asyncio.ensure_future(utterance.finished())
    await settle()
    assert not finished.done()  # the stale echo did not count as the replayed sentence's playout
    sink.mark_played("turn-0.1")
    await settle()
    assert finished.done() and utterance.heard == "First one. Second one."
