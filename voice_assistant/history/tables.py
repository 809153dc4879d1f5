"""The schema: sessions and their turns (the user's audio, the reply, the timestamps), the running summaries
of long conversations, the phone callers, and what several instances on one database count together
(rate-limit hits, leases).

A change here needs a revision in migrations/versions/ (see migrate.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from voice_assistant.history.text import StorableString, StorableText


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every database (SQLite stores no zone and hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware one")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UtcDateTime}


class SessionRow(Base):
    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(StorableString(64), primary_key=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(index=True)
    turns: Mapped[list[TurnRow]] = relationship(
        back_populates="session", cascade="all, delete-orphan", passive_deletes=True, order_by="TurnRow.index"
    )


class TurnRow(Base):
    __tablename__ = "turns"
    __table_args__ = (UniqueConstraint("session_id", "index", name="uq_turn_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    audio: Mapped[bytes] = deferred(mapped_column(LargeBinary))
    """FLAC, 16 kHz mono."""
    audio_seconds: Mapped[float]
    transcript: Mapped[str | None] = mapped_column(StorableText)
    reply_text: Mapped[str | None] = mapped_column(StorableText)
    """The reply as generated and delivered (what `reply_done` carried)."""
    heard_text: Mapped[str | None] = mapped_column(StorableText)
    """What the user heard of a spoken reply (all of it, or up to where they cut in); null when not spoken."""
    interrupted: Mapped[bool] = mapped_column(default=False)
    error: Mapped[str | None] = mapped_column(StorableText)
    speech_start: Mapped[datetime]
    speech_end: Mapped[datetime]
    turn_ended_at: Mapped[datetime]
    first_delta_at: Mapped[datetime | None]
    reply_done_at: Mapped[datetime | None]
    context: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """What the model heard for this reply: which earlier turns as audio, which as text."""
    timings: Mapped[dict[str, float] | None] = mapped_column(JSON)
    session: Mapped[SessionRow] = relationship(back_populates="turns")


class SummaryRow(Base):
    """A running summary of a session's turns `from_turn`..`through_turn`: what the model hears of the turns
    that left its window. Each fold adds a row (the newest is the one used), so the record of what the model
    was told stays."""

    __tablename__ = "summaries"
    __table_args__ = (UniqueConstraint("session_id", "through_turn", name="uq_summary_through"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    from_turn: Mapped[int] = mapped_column(Integer)
    through_turn: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(StorableText)
    created_at: Mapped[datetime]


class CallerRow(Base):
    """A phone caller's session: the number is kept only as a keyed hash."""

    __tablename__ = "callers"

    caller_hash: Mapped[str] = mapped_column(StorableString(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))


class CallTokenRow(Base):
    """A one-time token: issued with the TwiML of an incoming call, spent by its media stream's `start`."""

    __tablename__ = "call_tokens"

    token: Mapped[str] = mapped_column(StorableString(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    issued_at: Mapped[datetime]
    spent_at: Mapped[datetime | None]


class SecretRow(Base):
    """Server secrets that every instance must share (the caller-hash key), made on first use."""

    __tablename__ = "secrets"

    name: Mapped[str] = mapped_column(StorableString(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)


class RateHitRow(Base):
    """One admitted request in a rate limit's moving window; rows older than the window are pruned."""

    __tablename__ = "rate_hits"
    __table_args__ = (Index("ix_rate_hits_bucket_at", "bucket", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bucket: Mapped[str] = mapped_column(StorableString(255))
    """What is limited: `address:<client address>`, `key:<site key>`."""
    at: Mapped[datetime] = mapped_column(index=True)


class LeaseRow(Base):
    """Something open on one instance that every instance counts (a site key's connection, a phone call):
    its holder renews `expires_at` while it lasts, so the leases of an instance that died run out alone."""

    __tablename__ = "leases"
    __table_args__ = (
        UniqueConstraint("holder", "name", name="uq_lease_holder_name"),
        Index("ix_leases_pool_expires_at", "pool", "expires_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pool: Mapped[str] = mapped_column(StorableString(255))
    """What is counted: `site:<site key>`, `calls`."""
    holder: Mapped[str] = mapped_column(StorableString(64))
    """The instance (process) that holds it."""
    name: Mapped[str] = mapped_column(StorableString(255))
    """The holder's own name for it (a connection id, a call token): unique per holder."""
    expires_at: Mapped[datetime] = mapped_column(index=True)
