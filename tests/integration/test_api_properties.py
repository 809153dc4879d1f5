"""Properties of the REST routes over real HTTP against a real server process, as tests/integration/
test_api.py drives them: any path parameter, query or body is answered, and any refusal is a 4xx with a
JSON `error`, never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.server import ServerProcess
from tests.support.servers import Servers
from tests.support.strategies import json_objects, json_values

pytestmark = pytest.mark.integration

ADMIN = "properties-admin-token"
segments = st.text(st.characters(exclude_characters="/"), min_size=1, max_size=40).filter(
    lambda text: text not in (".", "..")
) | st.from_regex(r"[0-9a-f]{32}", fullmatch=True)
"""One path segment (a `/`, `.` or `..` makes another path, which is Gradio's): anything, or what a session
id looks like."""
numbers = st.integers().map(str) | st.text(max_size=12)
bodies = st.binary(max_size=200) | json_values.map(lambda value: json.dumps(value).encode())
"""JSON as Python writes it: NaN, the infinities and lone surrogates (escaped) included."""
content_types = st.sampled_from(
    ["application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
)


@pytest.fixture(scope="module")
def server(servers: Servers) -> ServerProcess:
    return servers.start("api-properties", {"VA_ADMIN_TOKEN": ADMIN, "VA_MAX_SESSIONS": "2"})


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def answered(response: httpx.Response) -> httpx.Response:
    """A 2xx, or a 4xx whose JSON body says why."""
    assert response.status_code < 500, (response.request.url, response.text)
    if response.status_code >= 400:
        assert response.json()["error"], response.text
    return response


@settings(max_examples=100)
@given(
    segments,
    numbers,
    st.sampled_from([("GET", ""), ("GET", "/events"), ("GET", "/turns/{}/audio"), ("DELETE", "")]),
)
def test_any_session_path_is_answered(
    http: httpx.Client, session_id: str, index: str, route: tuple[str, str]
) -> None:
    method, tail = route
    path = f"/api/sessions/{quote(session_id, safe='')}" + tail.format(quote(index, safe=""))
    with http.stream(method, path) as response:
        if response.status_code != 200:  # the event stream of a known session would not end: not read
            response.read()
        answered(response)


@settings(max_examples=100)
@given(numbers, numbers, st.sampled_from(["", f"Bearer {ADMIN}", "Bearer wrong", "Basic x"]))
def test_any_listing_query_is_answered(
    http: httpx.Client, limit: str, offset: str, authorization: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    answered(http.get("/api/sessions", params={"limit": limit, "offset": offset}, headers=headers))


@settings(max_examples=150)
@given(
    st.sampled_from(["/webrtc/offer", "/v1/realtime/client_secrets", "/telephone/incoming", "/api/sessions"]),
    bodies,
    content_types,
)
def test_any_body_to_a_route_that_takes_one_is_answered(
    http: httpx.Client, path: str, body: bytes, content_type: str
) -> None:
    answered(http.post(path, content=body, headers={"Content-Type": content_type}))


@settings(max_examples=100)
@given(json_objects(["sdp", "type", "webrtc_id", "session_id", "candidate"]))
def test_any_offer_shaped_object_is_answered(http: httpx.Client, fields: dict[str, Any]) -> None:
    answered(http.post("/webrtc/offer", content=json.dumps(fields).encode()))


@settings(max_examples=100)
@given(
    json_objects(["session", "expires_after"]),
    json_objects(["instructions", "turn_detection", "audio", "type"]),
)
def test_any_client_secret_request_is_answered(
    http: httpx.Client, request: dict[str, Any], session: dict[str, Any]
) -> None:
    for body in (request, {**request, "session": session}):
        answered(http.post("/v1/realtime/client_secrets", content=json.dumps(body).encode()))
