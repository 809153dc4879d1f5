"""WebRTC media through a real TURN server: coturn on loopback with the TURN REST API's shared secret, a real
server process given the same secret, and an aiortc client that may use relay candidates only.

The client takes its servers from `GET /webrtc/ice-servers` as the widget does (the Gradio UI gets the same
through fastrtc), so coturn accepting the minted credentials is what lets it connect at all; the server's
answer holds relay candidates of its own.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from benchmarks.server import ServerProcess, free_port
from benchmarks.speech import RATE, Utterance
from tests.support.servers import Servers
from voice_assistant.client import VoiceClient

pytestmark = pytest.mark.integration

SECRET = "turn-test-secret"
TTL_S = 600


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """coturn on 127.0.0.1 (relaying to loopback peers, which production must never allow); its port."""
    binary = shutil.which("turnserver")
    if binary is None:
        pytest.skip("coturn is not installed (apt-get install coturn)")
    folder = tmp_path_factory.mktemp("coturn")
    port = free_port()
    relay = 40000 + port % 20000  # a range of its own, beside the free port
    command = [
        binary,
        "-n",
        "--listening-ip=127.0.0.1",
        "--relay-ip=127.0.0.1",
        f"--listening-port={port}",
        f"--min-port={relay}",
        f"--max-port={relay + 99}",
        "--realm=voice-assistant-test",
        "--use-auth-secret",
        f"--static-auth-secret={SECRET}",
        "--allow-loopback-peers",
        "--fingerprint",
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--simple-log",
        f"--log-file={folder / 'turn.log'}",
        f"--pidfile={folder / 'turn.pid'}",
        f"--db={folder / 'turndb'}",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:  # it listens on TCP beside UDP: ready once a connection is taken
            assert process.poll() is None, f"turnserver exited: see {folder}"
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "turnserver did not listen within 20 s"
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def server(servers: Servers, coturn: int) -> ServerProcess:
    return servers.start(
        "turn",
        {
            "VA_TURN_URLS": f"turn:127.0.0.1:{coturn}?transport=udp",
            "VA_TURN_SECRET": SECRET,
            "VA_TURN_TTL_S": str(TTL_S),
            "VA_MAX_NEW_TOKENS": "8",
        },
    )


def coturn_password(username: str) -> str:
    """What coturn's `use-auth-secret` expects: base64(HMAC-SHA1(static-auth-secret, username))."""
    return base64.b64encode(hmac.new(SECRET.encode(), username.encode(), hashlib.sha1).digest()).decode()


def ice_servers(server: ServerProcess) -> list[dict[str, Any]]:
    response = httpx.get(f"{server.url}/webrtc/ice-servers", timeout=10)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    servers: list[dict[str, Any]] = response.json()["iceServers"]
    return servers


def test_each_browser_gets_its_own_credentials_by_coturns_scheme(server: ServerProcess, coturn: int) -> None:
    first, second = ice_servers(server), ice_servers(server)
    (turn,) = first
    assert turn["urls"] == [f"turn:127.0.0.1:{coturn}?transport=udp"]
    username = str(turn["username"])
    expiry = int(username.partition(":")[0])
    assert time.time() + TTL_S - 30 < expiry <= time.time() + TTL_S
    assert turn["credential"] == coturn_password(username)
    assert second[0]["username"] != username  # minted per call: one client's tell it from another's


def test_the_ui_gets_them_through_fastrtc_before_each_connection(server: ServerProcess) -> None:
    """The Gradio UI's microphone asks its component's `turn` server function, then builds its peer."""
    config = httpx.get(f"{server.url}/config", timeout=10).json()
    (microphone,) = [c for c in config["components"] if c.get("props", {}).get("elem_id") == "microphone"]
    asked = httpx.post(
        f"{server.url}/gradio_api/component_server",
        json={"session_hash": "turn-test", "component_id": microphone["id"], "fn_name": "turn", "data": None},
        timeout=10,
    )
    assert asked.status_code == 200, asked.text
    (turn,) = asked.json()["iceServers"]
    assert turn["credential"] == coturn_password(turn["username"])


async def test_a_relay_only_client_talks_through_coturn(server: ServerProcess) -> None:
    (turn,) = ice_servers(server)
    # As a browser behind a NAT that lets nothing in: its only candidates are coturn's relay addresses.
    relay_only = RTCConfiguration(
        iceServers=[RTCIceServer(**turn)], iceTransportPolicy=RTCIceTransportPolicy.RELAY
    )
    client = VoiceClient(server.url, configuration=relay_only)
    answer = await client.connect()
    try:
        # The server gathered on coturn too (server_rtc_configuration): media works if only it is hidden.
        assert " typ relay" in answer["sdp"], answer["sdp"]
        ice = client.pc.sctp.transport.transport
        assert {c.type for c in ice.iceGatherer.getLocalCandidates()} == {"relay"}
        client.microphone.play(Utterance(("Hello there,", "how are you?")).audio())
        client.microphone.play(np.zeros(RATE, dtype=np.float32))
        (ended,) = await asyncio.wait_for(client.wait_for("turn_ended", 1), 30)
        assert ended.message["data"]["audio_seconds"] > 0.5  # the speech crossed the relay
        await asyncio.wait_for(client.wait_for("reply_done", 1), 30)  # and the events came back
    finally:
        await client.close()
