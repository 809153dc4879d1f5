"""The client contract over real HTTP against a real server process: sessions API, offers, health."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from benchmarks.server import ServerProcess
from tests.support.servers import Servers
from voice_assistant.client import OfferRefused, VoiceClient

pytestmark = pytest.mark.integration

ADMIN = "test-admin-token"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def server(servers: Servers) -> ServerProcess:
    return servers.start("api", {"VA_ADMIN_TOKEN": ADMIN, "VA_MAX_SESSIONS": "2"})


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def test_health_readiness_and_metrics(http: httpx.Client, server: ServerProcess) -> None:
    assert http.get("/healthz").json() == {"status": "live"}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    print(f"\nserve -> ready: {server.ready_after_s:.2f} s (process start to /readyz 200)")
    metrics = http.get("/metrics").text
    for name in (
        "va_turns_total",
        "va_endpointing_seconds_bucket",
        "va_reply_first_delta_seconds_bucket",
        "va_live_sessions",
        "va_errors_total",
    ):
        assert name in metrics


def test_the_kubernetes_examples_probes_are_answered(http: httpx.Client) -> None:
    deployment = yaml.safe_load((Path(__file__).parents[2] / "deploy/k8s/deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert http.get(container[probe]["httpGet"]["path"]).status_code == 200, probe


def test_sessions_are_created_read_and_deleted(http: httpx.Client) -> None:
    created = http.post("/api/sessions")
    assert created.status_code == 201
    session_id = created.json()["session_id"]
    assert len(session_id) == 32
    body = http.get(f"/api/sessions/{session_id}").json()
    assert body["session_id"] == session_id and body["turns"] == [] and body["turn_count"] == 0
    assert http.delete(f"/api/sessions/{session_id}").status_code == 204
    gone = http.get(f"/api/sessions/{session_id}")
    assert gone.status_code == 404 and "unknown session" in gone.json()["error"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/sessions/0123456789abcdef0123456789abcdef"),
        ("DELETE", "/api/sessions/0123456789abcdef0123456789abcdef"),
        ("GET", "/api/sessions/nope/turns/0/audio"),
        ("GET", "/api/sessions/nope/events"),
    ],
)
def test_unknown_sessions_are_404_with_a_json_error(http: httpx.Client, method: str, path: str) -> None:
    response = http.request(method, path)
    assert response.status_code == 404
    assert "error" in response.json()


def test_a_missing_turn_is_404(http: httpx.Client) -> None:
    session_id = http.post("/api/sessions").json()["session_id"]
    response = http.get(f"/api/sessions/{session_id}/turns/0/audio")
    assert response.status_code == 404 and "no turn 0" in response.json()["error"]


def test_listing_sessions_needs_the_admin_token(http: httpx.Client) -> None:
    session_id = http.post("/api/sessions").json()["session_id"]
    assert http.get("/api/sessions").status_code == 401
    assert http.get("/api/sessions", headers={"Authorization": "Bearer wrong"}).status_code == 401
    listed = http.get("/api/sessions", headers={"Authorization": f"Bearer {ADMIN}"})
    assert listed.status_code == 200
    first = listed.json()["sessions"][0]
    assert first["session_id"] == session_id and first["turn_count"] == 0


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"not json", 400, "not JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b"[" * 100_000, 400, "nested deeper"),
        (
            b'{"type": "ice-candidate", "webrtc_id": "nope", "candidate": {"candidate": ""}}',
            404,
            "unknown_conn",
        ),
        (b'{"type": "ice-candidate", "webrtc_id": "nope", "candidate": 5}', 400, "candidate"),
        (b'{"type": "ice-candidate", "webrtc_id": "nope", "candidate": {"candidate": []}}', 400, "candidate"),
        (b'{"type": "offer", "webrtc_id": "a"}', 400, "sdp"),
        (b'{"sdp": "v=0", "type": "answer", "webrtc_id": "a"}', 400, "type"),
        (b'{"sdp": "v=0", "type": "offer"}', 400, "webrtc_id"),
        (b'{"sdp": "this is not sdp", "type": "offer", "webrtc_id": "b"}', 400, "no audio section"),
        (b'{"sdp": "v=0\\r\\nm=audio x", "type": "offer", "webrtc_id": "d"}', 400, "malformed offer"),
        (b'{"sdp": "' + b"a" * 200_000 + b'", "type": "offer", "webrtc_id": "c"}', 413, "too large"),
    ],
)
def test_malformed_offers_get_a_clear_json_error(
    http: httpx.Client, body: bytes, status: int, message: str
) -> None:
    response = http.post("/webrtc/offer", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status
    assert message in response.json()["error"]


async def test_an_offer_for_an_unknown_session_is_404(server: ServerProcess) -> None:
    client = VoiceClient(server.url, session_id="f" * 32)
    with pytest.raises(ConnectionRefusedError, match="404"):
        await client.connect()
    await client.close()


async def test_connections_past_the_limit_are_refused_with_503(server: ServerProcess) -> None:
    clients = [VoiceClient(server.url) for _ in range(3)]
    try:
        await clients[0].connect()
        await clients[1].connect()
        with pytest.raises(OfferRefused, match="503") as refused:
            await clients[2].connect()
        assert refused.value.retry_after == 5  # VA_RETRY_AFTER_S
        async with httpx.AsyncClient(base_url=server.url) as http:
            ready = await http.get("/readyz")  # full: a load balancer sends new work elsewhere
        assert ready.status_code == 503 and ready.json()["status"] == "full"
    finally:
        for client in clients:
            await client.close()


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "status"),
    [
        # Past what the store's integers hold (SQLite raised OverflowError: a 500).
        ("GET", "/api/sessions/0123/turns/99999999999999999999/audio", None, None, 422),
        ("GET", "/api/sessions/0123/turns/-99999999999999999999/audio", None, None, 422),
        ("GET", f"/api/sessions?offset={10**20}", None, None, 422),
        ("GET", "/api/sessions?limit=abc", None, None, 422),
        # Bytes, and a lone surrogate, once echoed in the 422 (a 500: neither renders as UTF-8 JSON).
        ("POST", "/v1/realtime/client_secrets", b"\xff\xfe", "text/plain", 400),
        ("POST", "/v1/realtime/client_secrets", b'"\\ud800"', "application/json", 400),
        ("POST", "/v1/realtime/client_secrets", b'{"session": ' * 40 + b"{}" + b"}" * 40, None, 400),
        ("POST", "/v1/realtime/client_secrets", b"{" + b" " * 70_000 + b"}", None, 413),
        # Past MAX_BODY_BYTES (1 MiB): refused before Starlette holds it whole.
        ("POST", "/telephone/incoming", b"From=" + b"1" * 2_000_000, FORM, 413),
        # A form python-multipart cannot parse, which Starlette let through (a 500).
        ("POST", "/telephone/incoming", b"\xff" * 10, "multipart/form-data; boundary=x", 400),
    ],
)
def test_request_errors_are_json_never_a_500(
    http: httpx.Client, method: str, path: str, body: bytes | None, content_type: str | None, status: int
) -> None:
    headers = {"Authorization": f"Bearer {ADMIN}", **({"Content-Type": content_type} if content_type else {})}
    response = http.request(method, path, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["error"]


def test_a_client_secret_echoes_its_session_whatever_text_it_holds(http: httpx.Client) -> None:
    """A lone surrogate (a JSON escape) goes back as it came, escaped, not as a 500."""
    body = b'{"session": {"instructions": "be \\ud800 brief", "metadata": {"\\udfff": 1}}}'
    response = http.post("/v1/realtime/client_secrets", content=body)
    assert response.status_code == 200
    assert response.json()["session"]["instructions"] == "be \ud800 brief"
    assert response.json()["session"]["metadata"] == {"\udfff": 1}  # a key too (pydantic failed on it)


def test_a_body_past_the_limit_is_refused_as_it_streams_in(http: httpx.Client) -> None:
    """No Content-Length (chunked): refused once 1 MiB has arrived, not once all of it is held."""

    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b" " * 65_536

    response = http.post("/webrtc/offer", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "too large" in response.json()["error"]
