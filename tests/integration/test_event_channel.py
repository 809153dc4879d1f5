"""Events across instances through a real PostgreSQL (LISTEN/NOTIFY): two hubs on one fresh database, as
two server processes would have; a long reply, the order, no echo, and the listener's reconnect."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from voice_assistant.events import Event, ReplyDelta, ReplyDone, TurnEnded, TurnStarted
from voice_assistant.session.hub import EventHub

pytestmark = pytest.mark.integration


@pytest.fixture
async def hubs(postgres_database: str) -> AsyncIterator[tuple[EventHub, EventHub]]:
    a, b = EventHub.for_database(postgres_database), EventHub.for_database(postgres_database)
    a.start(), b.start()
    for hub in (a, b):
        assert hub._broadcast is not None
        await asyncio.wait_for(hub._broadcast.listening.wait(), 10)
    yield a, b
    await a.close()
    await b.close()


async def collect(subscription: AsyncIterator[Event], count: int, seconds: float = 10) -> list[Event]:
    async def take() -> list[Event]:
        return [await anext(subscription) for _ in range(count)]

    return await asyncio.wait_for(take(), seconds)


def terminate(database_url: str, role: str, origin: str) -> None:
    """Kill one of a hub's connections on the server, as a restart or a network cut would."""
    engine = create_engine(database_url)
    with engine.begin() as connection:
        killed = connection.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name"),
            {"name": f"voice-assistant {role} {origin}"},
        ).all()
    engine.dispose()
    assert killed == [(True,)]


def turn(index: int, *pieces: str) -> list[Event]:
    return [
        TurnStarted(turn=index),
        TurnEnded(turn=index, audio_seconds=1.5),
        *(ReplyDelta(turn=index, text=piece) for piece in pieces),
        ReplyDone(turn=index, text="".join(pieces), interrupted=False, timings={"first_delta": 0.3}),
    ]


async def test_a_subscriber_on_b_gets_the_events_published_on_a_in_order_and_once(
    hubs: tuple[EventHub, EventHub],
) -> None:
    a, b = hubs
    on_a, on_b, elsewhere = a.subscribe("s1"), b.subscribe("s1"), b.subscribe("s2")
    waiting = [asyncio.ensure_future(anext(s)) for s in (on_a, on_b, elsewhere)]
    await asyncio.sleep(0.1)
    long_piece = "words\x00and ünïcode " * 500  # a reply_done of ~50 kB: seven NOTIFY payloads
    events = [*turn(0, "Hello ", "there."), *turn(1, *[long_piece] * 4)]
    for event in events:
        a.publish("s1", event)
    a.publish("s2", TurnStarted(turn=7))
    got_a = [await waiting[0], *await collect(on_a, len(events) - 1)]
    got_b = [await waiting[1], *await collect(on_b, len(events) - 1)]
    assert got_a == events and got_b == events
    assert await waiting[2] == TurnStarted(turn=7)
    b.publish("s1", TurnStarted(turn=2))  # and the other way
    assert await collect(on_a, 1) == await collect(on_b, 1) == [TurnStarted(turn=2)]
    # Nothing more: a's own events did not come back to it through the database.
    with pytest.raises(TimeoutError):
        await collect(on_a, 1, seconds=1)


async def test_both_sides_reconnect_after_losing_their_connection(
    hubs: tuple[EventHub, EventHub], postgres_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = hubs
    assert a._broadcast is not None and b._broadcast is not None
    on_b = b.subscribe("s1")
    first: asyncio.Future[Any] = asyncio.ensure_future(anext(on_b))
    await asyncio.sleep(0.1)
    a.publish("s1", TurnStarted(turn=0))
    assert await asyncio.wait_for(first, 10) == TurnStarted(turn=0)

    with caplog.at_level(logging.WARNING, logger="voice_assistant.history.broadcast"):
        terminate(postgres_database, "listener", b._broadcast.origin)
        for _ in range(100):
            if not b._broadcast.listening.is_set():
                break
            await asyncio.sleep(0.05)
        await asyncio.wait_for(b._broadcast.listening.wait(), 10)
        terminate(postgres_database, "sender", a._broadcast.origin)
        a.publish("s1", TurnStarted(turn=1))  # fails on the dead connection, is sent again once connected
        assert await collect(on_b, 1) == [TurnStarted(turn=1)]
    messages = [record.getMessage() for record in caplog.records]
    assert any("lost the event channel" in m for m in messages), messages
    assert any("could not send events" in m for m in messages), messages


async def test_what_is_still_queued_at_close_reaches_the_other_instances(postgres_database: str) -> None:
    a, b = EventHub.for_database(postgres_database), EventHub.for_database(postgres_database)
    a.start(), b.start()
    try:
        assert b._broadcast is not None
        await asyncio.wait_for(b._broadcast.listening.wait(), 10)
        on_b = b.subscribe("s1")
        first: asyncio.Future[Any] = asyncio.ensure_future(anext(on_b))
        await asyncio.sleep(0.1)
        events = turn(0, "The last ", "words before the shutdown.")
        for event in events:
            a.publish("s1", event)
        await a.close()  # at once: nothing has been sent yet
        assert [await asyncio.wait_for(first, 10), *await collect(on_b, len(events) - 1)] == events
    finally:
        await a.close()
        await b.close()
