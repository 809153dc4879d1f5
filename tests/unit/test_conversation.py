"""The conversation engine on a fake model and a real SQLite store: commits, replies, errors, barge-in."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy.exc import DataError

from tests.fakes import (
    EventLog,
    FakeAudioLM,
    FakeSynthesizer,
    FakeTimers,
    InlineStore,
    RecordingSink,
    ScriptedReply,
    Steps,
    audio_tokens_25_per_second,
    failing,
    held_writes,
    settle,
)
from voice_assistant.audio.pcm import Samples
from voice_assistant.config import TurnSettings
from voice_assistant.history.store import HistoryStore, ReplyOutcome
from voice_assistant.metrics import Metrics
from voice_assistant.model.base import AudioPart, Message
from voice_assistant.session.conversation import (
    DISCONNECTED,
    HELD_REPLY,
    HELD_TURN,
    UNREAD_HISTORY,
    Conversation,
)
from voice_assistant.session.held_writes import HeldWrites
from voice_assistant.session.interruption import Interruptions
from voice_assistant.session.speculation import Speculation
from voice_assistant.session.speech import Voice
from voice_assistant.session.window import Window, WindowPolicy
from voice_assistant.turn.detector import EndReason
from voice_assistant.turn.taker import CompletedTurn

pytestmark = pytest.mark.unit

POLICY = WindowPolicy(
    system_prompt="Be brief.",
    audio_turns=4,
    max_turns=16,
    token_budget=8000,
    audio_tokens=audio_tokens_25_per_second,
)


async def open_conversation(
    store: HistoryStore,
    lm: FakeAudioLM,
    log: EventLog,
    *,
    speculative: bool = True,
    voice: Voice | None = None,
    reply_timeout_s: float = 60.0,
    metrics: Metrics | None = None,
    interruptions: Interruptions | None = None,
    timers: FakeTimers | None = None,
    held: HeldWrites | None = None,
    policy: WindowPolicy = POLICY,
    session_id: str | None = None,
    next_index: int = 0,
) -> Conversation:
    """A new session's conversation, or one that `session_id` resumes at turn `next_index`."""
    session_id = session_id or await store.create_session(now=datetime.now(UTC))
    metrics = metrics or Metrics()
    return Conversation(
        session_id=session_id,
        next_index=next_index,
        store=store,
        held=held or held_writes(store, metrics),
        model=lm,
        policy=policy,
        publish=log,
        metrics=metrics,
        reply_timeout_s=reply_timeout_s,
        voice=voice,
        speculative=speculative,
        interruptions=interruptions,
        schedule=timers,
    )


def turn(seconds: float = 1.0, value: float = 0.1) -> CompletedTurn:
    end = datetime.now(UTC)
    return CompletedTurn(
        audio=np.full(int(seconds * 16_000), value, dtype=np.float32),
        speech_start=end - timedelta(seconds=seconds),
        speech_end=end,
        decided_at=end + timedelta(seconds=0.5),
        reason=EndReason.SILENCE,
    )


def say(conversation: Conversation, seconds: float = 1.0, value: float = 0.1) -> None:
    """One whole user turn, as turn-taking reports it: speech starts, then the turn is complete."""
    conversation.speech_started()
    conversation.turn_finished(turn(seconds, value))


async def test_each_turn_is_committed_then_answered_in_contract_order(inline_store: HistoryStore) -> None:
    lm = FakeAudioLM([["Hel", "lo."], ["Fine."]])
    log = EventLog()
    conversation = await open_conversation(inline_store, lm, log)
    say(conversation)
    await log.wait_for("reply_done", 1)
    say(conversation, value=0.2)
    await log.wait_for("reply_done", 2)
    await conversation.close()

    assert [(e.type, e.turn) for e in log.events if e.type != "transcript"] == [  # type: ignore[attr-defined]
        ("turn_started", 0),
        ("turn_ended", 0),
        ("reply_delta", 0),
        ("reply_delta", 0),
        ("reply_done", 0),
        ("turn_started", 1),
        ("turn_ended", 1),
        ("reply_delta", 1),
        ("reply_done", 1),
    ]
    done = log.of("reply_done")[0]
    assert done.text == "Hello." and not done.interrupted  # type: ignore[attr-defined]
    assert set(done.timings) == {"end_of_turn", "turn_ended", "first_delta", "reply_done"}  # type: ignore[attr-defined]

    record = await inline_store.get_session(conversation.session_id)
    assert [(t.index, t.reply_text, t.interrupted) for t in record.turns] == [
        (0, "Hello.", False),
        (1, "Fine.", False),
    ]
    assert record.turns[1].context == {
        "audio_turns": [0],
        "text_turns": [],
        "summary_through": None,
        "summary_tokens": 0,
        "estimated_tokens": pytest.approx(91, abs=20),
        "end": "silence",
        "speculative": False,
    }
    # The second reply heard the first turn's audio and reply, then its own audio.
    heard = lm.heard[1]
    assert [m.role for m in heard] == ["system", "user", "assistant", "user"]
    assert isinstance(heard[1].parts[0], AudioPart) and heard[1].parts[0].samples[0] == pytest.approx(
        0.1, abs=1e-4
    )
    assert heard[2].text == "Hello."


async def test_a_model_that_raises_gives_an_error_event_and_the_session_goes_on(
    inline_store: HistoryStore,
) -> None:
    lm = FakeAudioLM([failing("out of memory"), ["Still here."]])
    log = EventLog()
    conversation = await open_conversation(inline_store, lm, log)
    say(conversation)
    await log.wait_for("reply_done", 1)
    say(conversation)
    await log.wait_for("reply_done", 2)
    await conversation.close()

    errors = log.of("error")
    assert len(errors) == 1 and errors[0].turn == 0 and "out of memory" in errors[0].message  # type: ignore[attr-defined]
    turns = (await inline_store.get_session(conversation.session_id)).turns
    assert turns[0].error == "out of memory" and turns[0].reply_text == ""
    assert turns[1].reply_text == "Still here." and turns[1].error is None


