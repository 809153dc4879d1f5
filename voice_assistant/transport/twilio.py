"""Twilio Media Streams as a pure codec: JSON text in, typed messages out, and the messages we send.

No sockets here, so every message shape is tested on its own. Shapes follow Twilio's "Media Streams -
WebSocket Messages" page: `connected`, `start`, `media`, `mark`, `dtmf`, `stop` come from Twilio;
`media`, `mark` and `clear` go back (bidirectional streams, i.e. `<Connect><Stream>`).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from voice_assistant.errors import VoiceAssistantError
from voice_assistant.wire_json import parse_json

MAX_MESSAGE_CHARS = 64 * 1024
"""A 20 ms media message is about 300 characters; anything near this is not Twilio talking."""


class ProtocolError(VoiceAssistantError):
    """A message that is not Media Streams JSON: the call ignores it (and says why in the log)."""


class _Message(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class MediaFormat(_Message):
    encoding: Literal["audio/x-mulaw"]
    sample_rate: int = Field(alias="sampleRate")
    channels: int = 1


class StartDetails(_Message):
    stream_sid: str = Field(alias="streamSid", min_length=1)
    call_sid: str = Field("", alias="callSid")
    account_sid: str = Field("", alias="accountSid")
    tracks: list[str] = ["inbound"]
    custom_parameters: dict[str, str] = Field(default_factory=dict, alias="customParameters")
    media_format: MediaFormat = Field(alias="mediaFormat")


class Connected(_Message):
    event: Literal["connected"]
    protocol: str = "Call"


class Start(_Message):
    event: Literal["start"]
    start: StartDetails


class MediaPayload(_Message):
    track: str = "inbound"
    payload: str


class Media(_Message):
    event: Literal["media"]
    stream_sid: str = Field(alias="streamSid")
    media: MediaPayload

    def audio(self) -> bytes:
        """The mu-law bytes of this 20 ms frame."""
        try:
            return base64.b64decode(self.media.payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError(f"media payload is not base64: {exc}") from exc


class MarkName(_Message):
    name: str


class Mark(_Message):
    event: Literal["mark"]
    stream_sid: str = Field(alias="streamSid")
    mark: MarkName


class Digit(_Message):
    digit: str


class Dtmf(_Message):
    event: Literal["dtmf"]
    dtmf: Digit


class Stop(_Message):
    event: Literal["stop"]


Incoming = Connected | Start | Media | Mark | Dtmf | Stop
_KINDS: dict[str, type[Incoming]] = {
    "connected": Connected,
    "start": Start,
    "media": Media,
    "mark": Mark,
    "dtmf": Dtmf,
    "stop": Stop,
}


def parse(text: str) -> Incoming | None:
    """A message from Twilio; None for an event this bridge does not use; ProtocolError for garbage."""
    try:
        raw: Any = parse_json(text)
    except ValueError as exc:
        raise ProtocolError(f"not JSON: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("event"), str):
        raise ProtocolError("not a Media Streams message (no 'event')")
    kind = _KINDS.get(raw["event"])
    if kind is None:
        return None
    try:
        return kind.model_validate(raw)
    except ValidationError as exc:
        raise ProtocolError(f"malformed {raw['event']!r} message: {exc.errors()[0]['msg']}") from exc


def media(stream_sid: str, mulaw: bytes) -> str:
    return json.dumps(
        {"event": "media", "streamSid": stream_sid, "media": {"payload": base64.b64encode(mulaw).decode()}}
    )


def mark(stream_sid: str, name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear(stream_sid: str) -> str:
    """Twilio drops the audio it has not played yet (barge-in)."""
    return json.dumps({"event": "clear", "streamSid": stream_sid})
