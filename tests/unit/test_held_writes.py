"""Held writes: what the store could not take is written in order once it is back, within a bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from tests.fakes import InlineStore
from voice_assistant.history.store import NewTurn, ReplyOutcome
from voice_assistant.metrics import Metrics
from voice_assistant.session.held_writes import HeldWrites

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def new_turn(seconds: float) -> NewTurn:
    return NewTurn(
        audio=np.full(int(seconds * 16_000), 0.1, np.float32),
        speech_start=T0,
        speech_end=T0 + timedelta(seconds=seconds),
        turn_ended_at=T0 + timedelta(seconds=seconds),
    )


def reply(text: str) -> ReplyOutcome:
    return ReplyOutcome(text, False, None, T0, T0, {})


def lost(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("va_turns_lost_total")


def held_gauge(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("va_store_held_writes")


async def test_held_turns_are_written_in_order_with_their_replies_once_the_store_is_back(
    inline_store: InlineStore,
) -> None:
    metrics = Metrics()
    held = HeldWrites(inline_store, metrics=metrics, capacity_s=60.0)
    session_id = await inline_store.create_session(now=T0)
    first, second = held.hold_turn(session_id, new_turn(1.0)), held.hold_turn(session_id, new_turn(2.0))
    assert first is not None and second is not None and held.holding(session_id)
    await held.finish_reply(first, reply("One."))
    inline_store.fail("add_turn")  # still away at the first retry
    assert not await held.flush() and held.count == 2 and held_gauge(metrics) == 2

    assert await held.flush() and held.count == 0 and held_gauge(metrics) == 0
    assert not held.holding(session_id)
    await held.finish_reply(second, reply("Two."))  # its reply ended after the turn was written: now
    turns = (await inline_store.get_session(session_id)).turns
    assert [(t.index, t.audio_seconds, t.reply_text) for t in turns] == [(0, 1.0, "One."), (1, 2.0, "Two.")]
    assert lost(metrics) == 0


async def test_past_its_bound_a_turn_is_refused_and_counted_lost(inline_store: InlineStore) -> None:
    metrics = Metrics()
    held = HeldWrites(inline_store, metrics=metrics, capacity_s=3.0)
    session_id = await inline_store.create_session(now=T0)
    assert held.hold_turn(session_id, new_turn(2.0)) is not None
    assert held.hold_turn(session_id, new_turn(2.0)) is None
    assert held.count == 1 and lost(metrics) == 1
    assert await held.flush()
    assert held.hold_turn(session_id, new_turn(2.0)) is not None  # written: its room is free again


async def test_a_write_the_store_refuses_for_good_is_dropped_and_counted_and_the_rest_go_on(
    inline_store: InlineStore,
) -> None:
    metrics = Metrics()
    held = HeldWrites(inline_store, metrics=metrics, capacity_s=60.0)
    gone, kept = await inline_store.create_session(now=T0), await inline_store.create_session(now=T0)
    held.hold_turn(gone, new_turn(1.0))
    held.hold_turn(kept, new_turn(1.0))
    await inline_store.delete_session(gone)  # deleted while its turn was held
    assert await held.flush() and held.count == 0
    assert lost(metrics) == 1 and (await inline_store.get_session(kept)).turn_count == 1


async def test_a_stop_while_the_store_is_away_counts_what_it_could_not_write(
    inline_store: InlineStore,
) -> None:
    metrics = Metrics()
    held = HeldWrites(inline_store, metrics=metrics, capacity_s=60.0, retry_s=0.0)
    session_id = await inline_store.create_session(now=T0)
    held.hold_turn(session_id, new_turn(1.0))
    inline_store.fail("add_turn", times=1_000_000)
    await held.close(timeout_s=0.01)
    assert lost(metrics) == 1
