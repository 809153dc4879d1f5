"""The database unreachable mid-conversation: PostgreSQL stopped (connections cut), then started again.

The caller keeps talking through the outage. Every turn the server announced (`turn_ended`) must be in
the history once the database is back, those of the outage included; `/readyz` must say 503 while the
store is away and 200 after; the session must go on (the first turn after the outage answered) and no
connection may be dropped. The outage is 30 s (8 s in `--short`); the recovery runs from the database's
start to the server ready again with every held write written (`va_store_held_writes` 0).
"""

from __future__ import annotations

import asyncio
import time

import httpx

from benchmarks.reliability.postgres import TemporaryPostgres, available
from benchmarks.reliability.scenario import Caller, Context, Outcome, log_clean, since, stored_turns
from benchmarks.server import ServerProcess

ENV = {"VA_END_OF_TURN": "silence", "VA_MAX_NEW_TOKENS": "16"}
RECOVERY_S = 60.0


async def readyz(base_url: str) -> int:
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as http:
        return (await http.get("/readyz")).status_code


async def recovered(base_url: str) -> bool:
    """Whether, within RECOVERY_S, the server is ready again and has written all it held."""
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as http:
        deadline = time.monotonic() + RECOVERY_S
        while time.monotonic() < deadline:
            ready = (await http.get("/readyz")).status_code == 200
            if ready and held_writes((await http.get("/metrics")).text) == 0:
                return True
            await asyncio.sleep(0.2)
    return False


def held_writes(metrics: str) -> float:
    prefix = "va_store_held_writes "
    return next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(prefix))


async def database_outage(context: Context) -> Outcome:
    seconds = 8.0 if context.short else 30.0
    outcome = Outcome("database outage", f"PostgreSQL stopped for {seconds:.0f} s mid-conversation")
    if not available():
        outcome.checks["PostgreSQL available"] = False
        outcome.notes = "no PostgreSQL server binaries here"
        return outcome
    folder = context.folder("database-outage")
    database = TemporaryPostgres(folder)
    await asyncio.to_thread(database.init)
    await asyncio.to_thread(database.start)
    server = ServerProcess(folder, env={**ENV, "VA_DATABASE_URL": database.url})
    caller = Caller(server.url)
    try:
        await asyncio.to_thread(server.start)
        await caller.connect()
        await caller.turn(0)
        await asyncio.to_thread(database.stop)
        stopped = time.monotonic()
        ready_during = await readyz(server.url)
        turn = 1
        while time.monotonic() - stopped < seconds:
            await caller.turn(turn)
            turn += 1
        await asyncio.to_thread(database.start)
        back = time.monotonic()
        outcome.checks["/readyz 503 during, 200 after"] = ready_during == 503 and await recovered(server.url)
        outcome.recovery_s = since(back)
        outcome.checks["next turn answered after the outage"] = await caller.turn(turn)
        assert caller.client is not None and caller.session_id is not None
        outcome.checks["connection kept"] = caller.client.pc.connectionState == "connected"
        turns = await stored_turns(server.url, caller.session_id)
    finally:
        await caller.hang_up()
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(database.close)
    outcome.count(caller, turns)
    outcome.checks["server log clean"] = log_clean(server.log())
    return outcome
