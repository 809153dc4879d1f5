"""`VA_ICE_ADDRESSES`: where WebRTC host candidates are gathered and what they announce."""

from __future__ import annotations

import re
from ipaddress import ip_address

import pytest
from pydantic import ValidationError

from voice_assistant.config import Settings
from voice_assistant.ice_addresses import IceAddress, parse_ice_addresses

pytestmark = pytest.mark.unit


def entry(local: str, announced: str | None = None) -> IceAddress:
    return IceAddress(local=ip_address(local), announced=ip_address(announced or local))


def test_unset_and_blank_leave_aioice_s_choice() -> None:
    assert Settings().web.ice_addresses == ()
    assert parse_ice_addresses("") == parse_ice_addresses("  ") == ()


def test_an_address_alone_is_gathered_and_announced_as_it_is() -> None:
    assert parse_ice_addresses("127.0.0.1") == (entry("127.0.0.1"),)


def test_behind_a_one_to_one_nat_the_public_address_is_announced_for_the_local_one() -> None:
    assert parse_ice_addresses("10.0.0.5=203.0.113.7") == (entry("10.0.0.5", "203.0.113.7"),)


def test_entries_are_comma_separated_in_order_spaces_aside_ipv6_included() -> None:
    assert parse_ice_addresses(" 127.0.0.1 , 10.0.0.5 = 203.0.113.7,::1,fd00::2=2001:db8::7") == (
        entry("127.0.0.1"),
        entry("10.0.0.5", "203.0.113.7"),
        entry("::1"),
        entry("fd00::2", "2001:db8::7"),
    )


def test_the_environment_variable_is_read_as_text_not_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VA_ICE_ADDRESSES", "10.0.0.5=203.0.113.7")
    assert Settings().web.ice_addresses == (entry("10.0.0.5", "203.0.113.7"),)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("eth0", "'eth0' is not an IP address; the format: LOCAL or LOCAL=ANNOUNCED"),
        ("10.0.0.5=public", "'public' (in '10.0.0.5=public') is not an IP address"),
        ("10.0.0.5=", "'' (in '10.0.0.5=') is not an IP address"),
        ("127.0.0.1,", "'' is not an IP address"),
        ("10.0.0.5:8000", "'10.0.0.5:8000' is not an IP address"),
        ("0.0.0.0", "0.0.0.0 is not the address of one interface"),
        ("10.0.0.5=::", ":: (in '10.0.0.5=::') is not the address of one interface"),
        ("224.0.0.251", "224.0.0.251 is not the address of one interface"),
        ("fe80::1", "fe80::1 is link-local"),
        ("10.0.0.5=2001:db8::7", "'10.0.0.5=2001:db8::7' announces an IPv6 address for an IPv4 one"),
        ("127.0.0.1, 127.0.0.1=10.0.0.5", "127.0.0.1 is listed twice"),
    ],
)
def test_a_malformed_value_is_refused_with_what_is_wrong(
    monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_ice_addresses(value)
    monkeypatch.setenv("VA_ICE_ADDRESSES", value)
    with pytest.raises(ValidationError, match=rf"VA_ICE_ADDRESSES\n.*{re.escape(says)}"):
        Settings()
