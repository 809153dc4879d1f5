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
from voice_assistant.web.drain import Drain

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


def drain_of(connections: list[Connection], hub: EventHub, *, timeout_s: float) -> tuple[Drain, Admission]:
    metrics = Metrics()
    load = LoadSensor(LoadLimits(max_lag_s=1.0, max_cpu=1.0), metrics)
    admission = Admission(Settings(), load=load, metrics=metrics)
    return Drain(admission=admission, live=[connections], hub=hub, timeout_s=timeout_s), admission


async def subscriber(hub: EventHub) -> list[str]:
    return [event.type async for event in hub.subscribe("session")]


async def test_new_work_is_refused_at_once_and_the_hub_closes_after_the_last_connection() -> None:
    hub = EventHub()
    connections = [Connection(), Connection()]
    drain, admission = drain_of(connections, hub, timeout_s=3600)
    sse = asyncio.ensure_future(subscriber(hub))
    running = asyncio.ensure_future(drain.run())
    await settle()
    refusal = admission.refusal(offer=True)
    assert refusal is not None and refusal.kind == "draining"
    connections[0].quiet.set()
    await settle()
    assert not running.done() and not sse.done()  # one conversation is still finishing its reply
    connections[1].quiet.set()
    await running
    assert await sse == [] and all(c.drained for c in connections)


async def test_connections_still_busy_at_the_timeout_are_cut_and_the_drain_ends() -> None:
    hub = EventHub()
    busy = Connection()
    drain, _ = drain_of([busy], hub, timeout_s=0)
    sse = asyncio.ensure_future(subscriber(hub))
    await settle()
    await drain.run()
    assert busy.cancelled and not busy.drained
    assert await sse == []
