"""Retention on a virtual clock: a session idle past VA_RETENTION_DAYS is deleted with its turns, a busy
one is kept, and a sweep while the store is away warns and leaves the work to the next one."""

from __future__ import annotations

import logging
from datetime import timedelta

import numpy as np
import pytest

from tests.fakes import FakeClock, InlineStore, settle
from voice_assistant.history.records import NewTurn
from voice_assistant.history.retention import Retention

pytestmark = pytest.mark.unit

DAY_S = 86_400.0


async def spoken_turn(store: InlineStore, session_id: str, clock: FakeClock) -> None:
    at = clock.now
    audio = np.full(1600, 0.1, dtype=np.float32)
    await store.add_turn(session_id, NewTurn(audio=audio, speech_start=at, speech_end=at, turn_ended_at=at))


async def test_a_session_is_deleted_once_it_is_idle_for_longer_than_the_retention(
    inline_store: InlineStore,
) -> None:
    clock = FakeClock()
    retention = Retention(inline_store, days=30, clock=clock)
    quiet = await inline_store.create_session(now=clock.now)
    busy = await inline_store.create_session(now=clock.now)
    clock.advance(2 * DAY_S)
    await spoken_turn(inline_store, busy, clock)  # its last activity: two days later
    clock.advance(28 * DAY_S)
    assert await retention.sweep() == 0  # exactly 30 days: not older yet
    clock.advance(1)
    assert await retention.sweep() == 1
    assert not await inline_store.session_exists(quiet) and await inline_store.turn_count(busy) == 1
    clock.advance(2 * DAY_S)
    assert await retention.sweep() == 1
    assert not await inline_store.session_exists(busy) and await inline_store.turn_count(busy) == 0


async def test_a_sweep_while_the_store_is_away_warns_and_the_next_one_deletes(
    inline_store: InlineStore, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    retention = Retention(inline_store, days=1, clock=clock)
    session_id = await inline_store.create_session(now=clock.now)
    clock.advance(DAY_S + 1)
    inline_store.fail("delete_idle_sessions")
    with caplog.at_level(logging.WARNING):
        assert await retention.sweep() is None
    assert "retention sweep failed" in caplog.text and await inline_store.session_exists(session_id)
    assert await retention.sweep() == 1


async def test_the_first_sweep_runs_when_it_starts(inline_store: InlineStore) -> None:
    clock = FakeClock()
    session_id = await inline_store.create_session(now=clock.now - timedelta(days=8))
    kept = await inline_store.create_session(now=clock.now - timedelta(days=6))
    retention = Retention(inline_store, days=7, clock=clock)
    retention.start()
    await settle()
    await retention.close()
    assert not await inline_store.session_exists(session_id) and await inline_store.session_exists(kept)
