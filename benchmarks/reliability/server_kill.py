"""The server killed with SIGKILL in the middle of a spoken reply, then started again on its database.

Two turns are answered; the third is killed at its first `reply_delta` (the reply is being generated and
spoken). After the restart every committed turn must be in the history, the killed one marked cut off
(interrupted, with the store's CUT_OFF error), and the caller's next connection must resume the session:
its next turn is answered and stored after the others.
"""

from __future__ import annotations

import asyncio
import signal
import time

from benchmarks.reliability.scenario import TURN_S, Caller, Context, Outcome, log_clean, since, stored_turns
from benchmarks.server import ServerProcess
from voice_assistant.history.store import CUT_OFF

ENV = {"VA_END_OF_TURN": "silence", "VA_WEBRTC_SPEECH": "true", "VA_MAX_NEW_TOKENS": "48"}
"""Spoken replies long enough to be killed in the middle of."""


async def server_kill(context: Context) -> Outcome:
    outcome = Outcome("server killed mid-reply", "SIGKILL at the 3rd turn's first reply_delta, restart")
    server = ServerProcess(context.folder("server-kill"), env=ENV)
    await asyncio.to_thread(server.start)
    caller = Caller(server.url)
    try:
        await caller.connect()
        for turn in range(2):
            await caller.turn(turn)
        client = caller.client
        assert client is not None
        deltas = len(client.events("reply_delta"))
        speaking = asyncio.create_task(caller.speak(2))
        async with asyncio.timeout(TURN_S):
            await client.until(lambda: len(client.events("reply_delta")) > deltas)
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        await asyncio.to_thread(server.process.wait)
        await speaking
        await caller.hang_up()

        await asyncio.to_thread(server.start)
        await caller.connect()
        outcome.checks["next turn answered after the restart"] = await caller.turn(3)
        outcome.recovery_s = since(killed)
        assert caller.session_id is not None
        turns = await stored_turns(server.url, caller.session_id)
    finally:
        await caller.hang_up()
        await asyncio.to_thread(server.stop)
    outcome.count(caller, turns)
    outcome.checks["server log clean"] = log_clean(server.log())
    outcome.checks["killed turn marked cut off"] = (
        len(turns) > 2 and turns[2]["interrupted"] and turns[2]["error"] == CUT_OFF
    )
    outcome.checks["others untouched"] = all(not turns[i]["interrupted"] for i in (0, 1, 3) if i < len(turns))
    outcome.notes = (
        f"recovery: from the kill to the resumed session's next reply, the restart (ready after"
        f" {server.ready_after_s:.1f} s) included"
    )
    return outcome
