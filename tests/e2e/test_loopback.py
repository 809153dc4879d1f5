"""Test media stays on this machine's loopback: during a live session between a server process and an
aiortc client, both sides' ICE addresses and every UDP socket of both processes are on 127.0.0.1.

Without `VA_ICE_ADDRESSES=127.0.0.1` (ServerProcess sets it, tests/conftest.py applies it to this
process) aioice binds every interface but loopback, and this fails on the network's address.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from ipaddress import ip_address

import numpy as np
import pytest

from benchmarks.server import ServerProcess
from benchmarks.speech import RATE, Utterance
from tests.support.sockets import udp_sockets
from voice_assistant.client import VoiceClient

pytestmark = pytest.mark.e2e

LOOPBACK = ip_address("127.0.0.1")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("loopback"), env={"VA_MAX_NEW_TOKENS": "8"})
    process.start()
    yield process
    process.stop()


async def test_a_live_session_s_sockets_are_all_on_loopback(server: ServerProcess) -> None:
    assert server.process is not None
    client = VoiceClient(server.url)
    await client.connect()
    try:
        client.microphone.play(Utterance(("Hello there,", "how are you?")).audio())
        client.microphone.play(np.zeros(RATE, dtype=np.float32))
        await asyncio.wait_for(client.wait_for("reply_done", 1), 20)  # audio in, events out: live

        ice = client.pc.sctp.transport.transport  # bundled: the one ICE transport of the session
        local = [c.ip for c in ice.iceGatherer.getLocalCandidates()]
        remote = [c.ip for c in ice.getRemoteCandidates()]  # the server's answer, and any peer-reflexive
        assert local and remote, "no candidates"
        assert {ip_address(ip) for ip in local + remote} == {LOOPBACK}, (local, remote)
        for side, pid in (("server", server.process.pid), ("client", os.getpid())):
            sockets = udp_sockets(pid)
            assert sockets, f"the {side} holds no UDP socket"
            assert {address for address, _ in sockets} == {LOOPBACK}, (side, sockets)
    finally:
        await client.close()
