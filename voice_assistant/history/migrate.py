"""The schema's versions: Alembic migrations shipped in the package (migrations/), configured here, no
alembic.ini. A new revision is a file in migrations/versions/ whose `down_revision` is the current head;
tests/integration/test_migrations.py checks that the head makes exactly the tables of tables.py."""

from __future__ import annotations

import functools
import logging

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, inspect, text

log = logging.getLogger(__name__)

# pg_advisory_xact_lock's key for "upgrading the schema": any constant nothing else on the database takes.
UPGRADE_LOCK_KEY = 0x7661_5F73_6368_656D  # "va_schem"


class SchemaError(RuntimeError):
    """The database is at a revision this release cannot bring to its head (a newer release made it)."""


def alembic_config(connection: Connection | None = None) -> Config:
    """The configuration that migrations/env.py reads; `connection` is the one the migrations run on."""
    config = Config()
    config.set_main_option("script_location", "voice_assistant.history:migrations")
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The newest revision this release knows."""
    revision = _scripts().get_current_head()
    assert revision is not None, "the package ships no migrations"
    return revision


def current(engine: Engine) -> str | None:
    """The database's revision; None for an empty database or one made before versioning (no
    alembic_version table)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def describe(engine: Engine) -> str:
    """Where the database's schema stands, in one line for an operator."""
    revision, target = current(engine), head()
    if revision == target:
        return f"{revision} (head)"
    if revision is not None and not _known(revision):
        return f"{revision} (unknown to this release: a newer one upgraded the database)"
    if revision is not None:
        return f"{revision} (behind the head, {target}: run `voice-assistant db upgrade` or start the server)"
    if inspect(engine).has_table("sessions"):
        return "none: made before versioning; `voice-assistant db upgrade` (or starting the server) adopts it"
    return "none: empty; `voice-assistant db upgrade` (or starting the server) makes the tables"


def upgrade(engine: Engine) -> None:
    """Bring the database to the head; nothing to do when it is there already.

    A new database gets every revision. One made before versioning (today's tables by create_all, no
    alembic_version) goes through the baseline too, which creates only the tables it lacks, so it is
    stamped at the baseline and then upgraded like the rest. Several instances starting at once on one
    database take turns: the upgrade holds a lock until its transaction commits (PostgreSQL's DDL is
    transactional), and whoever waited finds the head and does nothing."""
    target = head()
    if current(engine) == target:
        return
    with engine.begin() as connection:
        _lock(connection)
        found = MigrationContext.configure(connection).get_current_revision()
        if found == target:
            return
        if found is not None and not _known(found):
            raise SchemaError(
                f"the database's schema is at revision {found!r}, which this release of voice-assistant does "
                "not know: a newer release upgraded it. Run that release (or a newer one) on this database."
            )
        log.info("upgrading the database schema from %s to %s", found or "no revision", target)
        command.upgrade(alembic_config(connection), "head")


def _lock(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK_KEY})
    elif connection.dialect.name == "sqlite":
        # The database's write lock now, not at the first write: a second process waits here (busy
        # timeout), and the DDL that follows is inside this transaction (pysqlite would not begin one).
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _known(revision: str) -> bool:
    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:
        return False
