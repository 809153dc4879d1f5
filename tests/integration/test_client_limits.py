"""What one client may take of a real server process: a request body past the cap is 413, a WebSocket
flooded past the message rate is closed with why (Realtime and the phone's media stream), the connections
one address holds open are capped across WebRTC and Realtime, and typed words past the token budget are
refused. The Realtime endpoint is open here (no VA_API_KEYS), so every client counts per address."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import websockets

from benchmarks.server import ServerProcess
from tests.support.servers import Servers

pytestmark = pytest.mark.integration

MAX_BODY = 64 * 1024
PER_SECOND = 5
"""Burst: 50 messages at once."""
OPEN_PER_ADDRESS = 2
TOKEN_BUDGET = 256
"""The smallest budget: 1024 characters of typed words."""


@pytest.fixture(scope="module")
def server(servers: Servers) -> ServerProcess:
    return servers.start(
        "client-limits",
        {
            "VA_MAX_BODY_BYTES": str(MAX_BODY),
            "VA_MAX_MESSAGES_PER_SECOND": str(PER_SECOND),
            "VA_MAX_SESSIONS_PER_ADDRESS": str(OPEN_PER_ADDRESS),
            "VA_HISTORY_TOKEN_BUDGET": str(TOKEN_BUDGET),
        },
    )


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def realtime(server: ServerProcess) -> websockets.connect:
    return websockets.connect(server.url.replace("http://", "ws://") + "/v1/realtime", max_size=None)


async def next_of(socket: Any, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            event = json.loads(await socket.recv())
            if event["type"] == kind:
                return dict(event)


async def flood(socket: Any, message: dict[str, Any]) -> None:
    """More than the burst at once; the server may close the socket before the last are sent."""
    with contextlib.suppress(websockets.ConnectionClosed):
        for _ in range(PER_SECOND * 10 + 20):
            await socket.send(json.dumps(message))


async def closed(socket: Any) -> tuple[int, str]:
    """How the server closed `socket` (whatever it sent before)."""
    async with asyncio.timeout(20):
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await socket.recv()
    assert socket.close_code is not None
    return socket.close_code, socket.close_reason or ""


def test_a_body_past_the_cap_is_413_on_any_route_declared_or_chunked(http: httpx.Client) -> None:
    error = f"the request body is larger than {MAX_BODY} bytes (VA_MAX_BODY_BYTES)"
    for path in (
        "/api/sessions",
        "/v1/realtime/client_secrets",
        "/telephone/incoming",
        "/gradio_api/queue/join",
    ):
        refused = http.post(path, content=b"x" * (MAX_BODY + 1))
        assert (refused.status_code, refused.json()) == (413, {"error": error}), path

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield from [b'{"session": {"instructions": "' + b"y" * MAX_BODY, b'"}}']

    chunked = http.post("/v1/realtime/client_secrets", content=chunks())
    assert chunked.status_code == 413 and chunked.json()["error"] == error
    assert http.post("/api/sessions", content=b"x" * 1024).status_code == 201


async def test_a_realtime_flood_gets_an_error_and_a_close_with_the_reason(server: ServerProcess) -> None:
    async with realtime(server) as socket:
        await next_of(socket, "session.created")
        await flood(socket, {"type": "input_audio_buffer.clear"})
        error = await next_of(socket, "error")
        assert error["error"]["code"] == "rate_limit_exceeded"
        assert await closed(socket) == (1008, f"too many messages: at most {PER_SECOND} a second")


async def test_a_media_stream_flood_is_closed_with_the_reason_before_its_start(server: ServerProcess) -> None:
    url = server.url.replace("http://", "ws://") + "/telephone/stream"
    async with websockets.connect(url) as socket:
        await flood(socket, {"event": "connected", "protocol": "Call"})
        assert await closed(socket) == (1008, f"too many messages: at most {PER_SECOND} a second")


async def test_typed_words_past_the_token_budget_are_refused(server: ServerProcess) -> None:
    async with realtime(server) as socket:
        await next_of(socket, "session.created")
        content = [{"type": "input_text", "text": "word " * 205}]
        item = {"type": "message", "role": "user", "content": content}
        await socket.send(json.dumps({"type": "conversation.item.create", "item": item}))
        error = (await next_of(socket, "error"))["error"]
        assert error["code"] == "text_too_large"
        limit = TOKEN_BUDGET * 4
        assert error["message"] == f"item.content holds 1025 characters; at most {limit} are taken" + (
            " (VA_HISTORY_TOKEN_BUDGET)"
        )


@pytest.fixture
async def held(server: ServerProcess) -> AsyncIterator[list[Any]]:
    """Realtime connections kept open by the test; closed after it."""
    sockets: list[Any] = []
    yield sockets
    for socket in sockets:
        await socket.close()


async def test_an_address_holds_so_many_connections_open_across_realtime_and_webrtc(
    server: ServerProcess, held: list[Any], offer_sdp: str
) -> None:
    for _ in range(OPEN_PER_ADDRESS):
        held.append(await realtime(server))
        await next_of(held[-1], "session.created")
    async with realtime(server) as refused:
        error = (await next_of(refused, "error"))["error"]
        assert error["code"] == "rate_limit_exceeded"
        assert error["message"].startswith(f"{OPEN_PER_ADDRESS} connections are open from this address")
        assert (await closed(refused))[0] == 1013
    async with httpx.AsyncClient(base_url=server.url) as http:
        offer = {"sdp": offer_sdp, "type": "offer", "webrtc_id": "over-the-cap"}
        webrtc = await http.post("/webrtc/offer", json=offer)
        assert (
            webrtc.status_code == 429 and "connections are open from this address" in webrtc.json()["error"]
        )
        assert webrtc.headers["Retry-After"]

    await held.pop().close()  # its place is free as soon as the server sees the close
    await asyncio.sleep(0.5)
    async with realtime(server) as again:
        assert (json.loads(await again.recv()))["type"] == "session.created"
