"""Real server processes for the integration and end-to-end modules, through one factory."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from benchmarks.server import ServerProcess

LONG_REPLIES = {"VA_MAX_NEW_TOKENS": "4000", "VA_SPECULATIVE_START": "false"}
"""Replies long enough to be cut mid-way (a tiny model takes seconds for 4000 tokens), generated after the
turn ends (a speculative start would have most of a reply ready at once)."""


SCRIPTED_TURNS = {"VA_END_OF_TURN": "silence"}
"""Under every test server unless its `env` says otherwise. The tests' speech is espeak-ng pieces with
silence put between them, each piece ending in a falling, final intonation that Smart Turn rightly hears
as the end of a turn; a test about something else keeps its turns where its script puts them with the
silence rule. The default end of turn is tested on human speech (tests/e2e/test_turn_taking_human.py)."""


class Servers:
    """Starts `voice-assistant serve --model tiny` processes, each in a fresh folder, and stops them all
    when its owner (a module's fixture) is done with them."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._folders = tmp_path_factory
        self._started: list[ServerProcess] = []

    def start(
        self,
        name: str,
        env: Mapping[str, str] | None = None,
        *,
        public_url: bool = False,
        timeout: float = 120.0,
    ) -> ServerProcess:
        """A ready server with `env` on top of what every server runs with; `public_url`: it announces its
        own address as VA_PUBLIC_URL (webhooks that must point back at it); `timeout`: for it to be ready."""
        process = ServerProcess(self._folders.mktemp(name), env={**SCRIPTED_TURNS, **(env or {})})
        if public_url:
            process.env["VA_PUBLIC_URL"] = process.url
        self._started.append(process)
        process.start(timeout=timeout)
        return process

    def stop_all(self) -> None:
        for process in self._started:
            process.stop()
        self._started.clear()
