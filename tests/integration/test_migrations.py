"""The schema's versions on real databases: an older database is upgraded and keeps every turn, the head
makes exactly the models' tables, several instances may start at once, and `voice-assistant db` says so."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, insert, inspect, text

from voice_assistant.audio.codec import decode, encode_flac
from voice_assistant.history import migrate
from voice_assistant.history.database import make_engine
from voice_assistant.history.store import HistoryStore, NewTurn, ReplyOutcome
from voice_assistant.history.tables import Base, SessionRow, TurnRow

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
BEFORE_VERSIONS = Path(__file__).with_name("schema_before_versions")
PHONE_TABLES = ("secrets", "call_tokens", "callers")


def make_previous_schema(engine: Engine, *, without: tuple[str, ...] = ()) -> None:
    """The tables as `Base.metadata.create_all` made them before versioning: its DDL, kept as it was."""
    ddl = (BEFORE_VERSIONS / f"{engine.dialect.name}.sql").read_text()
    with engine.begin() as connection:
        for statement in filter(str.strip, ddl.split(";")):
            if not any(f"TABLE {table} " in statement for table in without):
                connection.exec_driver_sql(statement)


def fill(engine: Engine) -> dict[tuple[str, int], float]:
    """Two sessions of three turns each, written the way that code wrote them; each turn's audio level."""
    levels: dict[tuple[str, int], float] = {}
    with engine.begin() as connection:
        for s, session_id in enumerate(("a" * 32, "b" * 32)):
            connection.execute(
                insert(SessionRow.__table__).values(id=session_id, created_at=T0, updated_at=T0)
            )
            for index in range(3):
                level = round(0.1 * (s * 3 + index + 1), 2)
                levels[(session_id, index)] = level
                at = T0 + timedelta(seconds=10 * index)
                connection.execute(
                    insert(TurnRow.__table__).values(
                        session_id=session_id,
                        index=index,
                        audio=encode_flac(np.full(8_000, level, dtype=np.float32), 16_000),
                        audio_seconds=0.5,
                        transcript=f"question {session_id[0]}{index}",
                        reply_text=f"answer {session_id[0]}{index}",
                        interrupted=index == 2,
                        speech_start=at,
                        speech_end=at + timedelta(seconds=0.5),
                        turn_ended_at=at + timedelta(seconds=1),
                        reply_done_at=at + timedelta(seconds=2),
                        context={"audio_turns": list(range(index)), "text_turns": [], "estimated_tokens": 9},
                        timings={"first_delta": 0.4},
                    )
                )
    return levels


def new_turn() -> NewTurn:
    at = T0 + timedelta(minutes=5)
    return NewTurn(
        np.zeros(1_600, dtype=np.float32), at, at + timedelta(seconds=0.1), at + timedelta(seconds=1)
    )


def differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


