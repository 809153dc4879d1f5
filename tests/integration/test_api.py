"""The client contract over real HTTP against a real server process: sessions API, export, retention,
offers, health."""

from __future__ import annotations

import asyncio
import io
import json
import time
import zipfile
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import httpx
import numpy as np
import pytest
import soundfile as sf
import yaml

from benchmarks.server import ServerProcess
from tests.support.servers import Servers
from voice_assistant.client import OfferRefused, VoiceClient
from voice_assistant.history.store import HistoryStore, NewTurn

pytestmark = pytest.mark.integration

ADMIN = "test-admin-token"
FORM = "application/x-www-form-urlencoded"

T = TypeVar("T")


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
        ("GET", "/api/sessions/0123456789abcdef0123456789abcdef/export"),
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


def on_store(database: Path, work: Callable[[HistoryStore], Awaitable[T]]) -> T:
    """`work` done on a store of a server's SQLite file: another instance on it, to the server."""

    async def run() -> T:
        store = HistoryStore(f"sqlite:///{database}")
        try:
            return await work(store)
        finally:
            store.close()

    return asyncio.run(run())


def test_an_export_holds_the_session_and_each_spoken_turns_audio(
    http: httpx.Client, server: ServerProcess
) -> None:
    session_id = http.post("/api/sessions").json()["session_id"]

    async def three_turns(store: HistoryStore) -> None:
        for seconds, words in ((1.5, None), (0.0, "typed, not spoken"), (0.7, None)):
            at = datetime.now(UTC)
            audio = np.full(int(seconds * 16_000), 0.2, dtype=np.float32)
            await store.add_turn(session_id, NewTurn(audio, at, at, at, transcript=words))

    on_store(server.data_dir / "voice_assistant.db", three_turns)
    response = http.get(f"/api/sessions/{session_id}/export")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    assert f"session-{session_id}.zip" in response.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.namelist() == ["session.json", "turns/0.flac", "turns/2.flac"]  # 1 was typed
        exported = json.loads(archive.read("session.json"))
        assert datetime.fromisoformat(exported.pop("exported_at")) <= datetime.now(UTC)
        assert exported == http.get(f"/api/sessions/{session_id}").json()
        for index, samples in ((0, 24_000), (2, 11_200)):
            audio, rate = sf.read(io.BytesIO(archive.read(f"turns/{index}.flac")))
            assert (rate, len(audio)) == (16_000, samples)
            assert exported["turns"][index]["audio_seconds"] == samples / 16_000


def test_a_server_with_retention_deletes_the_idle_sessions_at_start(tmp_path: Path) -> None:
    now = datetime.now(UTC)

    async def sessions(store: HistoryStore) -> list[str]:
        return [await store.create_session(now=now - timedelta(days=days)) for days in (31, 29)]

    idle, recent = on_store(tmp_path / "voice_assistant.db", sessions)
    server = ServerProcess(tmp_path, env={"VA_RETENTION_DAYS": "30"})
    try:
        server.start()
        with httpx.Client(base_url=server.url, timeout=10) as http:
            deadline = time.monotonic() + 10  # the sweep runs beside the model's loading
            while http.get(f"/api/sessions/{idle}").status_code != 404 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert http.get(f"/api/sessions/{idle}").status_code == 404
            assert http.get(f"/api/sessions/{recent}").status_code == 200
    finally:
        server.stop()


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
        # Past VA_MAX_BODY_BYTES (1 MiB): refused before Starlette holds it whole.
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


@pytest.mark.parametrize("path", ["/api/sessions/x/turns//audio", "/api/nothing", "/api/sessions/x/turns"])
def test_a_path_under_the_api_that_names_no_route_is_a_json_404(http: httpx.Client, path: str) -> None:
    response = http.get(path)
    assert response.status_code == 404 and response.json()["error"].startswith("no such route: GET")


def test_a_body_past_the_limit_is_refused_as_it_streams_in(http: httpx.Client) -> None:
    """No Content-Length (chunked): refused once 1 MiB has arrived, not once all of it is held."""

    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b" " * 65_536

    response = http.post("/webrtc/offer", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "VA_MAX_BODY_BYTES" in response.json()["error"]
