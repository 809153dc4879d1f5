"""Site keys, origins and connection limits, without a server; and the packaged widget files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError
from starlette.requests import Request

from voice_assistant.config import Settings
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


def test_new_connections_are_limited_per_address_and_per_key() -> None:
    limits = ConnectionLimits(
        Settings(offers_per_minute_per_address=2, offers_per_minute_per_key=2), live=set()
    )
    limits.admit(request("10.0.0.1", None))
    limits.admit(request("10.0.0.1", "shop"))
    with pytest.raises(ApiError) as refused:
        limits.admit(request("10.0.0.1", None))
    assert refused.value.status_code == 429 and "from this address" in str(refused.value.detail)
    assert refused.value.headers is not None and 1 <= int(refused.value.headers["Retry-After"]) <= 60

    limits.admit(request("10.0.0.2", "shop"))
    with pytest.raises(ApiError, match="this site key") as by_key:
        limits.admit(request("10.0.0.3", "shop"))  # a fresh address, but the key's third this minute
    assert by_key.value.status_code == 429
    limits.admit(request("10.0.0.3", "partner"))


def test_a_site_key_holds_so_many_open_connections_and_a_closed_one_frees_its_place() -> None:
    live: set[str] = set()
    limits = ConnectionLimits(Settings(max_connections_per_key=2), live=live)
    for webrtc_id in ("a", "b"):
        limits.hold(request("10.0.0.1", "shop"), webrtc_id)
        live.add(webrtc_id)  # what fastrtc does when it creates the connection
    with pytest.raises(ApiError, match="2 connections open") as full:
        limits.admit(request("10.0.0.9", "shop"))
    assert full.value.status_code == 503
    with pytest.raises(ApiError, match="2 connections open"):
        limits.hold(request("10.0.0.9", "shop"), "c")
    limits.hold(request("10.0.0.1", "partner"), "p")  # another key
    limits.hold(request("10.0.0.1", None), "n")  # no key: only the server's overall limit applies
    live.discard("a")  # closed
    limits.hold(request("10.0.0.1", "shop"), "c")


def test_the_demo_page_in_assets_is_the_packaged_one() -> None:
    assets = Path(__file__).parents[2] / "assets" / "demo.html"
    assert assets.resolve() == (STATIC / "demo.html").resolve()  # one page, served by an installed server too
    assert 'src="/widget.js"' in assets.read_text()
