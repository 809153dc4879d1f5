"""What every instance on one database counts together: rate-limit hits in a moving window, and leases on
what is open (a site key's connections, the phone calls), each renewed by its holder until it ends.

A count and the write that follows it run under one lock per counted name (PostgreSQL: advisory locks held
to the transaction's end; SQLite: its one write lock), so two instances can never both take the last place.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from voice_assistant.history.database import Database
from voice_assistant.history.tables import LeaseRow, RateHitRow

RATE_WINDOW = timedelta(minutes=1)
"""The window of every rate here (new connections per minute); older hits are pruned."""
_NAME_CHARS = 255
"""The columns' width (tables.py); a longer name is stored as its hash."""


def bucket(kind: str, name: str) -> str:
    """`kind:name` as it fits a column: a site key is the operator's to choose, of any length."""
    full = f"{kind}:{name}"
    return full if len(full) <= _NAME_CHARS else f"{kind}:sha256:{hashlib.sha256(name.encode()).hexdigest()}"


@dataclass(frozen=True)
class Rate:
    """At most `amount` hits on `bucket` in any `window`."""

    bucket: str
    amount: int
    window: timedelta


@dataclass(frozen=True)
class Refusal:
    rate: Rate
    retry_after_s: float
    """Until the oldest hit that counts leaves the window."""


def _exclusive(s: Session, names: Collection[str]) -> None:
    """Nobody else counts or writes `names` until this transaction ends."""
    connection = s.connection()
    if connection.dialect.name == "postgresql":
        for name in sorted(set(names)):  # one order everywhere: two transactions never wait on each other
            key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    elif connection.dialect.name == "sqlite":
        # The write lock now, before counting (pysqlite would take it only at the first write).
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _release(s: Session, holder: str, names: Collection[str]) -> None:
    if names:
        s.execute(delete(LeaseRow).where(LeaseRow.holder == holder, LeaseRow.name.in_(list(names))))


class LimitBook(Database):
    """The store's part that web/sites.py's and web/telephone.py's limits count on (HistoryStore is one)."""

    async def hit(self, rates: Sequence[Rate], *, now: datetime) -> Refusal | None:
        """One request against every rate, all or none: None when it is admitted (a hit is recorded on
        each), else the first rate it would pass."""

        def work(s: Session) -> Refusal | None:
            _exclusive(s, [rate.bucket for rate in rates])
            for rate in rates:
                latest = s.scalars(
                    select(RateHitRow.at)
                    .where(RateHitRow.bucket == rate.bucket, RateHitRow.at > now - rate.window)
                    .order_by(RateHitRow.at.desc())
                    .limit(rate.amount)
                ).all()
                if len(latest) >= rate.amount:
                    return Refusal(rate, (latest[-1] + rate.window - now).total_seconds())
            s.add_all(RateHitRow(bucket=rate.bucket, at=now) for rate in rates)
            return None

        return await self._run(work)

    async def take_lease(
        self,
        pool: str,
        *,
        holder: str,
        name: str,
        expires_at: datetime,
        now: datetime,
        limit: int | None,
        release: Collection[str] = (),
        take_over: bool = False,
    ) -> int | None:
        """A lease in `pool` for `holder`'s `name`, unless the pool holds `limit` live ones already: None
        when it is taken, else how many there are. `release`: the holder's leases that are over, dropped
        first so that they do not count. `take_over`: a lease on `name` in `pool` that another holder
        reserved for it (a call's place, from its answer to its stream) becomes this one, counted once."""

        def work(s: Session) -> int | None:
            if limit is not None:
                _exclusive(s, [pool])
            if take_over:
                s.execute(delete(LeaseRow).where(LeaseRow.pool == pool, LeaseRow.name == name))
            _release(s, holder, [*release, name])
            if limit is not None:
                held = self._live(s, pool, now)
                if held >= limit:
                    return held
            s.add(LeaseRow(pool=pool, holder=holder, name=name, expires_at=expires_at))
            return None

        return await self._run(work)

    async def count_leases(
        self, pool: str, *, now: datetime, holder: str, release: Collection[str] = ()
    ) -> int:
        """The live leases in `pool`, after dropping `holder`'s that are over."""

        def work(s: Session) -> int:
            _release(s, holder, release)
            return self._live(s, pool, now)

        return await self._run(work)

    @staticmethod
    def _live(s: Session, pool: str, now: datetime) -> int:
        return int(
            s.scalar(select(func.count(LeaseRow.id)).where(LeaseRow.pool == pool, LeaseRow.expires_at > now))
            or 0
        )

    async def renew_leases(
        self,
        *,
        holder: str,
        held: Mapping[str, str],
        expires_at: datetime,
        release: Collection[str] = (),
    ) -> None:
        """A holder's heartbeat: its `held` leases (name -> pool) live on until `expires_at` (one that ran
        out meanwhile, the holder stalled past its expiry, is taken again) and the ones in `release` end."""

        def work(s: Session) -> None:
            _release(s, holder, release)
            if held:
                s.execute(
                    update(LeaseRow)
                    .where(LeaseRow.holder == holder, LeaseRow.name.in_(list(held)))
                    .values(expires_at=expires_at)
                )
                present = set(
                    s.scalars(
                        select(LeaseRow.name).where(LeaseRow.holder == holder, LeaseRow.name.in_(list(held)))
                    )
                )
                s.add_all(
                    LeaseRow(pool=pool, holder=holder, name=name, expires_at=expires_at)
                    for name, pool in held.items()
                    if name not in present
                )

        await self._run(work)

    async def prune(self, *, now: datetime, hits_before: datetime) -> None:
        """Delete the leases that ran out (their holder is gone) and the hits no window counts any more."""

        def work(s: Session) -> None:
            s.execute(delete(LeaseRow).where(LeaseRow.expires_at <= now))
            s.execute(delete(RateHitRow).where(RateHitRow.at <= hits_before))

        await self._run(work)

    async def release_leases(self, *, holder: str, names: Collection[str]) -> None:
        await self._run(lambda s: _release(s, holder, names))
