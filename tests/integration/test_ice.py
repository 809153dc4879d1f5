"""`gather_host_candidates_on` on real aiortc peers and real sockets: what is bound, what is announced."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from ipaddress import ip_address

import aioice.ice
import aiortc.rtcicetransport
import pytest
from aiortc import RTCPeerConnection

from tests.support.sockets import udp_sockets
from voice_assistant.ice_addresses import parse_ice_addresses
from voice_assistant.transport.ice import ConfiguredConnection, gather_host_candidates_on

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The hook is process-wide: put back what this session had (loopback, see tests/conftest.py)."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", aioice.ice.get_host_addresses)
    monkeypatch.setattr(aiortc.rtcicetransport, "Connection", aiortc.rtcicetransport.Connection)
    monkeypatch.setattr(ConfiguredConnection, "addresses", ConfiguredConnection.addresses)
    yield


def host_candidates(sdp: str) -> list[tuple[str, int]]:
    """(address, port) of each `typ host` candidate line."""
    fields = [line.split() for line in sdp.splitlines() if line.startswith("a=candidate:")]
    return [(f[4], int(f[5])) for f in fields if f[7] == "host"]


async def test_behind_a_nat_the_public_address_is_announced_and_the_local_one_bound() -> None:
    gather_host_candidates_on(parse_ice_addresses("127.0.0.1=203.0.113.7"))
    pc = RTCPeerConnection()
    try:
        pc.createDataChannel("text")
        await pc.setLocalDescription(await pc.createOffer())
        [(announced, port)] = host_candidates(pc.localDescription.sdp)
        assert announced == "203.0.113.7"
        assert (ip_address("127.0.0.1"), port) in udp_sockets(os.getpid())
    finally:
        await pc.close()


async def test_two_peers_on_loopback_only_connect_over_it() -> None:
    gather_host_candidates_on(parse_ice_addresses("127.0.0.1"))
    offerer, answerer = RTCPeerConnection(), RTCPeerConnection()
    try:
        channel = offerer.createDataChannel("text")
        opened = asyncio.get_running_loop().create_future()
        channel.on("open", lambda: opened.set_result(True))
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        await offerer.setRemoteDescription(answerer.localDescription)
        async with asyncio.timeout(10):
            await opened
        for pc in (offerer, answerer):
            assert {address for address, _ in host_candidates(pc.localDescription.sdp)} == {"127.0.0.1"}
    finally:
        await offerer.close()
        await answerer.close()


def test_an_address_this_machine_lacks_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match=r"VA_ICE_ADDRESSES: cannot bind 203\.0\.113\.7"):
        gather_host_candidates_on(parse_ice_addresses("203.0.113.7"))
