"""The drain's order of things on fake connections: refuse new work, let each end, then close the SSE hub."""

from __future__ import annotations

import asyncio

import pytest

from tests.fakes import settle
from voice_assistant.config import Settings
from voice_assistant.load import LoadLimits, LoadSensor
from voice_assistant.metrics import Metrics
from voice_assistant.session.hub import EventHub
from voice_assistant.web.admission import Admission
from voice_assistant.web.drain import Drain, Live

pytestmark = pytest.mark.unit


class Connection:
    """Ends its drain when the test says so; notes whether it was cut short."""

    def __init__(self) -> None:
        self.quiet = asyncio.Event()
        self.drained = False
        self.cancelled = False

    async def drain(self) -> None:
        try:
            await self.quiet.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        self.drained = True


def drain_of(
    connections: Live[Connection], hub: EventHub, *, timeout_s: float, pending: list[bool] | None = None
) -> tuple[Drain, Admission]:
    metrics = Metrics()
    load = LoadSensor(LoadLimits(max_lag_s=1.0, max_cpu=1.0, min_audio_rate=0.9), metrics)
    admission = Admission(Settings(), load=load, metrics=metrics)
    waiting = pending if pending is not None else [False]
    drain = Drain(
        admission=admission, live=[connections], hub=hub, timeout_s=timeout_s, pending=lambda: waiting[0]
    )
    return drain, admission


async def subscriber(hub: EventHub) -> list[str]:
    return [event.type async for event in hub.subscribe("session")]


async def test_new_work_is_refused_at_once_and_the_hub_closes_after_the_last_connection() -> None:
    hub = EventHub()
    connections = Live([Connection(), Connection()])
    drain, admission = drain_of(connections, hub, timeout_s=3600)
    sse = asyncio.ensure_future(subscriber(hub))
    running = asyncio.ensure_future(drain.run())
    await settle()
    refusal = admission.refusal(offer=True)
    assert refusal is not None and refusal.kind == "draining"
    first, second = connections
    first.quiet.set()
    await settle()
    assert not running.done() and not sse.done()  # one conversation is still finishing its reply
    second.quiet.set()
    await running
    assert await sse == [] and all(c.drained for c in connections)


async def test_connections_still_busy_at_the_timeout_are_cut_and_the_drain_ends() -> None:
    hub = EventHub()
    busy = Connection()
    drain, _ = drain_of(Live([busy]), hub, timeout_s=0)
    sse = asyncio.ensure_future(subscriber(hub))
    await settle()
    await drain.run()
    assert busy.cancelled and not busy.drained
    assert await sse == []


async def test_a_connection_that_joins_while_others_drain_is_drained_too() -> None:
    hub = EventHub()
    early, late = Connection(), Connection()
    connections = Live([early])
    drain, _ = drain_of(connections, hub, timeout_s=3600)
    running = asyncio.ensure_future(drain.run())
    await settle()
    connections.add(late)  # its offer was answered before the drain; its handler starts now
    early.quiet.set()
    await settle()
    assert not running.done()  # the late one is finishing its reply, not cut
    late.quiet.set()
    await running
    assert early.drained and late.drained


async def test_the_drain_waits_for_an_answered_offer_whose_connection_has_not_joined() -> None:
    hub = EventHub()
    connections: Live[Connection] = Live()
    pending = [True]
    drain, _ = drain_of(connections, hub, timeout_s=3600, pending=pending)
    running = asyncio.ensure_future(drain.run())
    await settle()
    assert not running.done()
    joining = Connection()
    connections.add(joining)
    pending[0] = False
    await settle()
    assert not running.done()
    joining.quiet.set()
    await running
    assert joining.drained
