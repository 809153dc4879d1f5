"""The events a client sees, in the order of one turn: the wire format of the client contract.

Each is sent as JSON `{"type": ..., "data": {...}}` on the WebRTC data channel and on the SSE stream.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    type: ClassVar[str]

    def to_message(self) -> dict[str, Any]:
        return {"type": self.type, "data": {k: v for k, v in asdict(self).items() if v is not None}}

    def to_json(self) -> str:
        return json.dumps(self.to_message())


@dataclass(frozen=True)
class TurnStarted(Event):
    type: ClassVar[str] = "turn_started"
    turn: int


@dataclass(frozen=True)
class TurnEnded(Event):
    """Sent once the turn's audio is committed to the store, or held for it while it is unreachable."""

    type: ClassVar[str] = "turn_ended"
    turn: int
    audio_seconds: float
    held: bool | None = None
    """True when the store was unreachable: this server holds the turn and stores it once it is back."""


@dataclass(frozen=True)
class ReplyDelta(Event):
    type: ClassVar[str] = "reply_delta"
    turn: int
    text: str


@dataclass(frozen=True)
class ReplyDone(Event):
    """Also sent for an interrupted reply, with the text delivered so far. A spoken reply ends once it
    has played (or was cut), and `heard` says which of its sentences the user heard."""

    type: ClassVar[str] = "reply_done"
    turn: int
    text: str
    interrupted: bool
    timings: dict[str, float] = field(default_factory=dict)
    heard: str | None = None


@dataclass(frozen=True)
class ReplyPaused(Event):
    """The user spoke over a spoken reply: its voice stopped at once, to see whether this is a turn.
    Then either `reply_resumed` (a backchannel or noise: it goes on) or the next `turn_started` (a real
    interruption: the reply's `reply_done`, interrupted, follows). Never sent for a reply not spoken."""

    type: ClassVar[str] = "reply_paused"
    turn: int


@dataclass(frozen=True)
class ReplyResumed(Event):
    """The speech that paused the reply was no turn (too short, or no turn followed in time): the reply
    plays on, from the start of the sentence that was cut; no user turn was announced or stored."""

    type: ClassVar[str] = "reply_resumed"
    turn: int


@dataclass(frozen=True)
class Transcribed(Event):
    """The words of a user turn, once known (after its reply: transcripts never delay an answer)."""

    type: ClassVar[str] = "transcript"
    turn: int
    text: str


@dataclass(frozen=True)
class ErrorRaised(Event):
    type: ClassVar[str] = "error"
    message: str
    turn: int | None = None


@dataclass(frozen=True)
class ReconnectRequested(Event):
    """This server is going away (a graceful drain): connect again with the same session id, and a load
    balancer sends the offer to another instance. Sent once the session's reply in progress is done (or
    the drain's time is up), right before the connection (or the SSE stream) closes."""

    type: ClassVar[str] = "reconnect"
    reason: str = "the server is shutting down: connect again with the same session_id"


Publish = Callable[[Event], None]
"""Where a conversation's events go (the data channel, SSE subscribers, the voice)."""
