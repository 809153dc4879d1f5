"""The event hub without a database: local subscribers at once, and what it hands a broadcast; the
broadcast's framing of long batches under NOTIFY's payload limit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.fakes import settle
from voice_assistant.events import ErrorRaised, Event, ReplyDelta, ReplyDone, TurnStarted
from voice_assistant.history.broadcast import Reassembly, frames
from voice_assistant.session.hub import EventHub, event_of

pytestmark = pytest.mark.unit


class LoopbackBroadcast:
    """What a Broadcast does, between hubs in this test."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.receive: Callable[[Any], None] | None = None

    def send(self, value: Any) -> None:
        self.sent.append(json.loads(json.dumps(value)))

    def start(self, receive: Callable[[Any], None]) -> None:
        self.receive = receive

    async def close(self) -> None:
        pass


async def take(subscription: Any, count: int) -> list[Event]:
    return [await asyncio.wait_for(anext(subscription), 1) for _ in range(count)]


async def test_local_subscribers_get_each_event_once_and_the_broadcast_carries_it_elsewhere() -> None:
    here, there = LoopbackBroadcast(), LoopbackBroadcast()
    a, b = EventHub(here), EventHub(there)  # type: ignore[arg-type]
    a.start(), b.start()
    on_a, on_b = a.subscribe("s1"), b.subscribe("s1")
    first_a, first_b = asyncio.ensure_future(anext(on_a)), asyncio.ensure_future(anext(on_b))
    await settle()  # both subscribed
    events = [
        TurnStarted(turn=0),
        ReplyDelta(turn=0, text="hi"),
        ReplyDone(turn=0, text="hi", interrupted=False),
    ]
    for event in events:
        a.publish("s1", event)
    assert [await first_a, *await take(on_a, 2)] == events  # at once, no round trip
    assert there.receive is not None
    for value in here.sent:  # what the database would carry to b
        there.receive(value)
    assert [await first_b, *await take(on_b, 2)] == events
    a.publish("s2", TurnStarted(turn=5))  # nobody subscribes to s2 on b
    there.receive(here.sent[-1])
    assert b._subscribers.keys() == {"s1"}


def test_every_event_comes_back_from_its_wire_form() -> None:
    for event in (
        ReplyDone(turn=3, text="x\x00y", interrupted=True, timings={"first_delta": 0.2}, heard="x"),
        ErrorRaised(message="no"),
        ErrorRaised(message="no", turn=1),
    ):
        assert event_of(json.loads(event.to_json())) == event


def test_a_long_batch_is_cut_into_payloads_under_notifys_limit_and_put_back_together() -> None:
    values = [["s", {"type": "reply_done", "data": {"text": "é\x00" + "w" * 30_000}}], ["s", {"n": 1}]]
    payloads = frames("a1", values)
    assert len(payloads) == 4 and all(len(p.encode()) < 8000 for p in payloads)
    receiver = Reassembly(own="b2")
    assert [receiver.feed(p) for p in payloads[:-1]] == [[]] * 3
    assert receiver.feed(payloads[-1]) == values
    assert Reassembly(own="a1").feed(payloads[0]) == []  # a sender hears its own: ignored


def test_a_batch_with_a_missed_part_is_dropped_and_the_next_one_arrives() -> None:
    long, short = frames("a1", ["w" * 20_000]), frames("a1", ["next"])
    receiver = Reassembly(own="b2")
    assert receiver.feed(long[0]) == [] and receiver.feed(long[2]) == []  # the second part was missed
    assert receiver.feed(short[0]) == ["next"]
    with pytest.raises(ValueError):
        receiver.feed("somebody else's notification")
