"""The STUN/TURN servers of `VA_TURN_*`, for both ends of a WebRTC connection: the browser's
RTCConfiguration (JSON) and the server's own aiortc one.

With coturn's shared secret (`use-auth-secret`, `static-auth-secret=SECRET`) every connection gets its own
credentials by the TURN REST API scheme: username `EXPIRY:NAME` (EXPIRY the Unix time after which coturn
refuses it), password base64(HMAC-SHA1(SECRET, username)). coturn checks them with the secret alone, and
one copied out of a page expires on its own; static credentials are handed out as they are.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer

from voice_assistant.clock import Clock, utc_now
from voice_assistant.ice_settings import IceSettings


def rest_api_credentials(secret: str, name: str, *, now: float, ttl_s: float) -> tuple[str, str]:
    """(username, password) valid until `now + ttl_s` (Unix seconds) for a coturn with `secret`."""
    username = f"{int(now + ttl_s)}:{name}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


class IceServers:
    """The configured servers, with fresh credentials on every call when a shared secret is set."""

    def __init__(self, settings: IceSettings, *, clock: Clock = utc_now) -> None:
        self._settings = settings
        self._clock = clock

    @property
    def configured(self) -> bool:
        return bool(self._settings.turn_urls)

    def entries(self, name: str | None = None) -> list[dict[str, Any]]:
        """RTCIceServer dictionaries: the STUN URLs alone, the TURN URLs with their credentials. `name`
        tells one client's minted username from another's in coturn's logs (default: random)."""
        stun = [url for url in self._settings.turn_urls if url.startswith("stun:")]
        turn = [url for url in self._settings.turn_urls if not url.startswith("stun:")]
        entries: list[dict[str, Any]] = [{"urls": stun}] if stun else []
        if turn:
            username, credential = self._credentials(name or secrets.token_hex(6))
            entries.append({"urls": turn, "username": username, "credential": credential})
        return entries

    def browser(self) -> dict[str, Any]:
        """What `new RTCPeerConnection(...)` takes: `{"iceServers": [...]}` (empty: the browser's own)."""
        return {"iceServers": self.entries()}

    def server(self) -> RTCConfiguration | None:
        """For the server's aiortc peer connections; None (aiortc's default STUN server) when none is set."""
        return _Minting(self) if self.configured else None

    def _credentials(self, name: str) -> tuple[str, str]:
        ice = self._settings
        if ice.turn_secret is not None:
            now = self._clock().timestamp()
            return rest_api_credentials(
                ice.turn_secret.get_secret_value(), name, now=now, ttl_s=ice.turn_ttl_s
            )
        assert ice.turn_username is not None and ice.turn_credential is not None  # IceSettings checks it
        return ice.turn_username, ice.turn_credential.get_secret_value()


class _Minting(RTCConfiguration):
    """aiortc reads `iceServers` when it creates each connection's ICE transport, and fastrtc passes one
    configuration object to every connection: each read mints credentials, so that a server running for
    weeks never hands coturn expired ones."""

    def __init__(self, servers: IceServers) -> None:
        self._servers = servers
        super().__init__()

    @property
    def iceServers(self) -> list[RTCIceServer]:
        return [RTCIceServer(**entry) for entry in self._servers.entries("server")]

    @iceServers.setter
    def iceServers(self, _: object) -> None:
        """RTCConfiguration's own __init__ sets it; the servers come from `_servers`."""