def voice_assistant_db(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "voice_assistant", "db", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    made = make_engine(database_url)
    yield made
    made.dispose()


async def expect_every_turn(store: HistoryStore, levels: dict[tuple[str, int], float]) -> None:
    for session_id in {session_id for session_id, _ in levels}:
        record = await store.get_session(session_id)
        assert [turn.index for turn in record.turns] == [0, 1, 2]
        for turn in record.turns:
            assert (turn.transcript, turn.reply_text, turn.heard_text) == (
                f"question {session_id[0]}{turn.index}",
                f"answer {session_id[0]}{turn.index}",
                None,
            )
            assert turn.interrupted == (turn.index == 2)
            assert turn.speech_start == T0 + timedelta(seconds=10 * turn.index)
            assert turn.context == {
                "audio_turns": list(range(turn.index)),
                "text_turns": [],
                "estimated_tokens": 9,
            }
            samples, rate = decode(await store.turn_audio(session_id, turn.index))
            assert rate == 16_000 and len(samples) == 8_000
            assert np.allclose(samples, levels[(session_id, turn.index)], atol=1e-3)


@pytest.mark.parametrize("upgraded_by", ["opening the store", "voice-assistant db upgrade"])
async def test_a_database_of_the_previous_schema_keeps_every_turn_and_gains_the_heard_text(
    engine: Engine, database_url: str, upgraded_by: str
) -> None:
    make_previous_schema(engine)
    levels = fill(engine)
    assert migrate.current(engine) is None
    assert voice_assistant_db("current", "--database-url", database_url).startswith(
        "none: made before versioning"
    )
    if upgraded_by == "voice-assistant db upgrade":
        assert voice_assistant_db("upgrade", "--database-url", database_url) == f"{migrate.head()} (head)"
        assert migrate.current(engine) == migrate.head()

    store = HistoryStore(database_url)
    try:
        assert migrate.current(engine) == migrate.head()
        assert differences(engine) == []
        await expect_every_turn(store, levels)

        session_id = "a" * 32
        recent = await store.recent_turns(session_id, limit=3, audio_for_last=1)
        assert [turn.reply_text for turn in recent] == ["answer a0", "answer a1", "answer a2"]
        assert recent[-1].audio is not None and recent[0].audio is None

        index = await store.add_turn(session_id, new_turn())
        assert index == 3
        outcome = ReplyOutcome("It is sunny and warm today.", True, None, None, T0, {}, heard="It is sunny")
        await store.finish_reply(session_id, index, outcome)
        stored = (await store.get_session(session_id)).turns[index].to_json()
        assert (stored["reply_text"], stored["heard_text"], stored["interrupted"]) == (
            "It is sunny and warm today.",
            "It is sunny",
            True,
        )
        recent = await store.recent_turns(session_id, limit=2, audio_for_last=0)
        assert [turn.reply_text for turn in recent] == ["answer a2", "It is sunny"]
    finally:
        store.close()


async def test_a_database_from_before_the_phone_bridge_gets_the_phone_tables(
    engine: Engine, database_url: str
) -> None:
    """create_all used to add the tables a database lacked on start; the baseline does it now."""
    make_previous_schema(engine, without=PHONE_TABLES)
    levels = fill(engine)
    store = HistoryStore(database_url)
    try:
        assert differences(engine) == []
        await expect_every_turn(store, levels)
        caller = await store.caller_hash("+15551234567")
        assert await store.caller_session(caller, now=T0) == await store.caller_session(caller, now=T0)
    finally:
        store.close()


def test_a_new_database_at_the_head_has_exactly_the_models_tables(engine: Engine, database_url: str) -> None:
    assert voice_assistant_db("current", env={"VA_DATABASE_URL": database_url}).startswith("none: empty")
    HistoryStore(database_url).close()
    assert migrate.current(engine) == migrate.head()
    assert differences(engine) == []
    assert voice_assistant_db("current", env={"VA_DATABASE_URL": database_url}) == f"{migrate.head()} (head)"


def test_the_last_revision_goes_down_and_up_again(engine: Engine, database_url: str) -> None:
    HistoryStore(database_url).close()
    with engine.begin() as connection:
        command.downgrade(migrate.alembic_config(connection), "-1")
    assert "summaries" not in set(inspect(engine).get_table_names())
    assert "behind the head" in voice_assistant_db("current", "--database-url", database_url)
    HistoryStore(database_url).close()
    assert differences(engine) == []


def test_instances_starting_at_once_upgrade_it_once(engine: Engine, database_url: str) -> None:
    make_previous_schema(engine)
    with ThreadPoolExecutor(4) as pool:
        stores = list(pool.map(lambda _: HistoryStore(database_url), range(4)))
    for store in stores:
        store.close()
    assert migrate.current(engine) == migrate.head()
    assert differences(engine) == []


def test_a_database_from_a_newer_release_is_refused_with_what_to_do(
    engine: Engine, database_url: str
) -> None:
    HistoryStore(database_url).close()
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(migrate.SchemaError, match="at revision '9999'.*Run that release"):
        HistoryStore(database_url)
    assert "unknown to this release" in voice_assistant_db("current", "--database-url", database_url)
