"""The `VA_ICE_ADDRESSES` value: where WebRTC media may flow, and under which address it is announced.

`127.0.0.1` gathers host candidates on loopback only (tests, benchmarks); `10.0.0.5=203.0.113.7` binds
10.0.0.5 and announces 203.0.113.7 in the SDP, as a server behind a 1:1 NAT (a cloud VM's elastic
address) must. Entries are comma-separated. The value is parsed here, outside `transport/`, so that
`config` (which every layer imports) imports no transport; `transport/ice.py` applies it to aiortc.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Annotated

from pydantic import BeforeValidator
from pydantic_settings import NoDecode

IpAddress = IPv4Address | IPv6Address
FORMAT = "LOCAL or LOCAL=ANNOUNCED, comma-separated, e.g. 127.0.0.1 or 10.0.0.5=203.0.113.7"


@dataclass(frozen=True)
class IceAddress:
    """One host candidate: the local address its socket binds to, and the address put in the SDP."""

    local: IpAddress
    announced: IpAddress


def _address(text: str, entry: str) -> IpAddress:
    text, entry = text.strip(), entry.strip()
    where = "" if text == entry else f" (in {entry!r})"
    try:
        address = ip_address(text)
    except ValueError:
        raise ValueError(f"{text!r}{where} is not an IP address; the format: {FORMAT}") from None
    if address.is_unspecified or address.is_multicast:
        raise ValueError(f"{address}{where} is not the address of one interface; the format: {FORMAT}")
    if isinstance(address, IPv6Address) and address.is_link_local:
        # A link-local address needs its interface's scope, which an SDP candidate cannot carry.
        raise ValueError(f"{address}{where} is link-local: WebRTC candidates cannot use it")
    return address


def parse_ice_addresses(text: str) -> tuple[IceAddress, ...]:
    """`LOCAL[=ANNOUNCED],...`; blank: none (aioice's choice: every interface but loopback)."""
    if not text.strip():
        return ()
    addresses: list[IceAddress] = []
    for entry in text.split(","):
        local_text, has_announced, announced_text = entry.partition("=")
        local = _address(local_text, entry)
        announced = _address(announced_text, entry) if has_announced else local
        if announced.version != local.version:
            # ICE pairs candidates of one IP version: a peer would pair the announced address with
            # candidates the socket cannot reach.
            raise ValueError(
                f"{entry.strip()!r} announces an IPv{announced.version} address for an IPv{local.version} one"
            )
        if any(known.local == local for known in addresses):
            raise ValueError(f"{local} is listed twice")
        addresses.append(IceAddress(local=local, announced=announced))
    return tuple(addresses)


def _parsed(value: object) -> object:
    return parse_ice_addresses(value) if isinstance(value, str) else value


IceAddresses = Annotated[tuple[IceAddress, ...], NoDecode, BeforeValidator(_parsed)]
"""A `Settings` field type: read from the plain string, not as JSON."""
