"""Site keys, origins and connection limits, without a server; and the packaged widget files."""

from __future__ import annotations

import re
from collections.abc import Container
from pathlib import Path

import pytest
from pydantic import ValidationError
from starlette.requests import Request

from tests.fakes import FakeClock, InlineStore
from voice_assistant.config import Settings
from voice_assistant.history.leases import Leases
from voice_assistant.web.errors import ApiError
from voice_assistant.web.sites import ConnectionLimits, SiteRefused, Sites
from voice_assistant.web.widget import STATIC

pytestmark = pytest.mark.unit

OWN = {"https://assistant.example"}
SITES = Sites({"shop": ["https://Shop.example:443/"], "partner": ["http://localhost:8080"]})


@pytest.mark.parametrize(
    ("origin", "key", "admitted"),
    [
        (None, None, None),  # not a browser
        (None, "shop", None),
        ("https://assistant.example", None, None),  # the server's own pages
        ("https://shop.example", "shop", "shop"),
        ("http://localhost:8080", "partner", "partner"),
    ],
)
def test_who_is_admitted(origin: str | None, key: str | None, admitted: str | None) -> None:
    assert SITES.admit(origin, key, own=OWN) == admitted


@pytest.mark.parametrize(
    ("origin", "key", "reason"),
    [
        ("https://shop.example", None, "origin https://shop.example needs a site key (X-Site-Key)"),
        ("https://shop.example", "", "needs a site key"),
        ("https://shop.example", "nope", "unknown site key"),
        ("https://shop.example", "partner", "origin https://shop.example is not allowed for this site key"),
        ("http://shop.example", "shop", "origin http://shop.example is not allowed for this site key"),
        ("null", "shop", "origin null is not allowed"),  # a sandboxed frame or a file
    ],
)
def test_who_is_refused_and_why(origin: str, key: str | None, reason: str) -> None:
    with pytest.raises(SiteRefused, match=re.escape(reason)):
        SITES.admit(origin, key, own=OWN)


def test_the_cors_origins_are_those_of_every_key() -> None:
    assert SITES.origins == ["http://localhost:8080", "https://shop.example"]


def test_sites_are_read_from_json_and_a_url_that_is_no_origin_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VA_SITES", '{"shop": ["HTTPS://Shop.Example/"]}')
    assert Settings().web.sites == {"shop": ["https://shop.example"]}
    monkeypatch.setenv("VA_SITES", '{"shop": ["https://shop.example/checkout"]}')
    with pytest.raises(ValidationError, match="is not an origin"):
        Settings()


def request(address: str, site_key: str | None) -> Request:
    return Request({"type": "http", "client": (address, 40000), "state": {"site_key": site_key}})


def limits_on(
    store: InlineStore, clock: FakeClock, live: Container[str] = (), **settings: int
) -> ConnectionLimits:
    leases = Leases(store, ttl_s=30, clock=clock)
    return ConnectionLimits(Settings(**settings), store=store, leases=leases, live=live, clock=clock)


async def test_new_connections_are_limited_per_address_and_per_key(inline_store: InlineStore) -> None:
    clock = FakeClock()
    limits = limits_on(inline_store, clock, offers_per_minute_per_address=2, offers_per_minute_per_key=2)
    await limits.admit(request("10.0.0.1", None))
    clock.advance(20)
    await limits.admit(request("10.0.0.1", "shop"))
    with pytest.raises(ApiError) as refused:
        await limits.admit(request("10.0.0.1", None))
    assert refused.value.status_code == 429 and "from this address" in str(refused.value.detail)
    # A moving window: the first of the two leaves it 40 s from now.
    assert refused.value.headers == {"Retry-After": "40"}

    await limits.admit(request("10.0.0.2", "shop"))
    with pytest.raises(ApiError, match="this site key") as by_key:
        await limits.admit(request("10.0.0.3", "shop"))  # a fresh address, but the key's third this minute
    assert by_key.value.status_code == 429
    await limits.admit(request("10.0.0.3", "partner"))
    clock.advance(40)
    await limits.admit(request("10.0.0.1", None))  # the window moved on


