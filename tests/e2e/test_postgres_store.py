"""A real server on a real PostgreSQL, run as a new user would (`--model tiny`, full-length replies): every
turn gets its `reply_done` and is stored as it was sent. The tiny model's text holds a NUL (which
PostgreSQL's text types refuse) every few hundred tokens; test_store.py stores them without chance."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from benchmarks.server import ServerProcess
from tests.conftest import empty_postgres, postgres_url
from tests.e2e.test_voice_chat import SCRIPT, speak_script
from tests.support.servers import Servers
from voice_assistant.client import VoiceClient

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(servers: Servers) -> ServerProcess:
    url = postgres_url()
    if url is None:
        pytest.skip("no PostgreSQL here (set VA_TEST_POSTGRES_URL)")
    empty_postgres(url)
    return servers.start("postgres", {"VA_DATABASE_URL": url})


async def test_every_turn_is_answered_and_stored_on_postgresql(server: ServerProcess) -> None:
    client = VoiceClient(server.url)
    await client.connect()
    await speak_script(client, SCRIPT)
    await asyncio.wait_for(client.wait_for("reply_done", len(SCRIPT)), 30)
    await asyncio.wait_for(client.wait_for("transcript", len(SCRIPT)), 30)
    await client.close()

    assert not client.events("error")
    sent = {
        kind: {r.message["data"]["turn"]: r.message["data"]["text"] for r in client.events(kind)}
        for kind in ("reply_done", "transcript")
    }
    async with httpx.AsyncClient(base_url=server.url) as http:
        stored = (await http.get(f"/api/sessions/{client.session_id}")).json()["turns"]
    assert [turn["index"] for turn in stored] == list(range(len(SCRIPT)))
    assert [turn["reply_text"] for turn in stored] == [sent["reply_done"][i] for i in range(len(SCRIPT))]
    assert [turn["transcript"] for turn in stored] == [sent["transcript"][i] for i in range(len(SCRIPT))]
