"""What a real server writes to its log (at INFO, the default) while it serves a conversation with every
secret set: no admin token, API key, client secret or Twilio auth token, no caller's number (in the
database neither: only its keyed hash), no session id, and no word that was typed or replied.

The conversation is a Realtime typed turn through the official `openai` SDK (with an API key, then again
with a minted client secret, resuming the session by `?session_id=`), the REST API with the admin token,
and a phone call with a signed webhook."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection

from benchmarks.phone_client import TwilioCall
from benchmarks.server import ServerProcess
from tests.support.servers import Servers

pytestmark = pytest.mark.e2e

ADMIN = "admin-token-4f1c9e"
API_KEYS = ("sk-first-key-8d2a", "sk-second-key-71b0")
TWILIO = "twilio-auth-token-c3e5"
CALLER = "+15557654321"
TYPED = "Please remember the purple giraffe of Zanzibar."
MANUAL = {"type": "realtime", "audio": {"input": {"turn_detection": None}}, "output_modalities": ["text"]}


@pytest.fixture(scope="module")
def server(servers: Servers) -> ServerProcess:
    return servers.start(
        "log-hygiene",
        {
            "VA_MAX_NEW_TOKENS": "24",
            "VA_ADMIN_TOKEN": ADMIN,
            "VA_API_KEYS": ",".join(API_KEYS),
            "VA_TWILIO_AUTH_TOKEN": TWILIO,
        },
        public_url=True,
    )


def stored_bytes(data_dir: Path) -> bytes:
    """Everything the server's SQLite database holds, its write-ahead log included."""
    return b"".join(path.read_bytes() for path in sorted(data_dir.glob("voice_assistant.db*")))


async def until(connection: AsyncRealtimeConnection, kind: str) -> Any:
    async with asyncio.timeout(30):
        async for event in connection:
            if event.type == kind:
                return event
    raise AssertionError(f"the connection closed before {kind}")


async def typed_turn(connection: AsyncRealtimeConnection, text: str) -> str:
    """The reply's text to a typed user message."""
    await connection.session.update(session=MANUAL)
    await until(connection, "session.updated")
    await connection.conversation.item.create(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    )
    await connection.response.create()
    done = await until(connection, "response.done")
    return str(done.response.output[0].content[0].text)


async def test_the_log_holds_no_secret_no_number_no_session_id_and_no_words(server: ServerProcess) -> None:
    realtime = AsyncOpenAI(api_key=API_KEYS[1], base_url=f"{server.url}/v1").realtime
    async with realtime.connect(model="tiny") as connection:
        session_id = (await until(connection, "session.created")).session.id
        replies = [await typed_turn(connection, TYPED)]
    secret = await realtime.client_secrets.create(session={"type": "realtime"})
    resumed = AsyncOpenAI(api_key=secret.value, base_url=f"{server.url}/v1").realtime
    async with resumed.connect(model="tiny", extra_query={"session_id": session_id}) as connection:
        assert (await until(connection, "session.created")).session.id == session_id
        replies.append(await typed_turn(connection, "And the green one?"))

    async with httpx.AsyncClient(base_url=server.url) as http:
        listed = await http.get("/api/sessions", headers={"Authorization": f"Bearer {ADMIN}"})
        assert session_id in {s["session_id"] for s in listed.json()["sessions"]}
        stored = (await http.get(f"/api/sessions/{session_id}")).json()
        assert [turn["transcript"] for turn in stored["turns"]] == [TYPED, "And the green one?"]
        async with http.stream("GET", f"/api/sessions/{session_id}/events") as events:
            assert events.status_code == 200

    call = TwilioCall(server.url, caller=CALLER, auth_token=TWILIO)
    await call.dial()
    async with asyncio.timeout(15):
        await call.wait(lambda: any(h.message["mark"]["name"] == "greeting.0" for h in call.of("mark")))
    await call.hang_up()
    await asyncio.sleep(0.5)  # the call's end is logged

    log = server.log()
    assert "connection opened" in log or "call started" in log  # the log is the one written meanwhile
    secrets = {"the admin token": ADMIN, "the Twilio auth token": TWILIO, "the client secret": secret.value}
    secrets |= {f"API key {n}": key for n, key in enumerate(API_KEYS)}
    words = {"the typed turn": TYPED, **{f"reply {n}": reply for n, reply in enumerate(replies)}}
    leaked = [
        what
        for what, value in {**secrets, "the caller's number": CALLER, "the session id": session_id}.items()
        if value in log
    ]
    leaked += [what for what, text in words.items() if len(text.strip()) >= 8 and text.strip() in log]
    assert leaked == [], f"in the server's log: {leaked}"
    database = stored_bytes(server.data_dir)
    assert CALLER.encode() not in database and CALLER[2:].encode() not in database
