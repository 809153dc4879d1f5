"""Phone callers: their sessions by a keyed hash of the number, one-time call tokens, the shared secrets."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from voice_assistant.history.database import Database
from voice_assistant.history.records import new_session_id
from voice_assistant.history.tables import CallerRow, CallTokenRow, SecretRow, SessionRow


class CallerDirectory(Database):
    """The phone bridge's part of the store (HistoryStore is one)."""

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
