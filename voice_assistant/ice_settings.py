"""The `ice` settings group: the STUN/TURN servers of WebRTC media behind NAT (`VA_TURN_*`).

`config` holds it as `Settings.ice`; it lives apart so that the URL grammar and the credential rules do not
swell the one settings module. Like `config` it imports no layer: `transport/ice_servers.py` turns it into
what the browsers and aiortc are handed.
"""

from __future__ import annotations

import re
from typing import Annotated, Self

from pydantic import BeforeValidator, Field, SecretStr, model_validator
from pydantic_settings import NoDecode

from voice_assistant.flat_settings import SettingsGroup

# RFC 7064/7065 URLs as both browsers and aiortc read them (aiortc takes no stuns: and no [IPv6] host).
_ICE_URL = re.compile(
    r"(stun:[^?:/@\s\[\]]+(:\d{1,5})?|turns?:[^?:/@\s\[\]]+(:\d{1,5})?(\?transport=(udp|tcp))?)"
)


def _ice_server_urls(value: object) -> object:
    """`VA_TURN_URLS` is comma-separated, like `VA_ICE_ADDRESSES`; each URL must be one a browser takes."""
    if not isinstance(value, str):
        return value
    urls = tuple(url.strip() for url in value.split(",") if url.strip())
    for url in urls:
        if not _ICE_URL.fullmatch(url):
            raise ValueError(
                f"{url!r} is not a STUN/TURN URL like stun:host:3478, turn:host:3478?transport=udp "
                "or turns:host:5349?transport=tcp"
            )
    return urls


IceServerUrls = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_ice_server_urls)]


class IceSettings(SettingsGroup):
    """STUN/TURN servers for WebRTC media behind NAT (transport/ice_servers.py): the browsers receive them
    with each connection (the UI through fastrtc, the widget from `GET /webrtc/ice-servers`) and the
    server's own peer connections gather on them too, so media relays through TURN when either end
    cannot be reached directly. coturn's shared secret (`use-auth-secret`) mints time-limited
    credentials per connection; static ones are handed out as they are."""

    turn_urls: IceServerUrls = Field(
        default=(),
        description="STUN/TURN URLs, comma-separated, e.g. turn:turn.example:3478?transport=udp,"
        "turns:turn.example:5349?transport=tcp,stun:turn.example:3478; default: none.",
    )
    turn_username: str | None = Field(
        default=None, description="A static TURN username (with turn_credential)."
    )
    turn_credential: SecretStr | None = Field(default=None, description="The static TURN password.")
    turn_secret: SecretStr | None = Field(
        default=None,
        description="coturn's static-auth-secret: each connection gets its own time-limited credentials.",
    )
    turn_ttl_s: float = Field(
        default=3600.0,
        ge=60,
        le=86400,
        description="How long minted credentials stay valid (a connection's allocation must start before).",
    )

    @model_validator(mode="after")
    def _credentials_match_urls(self) -> Self:
        """A browser refuses a turn: URL without credentials (InvalidAccessError): say so at start."""
        static = self.turn_username is not None
        if static != (self.turn_credential is not None):
            raise ValueError("VA_TURN_USERNAME and VA_TURN_CREDENTIAL go together: set both or neither")
        if static and self.turn_secret is not None:
            raise ValueError("set VA_TURN_SECRET or VA_TURN_USERNAME/VA_TURN_CREDENTIAL, not both")
        has_credentials = static or self.turn_secret is not None
        has_turn = any(url.startswith("turn") for url in self.turn_urls)
        if has_turn and not has_credentials:
            raise ValueError(
                "VA_TURN_URLS has a turn: URL, which needs VA_TURN_SECRET or VA_TURN_USERNAME and "
                "VA_TURN_CREDENTIAL"
            )
        if has_credentials and not has_turn:
            raise ValueError(
                "TURN credentials are set (VA_TURN_SECRET, or VA_TURN_USERNAME and VA_TURN_CREDENTIAL) but "
                "VA_TURN_URLS names no turn: or turns: URL"
            )
        return self