async def test_speech_during_a_reply_interrupts_it_and_keeps_what_was_said(
    inline_store: HistoryStore,
) -> None:
    pace = Steps()
    lm = FakeAudioLM([["one ", "two ", "three ", "four ", "five"], ["ok"]], pace=pace)
    log = EventLog()
    conversation = await open_conversation(inline_store, lm, log)
    say(conversation)
    pace.release(2)
    await log.wait_for("reply_delta", 2)
    say(conversation)  # barge-in
    pace.release(1)  # the next reply's one delta
    await log.wait_for("reply_done", 2)
    await conversation.close()

    first = log.of("reply_done")[0]
    assert first.interrupted and first.text == "one two "  # type: ignore[attr-defined]
    assert lm.stopped == 1
    turns = (await inline_store.get_session(conversation.session_id)).turns
    assert turns[0].interrupted and turns[0].reply_text == first.text  # type: ignore[attr-defined]
    assert turns[1].reply_text == "ok" and not turns[1].interrupted


async def test_a_vanished_client_leaves_the_reply_so_far_stored_and_no_task_behind(
    inline_store: HistoryStore,
) -> None:
    pace = Steps()
    lm = FakeAudioLM([["a", "b", "c", "d", "e", "f"]], pace=pace)
    log = EventLog()
    before = asyncio.all_tasks()
    conversation = await open_conversation(inline_store, lm, log)
    say(conversation)
    pace.release(2)
    await log.wait_for("reply_delta", 2)
    await conversation.close()

    turns = (await inline_store.get_session(conversation.session_id)).turns
    assert turns[0].interrupted and turns[0].reply_text == "ab"
    assert asyncio.all_tasks() - before == set()


async def test_turns_queued_when_the_client_vanishes_are_all_stored(inline_store: HistoryStore) -> None:
    pace = Steps()
    lm = FakeAudioLM([["slow"] * 20], pace=pace)
    log = EventLog()
    conversation = await open_conversation(inline_store, lm, log)
    say(conversation)
    pace.release(1)
    await log.wait_for("reply_delta", 1)
    for _ in range(2):
        conversation.turn_finished(turn(0.5))  # finished turns waiting behind the reply
    await conversation.close()
    turns = (await inline_store.get_session(conversation.session_id)).turns
    assert len(turns) == 3
    assert turns[0].interrupted
    assert [(t.reply_text, t.error) for t in turns[1:]] == [("", DISCONNECTED)] * 2


async def test_speech_resumed_before_the_reply_began_skips_the_reply(inline_store: HistoryStore) -> None:
    lm = FakeAudioLM([["never"]])
    log = EventLog()
    conversation = await open_conversation(inline_store, lm, log)
    say(conversation)
    conversation.speech_started()  # the user went on talking before the worker got to the reply
    await log.wait_for("reply_done", 1)
    await conversation.close()
    assert lm.heard == []
    done = log.of("reply_done")[0]
    assert done.interrupted and done.text == ""  # type: ignore[attr-defined]


async def test_a_reply_started_at_the_pause_is_adopted_when_the_turn_ends_there(
    inline_store: HistoryStore,
) -> None:
    lm = FakeAudioLM([["Spec", "ulated."]])
    log = EventLog()
    conversation = await open_conversation(inline_store, lm, log)
    conversation.speech_started()
    conversation.speech_paused(np.full(16_000, 0.1, np.float32))
    await settle()  # the model runs during the pause; nothing is sent yet
    assert lm.heard and [e.type for e in log.events] == ["turn_started"]
    conversation.turn_finished(turn())
    await log.wait_for("reply_done", 1)
    await conversation.close()

    assert len(lm.heard) == 1  # no second generation
    assert [e.type for e in log.events if e.type != "transcript"] == [
        "turn_started",
        "turn_ended",
        "reply_delta",
        "reply_delta",
        "reply_done",
    ]
    stored = (await inline_store.get_session(conversation.session_id)).turns[0]
    assert stored.reply_text == "Speculated." and stored.context is not None and stored.context["speculative"]


async def test_a_speculative_reply_is_discarded_without_trace_when_speech_resumes(
    inline_store: HistoryStore,
) -> None:
    pace = Steps()
    lm = FakeAudioLM([["never ", "seen ", "at ", "all"], ["The real one."]], pace=pace)
    log = EventLog()
    conversation = await open_conversation(inline_store, lm, log)
    conversation.speech_started()
    conversation.speech_paused(np.full(8_000, 0.1, np.float32))
    pace.release(1)
    await settle()
    assert len(lm.heard) == 1  # generating during the pause
    conversation.speech_resumed()  # it was only a pause inside the sentence
    await settle()
    conversation.turn_finished(turn(2.0))
    pace.release(1)
    await log.wait_for("reply_done", 1)
    await conversation.close()

    assert lm.stopped == 1  # the speculative generation was stopped
    texts = [e.text for e in log.of("reply_delta")]  # type: ignore[attr-defined]
    assert "".join(texts) == "The real one."
    stored = (await inline_store.get_session(conversation.session_id)).turns
    assert [(t.reply_text, t.context and t.context["speculative"]) for t in stored] == [
        ("The real one.", False)
    ]
    assert len(lm.heard[1][-1].audio[0].samples) == 32_000  # the whole turn, not the paused part


async def test_no_speculation_when_it_is_switched_off(inline_store: HistoryStore) -> None:
    lm = FakeAudioLM([["ok"]])
    log = EventLog()
    conversation = await open_conversation(inline_store, lm, log, speculative=False)
    conversation.speech_started()
    conversation.speech_paused(np.zeros(8_000, np.float32))
    conversation.turn_finished(turn())
    await log.wait_for("reply_done", 1)
    await conversation.close()
    assert len(lm.heard) == 1
    assert len(lm.heard[0][-1].audio[0].samples) == 16_000  # the finished turn, not the paused part
    stored = (await inline_store.get_session(conversation.session_id)).turns[0]
    assert stored.context is not None and stored.context["speculative"] is False


