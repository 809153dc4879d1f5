"""Public embedding over real HTTP against a real server: site keys bound to origins, CORS, limits.

httpx plays the browser: it sends the `Origin` a page on that origin would send. Requests come from
several loopback addresses (127.0.0.x) so that the per-address rate limit can be seen per address.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from benchmarks.server import ServerProcess
from tests.support.servers import Servers
from voice_assistant.client import VoiceClient

pytestmark = pytest.mark.integration

ADMIN = "test-admin-token"
SHOP, PARTNER, STRANGER = "http://shop.test", "https://partner.test", "http://stranger.test"
PER_ADDRESS = 5


@pytest.fixture(scope="module")
def server(servers: Servers) -> ServerProcess:
    return servers.start(
        "sites",
        {
            "VA_ADMIN_TOKEN": ADMIN,
            "VA_SITES": json.dumps({"shop": [SHOP], "partner": [PARTNER]}),
            "VA_OFFERS_PER_MINUTE_PER_ADDRESS": str(PER_ADDRESS),
            "VA_MAX_CONNECTIONS_PER_KEY": "1",
        },
    )


def client_at(server: ServerProcess, address: str = "127.0.0.1") -> httpx.Client:
    """An HTTP client whose requests leave from `address` (any 127.0.0.x reaches the server)."""
    return httpx.Client(base_url=server.url, timeout=10, transport=httpx.HTTPTransport(local_address=address))


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with client_at(server) as client:
        yield client


def offer(sdp: str, number: int) -> dict[str, str]:
    return {"sdp": sdp, "type": "offer", "webrtc_id": f"rate-{number}-{time.monotonic_ns()}"}


def preflight(http: httpx.Client, origin: str) -> httpx.Response:
    return http.options(
        "/webrtc/offer",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-site-key",
        },
    )


def test_the_preflight_of_an_allowed_origin_is_answered(http: httpx.Client) -> None:
    response = preflight(http, SHOP)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == SHOP
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "x-site-key" in allowed and "content-type" in allowed
    assert "POST" in response.headers["access-control-allow-methods"]


def test_the_preflight_of_another_origin_gets_no_cors_headers(http: httpx.Client) -> None:
    response = preflight(http, STRANGER)
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize(
    ("origin", "key", "message"),
    [
        (STRANGER, None, f"origin {STRANGER} needs a site key"),
        (SHOP, None, f"origin {SHOP} needs a site key"),
        (SHOP, "no-such-key", "unknown site key"),
        (SHOP, "partner", f"origin {SHOP} is not allowed for this site key"),
        (STRANGER, "shop", f"origin {STRANGER} is not allowed for this site key"),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/webrtc/offer"), ("GET", "/webrtc/ice-servers"), ("POST", "/api/sessions")]
)
def test_a_foreign_origin_without_the_right_key_is_403_with_the_reason(
    http: httpx.Client, origin: str, key: str | None, message: str, method: str, path: str
) -> None:
    headers = {"Origin": origin, **({"X-Site-Key": key} if key else {})}
    response = http.request(method, path, json={}, headers=headers)
    assert response.status_code == 403
    assert response.json()["error"].startswith(message)
    # A page on an allowed origin may read why it was refused; any other page gets no CORS headers.
    assert response.headers.get("access-control-allow-origin") == (SHOP if origin == SHOP else None)


def test_an_allowed_origin_with_its_key_is_served_with_cors_headers(http: httpx.Client) -> None:
    headers = {"Origin": PARTNER, "X-Site-Key": "partner"}
    created = http.post("/api/sessions", headers=headers)
    assert created.status_code == 201
    assert created.headers["access-control-allow-origin"] == PARTNER
    assert "retry-after" in created.headers["access-control-expose-headers"].lower()
    session = http.get(f"/api/sessions/{created.json()['session_id']}", headers=headers)
    assert session.status_code == 200 and session.json()["turns"] == []
    ice = http.get("/webrtc/ice-servers", headers=headers)  # what the widget asks before it offers
    assert ice.status_code == 200 and ice.json() == {"iceServers": []}  # this server names none
    assert ice.headers["access-control-allow-origin"] == PARTNER
    assert ice.headers["cache-control"] == "no-store"
    # A site key opens the widget's routes, not the admin's: listing sessions still needs the token.
    listing = http.get("/api/sessions", headers=headers)
    assert listing.status_code == 401 and "admin token" in listing.json()["error"]


def test_the_servers_own_pages_and_clients_without_origin_need_no_key(
    http: httpx.Client, server: ServerProcess
) -> None:
    assert http.post("/api/sessions", headers={"Origin": server.url}).status_code == 201
    assert http.post("/api/sessions").status_code == 201
    listing = http.get("/api/sessions", headers={"Authorization": f"Bearer {ADMIN}"})
    assert listing.status_code == 200 and listing.json()["sessions"]


def test_new_connections_past_the_rate_of_an_address_get_429_with_retry_after(
    server: ServerProcess, offer_sdp: str
) -> None:
    with client_at(server, "127.0.0.3") as busy, client_at(server, "127.0.0.4") as other:
        offers = [offer(offer_sdp, number) for number in range(PER_ADDRESS + 1)]
        for body in offers[:-1]:
            assert busy.post("/webrtc/offer", json=body).status_code == 200
        refused = busy.post("/webrtc/offer", json=offers[-1])
        assert refused.status_code == 429
        assert "too many new connections from this address" in refused.json()["error"]
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        # ICE candidates are not new connections, and another address has its own allowance.
        trickled = {
            "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host generation 0",
            "sdpMid": "0",
        }
        candidate = {"type": "ice-candidate", "webrtc_id": offers[0]["webrtc_id"], "candidate": trickled}
        assert busy.post("/webrtc/offer", json=candidate).status_code == 200
        assert other.post("/webrtc/offer", json=offer(offer_sdp, 0)).status_code == 200


async def test_a_site_key_holds_at_most_its_connections_open(server: ServerProcess) -> None:
    shop = {"Origin": SHOP, "X-Site-Key": "shop"}
    first = VoiceClient(server.url, headers=shop)
    second = VoiceClient(server.url, headers=shop)
    partner = VoiceClient(server.url, headers={"Origin": PARTNER, "X-Site-Key": "partner"})
    try:
        await first.connect()
        with pytest.raises(ConnectionRefusedError, match="503.*connections open"):
            await second.connect()
        await partner.connect()  # another site key has its own allowance
        await first.close()
        async with asyncio.timeout(15):  # the server notices the closed connection
            while True:
                retry = VoiceClient(server.url, headers=shop)
                try:
                    await retry.connect()
                    break
                except ConnectionRefusedError:
                    await retry.close()
                    await asyncio.sleep(0.5)
        await retry.close()
    finally:
        for client in (first, second, partner):
            await client.close()


def test_the_widget_script_and_the_demo_page_are_served(http: httpx.Client) -> None:
    script = http.get("/widget.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "max-age=" in script.headers["cache-control"]
    assert "voice-assistant-widget" in script.text
    demo = http.get("/demo")
    assert demo.status_code == 200 and demo.headers["content-type"].startswith("text/html")
    assert '<script src="/widget.js"' in demo.text
