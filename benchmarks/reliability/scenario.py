"""What every reliability scenario shares: its result row, and a caller that talks to a real server.

A scenario starts real server processes, holds a real conversation with them (`Caller`: aiortc, real
human speech paced in real time), injects one fault in the middle of it, and then counts, from the
client's events and from the server's own history API, what was spoken, what was stored and what was
lost. A committed turn is one the server announced with `turn_ended`: the store had it by then.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from aiortc import RTCConfiguration

from benchmarks.human_set import trimmed
from benchmarks.human_speech import asterisk_prompt
from benchmarks.speech import RATE
from voice_assistant.client import VoiceClient

PROMPTS = ("conf-onlyperson", "conf-getpin", "conf-locked", "conf-kicked", "conf-noempty", "conf-adminmenu")
"""Asterisk prompts of one sentence each: the caller's turns, in turn."""
LEAD_S = 0.4
TAIL_S = 1.6
"""Silence before and after each sentence: the server's end of turn needs the pause after it."""
TURN_S = 60.0
"""How long one turn may take, its speech to its `reply_done`."""


@dataclass
class Outcome:
    """One scenario's row: what was injected, what the client saw, what the server kept."""

    scenario: str
    injected: str
    spoken: int = 0
    """Turns the caller spoke to the end."""
    committed: int = 0
    """Of those, the turns the server announced as stored (`turn_ended`)."""
    stored: int = 0
    """Turns in the server's history afterwards (its REST API, from a server started anew if need be)."""
    lost: int = 0
    """Committed turns missing from the history: the figure that must be 0."""
    client_errors: list[str] = field(default_factory=list)
    """The `error` events (or refusals) the client saw, in order."""
    recovery_s: float | None = None
    """From the fault's end to the first turn answered again."""
    reconnects: int = 0
    """New connections the caller made, resuming its session, because the one it had failed."""
    checks: dict[str, bool] = field(default_factory=dict)
    """What else the scenario asserts (e.g. "interrupted turn marked"), each true or false."""
    notes: str = ""
    skipped: str | None = None
    """Why the scenario could not run here (e.g. it needs root): no row of figures, and no failure."""

    def count(self, caller: Caller, stored: list[dict[str, Any]]) -> None:
        """The turn counts, from what the caller was told and what the server's history holds."""
        kept = {turn["index"] for turn in stored}
        self.spoken, self.committed, self.stored = caller.spoken, len(caller.committed_turns), len(kept)
        self.lost = len(caller.committed_turns - kept)
        self.client_errors = caller.errors

    @property
    def passed(self) -> bool:
        return self.skipped is not None or (self.lost == 0 and all(self.checks.values()))

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


@dataclass(frozen=True)
class Context:
    """Where a scenario runs: a fresh folder of its own, PostgreSQL when there is one, and how long."""

    root: Path
    postgres_url: str | None
    short: bool
    """CI's form: shorter outages and fewer turns, the same checks."""

    def folder(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def sentence(turn: int) -> np.ndarray:
    """The caller's `turn`-th sentence (16 kHz), the prompts in turn."""
    return _prompt(PROMPTS[turn % len(PROMPTS)])


@functools.cache
def _prompt(name: str) -> np.ndarray:
    """Read once: a soak's callers say them again and again."""
    return trimmed(asterisk_prompt(name))


class Caller:
    """One caller on WebRTC, turn after turn, resuming its session on every new connection."""

    def __init__(
        self, base_url: str, *, configuration: RTCConfiguration | None = None, timeout: float = 20.0
    ) -> None:
        self.base_url = base_url
        self.configuration = configuration
        """Of every peer connection (default: aiortc's, its STUN server included)."""
        self.timeout = timeout
        """For each connection's offer and data channel (`VoiceClient.timeout`)."""
        self.session_id: str | None = None
        self.client: VoiceClient | None = None
        self.spoken = 0
        self.committed_turns: set[int] = set()
        """The turn numbers the server announced as stored (`turn_ended`), on every connection."""
        self.errors: list[str] = []
        self._seen_errors = 0

    async def connect(self, base_url: str | None = None) -> None:
        """A new connection (to `base_url`, e.g. a restarted server) that resumes the session."""
        await self.hang_up()
        self.base_url = base_url or self.base_url
        self.client = VoiceClient(
            self.base_url, session_id=self.session_id, configuration=self.configuration, timeout=self.timeout
        )
        await self.client.connect()
        self.session_id = self.client.session_id

    async def speak(self, turn: int) -> float:
        """Say the `turn`-th sentence with its pauses; the wall time its last sample was sent."""
        assert self.client is not None, "not connected"
        microphone = self.client.microphone
        microphone.play(np.zeros(int(LEAD_S * RATE), np.float32))
        end = microphone.play(sentence(turn))
        microphone.play(np.zeros(int(TAIL_S * RATE), np.float32))
        spoken = await end
        self.spoken += 1
        return spoken

    async def turn(self, turn: int, *, reply: bool = True) -> bool:
        """Speak one turn and wait for the server to commit it (and answer it, with `reply`), or to say
        why not (an `error` about that turn): whether it was committed (and answered)."""
        assert self.client is not None, "not connected"
        client = self.client
        started = len(client.events("turn_started"))
        await self.speak(turn)

        def about(kind: str, index: int) -> bool:
            return any(e.message["data"].get("turn") == index for e in client.events(kind))

        try:
            async with asyncio.timeout(TURN_S):
                await client.until(lambda: len(client.events("turn_started")) > started)
                index = client.events("turn_started")[started].message["data"]["turn"]
                await client.until(
                    lambda: about("reply_done" if reply else "turn_ended", index) or about("error", index)
                )
        except TimeoutError:
            last = [(e.message["type"], e.message["data"].get("turn")) for e in client.events()[-6:]]
            self.errors.append(f"turn {turn}: nothing within {TURN_S:.0f} s (the last events: {last})")
            return False
        finally:
            self._note()
        return about("turn_ended", index) and (not reply or about("reply_done", index))

    async def answered(self, index: int) -> bool:
        """Whether the turn numbered `index` ends in its `reply_done` (waiting for it up to TURN_S)."""
        assert self.client is not None, "not connected"
        client = self.client

        def done() -> bool:
            return any(e.message["data"].get("turn") == index for e in client.events("reply_done"))

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(TURN_S):
                await client.until(done)
        return done()

    def _note(self) -> None:
        """What this connection has said so far: the turns it committed, its errors."""
        assert self.client is not None
        self.committed_turns |= {e.message["data"]["turn"] for e in self.client.events("turn_ended")}
        self._note_errors()

    def _note_errors(self) -> None:
        assert self.client is not None
        errors = self.client.events("error")
        self.errors += [str(e.message.get("data", {}).get("message")) for e in errors[self._seen_errors :]]
        self._seen_errors = len(errors)

    async def hang_up(self) -> None:
        if self.client is not None:
            self._note()
            self._seen_errors = 0
            await self.client.close()
            self.client = None


async def stored_turns(base_url: str, session_id: str) -> list[dict[str, Any]]:
    """The session's turns as its server keeps them."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        response = await http.get(f"/api/sessions/{session_id}")
        response.raise_for_status()
        return list(response.json()["turns"])


def log_clean(log: str) -> bool:
    """No exception the server's event loop found nobody waiting for (a future or task left failing)."""
    return "exception was never retrieved" not in log


def since(start: float) -> float:
    return round(time.monotonic() - start, 2)
