"""HistoryStore: every session's turns, one transaction per change, safe to share between instances."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, Engine, create_engine, delete, event, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker, undefer

from voice_assistant.audio.codec import decode, encode_flac
from voice_assistant.audio.pcm import MODEL_RATE, Samples
from voice_assistant.errors import UnknownSession
from voice_assistant.history.tables import Base, CallerRow, CallTokenRow, SecretRow, SessionRow, TurnRow

T = TypeVar("T")


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
class SessionRecord:
    session_id: str
    created_at: datetime
    updated_at: datetime
    turn_count: int
    turns: tuple[TurnRecord, ...] = ()

    def to_json(self, *, with_turns: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "session_id": self.session_id,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "turn_count": self.turn_count,
        }
        if with_turns:
            body["turns"] = [turn.to_json() for turn in self.turns]
        return body


@dataclass(frozen=True)
class PastTurn:
    """An earlier turn as the history window sees it; `audio` only for the turns that will be heard."""

    index: int
    audio: Samples | None
    audio_seconds: float
    transcript: str | None
    reply_text: str | None


@dataclass(frozen=True)
class NewTurn:
    audio: Samples
    speech_start: datetime
    speech_end: datetime
    turn_ended_at: datetime
    context: dict[str, Any] | None = None


@dataclass(frozen=True)
class ReplyOutcome:
    text: str
    interrupted: bool
    error: str | None
    first_delta_at: datetime | None
    reply_done_at: datetime
    timings: dict[str, float]


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            # WAL lets the API read while a turn is being written; foreign keys make deletes cascade.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class HistoryStore:
    """Async facade over a synchronous SQLAlchemy engine: each call runs in a worker thread."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    async def _run(self, fn: Callable[[Session], T]) -> T:
        def work() -> T:
            with self._sessions.begin() as session:
                return fn(session)

        return await asyncio.to_thread(work)

    def close(self) -> None:
        self.engine.dispose()

    async def ping(self) -> None:
        await self._run(lambda s: s.execute(text("SELECT 1")))

    # -- sessions

    async def create_session(self, *, now: datetime) -> str:
        session_id = new_session_id()

        def work(s: Session) -> None:
            s.add(SessionRow(id=session_id, created_at=now, updated_at=now))

        await self._run(work)
        return session_id

    async def session_exists(self, session_id: str) -> bool:
        return await self._run(lambda s: s.get(SessionRow, session_id) is not None)

    async def get_session(self, session_id: str) -> SessionRecord:
        def work(s: Session) -> SessionRecord:
            row = s.get(SessionRow, session_id)
            if row is None:
                raise UnknownSession(session_id)
            turns = tuple(TurnRecord.of(turn) for turn in row.turns)
            return SessionRecord(row.id, row.created_at, row.updated_at, len(turns), turns)

        return await self._run(work)

    async def list_sessions(self, *, limit: int = 100, offset: int = 0) -> list[SessionRecord]:
        def work(s: Session) -> list[SessionRecord]:
            counts = (
                select(TurnRow.session_id, func.count(TurnRow.id).label("n"))
                .group_by(TurnRow.session_id)
                .subquery()
            )
            rows = s.execute(
                select(SessionRow, func.coalesce(counts.c.n, 0))
                .outerjoin(counts, counts.c.session_id == SessionRow.id)
                .order_by(SessionRow.created_at.desc())
                .limit(limit)
                .offset(offset)
            ).all()
            return [SessionRecord(row.id, row.created_at, row.updated_at, int(n)) for row, n in rows]

        return await self._run(work)

    async def delete_session(self, session_id: str) -> None:
        def work(s: Session) -> None:
            s.execute(delete(TurnRow).where(TurnRow.session_id == session_id))
            deleted = s.execute(delete(SessionRow).where(SessionRow.id == session_id))
            if cast(CursorResult[Any], deleted).rowcount == 0:
                raise UnknownSession(session_id)

        await self._run(work)

    async def turn_count(self, session_id: str) -> int:
        def work(s: Session) -> int:
            return int(s.scalar(select(func.count(TurnRow.id)).where(TurnRow.session_id == session_id)) or 0)

        return await self._run(work)

    # -- turns

    async def add_turn(self, session_id: str, turn: NewTurn) -> int:
        """Commit a finished user turn and return its index (the next in the session)."""
        flac = encode_flac(turn.audio, MODEL_RATE)

        def work(s: Session) -> int:
            # The session's row locked (PostgreSQL; SQLite has one writer anyway): writers to one session take
            # the next index in turn instead of colliding on it and retrying.
            if s.get(SessionRow, session_id, with_for_update=True) is None:
                raise UnknownSession(session_id)
            index = s.scalar(
                select(func.coalesce(func.max(TurnRow.index) + 1, 0)).where(TurnRow.session_id == session_id)
            )
            s.add(
                TurnRow(
                    session_id=session_id,
                    index=int(index or 0),
                    audio=flac,
                    audio_seconds=len(turn.audio) / MODEL_RATE,
                    speech_start=turn.speech_start,
                    speech_end=turn.speech_end,
                    turn_ended_at=turn.turn_ended_at,
                    context=turn.context,
                )
            )
            s.execute(
                update(SessionRow).where(SessionRow.id == session_id).values(updated_at=turn.turn_ended_at)
            )
            return int(index or 0)

        for attempt in range(5):
            try:
                return await self._run(work)
            except IntegrityError:
                # Another connection of the same session took this index first: take the next one.
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    async def finish_reply(self, session_id: str, index: int, outcome: ReplyOutcome) -> None:
        def work(s: Session) -> None:
            s.execute(
                update(TurnRow)
                .where(TurnRow.session_id == session_id, TurnRow.index == index)
                .values(
                    reply_text=outcome.text,
                    interrupted=outcome.interrupted,
                    error=outcome.error,
                    first_delta_at=outcome.first_delta_at,
                    reply_done_at=outcome.reply_done_at,
                    timings=outcome.timings,
                )
            )

        await self._run(work)

    async def set_transcript(self, session_id: str, index: int, text: str) -> None:
        def work(s: Session) -> None:
            s.execute(
                update(TurnRow)
                .where(TurnRow.session_id == session_id, TurnRow.index == index)
                .values(transcript=text)
            )

        await self._run(work)

    async def cut_reply(self, session_id: str, index: int, heard: str) -> None:
        """A spoken reply was cut off: what the user heard of it is what the conversation keeps."""

        def work(s: Session) -> None:
            s.execute(
                update(TurnRow)
                .where(TurnRow.session_id == session_id, TurnRow.index == index)
                .values(reply_text=heard, interrupted=True)
            )

        await self._run(work)

    async def recent_turns(self, session_id: str, *, limit: int, audio_for_last: int) -> list[PastTurn]:
        """The latest `limit` turns, oldest first, with decoded audio for the newest `audio_for_last`."""

        def work(s: Session) -> list[PastTurn]:
            rows: Sequence[TurnRow] = s.scalars(
                select(TurnRow)
                .where(TurnRow.session_id == session_id)
                .order_by(TurnRow.index.desc())
                .limit(limit)
            ).all()
            wanted = [row.id for row in rows[:audio_for_last]]
            blobs: dict[int, bytes] = (
                dict(
                    s.execute(select(TurnRow.id, TurnRow.audio).where(TurnRow.id.in_(wanted))).tuples().all()
                )
                if wanted
                else {}
            )
            return [
                PastTurn(
                    index=row.index,
                    audio=decode(blobs[row.id])[0] if row.id in blobs else None,
                    audio_seconds=row.audio_seconds,
                    transcript=row.transcript,
                    reply_text=row.reply_text,
                )
                for row in reversed(rows)
            ]

        return await self._run(work)

    async def turn_audio(self, session_id: str, index: int) -> bytes:
        def work(s: Session) -> bytes:
            row = s.scalar(
                select(TurnRow)
                .options(undefer(TurnRow.audio))
                .where(TurnRow.session_id == session_id, TurnRow.index == index)
            )
            if row is None:
                if s.get(SessionRow, session_id) is None:
                    raise UnknownSession(session_id)
                raise LookupError(f"session {session_id} has no turn {index}")
            return row.audio

        return await self._run(work)

    # -- phone callers

    async def _secret(self, name: str) -> bytes:
        def work(s: Session) -> bytes:
            row = s.get(SecretRow, name)
            if row is None:
                row = SecretRow(name=name, value=secrets.token_bytes(32))
                s.add(row)
            return row.value

        try:
            return await self._run(work)
        except IntegrityError:  # another instance made it first: use theirs
            return await self._run(work)

    async def caller_hash(self, number: str) -> str:
        """HMAC-SHA256 of the caller's number with a key kept in the database: the same on every
        instance, and useless to anyone who reads the store without the key's row."""
        key = await self._secret("caller-hash-key")
        return hmac.new(key, number.strip().encode(), hashlib.sha256).hexdigest()

    async def caller_session(self, caller_hash: str, *, now: datetime) -> str:
        """The caller's session, made on their first call."""

        def work(s: Session) -> str:
            row = s.get(CallerRow, caller_hash)
            if row is not None and s.get(SessionRow, row.session_id) is not None:
                return row.session_id
            session_id = new_session_id()
            s.add(SessionRow(id=session_id, created_at=now, updated_at=now))
            s.merge(CallerRow(caller_hash=caller_hash, session_id=session_id))
            return session_id

        try:
            return await self._run(work)
        except IntegrityError:  # the same caller on two lines at once: both get the first session
            return await self._run(work)

    async def issue_call_token(self, session_id: str, *, now: datetime) -> str:
        token = secrets.token_urlsafe(24)

        def work(s: Session) -> None:
            s.execute(delete(CallTokenRow).where(CallTokenRow.issued_at < now - timedelta(days=1)))
            s.add(CallTokenRow(token=token, session_id=session_id, issued_at=now))

        await self._run(work)
        return token

    async def spend_call_token(self, token: str, *, now: datetime, ttl: timedelta) -> str | None:
        """The token's session if it is valid and unspent (it is spent now), else None. One atomic
        UPDATE, so two streams presenting the same token cannot both win, even on two instances."""

        def work(s: Session) -> str | None:
            spent = s.execute(
                update(CallTokenRow)
                .where(
                    CallTokenRow.token == token,
                    CallTokenRow.spent_at.is_(None),
                    CallTokenRow.issued_at > now - ttl,
                )
                .values(spent_at=now)
                .returning(CallTokenRow.session_id)
            ).first()
            return spent[0] if spent else None

        return await self._run(work)
