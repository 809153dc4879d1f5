"""STUN/TURN servers for both ends of WebRTC: `VA_TURN_*` parsing and coturn's time-limited credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
from aiortc import RTCPeerConnection
from pydantic import ValidationError

from voice_assistant.config import Settings
from voice_assistant.ice_settings import IceSettings
from voice_assistant.transport.ice_servers import IceServers, rest_api_credentials

pytestmark = pytest.mark.unit

TURN = "turn:turn.example:3478?transport=udp"
STUN = "stun:turn.example:3478"
START = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)  # 1700000000


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def coturn_password(secret: str, username: str) -> str:
    """coturn's `use-auth-secret` check: base64(HMAC-SHA1(static-auth-secret, username))."""
    return base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()


def test_credentials_follow_the_turn_rest_api_scheme() -> None:
    username, password = rest_api_credentials("s3cret", "alice", now=1_700_000_000.7, ttl_s=3600)
    assert username == "1700003600:alice"  # the expiry, in whole Unix seconds, then the name
    # `echo -n 1700003600:alice | openssl dgst -sha1 -hmac s3cret -binary | base64`
    assert password == "YAFdW/YDZewZsR1QSgUk2IrfbRI="


def test_a_browser_gets_fresh_credentials_from_the_secret_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VA_TURN_URLS", f"{TURN}, {STUN}")
    monkeypatch.setenv("VA_TURN_SECRET", "s3cret")
    monkeypatch.setenv("VA_TURN_TTL_S", "600")
    clock = Clock()
    servers = IceServers(Settings().ice, clock=clock)

    first = servers.browser()["iceServers"]
    assert first[0] == {"urls": [STUN]}  # STUN takes no credentials
    turn = first[1]
    assert turn["urls"] == [TURN]
    expiry, _, name = turn["username"].partition(":")
    assert int(expiry) == 1_700_000_600 and name
    assert turn["credential"] == coturn_password("s3cret", turn["username"])

    clock.now += timedelta(hours=1)
    later = servers.browser()["iceServers"][1]
    assert int(later["username"].partition(":")[0]) == 1_700_004_200
    assert later["credential"] == coturn_password("s3cret", later["username"])


def test_static_credentials_are_handed_out_as_they_are() -> None:
    servers = IceServers(IceSettings(turn_urls=TURN, turn_username="va", turn_credential="pw"))
    assert servers.browser() == {"iceServers": [{"urls": [TURN], "username": "va", "credential": "pw"}]}


def test_without_servers_the_browser_gets_none_and_the_server_keeps_aiortcs_default() -> None:
    servers = IceServers(IceSettings())
    assert servers.browser() == {"iceServers": []}
    assert servers.server() is None


def test_the_servers_peer_connections_mint_their_credentials_when_they_gather() -> None:
    """fastrtc hands one configuration to every connection; aiortc reads its servers per connection."""
    clock = Clock()
    configuration = IceServers(IceSettings(turn_urls=TURN, turn_secret="s3cret"), clock=clock).server()
    assert configuration is not None
    first = configuration.iceServers
    assert first is not None and first[0].urls == [TURN]
    assert first[0].username == "1700003600:server"
    assert first[0].credential == coturn_password("s3cret", "1700003600:server")
    clock.now += timedelta(days=30)
    later = configuration.iceServers
    assert later is not None and later[0].username == f"{1_700_003_600 + 30 * 86400}:server"
    RTCPeerConnection(configuration=configuration)  # aiortc takes it as its own


@pytest.mark.parametrize(
    "url",
    [
        "turn:turn.example:3478",
        "turn:10.0.0.5?transport=tcp",
        "turns:turn.example:5349?transport=tcp",
        "stun:stun.example",
    ],
)
def test_urls_browsers_and_aiortc_both_read_are_taken(url: str) -> None:
    credentials = {} if url.startswith("stun:") else {"turn_secret": "s"}
    assert Settings(turn_urls=f" {url} ,", **credentials).ice.turn_urls == (url,)


@pytest.mark.parametrize(
    "url",
    [
        "https://turn.example",
        "turn:",
        "turn:turn.example:3478?transport=sctp",
        "stuns:stun.example",
        "turn:[::1]",
    ],
)
def test_a_malformed_url_fails_with_the_format(url: str) -> None:
    with pytest.raises(ValidationError, match="is not a STUN/TURN URL like stun:host:3478"):
        Settings(turn_urls=url, turn_secret="s")


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"turn_urls": TURN}, "a turn: URL, which needs VA_TURN_SECRET"),
        ({"turn_urls": TURN, "turn_username": "va"}, "go together"),
        ({"turn_urls": TURN, "turn_credential": "pw"}, "go together"),
        ({"turn_urls": TURN, "turn_secret": "s", "turn_username": "va", "turn_credential": "pw"}, "not both"),
        ({"turn_urls": STUN, "turn_secret": "s"}, "names no turn: or turns: URL"),
        ({"turn_urls": TURN, "turn_secret": "s", "turn_ttl_s": 5}, "greater than or equal to 60"),
    ],
)
def test_credentials_that_cannot_work_fail_at_start(settings: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        Settings(**settings)


def test_the_secrets_stay_out_of_logs() -> None:
    settings = Settings(turn_urls=TURN, turn_secret="s3cret")
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())