async def test_barge_in_on_a_spoken_reply_stores_generated_and_heard_text_in_one_write(
    inline_store: HistoryStore,
) -> None:
    lm = FakeAudioLM([["First one. ", "Second one. ", "Third one."], ["ok"]])
    log, sink = EventLog(), RecordingSink()
    voice = Voice(FakeSynthesizer(), sink, report=log)
    conversation = await open_conversation(inline_store, lm, log, voice=voice)
    writes: list[tuple[int, str, str | None]] = []
    finish_reply = inline_store.finish_reply

    async def counted(session_id: str, index: int, outcome: ReplyOutcome) -> None:
        writes.append((index, outcome.text, outcome.heard))
        await finish_reply(session_id, index, outcome)

    inline_store.finish_reply = counted  # type: ignore[method-assign]
    say(conversation)
    await log.wait_for("reply_delta", 3)
    await settle()
    assert sink.labels == ["turn-0.0", "turn-0.1", "turn-0.2"]
    sink.finish("turn-0.0")  # the user heard the first sentence, then spoke
    say(conversation)
    done = await log.wait_for("reply_done", 1)
    await conversation.close()

    assert done[0].interrupted and done[0].heard == "First one."  # type: ignore[attr-defined]
    assert writes[0] == (0, "First one. Second one. Third one.", "First one.")
    assert [index for index, _, _ in writes] == [0, 1]  # one write per reply
    turns = (await inline_store.get_session(conversation.session_id)).turns
    assert turns[0].interrupted and turns[0].reply_text == "First one. Second one. Third one."


async def test_a_reply_past_its_deadline_is_cut_and_stored_as_such(inline_store: HistoryStore) -> None:
    never_ending = ScriptedReply()
    never_ending.say("never ", "ending ")

    class HangingLM(FakeAudioLM):
        def stream_reply(self, messages: Sequence[Message]) -> AsyncIterator[str]:
            return never_ending.stream()

    lm = HangingLM([])
    log = EventLog()
    conversation = await open_conversation(inline_store, lm, log, reply_timeout_s=0.0)
    say(conversation)
    await log.wait_for("reply_done", 1)
    await conversation.close()
    assert "took longer than" in log.of("error")[0].message  # type: ignore[attr-defined]
    stored = (await inline_store.get_session(conversation.session_id)).turns[0]
    assert stored.interrupted and stored.error is not None and "took longer than" in stored.error
    assert never_ending.closed


async def test_each_turn_is_transcribed_after_its_reply_and_kept(inline_store: HistoryStore) -> None:
    lm = FakeAudioLM([["Hi."], ["Sure."]], transcripts=["hello there", "tell me more"])
    log = EventLog()
    conversation = await open_conversation(inline_store, lm, log)
    say(conversation)
    await log.wait_for("transcript", 1)
    kinds = [e.type for e in log.events]
    assert kinds.index("reply_done") < kinds.index("transcript")  # never before the answer
    say(conversation)
    await log.wait_for("transcript", 2)
    await conversation.close()
    turns = (await inline_store.get_session(conversation.session_id)).turns
    assert [t.transcript for t in turns] == ["hello there", "tell me more"]


async def test_a_turn_is_transcribed_while_its_reply_plays_but_announced_after_it(
    inline_store: HistoryStore,
) -> None:
    lm = FakeAudioLM([["Hi there."]], transcripts=["hello there"])
    log, sink = EventLog(), RecordingSink()
    voice = Voice(FakeSynthesizer(), sink, report=log)
    conversation = await open_conversation(inline_store, lm, log, voice=voice)
    say(conversation)
    await log.wait_for("reply_delta", 1)
    await settle()
    assert sink.labels == ["turn-0.0"]  # generated, still playing

    (stored,) = (await inline_store.get_session(conversation.session_id)).turns
    assert stored.transcript == "hello there"  # the model was free, so the words were asked for
    assert not {"transcript", "reply_done"} & {e.type for e in log.events}
    sink.finish()
    await log.wait_for("transcript", 1)
    await conversation.close()
    kinds = [e.type for e in log.events]
    assert kinds.index("reply_done") < kinds.index("transcript")


async def test_a_transcript_gives_way_to_new_speech_and_is_done_later(inline_store: HistoryStore) -> None:
    transcribing = Steps()
    lm = FakeAudioLM([["Hi."], ["Sure."]], transcribe_pace=transcribing)
    log = EventLog()
    conversation = await open_conversation(inline_store, lm, log)
    say(conversation)
    await log.wait_for("reply_done", 1)
    await settle()  # turn 0's transcript is being made
    say(conversation)  # the user speaks: it stops, the reply goes first
    await log.wait_for("reply_done", 2)
    assert log.of("transcript") == []
    transcribing.release(2)
    await log.wait_for("transcript", 2)
    await conversation.close()
    assert lm.transcriptions_stopped == 1
    assert [t.transcript for t in (await inline_store.get_session(conversation.session_id)).turns] == [
        "1.0 seconds of speech",
        "1.0 seconds of speech",
    ]