async def test_the_limits_are_the_databases_shared_by_every_instance(inline_store: InlineStore) -> None:
    clock = FakeClock()
    a, b = (limits_on(inline_store, clock, offers_per_minute_per_address=2) for _ in range(2))
    await a.admit(request("10.0.0.1", None))
    await b.admit(request("10.0.0.1", None))
    with pytest.raises(ApiError, match="from this address"):
        await a.admit(request("10.0.0.1", None))


async def test_a_site_key_holds_so_many_open_connections_and_a_closed_one_frees_its_place(
    inline_store: InlineStore,
) -> None:
    live: set[str] = set()
    limits = limits_on(inline_store, FakeClock(), live, max_connections_per_key=2, retry_after_s=9)
    for webrtc_id in ("a", "b"):
        await limits.hold(request("10.0.0.1", "shop"), webrtc_id)
        live.add(webrtc_id)  # what fastrtc does when it creates the connection
    with pytest.raises(ApiError, match="2 connections open") as full:
        await limits.admit(request("10.0.0.9", "shop"))
    assert full.value.status_code == 503 and full.value.headers == {"Retry-After": "9"}
    with pytest.raises(ApiError, match="2 connections open") as raced:
        await limits.hold(request("10.0.0.9", "shop"), "c")
    assert raced.value.headers == {"Retry-After": "9"}
    await limits.hold(request("10.0.0.1", "partner"), "p")  # another key
    await limits.hold(request("10.0.0.1", None), "n")  # no key: only the server's overall limit applies
    live.discard("a")  # closed
    await limits.hold(request("10.0.0.1", "shop"), "c")


async def test_an_address_holds_so_many_open_connections_on_every_instance_and_a_closed_one_frees_its_place(
    inline_store: InlineStore,
) -> None:
    live: set[str] = set()
    clock = FakeClock()
    a, b = (limits_on(inline_store, clock, live, max_sessions_per_address=2, retry_after_s=9) for _ in "ab")
    await a.hold(request("10.0.0.1", None), "webrtc-1")
    live.add("webrtc-1")
    await b.hold(request("10.0.0.1", None), "realtime-1", alive=lambda: True)  # until released
    with pytest.raises(ApiError, match="2 connections are open from this address") as full:
        await a.hold(request("10.0.0.1", "shop"), "webrtc-2")
    assert full.value.status_code == 429 and full.value.headers == {"Retry-After": "9"}
    await a.hold(request("10.0.0.2", "shop"), "webrtc-3")  # another address
    live.add("webrtc-3")
    live.discard("webrtc-1")  # closed
    await a.hold(request("10.0.0.1", None), "webrtc-4")
    live.add("webrtc-4")
    with pytest.raises(ApiError, match="from this address"):
        await a.hold(request("10.0.0.1", None), "webrtc-5")
    await b.release("realtime-1")
    await a.hold(request("10.0.0.1", None), "webrtc-5")


async def test_a_connection_its_site_key_refuses_holds_no_place_of_its_address(
    inline_store: InlineStore,
) -> None:
    live: set[str] = set()
    limits = limits_on(inline_store, FakeClock(), live, max_sessions_per_address=2, max_connections_per_key=1)
    await limits.hold(request("10.0.0.1", "shop"), "a")
    live.add("a")
    with pytest.raises(ApiError, match="this site has 1 connections open"):
        await limits.hold(request("10.0.0.1", "shop"), "b", alive=lambda: True)
    await limits.hold(request("10.0.0.1", None), "c")  # b's place was given back


def test_the_demo_page_in_assets_is_the_packaged_one() -> None:
    assets = Path(__file__).parents[2] / "assets" / "demo.html"
    assert assets.resolve() == (STATIC / "demo.html").resolve()  # one page, served by an installed server too
    assert 'src="/widget.js"' in assets.read_text()
