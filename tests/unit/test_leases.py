"""Leases on a virtual clock: counted by every holder on one database, renewed by their heartbeat, given
back when over, and run out by themselves when their holder dies."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.fakes import FakeClock, InlineStore
from voice_assistant.history.leases import Leases

pytestmark = pytest.mark.unit

TTL = 30.0


def on(store: InlineStore, clock: FakeClock) -> Leases:
    return Leases(store, ttl_s=TTL, clock=clock)


async def test_a_pool_holds_its_limit_across_holders(inline_store: InlineStore) -> None:
    clock = FakeClock()
    a, b = on(inline_store, clock), on(inline_store, clock)
    assert await a.take("site:shop", "x", limit=2, alive=lambda: True) is None
    assert await b.take("site:shop", "x", limit=2, alive=lambda: True) is None  # each holder names its own
    assert await b.take("site:shop", "y", limit=2, alive=lambda: True) == 2
    assert await a.take("site:other", "y", limit=2, alive=lambda: True) is None
    assert await a.count("site:shop") == await b.count("site:shop") == 2
    await a.release("x")
    assert await b.count("site:shop") == 1


async def test_a_lease_ends_when_it_is_no_longer_alive(inline_store: InlineStore) -> None:
    clock = FakeClock()
    live = {"x", "y"}
    a, b = on(inline_store, clock), on(inline_store, clock)
    for name in sorted(live):
        await a.take("calls", name, limit=None, alive=lambda name=name: name in live)
    live.discard("x")
    assert await b.count("calls") == 2  # b cannot know yet
    assert await a.count("calls") == 1  # a gives back its own first
    live.discard("y")
    await a.beat()
    assert await b.count("calls") == 0


async def test_the_heartbeat_keeps_leases_and_a_dead_holders_run_out(inline_store: InlineStore) -> None:
    clock = FakeClock()
    alive, dead, watcher = (on(inline_store, clock) for _ in range(3))
    await alive.take("calls", "kept", limit=None, alive=lambda: True)
    await dead.take("calls", "lost", limit=None, alive=lambda: True)
    dies_at = clock.now + timedelta(seconds=TTL)
    for _ in range(6):  # twice the TTL, alive's heartbeat every third of it; dead's never comes
        clock.advance(TTL / 3)
        await alive.beat()
        assert await watcher.count("calls") == (2 if clock.now < dies_at else 1)


async def test_a_holder_that_stalled_past_its_expiry_takes_its_lease_again(inline_store: InlineStore) -> None:
    clock = FakeClock()
    stalled, other = on(inline_store, clock), on(inline_store, clock)
    await stalled.take("calls", "c", limit=None, alive=lambda: True)
    clock.advance(TTL * 2)
    await other.beat()  # prunes the expired lease
    assert await other.count("calls") == 0
    await stalled.beat()
    assert await other.count("calls") == 1


async def test_a_clean_close_gives_every_lease_back(inline_store: InlineStore) -> None:
    clock = FakeClock()
    a, b = on(inline_store, clock), on(inline_store, clock)
    await a.take("calls", "c", limit=None, alive=lambda: True)
    await a.close()
    assert await b.count("calls") == 0


async def test_a_release_while_the_store_is_away_lets_the_lease_run_out(inline_store: InlineStore) -> None:
    clock = FakeClock()
    a, b = on(inline_store, clock), on(inline_store, clock)
    await a.take("calls", "c", limit=None, alive=lambda: True)
    inline_store.fail("release_leases")
    await a.release("c")  # the call ends all the same
    clock.advance(TTL / 3)
    await a.beat()  # no longer renewed
    assert await b.count("calls") == 1
    clock.advance(TTL)
    assert await b.count("calls") == 0


async def test_a_reserved_place_is_checked_and_taken_at_once_and_taken_over_where_it_begins(
    inline_store: InlineStore,
) -> None:
    """A call's place: reserved when it is answered (two answered at once on two instances cannot both
    get the last place), taken over by the instance its stream reaches, counted once."""
    clock = FakeClock()
    a, b = on(inline_store, clock), on(inline_store, clock)
    assert await a.reserve("calls", "t1", limit=1, seconds=60) is None
    assert await b.reserve("calls", "t2", limit=1, seconds=60) == 1
    assert await b.take("calls", "t1", limit=None, alive=lambda: True, take_over=True) is None
    assert await a.count("calls") == await b.count("calls") == 1
    for _ in range(3):  # past the reservation's time: b's call lives on, a renews nothing of it
        clock.advance(TTL / 3)
        await a.beat()
        await b.beat()
    assert await a.count("calls") == 1
    await b.release("t1")
    assert await a.count("calls") == 0


async def test_a_reserved_place_nobody_takes_over_runs_out_alone(inline_store: InlineStore) -> None:
    clock = FakeClock()
    a, b = on(inline_store, clock), on(inline_store, clock)
    assert await a.reserve("calls", "never-streamed", limit=1, seconds=60) is None
    await a.beat()
    assert await b.count("calls") == 1
    clock.advance(61)
    assert await b.count("calls") == 0
