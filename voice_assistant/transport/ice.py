"""WebRTC host candidates where `VA_ICE_ADDRESSES` says: loopback for tests, a public address behind NAT.

aioice, aiortc's ICE agent, binds a host candidate on every address of every interface except 127.0.0.1
and has no option to choose them (aiortc/aioice#2): its module function `get_host_addresses` picks them,
and each candidate takes its socket's address. For every peer connection this process makes afterwards
(fastrtc creates the server's, `VoiceClient` its own):
- the sockets bind to the configured local addresses only (127.0.0.1 included);
- a host candidate announces the address configured for its socket's (a 1:1 NAT's public one) while its
  socket stays bound to the local one, which is where the NAT delivers;
- with loopback addresses only, no STUN server is asked: none can answer a loopback socket, and every
  connection would wait out aioice's 5 s gathering timeout for it.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from ipaddress import ip_address
from typing import ClassVar

import aioice.ice
import aiortc.rtcicetransport
from aioice import Connection

from voice_assistant.ice_addresses import IceAddress, IpAddress


class ConfiguredConnection(Connection):
    """aioice's connection, gathering on `addresses` (set by `gather_host_candidates_on`)."""

    addresses: ClassVar[tuple[IceAddress, ...]] = ()

    async def gather_candidates(self) -> None:
        if self.local_candidates:  # aioice gathers once: announce once
            return
        if all(address.local.is_loopback for address in self.addresses):
            self.stun_server = None
        await super().gather_candidates()
        announced = {address.local: address.announced for address in self.addresses}
        for candidate in self.local_candidates:  # the connection's own Candidate objects
            if candidate.type == "host":
                candidate.host = str(announced.get(ip_address(candidate.host), candidate.host))


def _configured_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """Stands in for `aioice.ice.get_host_addresses`, which gather_candidates calls."""
    wanted = {4: use_ipv4, 6: use_ipv6}
    return [str(address.local) for address in ConfiguredConnection.addresses if wanted[address.local.version]]


def _check_bindable(address: IpAddress) -> None:
    """aioice logs a socket it cannot bind at INFO and gathers nothing there: say so at start instead."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError as error:
            raise ValueError(
                f"VA_ICE_ADDRESSES: cannot bind {address}, is it an address of this machine? ({error})"
            ) from error


def gather_host_candidates_on(addresses: Sequence[IceAddress]) -> None:
    """Applies to every aiortc peer connection created afterwards in this process; none: aioice's
    own choice (every interface but loopback), left as it is."""
    if not addresses:
        return
    for address in addresses:
        _check_bindable(address.local)
    ConfiguredConnection.addresses = tuple(addresses)
    aioice.ice.get_host_addresses = _configured_host_addresses
    aiortc.rtcicetransport.Connection = ConfiguredConnection  # type: ignore[attr-defined]
