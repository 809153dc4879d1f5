"""Properties of site keys and origins: an origin normalizes to the one form browsers send, once and for
all; any text is an origin or a ValueError; any header a page sends is admitted or a SiteRefused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voice_assistant.config import normalized_origin
from voice_assistant.web.sites import SiteRefused, Sites

pytestmark = pytest.mark.unit

hosts = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?(\.[a-zA-Z]{2,6}){0,2}", fullmatch=True)
schemes = st.sampled_from(["http", "https", "HTTP", "Https"])
ports = st.none() | st.integers(1, 65535)


def origin(scheme: str, host: str, port: int | None, slash: bool) -> str:
    return f"{scheme}://{host}" + (f":{port}" if port is not None else "") + ("/" if slash else "")


@settings(max_examples=300)
@given(st.text(max_size=60) | st.builds(origin, schemes, st.text(max_size=20), ports, st.booleans()))
def test_any_text_is_an_origin_or_a_value_error(text: str) -> None:
    try:
        normalized = normalized_origin(text)
    except ValueError:
        return
    assert normalized_origin(normalized) == normalized


@settings(max_examples=200)
@given(schemes, hosts, ports, st.booleans())
def test_an_origin_normalizes_to_what_a_browser_sends(
    scheme: str, host: str, port: int | None, slash: bool
) -> None:
    """Lower case, no path, no default port; and a normalized origin is its own normal form."""
    normalized = normalized_origin(origin(scheme, host, port, slash))
    default = {"http": 80, "https": 443}[scheme.lower()]
    shown_port = f":{port}" if port not in (None, default) else ""
    assert normalized == f"{scheme.lower()}://{host.lower()}{shown_port}"
    assert normalized_origin(normalized) == normalized


origins = st.builds(
    origin, schemes, st.sampled_from(["shop.example", "Partner.example", "10.0.0.1"]), ports, st.just(False)
)


@settings(max_examples=200)
@given(st.dictionaries(st.text(max_size=8), st.lists(origins, max_size=3), max_size=3), st.data())
def test_any_origin_and_key_are_admitted_by_a_key_that_allows_them_or_refused(
    sites: dict[str, list[str]], data: st.DataObject
) -> None:
    own = {"https://assistant.example"}
    allowed = sorted({normalized_origin(o) for origins in sites.values() for o in origins})
    pages = st.none() | st.sampled_from(sorted(own)) | st.text(max_size=40) | origins
    page = data.draw(pages | st.sampled_from(allowed) if allowed else pages)
    key = data.draw(
        st.none() | st.text(max_size=8) | (st.sampled_from(sorted(sites)) if sites else st.none())
    )
    try:
        admitted = Sites(sites).admit(page, key, own=own)
    except SiteRefused as refusal:
        assert str(refusal) and page is not None and page not in own
        return
    if admitted is None:
        assert page is None or page in own
    else:
        assert admitted == key and page in {normalized_origin(o) for o in sites[key]}
