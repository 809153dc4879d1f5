"""The engine and the unit of work that every store call runs in: one transaction in a worker thread."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from voice_assistant.history import migrate

T = TypeVar("T")

logger = logging.getLogger(__name__)


def make_engine(url: str) -> Engine:
    # hide_parameters: a failed statement's message (logged with the failure) names no session id (a
    # capability) and no word the user said.
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            # WAL lets the API read while a turn is being written; foreign keys make deletes cascade;
            # secure_delete overwrites what a delete frees with zeros, so a deleted turn's audio is not
            # left in the file's free pages.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA secure_delete=ON")
            cursor.close()

        return engine
    # connect_timeout: a database host that vanished fails a call in seconds (and the turn is held), not
    # in the minutes of the system's TCP timeout.
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        hide_parameters=True,
        connect_args={"connect_timeout": 5} if url.startswith("postgresql") else {},
    )


def unreachable(error: BaseException) -> bool:
    """The database could not be reached, or could not write (a full disk): the same write may well work
    later. Not so a write it refused (IntegrityError, DataError) or a session that is gone."""
    if isinstance(error, OperationalError | InterfaceError | PoolTimeout):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


class Database:
    """Async facade over a synchronous SQLAlchemy engine: each call runs in a worker thread.

    Opening one brings the schema to the head revision first (see `migrate.upgrade`), so a server started on
    an older database upgrades it, and one started beside others on the same PostgreSQL waits its turn."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        migrate.upgrade(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    async def _run(self, fn: Callable[[Session], T]) -> T:
        def work() -> T:
            with self._sessions.begin() as session:
                return fn(session)

        return await asyncio.to_thread(work)

    async def _forget_deleted(self) -> None:
        """After a delete: on SQLite, copy the WAL into the file and truncate it, since its older frames
        still hold the pages as they were before the delete zeroed them. On PostgreSQL the deleted rows
        are dead tuples until (auto)VACUUM reclaims them; nothing to do here."""
        if self.engine.dialect.name != "sqlite":
            return
        # pysqlite opens no transaction for a PRAGMA, as a checkpoint needs.
        busy, _, _ = await self._run(lambda s: s.execute(text("PRAGMA wal_checkpoint(TRUNCATE)")).one())
        if busy:
            logger.warning("the WAL keeps deleted pages until a later checkpoint: a reader held it")

    def close(self) -> None:
        self.engine.dispose()

    async def ping(self) -> None:
        await self._run(lambda s: s.execute(text("SELECT 1")))
