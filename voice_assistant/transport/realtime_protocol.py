"""The OpenAI Realtime protocol as a pure codec: client JSON in, typed events out; server events built.

No sockets here, so every shape is tested on its own. The contract is the protocol's event reference and
the official `openai` SDK's types (`openai.types.realtime`): the GA event set, with the beta names
accepted where they differ (a beta client's `session.update` has flat `modalities`,
`input_audio_format`, `turn_detection` and `voice`; the GA one nests them under `audio`). Server events
go out under their GA names, or under the beta ones to a client that said `OpenAI-Beta: realtime=v1`.
The text a client gives the model (instructions, typed turns) is made storable (history/text.py): a lone
surrogate, which the model's tokenizer refuses, becomes U+FFFD, as in the store.
"""

from __future__ import annotations

import base64
import binascii
import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from voice_assistant.errors import VoiceAssistantError
from voice_assistant.history.text import storable
from voice_assistant.wire_json import parse_json

MAX_MESSAGE_CHARS = 15 * 1024 * 1024
"""OpenAI's own limit on a client event (15 MiB): an `append` of several seconds of audio fits."""
MAX_PREFIX_PADDING_MS = 5_000
"""Audio kept before the speech that starts a turn: OpenAI's default is 300 ms."""

AudioFormat = Literal["pcm16", "g711_ulaw", "g711_alaw"]
"""24 kHz 16-bit PCM (little-endian), or 8 kHz G.711: the formats the protocol names."""
FORMAT_RATES: dict[AudioFormat, int] = {"pcm16": 24_000, "g711_ulaw": 8_000, "g711_alaw": 8_000}
_GA_FORMATS: dict[str, AudioFormat] = {
    "audio/pcm": "pcm16",
    "audio/pcmu": "g711_ulaw",
    "audio/pcma": "g711_alaw",
}
_GA_NAMES = {value: key for key, value in _GA_FORMATS.items()}

Modality = Literal["text", "audio"]
Eagerness = Literal["low", "medium", "high", "auto"]


