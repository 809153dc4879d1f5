"""The reply handle: one owner for the generation, the voice, what was delivered and what was heard."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.fakes import EventLog, FakeSynthesizer, RecordingSink, ScriptedReply, failing, settle
from voice_assistant.session.reply import Reply
from voice_assistant.session.speech import Utterance

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def start(
    script: ScriptedReply, sink: RecordingSink | None, log: EventLog, *, timeout_s: float = 60.0
) -> Reply:
    utterance = (
        Utterance(FakeSynthesizer(), sink, "turn-0", report=log.__call__) if sink is not None else None
    )
    return Reply(
        turn=0,
        source=script.stream(),
        publish=log,
        utterance=utterance,
        clock=lambda: T0,
        timeout_s=timeout_s,
    )


async def test_a_spoken_reply_ends_once_it_has_played_and_was_all_heard() -> None:
    script, sink, log = ScriptedReply(), RecordingSink(), EventLog()
    reply = start(script, sink, log)
    script.say("Hello there. ", "How are you?")
    script.end()
    await settle()
    assert sink.labels == ["turn-0.0", "turn-0.1"]
    assert not reply.done.done()  # generated, not yet played
    sink.finish()
    end = await reply.done
    assert (end.text, end.heard, end.interrupted, end.error) == (
        "Hello there. How are you?",
        "Hello there. How are you?",
        False,
        None,
    )
    assert end.first_delta_at == T0
    assert [e.text for e in log.of("reply_delta")] == ["Hello there. ", "How are you?"]  # type: ignore[attr-defined]
    assert sink.clears == 0  # a reply that played to its end leaves the sink alone


async def test_an_interruption_stops_model_and_voice_and_keeps_what_was_heard() -> None:
    script, sink, log = ScriptedReply(), RecordingSink(), EventLog()
    reply = start(script, sink, log)
    script.say("First one. ", "Second one. ", "Third")
    await settle()
    sink.finish("turn-0.0")  # only the first sentence has played when the user speaks
    clears_before = sink.clears
    reply.interrupt()
    end = await reply.done
    assert sink.clears == clears_before + 1  # the interruption itself cleared the sink
    assert script.closed  # the model was told to stop
    assert end.interrupted and end.error is None
    assert end.text == "First one. Second one. Third"
    assert end.heard == "First one."


async def test_a_text_only_reply_has_no_heard_text() -> None:
    script, log = ScriptedReply(), EventLog()
    reply = start(script, None, log)
    script.say("a", "b")
    await settle()
    reply.interrupt()
    end = await reply.done
    assert (end.text, end.heard, end.interrupted) == ("ab", None, True)


async def test_a_reply_that_never_stops_is_cut_by_the_deadline() -> None:
    script, sink, log = ScriptedReply(), RecordingSink(), EventLog()
    reply = start(script, sink, log, timeout_s=0.0)  # past its deadline at its first wait
    script.say("never ")
    end = await reply.done
    assert end.interrupted and end.error is not None and "took longer than 0 s" in end.error
    assert script.closed


async def test_a_failing_model_keeps_what_was_said_and_reports_the_error() -> None:
    script, sink, log = ScriptedReply(), RecordingSink(), EventLog()
    reply = start(script, sink, log)
    script.say("Spoken. ")
    script.fail(failing("out of memory"))
    await settle()
    sink.finish()
    end = await reply.done
    assert end.error == "out of memory" and not end.interrupted
    assert (end.text, end.heard) == ("Spoken. ", "Spoken.")


async def test_pause_takes_back_the_unplayed_speech_and_resume_plays_it_again() -> None:
    script, sink, log = ScriptedReply(), RecordingSink(), EventLog()
    reply = start(script, sink, log)
    script.say("One. ", "Two. ")
    await settle()
    sink.finish("turn-0.0")
    reply.pause()
    script.say("Three. ")
    script.end()
    await settle()
    assert [e.text for e in log.of("reply_delta")] == ["One. ", "Two. "]  # type: ignore[attr-defined]
    assert sink.labels == ["turn-0.0", "turn-0.1"]  # nothing new went to the sink
    await reply.resume()
    await settle()
    assert sink.labels == ["turn-0.0", "turn-0.1", "turn-0.1", "turn-0.2"]  # "Two." again, then on
    sink.finish()
    end = await reply.done
    assert (end.text, end.heard, end.interrupted) == ("One. Two. Three. ", "One. Two. Three.", False)


async def test_an_interruption_before_the_reply_began_ends_it_with_nothing_sent() -> None:
    script, log = ScriptedReply(), EventLog()
    script.say("never")
    reply = Reply(turn=3, source=script.stream(), publish=log, utterance=None, clock=lambda: T0, timeout_s=60)
    reply.interrupt()
    end = await reply.done
    assert end.interrupted and end.text == "" and log.events == []
