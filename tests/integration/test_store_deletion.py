"""Deleting for real, on SQLite and PostgreSQL: a deleted session leaves no row behind (its turns, its
phone rows), SQLite's file keeps no byte of its audio, and the retention sweep deletes the idle sessions
in batches, from several instances at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from voice_assistant.history.store import HistoryStore, NewTurn

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def noise_turn(seed: int, at: datetime = T0) -> NewTurn:
    """Two seconds of noise: its FLAC is as long as the samples and found nowhere else."""
    audio = np.random.default_rng(seed).uniform(-0.5, 0.5, 32_000).astype(np.float32)
    return NewTurn(audio=audio, speech_start=at, speech_end=at + timedelta(seconds=2), turn_ended_at=at)


def rows_of(store: HistoryStore, session_id: str) -> dict[str, int]:
    """Each table's rows that point at the session, read straight from the database."""
    with store.engine.connect() as connection:
        return {
            table: connection.execute(
                text(f"SELECT count(*) FROM {table} WHERE {column} = :id"), {"id": session_id}
            ).scalar_one()
            for table, column in (
                ("sessions", "id"),
                ("turns", "session_id"),
                ("callers", "session_id"),
                ("call_tokens", "session_id"),
            )
        }


async def phone_session(store: HistoryStore, number: str, *, now: datetime = T0) -> str:
    """A caller's session with a turn and a call token: a row in every table that points at sessions."""
    session_id = await store.caller_session(await store.caller_hash(number), now=now)
    await store.issue_call_token(session_id, now=now)
    await store.add_turn(session_id, noise_turn(1, at=now))
    return session_id


async def test_a_deleted_session_leaves_no_row_behind(store: HistoryStore) -> None:
    session_id = await phone_session(store, "+15550001111")
    assert set(rows_of(store, session_id).values()) == {1}
    await store.delete_session(session_id)
    assert set(rows_of(store, session_id).values()) == {0}


def found_in_files(database: Path, needles: list[bytes]) -> int:
    """How many of the needles the database's files hold (the WAL too)."""
    data = b"".join(path.read_bytes() for path in (database, Path(f"{database}-wal")) if path.exists())
    return sum(needle in data for needle in needles)


async def test_sqlite_keeps_no_byte_of_a_deleted_sessions_audio(sqlite_store: HistoryStore) -> None:
    """secure_delete zeroes the freed pages, and the WAL, which still holds them as they were, is
    checkpointed and truncated."""
    database = Path(str(sqlite_store.engine.url.database))
    kept = await sqlite_store.create_session(now=T0)
    await sqlite_store.add_turn(kept, noise_turn(2))
    deleted = await sqlite_store.create_session(now=T0)
    await sqlite_store.add_turn(deleted, noise_turn(3))
    flac = await sqlite_store.turn_audio(deleted, 0)
    needles = [flac[start : start + 32] for start in range(64, len(flac) - 32, 997)]
    assert len(needles) > 50 and found_in_files(database, needles) > 0.9 * len(needles)

    await sqlite_store.delete_session(deleted)
    assert found_in_files(database, needles) == 0
    assert await sqlite_store.turn_audio(kept, 0)  # the other session's audio is intact


async def test_the_retention_sweep_deletes_idle_sessions_in_batches(store: HistoryStore) -> None:
    idle = [await phone_session(store, f"+1555000{i:04d}") for i in range(5)]
    recent = await phone_session(store, "+15559999999", now=T0 + timedelta(days=2))
    assert await store.delete_idle_sessions(before=T0 + timedelta(days=1), batch=2) == 5
    assert all(set(rows_of(store, session_id).values()) == {0} for session_id in idle)
    assert set(rows_of(store, recent).values()) == {1}
    assert await store.delete_idle_sessions(before=T0 + timedelta(days=1)) == 0


async def test_instances_sweeping_at_once_delete_each_session_once(store: HistoryStore) -> None:
    """Four stores on one database (as four instances), each sweeping in small batches at once."""
    url = store.engine.url.render_as_string(hide_password=False)
    others = [HistoryStore(url) for _ in range(3)]
    try:
        for _ in range(12):
            await store.add_turn(await store.create_session(now=T0), noise_turn(4))
        before = T0 + timedelta(days=1)
        deleted = await asyncio.gather(
            *(each.delete_idle_sessions(before=before, batch=3) for each in [store, *others])
        )
        # A sweep may stop at a batch the others had locked; whatever it left, the next sweep deletes.
        assert sum(deleted) + await store.delete_idle_sessions(before=before) == 12
        assert await store.list_sessions() == []
    finally:
        for other in others:
            other.close()
