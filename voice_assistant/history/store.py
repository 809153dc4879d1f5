"""HistoryStore: every session's turns, one transaction per change, safe to share between instances."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, undefer

from voice_assistant.audio.codec import decode, encode_flac
from voice_assistant.audio.pcm import MODEL_RATE, Samples
from voice_assistant.errors import UnknownSession
from voice_assistant.history.callers import CallerDirectory
from voice_assistant.history.limits import LimitBook
from voice_assistant.history.records import (
    NewTurn,
    PastTurn,
    ReplyOutcome,
    SessionRecord,
    SummaryRecord,
    TurnRecord,
    new_session_id,
)
from voice_assistant.history.tables import SessionRow, SummaryRow, TurnRow

CUT_OFF = "cut off: the server stopped before the reply was done"
"""The `error` of a turn whose reply was in flight when its server died."""

# The records are part of the store's interface: callers import them from here.
__all__ = [
    "CUT_OFF",
    "HistoryStore",
    "NewTurn",
    "PastTurn",
    "ReplyOutcome",
    "SessionRecord",
    "SummaryRecord",
    "TurnRecord",
]


class HistoryStore(CallerDirectory, LimitBook):
    """Sessions and their turns (and, from CallerDirectory, the phone callers; from LimitBook, the limits
    that instances share); opening one upgrades the database's schema to this release's head."""

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
            return SessionRecord(
                row.id, row.created_at, row.updated_at, len(turns), turns, _latest_summary(s, session_id)
            )

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
        """The session, its turns and their audio, and the phone rows that point at it (the foreign keys
        cascade), deleted for real: see `_forget_deleted`."""

        def work(s: Session) -> None:
            s.execute(delete(TurnRow).where(TurnRow.session_id == session_id))
            deleted = s.execute(delete(SessionRow).where(SessionRow.id == session_id))
            if cast(CursorResult[Any], deleted).rowcount == 0:
                raise UnknownSession(session_id)

        await self._run(work)
        await self._forget_deleted()

    async def delete_idle_sessions(self, *, before: datetime, batch: int = 100) -> int:
        """Delete the sessions whose last activity (`updated_at`, their last turn) is older than `before`,
        with their turns, audio and phone rows (the foreign keys cascade); how many. A transaction per
        `batch` sessions keeps each one short; on PostgreSQL the sessions another instance is deleting
        (or a turn is being added to) are skipped, not waited for."""

        def work(s: Session) -> int:
            idle = (
                select(SessionRow.id)
                .where(SessionRow.updated_at < before)
                .limit(batch)
                .with_for_update(skip_locked=True)
            )
            deleted = s.execute(delete(SessionRow).where(SessionRow.id.in_(idle)))
            return cast(CursorResult[Any], deleted).rowcount

        total = 0
        while True:
            deleted = await self._run(work)
            total += deleted
            if deleted < batch:
                break
        if total:
            await self._forget_deleted()
        return total

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
                    transcript=turn.transcript,
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
                    heard_text=outcome.heard,
                    interrupted=outcome.interrupted,
                    error=outcome.error,
                    first_delta_at=outcome.first_delta_at,
                    reply_done_at=outcome.reply_done_at,
                    timings=outcome.timings,
                )
            )

        await self._run(work)

    async def mark_cut_off(self, *, before: datetime, session_id: str | None = None) -> int:
        """Mark the replies that never ended (their server died mid-reply: SIGKILL, a lost machine) as
        cut off, so that the history reads as what happened; how many. A turn's reply is written once,
        when it ends (`finish_reply`), so a turn without `reply_done_at` or an error, committed before
        `before`, had its reply in flight when its server stopped. A reply still in flight elsewhere (a
        sweep races another instance) heals itself: its `finish_reply` overwrites the mark."""

        def work(s: Session) -> int:
            where = [TurnRow.reply_done_at.is_(None), TurnRow.error.is_(None), TurnRow.turn_ended_at < before]
            if session_id is not None:
                where.append(TurnRow.session_id == session_id)
            result = cast(
                CursorResult[Any],
                s.execute(update(TurnRow).where(*where).values(interrupted=True, error=CUT_OFF)),
            )
            return int(result.rowcount)

        return await self._run(work)

    async def set_heard(self, session_id: str, index: int, heard: str) -> None:
        """What the user heard of a spoken reply, once the client says where its playback stopped
        (a Realtime client's `conversation.item.truncate`, which comes after the reply was stored)."""

        def work(s: Session) -> None:
            s.execute(
                update(TurnRow)
                .where(TurnRow.session_id == session_id, TurnRow.index == index)
                .values(heard_text=heard, interrupted=True)
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

    async def recent_turns(
        self, session_id: str, *, limit: int, audio_for_last: int, after: int = -1
    ) -> list[PastTurn]:
        """The latest `limit` turns numbered above `after`, oldest first, with decoded audio for the newest
        `audio_for_last`.

        Each one's `reply_text` is what the conversation keeps of the reply: the heard text where the reply
        was spoken, else the text delivered."""

        def work(s: Session) -> list[PastTurn]:
            rows: Sequence[TurnRow] = s.scalars(
                select(TurnRow)
                .where(TurnRow.session_id == session_id, TurnRow.index > after)
                .order_by(TurnRow.index.desc())
                .limit(limit)
            ).all()
            wanted = [
                row.id for row in rows[:audio_for_last] if row.audio_seconds > 0
            ]  # a typed turn has none
            blobs: dict[int, bytes] = (
                dict(
                    s.execute(select(TurnRow.id, TurnRow.audio).where(TurnRow.id.in_(wanted))).tuples().all()
                )
                if wanted
                else {}
            )
            return [
                _past_turn(row, decode(blobs[row.id])[0] if row.id in blobs else None)
                for row in reversed(rows)
            ]

        return await self._run(work)

    async def turns_between(self, session_id: str, first: int, last: int) -> list[PastTurn]:
        """Turns `first`..`last` as text (no audio), oldest first: what a summary folds."""

        def work(s: Session) -> list[PastTurn]:
            rows = s.scalars(
                select(TurnRow)
                .where(TurnRow.session_id == session_id, TurnRow.index.between(first, last))
                .order_by(TurnRow.index)
            ).all()
            return [_past_turn(row, None) for row in rows]

        return await self._run(work)

    # -- summaries

    async def latest_summary(self, session_id: str) -> SummaryRecord | None:
        return await self._run(lambda s: _latest_summary(s, session_id))

    async def add_summary(self, session_id: str, summary: SummaryRecord) -> None:
        """Store a fold of the session's turns. Another instance that folded the same turns first wins:
        this one's is then an IntegrityError, and the caller reads theirs."""

        def work(s: Session) -> None:
            s.add(
                SummaryRow(
                    session_id=session_id,
                    from_turn=summary.from_turn,
                    through_turn=summary.through_turn,
                    text=summary.text,
                    created_at=summary.created_at,
                )
            )

        await self._run(work)

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
                raise LookupError(f"the session has no turn {index}")
            if not row.audio:
                raise LookupError(f"turn {index} was typed: it has no audio")
            return row.audio

        return await self._run(work)


def _past_turn(row: TurnRow, audio: Samples | None) -> PastTurn:
    """What the conversation keeps of the reply: the heard text where it was spoken, else the delivered."""
    return PastTurn(
        index=row.index,
        audio=audio,
        audio_seconds=row.audio_seconds,
        transcript=row.transcript,
        reply_text=row.reply_text if row.heard_text is None else row.heard_text,
    )


def _latest_summary(s: Session, session_id: str) -> SummaryRecord | None:
    row = s.scalar(
        select(SummaryRow)
        .where(SummaryRow.session_id == session_id)
        .order_by(SummaryRow.through_turn.desc())
        .limit(1)
    )
    return SummaryRecord.of(row) if row is not None else None
