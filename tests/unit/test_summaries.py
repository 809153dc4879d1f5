"""The running summary: turns that leave the window are folded in while the model is idle, and heard."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pytest
from sqlalchemy.exc import IntegrityError

from tests.fakes import EventLog, FakeAudioLM, Steps, settle
from tests.unit.test_conversation import POLICY, open_conversation, say
from voice_assistant.history.store import HistoryStore, SummaryRecord
from voice_assistant.model.base import Message
from voice_assistant.session.summaries import INSTRUCTIONS

pytestmark = pytest.mark.unit

FOLDING = replace(POLICY, max_turns=4, audio_turns=2, summary_every=2, summary_max_tokens=50)
"""Three turns before the new one in the window; two at a time folded once those three wait."""
SUMMARY_AT = datetime(2026, 1, 1, tzinfo=UTC)


def is_fold(messages: Sequence[Message]) -> bool:
    return messages[0].text.startswith(INSTRUCTIONS.split("{")[0])


@dataclass
class SummarizingLM(FakeAudioLM):
    """Answers every turn `ok`, and every fold with `S<n>`; with `fold_pace`, a fold waits for the test."""

    folds: list[str] | None = None
    fold_pace: Steps | None = None
    fold_failure: Exception | None = None

    async def stream_reply(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        if not is_fold(messages):
            async for delta in super().stream_reply(messages):
                yield delta
            return
        self.folds = [*(self.folds or []), messages[1].text]
        if self.fold_pace is not None:
            await self.fold_pace.take()
        if self.fold_failure is not None:
            raise self.fold_failure
        yield f"S{len(self.folds)}"


async def talk(conversation: object, log: EventLog, turns: int) -> None:
    for _ in range(turns):
        say(conversation)  # type: ignore[arg-type]
        await log.wait_for("reply_done", len(log.of("reply_done")) + 1)
        await settle(60)


async def test_turns_leaving_the_window_are_folded_and_heard_through_the_summary(
    inline_store: HistoryStore,
) -> None:
    lm, log = SummarizingLM([]), EventLog()
    conversation = await open_conversation(inline_store, lm, log, policy=FOLDING, speculative=False)
    await talk(conversation, log, 7)
    await conversation.close()

    record = await inline_store.get_session(conversation.session_id)
    contexts = [(t.context or {}) for t in record.turns]
    # After turn 2's reply three turns wait: 0-1 are folded. After turn 4's, 2-3; after turn 6's, 4-5.
    assert [c["summary_through"] for c in contexts] == [None, None, None, 1, 1, 3, 3]
    assert [c["text_turns"] for c in contexts] == [[], [], [0], [], [2], [], [4]]
    assert [c["audio_turns"] for c in contexts] == [[], [0], [1], [2], [3], [4], [5]]
    assert record.summary is not None
    assert (record.summary.from_turn, record.summary.through_turn, record.summary.text) == (0, 5, "S3")
    assert record.to_json()["summary"]["through_turn"] == 5  # GET /api/sessions/{id}, the export
    # Each fold hears the summary so far and the words of the turns it takes in.
    assert lm.folds is not None and len(lm.folds) == 3
    assert "Summary so far: S1" in lm.folds[1] and "(turn 2)" in lm.folds[1] and "(turn 3)" in lm.folds[1]
    assert "(turn 4)" not in lm.folds[1]
    # The reply to turn 5 heard the summary of turns 0-3 in its system message, and no older turn.
    heard = [messages for messages in lm.heard if not is_fold(messages)][5]
    assert "(turns 0-3): S2" in heard[0].text
    assert sum(1 for m in heard if m.role == "user") == 2


async def test_new_speech_stops_a_fold_which_is_asked_again_later(inline_store: HistoryStore) -> None:
    lm, log = SummarizingLM([], fold_pace=Steps()), EventLog()
    conversation = await open_conversation(inline_store, lm, log, policy=FOLDING, speculative=False)
    await talk(conversation, log, 3)
    assert lm.folds is not None and len(lm.folds) == 1  # waiting on the test
    say(conversation)  # the user speaks: the fold gives way, unstored
    await log.wait_for("reply_done", 4)
    assert await inline_store.latest_summary(conversation.session_id) is None
    await settle(60)
    assert len(lm.folds) == 2  # asked again once the reply is done
    lm.fold_pace.release()  # type: ignore[union-attr]
    await settle(60)
    await conversation.close()
    summary = await inline_store.latest_summary(conversation.session_id)
    assert summary is not None and summary.through_turn == 1


async def test_a_failing_fold_costs_no_reply(inline_store: HistoryStore) -> None:
    lm, log = SummarizingLM([], fold_failure=RuntimeError("the GPU fell over")), EventLog()
    conversation = await open_conversation(inline_store, lm, log, policy=FOLDING, speculative=False)
    await talk(conversation, log, 5)
    await conversation.close()
    record = await inline_store.get_session(conversation.session_id)
    assert record.summary is None and len(record.turns) == 5
    assert all(t.reply_text == "ok" for t in record.turns)
    assert not log.of("error")


async def test_a_session_that_comes_back_is_heard_with_the_same_summary(inline_store: HistoryStore) -> None:
    lm, log = SummarizingLM([]), EventLog()
    first = await open_conversation(inline_store, lm, log, policy=FOLDING, speculative=False)
    await talk(first, log, 5)
    await first.close()
    # Days later, another connection (any instance) resumes it at turn 5.
    log = EventLog()
    again = await open_conversation(
        inline_store, lm, log, policy=FOLDING, speculative=False, session_id=first.session_id, next_index=5
    )
    await talk(again, log, 1)
    await again.close()
    turn = (await inline_store.get_session(first.session_id)).turns[5]
    assert turn.context is not None and turn.context["summary_through"] == 3
    assert "(turns 0-3): S2" in [m for m in lm.heard if not is_fold(m)][-1][0].text


async def test_a_fold_another_instance_stored_first_wins(inline_store: HistoryStore) -> None:
    session_id = await inline_store.create_session(now=SUMMARY_AT)
    mine = SummaryRecord(0, 3, "mine", SUMMARY_AT)
    await inline_store.add_summary(session_id, replace(mine, text="theirs"))
    with pytest.raises(IntegrityError):
        await inline_store.add_summary(session_id, mine)
    summary = await inline_store.latest_summary(session_id)
    assert summary is not None and summary.text == "theirs"


async def test_a_deleted_session_takes_its_summaries_along(inline_store: HistoryStore) -> None:
    session_id = await inline_store.create_session(now=SUMMARY_AT)
    await inline_store.add_summary(session_id, SummaryRecord(0, 3, "gone soon", SUMMARY_AT))
    await inline_store.delete_session(session_id)
    assert await inline_store.latest_summary(session_id) is None