@pytest.fixture
async def unretrieved() -> AsyncIterator[list[dict[str, Any]]]:
    """What the event loop reports during the test ("Task exception was never retrieved" and the like):
    nothing, checked once every task and future the test left is collected."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    yield reported
    gc.collect()
    loop.set_exception_handler(previous)
    assert reported == []


def store_errors(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("va_errors_total", {"stage": "store"})


async def test_a_reply_the_store_cannot_take_ends_in_reply_done_and_is_held_until_it_is_back(
    inline_store: InlineStore, unretrieved: list[dict[str, Any]]
) -> None:
    lm = FakeAudioLM([["Hel", "lo."], ["Fine."]])
    log, metrics = EventLog(), Metrics()
    held = held_writes(inline_store, metrics)
    conversation = await open_conversation(inline_store, lm, log, metrics=metrics, held=held)
    inline_store.fail("finish_reply")  # the database goes away while the first reply is generated
    say(conversation)
    await log.wait_for("reply_done", 1)
    say(conversation)  # it is back
    await log.wait_for("reply_done", 2)

    assert [e.type for e in log.events if e.type != "transcript"][:5] == [
        "turn_started",
        "turn_ended",
        "reply_delta",
        "reply_delta",
        "error",
    ] and log.events[5].type == "reply_done"
    (error,) = log.of("error")
    assert error.turn == 0  # type: ignore[attr-defined]
    assert error.message == HELD_REPLY + ": OperationalError"  # type: ignore[attr-defined]
    assert log.of("reply_done")[0].text == "Hello."  # type: ignore[attr-defined]
    assert store_errors(metrics) == 1 and held.count == 1
    turns = (await inline_store.get_session(conversation.session_id)).turns
    assert [(t.index, t.reply_text) for t in turns] == [(0, None), (1, "Fine.")]

    assert await held.flush() and held.count == 0
    await conversation.close()
    turns = (await inline_store.get_session(conversation.session_id)).turns
    assert [(t.index, t.reply_text) for t in turns] == [(0, "Hello."), (1, "Fine.")]


@pytest.mark.parametrize("failing_call", ["recent_turns", "add_turn"])
async def test_turns_the_store_cannot_take_are_answered_held_and_stored_in_order_once_it_is_back(
    inline_store: InlineStore, unretrieved: list[dict[str, Any]], failing_call: str
) -> None:
    lm = FakeAudioLM([["Earlier."], ["Held."], ["Behind it."]])
    log, metrics = EventLog(), Metrics()
    held = held_writes(inline_store, metrics)
    conversation = await open_conversation(inline_store, lm, log, metrics=metrics, held=held)
    say(conversation)
    await log.wait_for("reply_done", 1)
    inline_store.fail(failing_call)  # reading the window, or committing the turn, while the database is away
    say(conversation)
    await log.wait_for("reply_done", 2)
    say(conversation)  # the store is back, but this turn waits behind the held one
    await log.wait_for("reply_done", 3)

    assert [(e.type, getattr(e, "turn", None)) for e in log.events[5:] if e.type != "transcript"] == [
        ("turn_started", 1),
        ("error", 1),
        ("turn_ended", 1),
        ("reply_delta", 1),
        ("reply_done", 1),
        ("turn_started", 2),
        ("turn_ended", 2),
        ("reply_delta", 2),
        ("reply_done", 2),
    ]
    (error,) = log.of("error")
    assert error.message == HELD_TURN + ": OperationalError"  # type: ignore[attr-defined]
    assert [getattr(e, "held", None) for e in log.of("turn_ended")] == [None, True, True]
    # The held turn was answered from itself alone (the system prompt, it) when the history could not be
    # read, else from the history too (the system prompt, turn 0 and its reply, it).
    assert len(lm.heard[1]) == {"recent_turns": 2, "add_turn": 4}[failing_call]
    assert held.count == 2 and store_errors(metrics) == 1
    assert (await inline_store.get_session(conversation.session_id)).turn_count == 1

    assert await held.flush() and held.count == 0
    await conversation.close()
    turns = (await inline_store.get_session(conversation.session_id)).turns
    assert [(t.index, t.reply_text) for t in turns] == [(0, "Earlier."), (1, "Held."), (2, "Behind it.")]


async def test_a_turn_held_behind_another_is_answered_though_its_speculation_could_not_read_the_window(
    inline_store: InlineStore, unretrieved: list[dict[str, Any]]
) -> None:
    lm = FakeAudioLM([["Held."], ["Behind it."]])
    log, metrics = EventLog(), Metrics()
    held = held_writes(inline_store, metrics)
    conversation = await open_conversation(inline_store, lm, log, metrics=metrics, held=held)
    inline_store.fail("add_turn")
    say(conversation)
    await log.wait_for("reply_done", 1)
    inline_store.fail("recent_turns")  # the speculation begun at the pause cannot read the window
    conversation.speech_started()
    conversation.speech_paused(np.full(12_000, 0.1, np.float32))
    await settle()
    conversation.turn_finished(turn())
    await log.wait_for("reply_done", 2)
    assert [getattr(e, "held", None) for e in log.of("turn_ended")] == [True, True]
    assert await held.flush()
    await conversation.close()
    turns = (await inline_store.get_session(conversation.session_id)).turns
    assert [(t.index, t.reply_text) for t in turns] == [(0, "Held."), (1, "Behind it.")]


async def test_a_turn_the_store_refuses_is_an_error_under_its_number_and_the_next_turn_takes_it(
    inline_store: InlineStore, unretrieved: list[dict[str, Any]]
) -> None:
    lm = FakeAudioLM([["Back again."]])
    log, metrics = EventLog(), Metrics()
    conversation = await open_conversation(inline_store, lm, log, metrics=metrics)
    inline_store.fail("add_turn", error=DataError("INSERT", None, ValueError("refused")))
    say(conversation)
    (error,) = await log.wait_for("error", 1)
    assert error.turn == 0 and error.message == "the turn could not be stored: DataError"  # type: ignore[attr-defined]
    assert lm.heard == [] and store_errors(metrics) == 1  # no reply to a turn that is not stored
    say(conversation)
    await log.wait_for("reply_done", 1)
    await conversation.close()

    assert [(e.type, getattr(e, "turn", None)) for e in log.events if e.type != "transcript"] == [
        ("turn_started", 0),
        ("error", 0),
        ("turn_started", 0),  # the store gives the next turn the number the lost one had
        ("turn_ended", 0),
        ("reply_delta", 0),
        ("reply_done", 0),
    ]
    turns = (await inline_store.get_session(conversation.session_id)).turns
    assert [(t.index, t.reply_text) for t in turns] == [(0, "Back again.")]


async def test_a_speculation_that_cannot_read_the_window_is_void_and_the_turn_reads_it_again(
    inline_store: InlineStore, unretrieved: list[dict[str, Any]]
) -> None:
    lm = FakeAudioLM([["Answered."]])
    log = EventLog()
    conversation = await open_conversation(inline_store, lm, log)
    inline_store.fail("recent_turns", times=2)  # a blip: both pauses' reads fail, the turn's own succeeds
    conversation.speech_started()
    conversation.speech_paused(np.full(8_000, 0.1, np.float32))
    await settle()
    conversation.speech_resumed()  # discarded
    conversation.speech_paused(np.full(12_000, 0.1, np.float32))
    await settle()
    conversation.turn_finished(turn())  # ends in the second pause
    await log.wait_for("reply_done", 1)
    await conversation.close()

    assert log.of("error") == [] and len(lm.heard) == 1
    stored = (await inline_store.get_session(conversation.session_id)).turns[0]
    assert stored.reply_text == "Answered." and stored.context is not None
    assert stored.context["speculative"] is False


async def test_a_transcript_that_cannot_be_stored_is_an_error_after_its_reply_and_the_next_one_is_kept(
    inline_store: InlineStore, unretrieved: list[dict[str, Any]]
) -> None:
    lm = FakeAudioLM([["Hi."], ["Sure."]], transcripts=["hello there", "tell me more"])
    log, metrics = EventLog(), Metrics()
    conversation = await open_conversation(inline_store, lm, log, metrics=metrics)
    inline_store.fail("set_transcript")
    say(conversation)
    (error,) = await log.wait_for("error", 1)
    assert error.turn == 0 and error.message == "the transcript could not be stored: OperationalError"  # type: ignore[attr-defined]
    kinds = [e.type for e in log.events]
    assert kinds.index("reply_done") < kinds.index("error") and "transcript" not in kinds
    say(conversation)
    (transcript,) = await log.wait_for("transcript", 1)
    await conversation.close()

    assert transcript.turn == 1 and store_errors(metrics) == 1  # type: ignore[attr-defined]
    turns = (await inline_store.get_session(conversation.session_id)).turns
    assert [(t.transcript, t.reply_text) for t in turns] == [(None, "Hi."), ("tell me more", "Sure.")]


async def test_a_model_text_holding_nul_is_sent_as_it_is_stored(inline_store: InlineStore) -> None:
    """NUL (the tiny models emit it) becomes U+FFFD as it arrives: the client is sent what the store keeps."""
    lm = FakeAudioLM([["a\x00", "b"]], transcripts=["\x00hi"])
    log = EventLog()
    conversation = await open_conversation(inline_store, lm, log)
    say(conversation)
    await log.wait_for("transcript", 1)
    await conversation.close()

    assert [e.text for e in log.of("reply_delta")] == ["a\ufffd", "b"]  # type: ignore[attr-defined]
    assert log.of("reply_done")[0].text == "a\ufffdb"  # type: ignore[attr-defined]
    assert log.of("transcript")[0].text == "\ufffdhi"  # type: ignore[attr-defined]
    (stored,) = (await inline_store.get_session(conversation.session_id)).turns
    assert (stored.reply_text, stored.transcript) == ("a\ufffdb", "\ufffdhi")


async def test_a_speculative_reply_whose_backend_breaks_ends_in_an_error_not_a_hang(
    inline_store: InlineStore, unretrieved: list[dict[str, Any]]
) -> None:
    lm = FakeAudioLM([RuntimeError("a backend bug"), ["Next."]])
    log = EventLog()
    conversation = await open_conversation(inline_store, lm, log)
    conversation.speech_started()
    conversation.speech_paused(np.full(8_000, 0.1, np.float32))
    await settle()
    conversation.turn_finished(turn())  # adopts the speculation that broke
    (done,) = await log.wait_for("reply_done", 1)
    say(conversation)
    await log.wait_for("reply_done", 2)
    await conversation.close()
    assert log.of("error")[0].message == "the reply failed: RuntimeError"  # type: ignore[attr-defined]
    assert done.text == "" and log.of("reply_done")[1].text == "Next."  # type: ignore[attr-defined]


async def test_a_transcript_whose_backend_breaks_leaves_that_turn_without_one(
    inline_store: InlineStore, unretrieved: list[dict[str, Any]]
) -> None:
    class BrokenOnce(FakeAudioLM):
        async def transcribe(self, audio: Samples) -> str:
            if not self.transcripts:
                raise RuntimeError("a backend bug")
            return await super().transcribe(audio)

    lm = BrokenOnce([["Hi."], ["Sure."]])
    log = EventLog()
    conversation = await open_conversation(inline_store, lm, log)
    say(conversation)
    await log.wait_for("reply_done", 1)
    await settle()
    lm.transcripts.append("tell me more")
    say(conversation)
    (transcript,) = await log.wait_for("transcript", 1)
    await conversation.close()
    assert transcript.turn == 1 and log.of("error") == []  # type: ignore[attr-defined]


async def test_settled_waits_for_the_turn_being_spoken_and_its_reply_to_play_out(
    inline_store: HistoryStore,
) -> None:
    """What a drain waits for before it ends a session: nothing it ends then is cut or lost."""
    lm = FakeAudioLM([["First one. ", "Second one."]])
    log, sink = EventLog(), RecordingSink()
    voice = Voice(FakeSynthesizer(), sink, report=log)
    conversation = await open_conversation(inline_store, lm, log, voice=voice)
    settled = asyncio.ensure_future(conversation.settled())
    await settle()
    assert settled.done()  # nothing in flight yet

    conversation.speech_started()
    settled = asyncio.ensure_future(conversation.settled())
    await settle()
    assert not settled.done() and not conversation.quiet  # the user is speaking
    conversation.turn_finished(turn())
    await log.wait_for("reply_delta", 2)
    await settle()
    assert not settled.done()  # generated, not played yet
    sink.finish()
    await log.wait_for("reply_done", 1)
    await settle()
    assert settled.done() and conversation.quiet
    await conversation.close()

    [done] = log.of("reply_done")
    assert not done.interrupted and done.heard == "First one. Second one."  # type: ignore[attr-defined]
    stored = (await inline_store.get_session(conversation.session_id)).turns
    assert [(t.reply_text, t.interrupted) for t in stored] == [("First one. Second one.", False)]


async def test_settled_returns_once_the_session_closes_mid_turn(inline_store: HistoryStore) -> None:
    conversation = await open_conversation(inline_store, FakeAudioLM([]), EventLog())
    conversation.speech_started()  # the client goes before the turn is over
    settled = asyncio.ensure_future(conversation.settled())
    await conversation.close()
    await settle()
    assert settled.done()


# -- false interruptions: speech over a spoken reply pauses it until it proves a turn

RULES = Interruptions(min_speech_s=0.5, timeout_s=1.5, proven_after_s=0.6)
THREE = ["First one. ", "Second one. ", "Third one."]


async def speaking(
    store: HistoryStore, replies: list[list[str] | Exception], *, voice: bool = True
) -> tuple[Conversation, EventLog, RecordingSink, FakeTimers, Metrics]:
    """A conversation whose first reply (three sentences) is queued in the sink, its first one heard."""
    log, sink, timers, metrics = EventLog(), RecordingSink(), FakeTimers(), Metrics()
    conversation = await open_conversation(
        store,
        FakeAudioLM(replies),
        log,
        voice=Voice(FakeSynthesizer(), sink, report=log) if voice else None,
        metrics=metrics,
        interruptions=RULES,
        timers=timers,
    )
    say(conversation)
    await log.wait_for("reply_delta", 3)
    await settle()
    if voice:
        assert sink.labels == ["turn-0.0", "turn-0.1", "turn-0.2"]
        sink.finish("turn-0.0")
    return conversation, log, sink, timers, metrics


def kinds(log: EventLog) -> list[tuple[str, int]]:
    return [(e.type, e.turn) for e in log.events if e.type not in {"transcript", "reply_delta"}]  # type: ignore[attr-defined]


def false_interruptions(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("va_false_interruptions_total") or 0.0


async def played_out(log: EventLog, sink: RecordingSink, replies: int) -> None:
    """The reply to the next turn (its one delta, `ok`) is generated and heard to its end."""
    await log.wait_for("reply_delta", 3 + replies)
    await settle()
    sink.finish()
    await log.wait_for("reply_done", 1 + replies)


async def stored(store: HistoryStore, conversation: Conversation) -> list[tuple[int, bool, str | None]]:
    turns = (await store.get_session(conversation.session_id)).turns
    return [(t.index, t.interrupted, t.heard_text) for t in turns]


async def test_a_backchannel_pauses_the_reply_at_once_then_it_resumes_and_nothing_is_a_turn(
    inline_store: HistoryStore,
) -> None:
    conversation, log, sink, timers, metrics = await speaking(inline_store, [THREE])
    conversation.speech_started()  # "mm-hmm"
    assert sink.clears == 1  # the voice stopped in the same step as the speech was reported
    assert kinds(log)[-1] == ("reply_paused", 0) and len(log.of("turn_started")) == 1
    timers.advance(0.3)
    conversation.speech_silent()
    timers.advance(0.2)
    conversation.turn_finished(turn(0.35))
    await settle()

    # The held sentences went back to the sink, the very same audio, and play to the end.
    assert sink.labels == ["turn-0.0", "turn-0.1", "turn-0.2", "turn-0.1", "turn-0.2"]
    assert np.array_equal(sink.pieces[3].samples, sink.pieces[1].samples)
    sink.finish()
    [done] = await log.wait_for("reply_done", 1)
    await settle()
    assert conversation.quiet and timers.pending == []
    await conversation.close()

    assert not done.interrupted and done.heard == "First one. Second one. Third one."  # type: ignore[attr-defined]
    assert kinds(log) == [
        ("turn_started", 0),
        ("turn_ended", 0),
        ("reply_paused", 0),
        ("reply_resumed", 0),
        ("reply_done", 0),
    ]
    assert await stored(inline_store, conversation) == [(0, False, "First one. Second one. Third one.")]
    assert false_interruptions(metrics) == 1
    assert conversation._next_index == 1  # the backchannel took no turn number


async def test_speech_that_lasts_interrupts_the_paused_reply_and_stores_what_was_heard(
    inline_store: HistoryStore,
) -> None:
    conversation, log, sink, timers, metrics = await speaking(inline_store, [THREE, ["ok"]])
    conversation.speech_started()
    timers.advance(0.59)
    assert len(log.of("turn_started")) == 1  # not proven yet: nothing announced
    timers.advance(0.01)  # still speaking: a real turn, announced now, the reply cut
    assert kinds(log)[-1] == ("turn_started", 1)
    [done] = await log.wait_for("reply_done", 1)
    assert done.interrupted and done.heard == "First one."  # type: ignore[attr-defined]
    assert len(sink.pieces) == 3  # the held sentences never played again
    conversation.turn_finished(turn(2.0))
    await played_out(log, sink, 1)
    await conversation.close()

    assert kinds(log)[2:] == [
        ("reply_paused", 0),
        ("turn_started", 1),
        ("reply_done", 0),
        ("turn_ended", 1),
        ("reply_done", 1),
    ]
    assert await stored(inline_store, conversation) == [(0, True, "First one."), (1, False, "ok")]
    assert false_interruptions(metrics) == 0


async def test_speech_that_goes_on_after_a_short_silence_counts_the_silence_in(
    inline_store: HistoryStore,
) -> None:
    conversation, log, sink, timers, _ = await speaking(inline_store, [THREE, ["ok"]])
    conversation.speech_started()
    timers.advance(0.4)
    conversation.speech_silent()  # "so..."
    timers.advance(0.3)  # 0.6 s since it started, but silent: not proven yet
    assert len(log.of("turn_started")) == 1 and kinds(log)[-1] == ("reply_paused", 0)
    conversation.speech_resumed()  # "...what about": a turn, as its span will say
    assert kinds(log)[-1] == ("turn_started", 1)
    timers.advance(0.4)
    conversation.speech_silent()
    conversation.turn_finished(turn(1.1))
    await played_out(log, sink, 1)
    await conversation.close()

    assert [(i, interrupted) for i, interrupted, _ in await stored(inline_store, conversation)] == [
        (0, True),
        (1, False),
    ]
    assert log.of("reply_resumed") == [] and timers.pending == []


async def test_short_bursts_that_make_a_long_turn_interrupt_when_the_turn_finishes(
    inline_store: HistoryStore,
) -> None:
    conversation, log, sink, timers, _ = await speaking(inline_store, [THREE, ["ok"]])
    conversation.speech_started()
    timers.advance(0.2)
    conversation.speech_silent()  # "yes,"
    timers.advance(0.1)
    conversation.speech_resumed()  # "yes"
    timers.advance(0.2)
    conversation.speech_silent()
    timers.advance(0.5)  # proven long while silent: it takes more speech, or the turn's span, to tell
    assert len(log.of("turn_started")) == 1 and log.of("reply_resumed") == []
    conversation.turn_finished(turn(0.5))
    await played_out(log, sink, 1)
    await conversation.close()

    assert [(i, interrupted) for i, interrupted, _ in await stored(inline_store, conversation)] == [
        (0, True),
        (1, False),
    ]
    assert timers.pending == []


async def test_silence_without_a_turn_resumes_the_reply_and_speech_after_it_pauses_it_again(
    inline_store: HistoryStore,
) -> None:
    conversation, log, sink, timers, metrics = await speaking(inline_store, [THREE])
    conversation.speech_started()  # a cough
    timers.advance(0.2)
    conversation.speech_silent()
    timers.advance(1.49)
    assert log.of("reply_resumed") == []
    timers.advance(0.01)  # no turn finished: turn-taking is still judging, the reply goes on
    await settle()
    assert kinds(log)[-1] == ("reply_resumed", 0)
    assert sink.labels[3:] == ["turn-0.1", "turn-0.2"]

    conversation.speech_resumed()  # the same user turn goes on: paused again
    assert kinds(log)[-1] == ("reply_paused", 0) and sink.clears == 2
    timers.advance(0.1)
    conversation.speech_silent()
    conversation.turn_finished(turn(0.45))  # still too short to be a turn
    await settle()
    assert sink.labels[5:] == ["turn-0.1", "turn-0.2"]
    sink.finish()
    [done] = await log.wait_for("reply_done", 1)
    await conversation.close()

    assert not done.interrupted and len(log.of("turn_started")) == 1
    assert await stored(inline_store, conversation) == [(0, False, "First one. Second one. Third one.")]
    assert false_interruptions(metrics) == 2


async def test_a_backchannel_whose_reply_has_played_out_meanwhile_is_still_no_turn(
    inline_store: HistoryStore,
) -> None:
    conversation, log, sink, timers, _ = await speaking(inline_store, [THREE, ["ok"]])
    conversation.speech_started()
    conversation.speech_silent()
    timers.advance(1.5)  # resumed, and it plays to its end before turn-taking decides
    await settle()
    sink.finish()
    await log.wait_for("reply_done", 1)
    conversation.turn_finished(turn(0.3))
    await settle()
    assert conversation.quiet and len(log.of("turn_started")) == 1

    # A turn spoken once nothing plays is a turn at once, as ever.
    say(conversation)
    await played_out(log, sink, 1)
    await conversation.close()
    assert [(i, interrupted) for i, interrupted, _ in await stored(inline_store, conversation)] == [
        (0, False),
        (1, False),
    ]


async def test_a_real_turn_whose_reply_has_played_out_meanwhile_is_answered(
    inline_store: HistoryStore,
) -> None:
    conversation, log, sink, timers, _ = await speaking(inline_store, [THREE, ["ok"]])
    conversation.speech_started()
    conversation.speech_silent()
    timers.advance(1.5)
    await settle()
    sink.finish()
    await log.wait_for("reply_done", 1)
    conversation.turn_finished(turn(0.8))  # it was a turn after all, and nothing is left to cut
    await played_out(log, sink, 1)
    await conversation.close()

    assert kinds(log)[-3:] == [("turn_started", 1), ("turn_ended", 1), ("reply_done", 1)]
    assert [(i, interrupted) for i, interrupted, _ in await stored(inline_store, conversation)] == [
        (0, False),
        (1, False),
    ]


async def test_speech_over_a_text_only_reply_interrupts_it_at_once(inline_store: HistoryStore) -> None:
    conversation, log, _, timers, _ = await speaking(inline_store, [THREE], voice=False)
    await log.wait_for("reply_done", 1)  # nothing to play: the reply is done once generated
    pace = Steps()
    lm = FakeAudioLM([["one ", "two ", "three"], ["ok"]], pace=pace)
    conversation._model = lm  # the next reply streams slowly
    say(conversation)
    pace.release(1)
    await log.wait_for("reply_delta", 4)
    conversation.speech_started()  # over the text: barge-in, as without a voice there is no pause
    assert kinds(log)[-1] == ("turn_started", 2) and timers.pending == []
    pace.release(2)
    done = await log.wait_for("reply_done", 2)
    await conversation.close()
    assert done[1].interrupted and done[1].text == "one "  # type: ignore[attr-defined]
    assert log.of("reply_paused") == []


async def test_a_client_that_goes_while_the_reply_is_paused_leaves_it_stored_and_no_timer(
    inline_store: HistoryStore,
) -> None:
    before = asyncio.all_tasks()
    conversation, log, _, timers, _ = await speaking(inline_store, [THREE])
    conversation.speech_started()
    await conversation.close()

    assert timers.pending == [] and asyncio.all_tasks() - before == set()
    assert await stored(inline_store, conversation) == [(0, True, "First one.")]


def test_the_settings_say_when_speech_has_lasted_long_enough_to_interrupt() -> None:
    # Speech is reported 3 frames (96 ms) into it, silence 7 frames (224 ms) into it with the silence
    # rule: 0.5 s of speech is sure 0.628 s after its report, and the reports may come 0.15 s late.
    rules = Interruptions.from_settings(TurnSettings(end_of_turn="silence", min_speech_ms=96, pause_ms=200))
    assert rules == Interruptions(min_speech_s=0.5, timeout_s=1.5, proven_after_s=pytest.approx(0.778))
    # With Smart Turn, silence is reported where it is first asked: 64 ms.
    rules = Interruptions.from_settings(
        TurnSettings(end_of_turn="smart-turn", end_of_turn_judge_ms=[64, 200])
    )
    assert rules is not None and rules.proven_after_s == pytest.approx(0.5 - 0.032 + 0.15)
    assert Interruptions.from_settings(TurnSettings(min_interruption_ms=0)) is None  # plain barge-in


async def test_a_committed_turn_is_stored_at_once_and_answered_only_when_asked(
    inline_store: HistoryStore,
) -> None:
    lm = FakeAudioLM([["First."], ["Second."]])
    log = EventLog()
    conversation = await open_conversation(inline_store, lm, log, speculative=False)
    conversation.instructions = "Talk like a pirate."
    conversation.commit(turn(value=0.1), answer=False)
    await log.wait_for("turn_ended", 1)
    await settle()
    assert not log.of("reply_delta") and lm.heard == []  # stored, not answered
    record = await inline_store.get_session(conversation.session_id)
    assert [(t.index, t.reply_text) for t in record.turns] == [(0, None)]

    conversation.respond("Answer in one word.")  # this reply's own system prompt
    await log.wait_for("reply_done", 1)
    conversation.respond()  # nothing left to answer: an error, and the session goes on
    await log.wait_for("error", 1)
    conversation.commit(turn(value=0.2), answer=True)  # answered at once, under the session's prompt
    await log.wait_for("reply_done", 2)
    await conversation.close()

    assert [m.text for m in lm.heard[0] if m.role == "system"] == ["Answer in one word."]
    assert [m.text for m in lm.heard[1] if m.role == "system"] == ["Talk like a pirate."]
    assert [m.role for m in lm.heard[1]] == ["system", "user", "assistant", "user"]  # it heard turn 0
    record = await inline_store.get_session(conversation.session_id)
    assert [(t.index, t.reply_text) for t in record.turns] == [(0, "First."), (1, "Second.")]
    assert "no turn to respond to" in log.of("error")[0].message  # type: ignore[attr-defined]


async def test_without_barge_in_speech_over_a_reply_lets_it_finish(inline_store: HistoryStore) -> None:
    steps = Steps()
    lm = FakeAudioLM([["a ", "b ", "c."], ["next."]], pace=steps)
    log = EventLog()
    conversation = await open_conversation(inline_store, lm, log, speculative=False)
    conversation.barge_in = False
    say(conversation)
    steps.release(1)
    await log.wait_for("reply_delta", 1)
    say(conversation, value=0.2)  # spoken over the reply: it waits for the reply to end
    steps.release(10)
    done = await log.wait_for("reply_done", 2)
    await conversation.close()
    assert done[0].text == "a b c." and not done[0].interrupted  # type: ignore[attr-defined]


async def test_cancel_reply_stops_the_reply_in_progress(inline_store: HistoryStore) -> None:
    steps = Steps()
    lm = FakeAudioLM([["a ", "b ", "c."]], pace=steps)
    log = EventLog()
    conversation = await open_conversation(inline_store, lm, log, speculative=False)
    assert conversation.cancel_reply() is False  # nothing to cancel
    say(conversation)
    steps.release(1)
    await log.wait_for("reply_delta", 1)
    assert conversation.cancel_reply() is True
    done = await log.wait_for("reply_done", 1)
    await conversation.close()
    assert done[0].interrupted and done[0].text == "a "  # type: ignore[attr-defined]


async def test_a_speculation_whose_window_failed_raises_when_streamed_instead_of_waiting_forever() -> None:
    async def unreadable() -> Window:
        raise OSError("the store is away")

    speculation = Speculation(FakeAudioLM([["never."]]), unreadable)
    with pytest.raises(asyncio.CancelledError):
        await speculation.window
    with pytest.raises(OSError, match="the store is away"):
        async with asyncio.timeout(5):  # only keeps a regression from hanging the suite
            async for _ in speculation.stream():
                pass


async def test_a_held_turn_answered_when_asked_hears_itself_alone_and_is_stored_with_its_reply(
    inline_store: InlineStore, unretrieved: list[dict[str, Any]]
) -> None:
    lm = FakeAudioLM([["Held."]])
    log, metrics = EventLog(), Metrics()
    held = held_writes(inline_store, metrics)
    conversation = await open_conversation(
        inline_store, lm, log, metrics=metrics, held=held, speculative=False
    )
    inline_store.fail("recent_turns", times=2)  # the store goes away: the commit's read, then respond's
    conversation.commit(turn(), answer=False)
    await log.wait_for("turn_ended", 1)
    conversation.respond()
    await log.wait_for("reply_done", 1)

    assert [e.message for e in log.of("error")] == [  # type: ignore[attr-defined]
        HELD_TURN + ": OperationalError",
        UNREAD_HISTORY + ": OperationalError",
    ]
    assert [m.role for m in lm.heard[0]] == ["system", "user"]
    assert await held.flush()
    await conversation.close()
    turns = (await inline_store.get_session(conversation.session_id)).turns
    assert [(t.index, t.reply_text) for t in turns] == [(0, "Held.")]