class ProtocolError(VoiceAssistantError):
    """A client event this server cannot take: answered with an `error` event, the connection goes on."""

    def __init__(
        self, message: str, *, code: str, event_id: str | None = None, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.event_id = event_id
        self.param = param


# -- client events


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore")
    event_id: str | None = None


class TurnDetection(BaseModel):
    """`server_vad` (a silence rule) or `semantic_vad` (the end-of-turn model); unset fields keep the
    server's own turn-taking settings (OpenAI's defaults, 200 ms of silence, would split sentences).

    The ranges are those of the server's own settings (config.TurnSettings), which these become without
    being checked again; the padding is kept in memory while the user is silent, so it is bounded too."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["server_vad", "semantic_vad"]
    threshold: float | None = Field(default=None, gt=0.0, lt=1.0)
    prefix_padding_ms: int | None = Field(default=None, ge=0, le=MAX_PREFIX_PADDING_MS)
    silence_duration_ms: int | None = Field(default=None, ge=0)
    eagerness: Eagerness | None = None
    create_response: bool = True
    interrupt_response: bool = True


@dataclass(frozen=True)
class SessionChange:
    """What a `session.update` sets; a field left None is not changed (`turn_detection` is `"keep"`)."""

    instructions: str | None = None
    turn_detection: TurnDetection | None | Literal["keep"] = "keep"
    input_format: AudioFormat | None = None
    output_format: AudioFormat | None = None
    output_modalities: tuple[Modality, ...] | None = None
    voice: str | None = None


def _format(value: Any, param: str) -> AudioFormat | None:
    if value is None:
        return None
    if isinstance(value, str) and value in FORMAT_RATES:  # the beta's names
        return value
    if isinstance(value, dict) and isinstance(value.get("type"), str) and value["type"] in _GA_FORMATS:
        if value["type"] == "audio/pcm" and value.get("rate", 24_000) != 24_000:
            raise ProtocolError(
                "audio/pcm is taken at 24000 Hz only", code="invalid_value", param=f"{param}.rate"
            )
        return _GA_FORMATS[value["type"]]
    raise ProtocolError(
        f"unsupported audio format {value!r}: audio/pcm (24 kHz), audio/pcmu or audio/pcma",
        code="invalid_value",
        param=param,
    )


def _turn_detection(value: Any) -> TurnDetection | None:
    if value is None:
        return None
    try:
        return TurnDetection.model_validate(value)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = "".join(f".{part}" for part in problem["loc"])
        raise ProtocolError(
            f"invalid turn_detection{where}: {problem['msg']}", code="invalid_value", param="turn_detection"
        ) from exc


def _modalities(value: Any, param: str) -> tuple[Modality, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or any(m not in ("text", "audio") for m in value):
        raise ProtocolError(
            "modalities must be a list of 'text' and 'audio'", code="invalid_value", param=param
        )
    return tuple(value)


def _object(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    return value if isinstance(value, dict) else {}


def session_change(raw: Any) -> SessionChange:
    """A `session.update`'s `session`, GA or beta shaped."""
    if not isinstance(raw, dict):
        raise ProtocolError("session must be an object", code="invalid_value", param="session")
    if raw.get("type") not in (None, "realtime"):
        raise ProtocolError(
            "only realtime sessions are served here (not transcription)",
            code="invalid_value",
            param="session.type",
        )
    audio = _object(raw, "audio")
    heard, spoken = _object(audio, "input"), _object(audio, "output")
    if "turn_detection" in heard:
        detection: TurnDetection | None | Literal["keep"] = _turn_detection(heard["turn_detection"])
    elif "turn_detection" in raw:
        detection = _turn_detection(raw["turn_detection"])
    else:
        detection = "keep"
    voice = spoken.get("voice", raw.get("voice"))
    if isinstance(voice, dict):  # a custom voice: {"id": ...}
        voice = voice.get("id")
    instructions = raw.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise ProtocolError(
            "instructions must be a string", code="invalid_value", param="session.instructions"
        )
    return SessionChange(
        instructions=storable(instructions) if instructions is not None else None,
        turn_detection=detection,
        input_format=_format(
            heard.get("format", raw.get("input_audio_format")), "session.audio.input.format"
        ),
        output_format=_format(
            spoken.get("format", raw.get("output_audio_format")), "session.audio.output.format"
        ),
        output_modalities=_modalities(
            raw.get("output_modalities", raw.get("modalities")), "session.output_modalities"
        ),
        voice=voice if isinstance(voice, str) else None,
    )


class SessionUpdate(_Event):
    type: Literal["session.update"]
    session: dict[str, Any]


class AudioAppend(_Event):
    type: Literal["input_audio_buffer.append"]
    audio: str

    def data(self) -> bytes:
        try:
            return base64.b64decode(self.audio, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError(
                f"audio is not base64: {exc}", code="invalid_value", event_id=self.event_id, param="audio"
            ) from exc


class AudioCommit(_Event):
    type: Literal["input_audio_buffer.commit"]


class AudioClear(_Event):
    type: Literal["input_audio_buffer.clear"]


class OutputAudioClear(_Event):
    type: Literal["output_audio_buffer.clear"]


class ItemCreate(_Event):
    type: Literal["conversation.item.create"]
    item: dict[str, Any]
    previous_item_id: str | None = None


class ItemTruncate(_Event):
    type: Literal["conversation.item.truncate"]
    item_id: str
    content_index: int = 0
    audio_end_ms: int


class ItemDelete(_Event):
    type: Literal["conversation.item.delete"]
    item_id: str


class ItemRetrieve(_Event):
    type: Literal["conversation.item.retrieve"]
    item_id: str


class ResponseCreate(_Event):
    type: Literal["response.create"]
    response: dict[str, Any] | None = None

    @property
    def instructions(self) -> str | None:
        value = (self.response or {}).get("instructions")
        return storable(value) if isinstance(value, str) else None

    @property
    def modalities(self) -> tuple[Modality, ...] | None:
        response = self.response or {}
        return _modalities(
            response.get("output_modalities", response.get("modalities")), "response.output_modalities"
        )


class ResponseCancel(_Event):
    type: Literal["response.cancel"]
    response_id: str | None = None


ClientEvent = (
    SessionUpdate
    | AudioAppend
    | AudioCommit
    | AudioClear
    | OutputAudioClear
    | ItemCreate
    | ItemTruncate
    | ItemDelete
    | ItemRetrieve
    | ResponseCreate
    | ResponseCancel
)
_KINDS: dict[str, type[ClientEvent]] = {
    kind.model_fields["type"].annotation.__args__[0]: kind  # type: ignore[union-attr]
    for kind in (
        SessionUpdate,
        AudioAppend,
        AudioCommit,
        AudioClear,
        OutputAudioClear,
        ItemCreate,
        ItemTruncate,
        ItemDelete,
        ItemRetrieve,
        ResponseCreate,
        ResponseCancel,
    )
}


def parse(text: str) -> ClientEvent:
    """One client event, or a ProtocolError that says what is wrong with it."""
    if len(text) > MAX_MESSAGE_CHARS:
        raise ProtocolError(
            f"the event is {len(text)} characters, more than the {MAX_MESSAGE_CHARS} allowed",
            code="event_too_large",
        )
    try:
        raw: Any = parse_json(text)
    except ValueError as exc:
        raise ProtocolError(f"the event is not JSON: {exc}", code="invalid_json") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise ProtocolError("an event is a JSON object with a 'type'", code="invalid_event", param="type")
    event_id = raw.get("event_id") if isinstance(raw.get("event_id"), str) else None
    kind = _KINDS.get(raw["type"])
    if kind is None:
        raise ProtocolError(
            f"unknown event type {raw['type']!r}", code="unknown_event", event_id=event_id, param="type"
        )
    try:
        return kind.model_validate(raw)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise ProtocolError(
            f"invalid {raw['type']}: {where}: {problem['msg']}",
            code="invalid_value",
            event_id=event_id,
            param=where,
        ) from exc


# -- server events

_BETA_NAMES = {
    "conversation.item.added": "conversation.item.created",
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
}
"""GA name -> beta name, where they differ (`conversation.item.done` has no beta twin: not sent)."""
_GA_ONLY = {"conversation.item.done"}


@dataclass
class ServerEvents:
    """Makes server events: a fresh `event_id` each, under GA names or (`beta`) the beta ones."""

    beta: bool = False
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def make(self, kind: str, **fields: Any) -> dict[str, Any] | None:
        """The event as a dict, or None where a beta client has no such event."""
        if self.beta:
            if kind in _GA_ONLY:
                return None
            kind = _BETA_NAMES.get(kind, kind)
        return {"type": kind, "event_id": f"event_{next(self._ids):06d}", **fields}

    def error(self, problem: ProtocolError, *, kind: str = "invalid_request_error") -> dict[str, Any]:
        made = self.make(
            "error",
            error={
                "type": kind,
                "code": problem.code,
                "message": str(problem),
                "param": problem.param,
                "event_id": problem.event_id,
            },
        )
        assert made is not None
        return made


def format_object(audio_format: AudioFormat, *, beta: bool) -> Any:
    """How a session names a format: the beta's string, or the GA's object."""
    if beta:
        return audio_format
    named: dict[str, Any] = {"type": _GA_NAMES[audio_format]}
    if audio_format == "pcm16":
        named["rate"] = 24_000
    return named
