"""What the store takes and hands back: plain frozen records, never ORM rows."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from voice_assistant.audio.pcm import Samples
from voice_assistant.history.tables import SummaryRow, TurnRow


def new_session_id() -> str:
    """128 random bits: the id is the capability to read and resume a session."""
    return secrets.token_hex(16)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclass(frozen=True)
class TurnRecord:
    index: int
    audio_seconds: float
    transcript: str | None
    reply_text: str | None
    """The reply as generated and delivered."""
    heard_text: str | None
    """What the user heard of it when it was spoken; None when it was not."""
    interrupted: bool
    error: str | None
    speech_start: datetime
    speech_end: datetime
    turn_ended_at: datetime
    first_delta_at: datetime | None
    reply_done_at: datetime | None
    context: dict[str, Any] | None
    timings: dict[str, float] | None

    @classmethod
    def of(cls, row: TurnRow) -> TurnRecord:
        return cls(
            index=row.index,
            audio_seconds=row.audio_seconds,
            transcript=row.transcript,
            reply_text=row.reply_text,
            heard_text=row.heard_text,
            interrupted=row.interrupted,
            error=row.error,
            speech_start=row.speech_start,
            speech_end=row.speech_end,
            turn_ended_at=row.turn_ended_at,
            first_delta_at=row.first_delta_at,
            reply_done_at=row.reply_done_at,
            context=row.context,
            timings=row.timings,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "audio_seconds": round(self.audio_seconds, 3),
            "transcript": self.transcript,
            "reply_text": self.reply_text,
            "heard_text": self.heard_text,
            "interrupted": self.interrupted,
            "error": self.error,
            "speech_start": _iso(self.speech_start),
            "speech_end": _iso(self.speech_end),
            "turn_ended_at": _iso(self.turn_ended_at),
            "first_delta_at": _iso(self.first_delta_at),
            "reply_done_at": _iso(self.reply_done_at),
            "context": self.context,
            "timings": self.timings,
        }


@dataclass(frozen=True)
class SummaryRecord:
    """What the model is told of turns `from_turn`..`through_turn`, which left its window."""

    from_turn: int
    through_turn: int
    text: str
    created_at: datetime

    @classmethod
    def of(cls, row: SummaryRow) -> SummaryRecord:
        return cls(row.from_turn, row.through_turn, row.text, row.created_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "from_turn": self.from_turn,
            "through_turn": self.through_turn,
            "text": self.text,
            "created_at": _iso(self.created_at),
        }


@dataclass(frozen=True)
class SessionRecord:
    session_id: str
    created_at: datetime
    updated_at: datetime
    turn_count: int
    turns: tuple[TurnRecord, ...] = ()
    summary: SummaryRecord | None = None
    """The latest running summary (read with the turns)."""

    def to_json(self, *, with_turns: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "session_id": self.session_id,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "turn_count": self.turn_count,
        }
        if with_turns:
            body["turns"] = [turn.to_json() for turn in self.turns]
            body["summary"] = self.summary.to_json() if self.summary is not None else None
        return body


@dataclass(frozen=True)
class PastTurn:
    """An earlier turn as the history window sees it; `audio` only for the turns that will be heard."""

    index: int
    audio: Samples | None
    audio_seconds: float
    transcript: str | None
    reply_text: str | None
    """What the conversation keeps of the reply: the text the user heard when it was spoken (so the model
    hears what the user heard, a reply cut short by barge-in included), else the text delivered."""


@dataclass(frozen=True)
class NewTurn:
    audio: Samples
    speech_start: datetime
    speech_end: datetime
    turn_ended_at: datetime
    context: dict[str, Any] | None = None
    transcript: str | None = None
    """Known already for a typed turn (its words)."""


@dataclass(frozen=True)
class ReplyOutcome:
    text: str
    """Generated and delivered (what `reply_done` carries)."""
    interrupted: bool
    error: str | None
    first_delta_at: datetime | None
    reply_done_at: datetime
    timings: dict[str, float]
    heard: str | None = None
    """What the user heard of it when it was spoken (up to the cut when interrupted); None when not spoken."""
