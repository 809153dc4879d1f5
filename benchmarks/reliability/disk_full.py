"""The disk of the SQLite database full mid-conversation, then room made again.

The database lives on a small tmpfs of its own (mounted by the scenario, so it needs root). After a first
turn, a file fills the disk to the last byte; the caller goes on talking; then the file is removed. Every
turn announced must be stored once there is room again (the server holds what it could not write), the
client must have been told clearly, and SQLite's `PRAGMA integrity_check` must say `ok` afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import time
from pathlib import Path

from benchmarks.reliability.database import recovered
from benchmarks.reliability.scenario import Caller, Context, Outcome, log_clean, since, stored_turns
from benchmarks.server import ServerProcess

ENV = {"VA_END_OF_TURN": "silence", "VA_MAX_NEW_TOKENS": "16", "VA_TRANSCRIPTS": "false"}
SIZE_MB = 16


def fill(folder: Path) -> Path:
    """A file that takes every free byte of the disk under `folder`."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as out:
        for size in (1 << 16, 1):  # big blocks, then the last bytes one by one
            with contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * size)
    return filler


def integrity(database: Path) -> str:
    with contextlib.closing(sqlite3.connect(database)) as connection:
        return str(connection.execute("PRAGMA integrity_check").fetchone()[0])


async def disk_full(context: Context) -> Outcome:
    outcome = Outcome("disk full", "the SQLite database's disk filled mid-conversation, then freed")
    if os.geteuid() != 0:
        outcome.skipped = "mounting a small disk (tmpfs) for the database needs root"
        return outcome
    folder = context.folder("disk-full")
    disk = folder / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(disk)]
    await asyncio.to_thread(subprocess.run, mount, check=True)
    database = disk / "voice_assistant.db"
    server = ServerProcess(folder, env={**ENV, "VA_DATABASE_URL": f"sqlite:///{database}"})
    caller = Caller(server.url)
    turns: list[dict[str, object]] = []
    try:
        await asyncio.to_thread(server.start)
        await caller.connect()
        await caller.turn(0)
        filler = await asyncio.to_thread(fill, disk)
        for turn in (1, 2):
            await caller.turn(turn)
        filler.unlink()
        freed = time.monotonic()
        outcome.checks["every held write written"] = await recovered(server.url)
        outcome.recovery_s = since(freed)
        outcome.checks["next turn answered"] = await caller.turn(3)
        assert caller.session_id is not None
        turns = await stored_turns(server.url, caller.session_id)
    finally:
        await caller.hang_up()
        await asyncio.to_thread(server.stop)
        with contextlib.suppress(OSError):
            outcome.checks["database intact"] = await asyncio.to_thread(integrity, database) == "ok"
        await asyncio.to_thread(subprocess.run, ["umount", str(disk)], check=False)
    outcome.count(caller, turns)
    outcome.checks["server log clean"] = log_clean(server.log())
    outcome.checks["the client was told"] = any("held" in error for error in caller.errors)
    return outcome
