"""Network faults on the caller's path: packet loss, a 3 s outage and jitter, between a real caller and a
real server in a network namespace of its own.

The path (netpath.py, made by each scenario and removed at its end, even when it fails): a network namespace
`vanet-PID-N` holding the server (`ip netns exec`, `--host 10.77.N.2`, `VA_ICE_ADDRESSES=10.77.N.2`) and one
end of a veth pair; the other end, 10.77.N.1, is in this process's namespace, and the caller's aiortc
gathers its one host candidate there (no STUN server: nothing is asked outside). The namespace has no other
route: signalling (HTTP), media and the data channel all cross the veth, and nothing leaves the machine.

How the faults are made. This kernel has no sch_netem (`tc qdisc add ... netem` answers "Specified qdisc
kind is unknown" and no module can be loaded), so:
- Loss (loss-5, loss-15): an nftables table of the netdev family on the veth's end here, whose ingress
  hook (server -> caller) and egress hook (caller -> server) jump to one chain, `faults`. For the whole
  conversation, its connection set-up included, that chain holds
  `meta l4proto udp numgen random mod 100 < P drop`: each UDP datagram, so every part of WebRTC (ICE
  checks, DTLS, the SCTP data channel, RTP and RTCP), is dropped with probability P %, independently, both
  ways. The sender is not told (its sendto succeeds), as on a real network. TCP is spared: the offer and
  the REST API go through.
- Outage (outage-3s mid-reply, outage-3s-turn mid-sentence): `drop` in the same chain, which drops every
  packet both ways (UDP, TCP, ARP), for 3 s; then the chain is flushed.
- Jitter: no qdisc this kernel has can delay a packet (it has pfifo, tbf, htb, ingress and clsact: tbf and
  htb only shape a rate; netem, fq, cake, taprio and etf are absent). So the jitter path replaces the veth
  with two TUN devices (the same addresses, one in each namespace) and a relay process between them
  (jitter_link.py) that holds every IP packet for a delay drawn uniformly from 10..110 ms, each way,
  order kept (a packet never overtakes the one before it): netem's `delay 60ms 50ms`, in user space.

Each scenario counts turns as scenario.py does and checks that every turn spoken ended exactly once (as
many `turn_started` and `turn_ended` as turns spoken: none lost, none split in two), that every committed
turn is in the server's history (its REST API), and that the session recovered: every turn answered under
loss or jitter, the next turn after the outage answered, on the same connection or on a new one resuming
the session when the first failed (`reconnects`). Recovery: from the outage's end to that turn's
`reply_done` (its speech and its spoken reply included: the notes give the parts). The notes also give the
median times from the end of a sentence to its `turn_ended` (where the cost of a lossy path shows) and to
its `reply_done` (the reply spoken to its end).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Literal

import httpx
from aiortc import RTCConfiguration

from benchmarks.reliability.netpath import NetPath, unavailable
from benchmarks.reliability.scenario import LEAD_S, TURN_S, Caller, Context, Outcome, since, stored_turns
from benchmarks.server import ServerProcess
from voice_assistant.client import VoiceClient
from voice_assistant.ice_addresses import parse_ice_addresses
from voice_assistant.transport.ice import ConfiguredConnection, gather_host_candidates_on

ENV = {"VA_END_OF_TURN": "silence", "VA_WEBRTC_SPEECH": "true", "VA_MAX_NEW_TOKENS": "48"}
"""Spoken replies (media both ways), long enough to cut off in the middle of; half that in the short form."""
OUTAGE_S = 3.0
NO_STUN = RTCConfiguration(iceServers=[])
"""The caller's peer connections ask no STUN server: the path has no way out, and needs none."""


class NamespacedServer(ServerProcess):
    """`voice-assistant serve --model tiny` inside the path's namespace, on its address there."""

    def __init__(self, data_dir: Path, path: NetPath, env: dict[str, str]) -> None:
        address = path.server_address
        super().__init__(data_dir, env={**env, "VA_ICE_ADDRESSES": address}, args=["--host", address])
        self.path = path

    @property
    def url(self) -> str:
        return f"http://{self.path.server_address}:{self.port}"

    def command(self) -> list[str]:
        return ["ip", "netns", "exec", self.path.namespace, *super().command()]


@contextlib.contextmanager
def caller_candidates_on(address: str) -> Iterator[None]:
    """This process's peer connections gather on `address` (the path's end here) meanwhile."""
    previous = ConfiguredConnection.addresses
    gather_host_candidates_on(parse_ice_addresses(address))
    try:
        yield
    finally:
        ConfiguredConnection.addresses = previous


class PathCaller(Caller):
    """A `Caller` that keeps every connection it made, to count their events together, and when each of
    its sentences ended."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url, configuration=NO_STUN)
        self.clients: list[VoiceClient] = []
        self.sentence_ends: list[float] = []
        self.reconnects = 0

    async def connect(self, base_url: str | None = None) -> None:
        await super().connect(base_url)
        assert self.client is not None
        self.clients.append(self.client)

    async def speak(self, turn: int) -> float:
        spoken = await super().speak(turn)
        self.sentence_ends.append(spoken)
        return spoken

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.pc.connectionState not in ("failed", "closed")

    def count(self, kind: str) -> int:
        return sum(len(client.events(kind)) for client in self.clients)

    async def reconnect(self) -> None:
        """A new connection resuming the session, after the one before failed."""
        self.reconnects += 1
        await self.connect()

    async def answered(self, turn: int) -> bool:
        """The turn answered, on a new connection if the one it was spoken on failed (said again there)."""
        if await self.turn(turn):
            return True
        if self.connected:
            return False
        await self.reconnect()
        return await self.turn(turn)

    def after_sentences(self, kind: str) -> str:
        """The median time from the end of a sentence to the first event of `kind` after it."""
        times = sorted(event.at for client in self.clients for event in client.events(kind))
        latencies = []
        for end in self.sentence_ends:
            after = [at for at in times if at > end]
            if after:
                latencies.append(after[0] - end)
        return f"{statistics.median(latencies):.2f} s" if latencies else "-"


Body = Callable[[NetPath, PathCaller, Outcome], Awaitable[None]]


async def on_path(
    context: Context, outcome: Outcome, folder: str, body: Body, kind: Literal["veth", "jitter"] = "veth"
) -> Outcome:
    """Runs `body` with a server in a new namespace and a caller on the path to it, then counts."""
    if reason := unavailable():  # a machine that cannot make namespaces: skipped, not failed
        outcome.skipped = f"no network namespace: {reason}"
        return outcome
    try:
        path = NetPath(kind)
    except (RuntimeError, OSError) as error:
        outcome.checks["network namespace available"] = False
        outcome.notes = f"no network namespace: {error}"
        return outcome
    outcome.checks["network namespace available"] = True
    env = {**ENV, "VA_MAX_NEW_TOKENS": "24"} if context.short else ENV
    server = NamespacedServer(context.folder(folder), path, env)
    try:
        await asyncio.to_thread(server.start)
        with caller_candidates_on(path.caller_address):
            caller = PathCaller(server.url)
            try:
                await body(path, caller, outcome)
            finally:
                if kind == "veth":
                    path.restore()
                await caller.hang_up()
        assert caller.session_id is not None, "never connected"
        turns = await stored_turns(server.url, caller.session_id)
    finally:
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(path.close)
    started, ended = caller.count("turn_started"), caller.count("turn_ended")
    outcome.spoken, outcome.committed, outcome.stored = caller.spoken, ended, len(turns)
    outcome.lost = max(outcome.committed - len(turns), 0)
    outcome.client_errors = caller.errors
    outcome.reconnects = caller.reconnects
    outcome.checks["each turn spoken ended once"] = started == ended == caller.spoken
    outcome.checks["every committed turn stored"] = len(turns) == ended
    outcome.notes = "; ".join(
        note
        for note in (
            outcome.notes,
            f"turn_started {started}, turn_ended {ended} for {caller.spoken} sentences",
            f"turn_ended {caller.after_sentences('turn_ended')} after the end of its sentence, reply_done"
            f" {caller.after_sentences('reply_done')} (medians)",
            f"{caller.reconnects} reconnects",
            f"server ready in {server.ready_after_s:.1f} s" if server.ready_after_s else "",
        )
        if note
    )
    return outcome


def conversation(context: Context) -> range:
    return range(3 if context.short else 6)


async def lossy(context: Context, percent: int) -> Outcome:
    outcome = Outcome(
        f"{percent} % packet loss", f"{percent} % of UDP datagrams dropped, both ways, all the time"
    )

    async def body(path: NetPath, caller: PathCaller, outcome: Outcome) -> None:
        path.loss(percent)
        await caller.connect()
        answered = [await caller.answered(turn) for turn in conversation(context)]
        outcome.checks["every turn answered"] = all(answered)

    return await on_path(context, outcome, f"loss-{percent}", body)


async def loss_5(context: Context) -> Outcome:
    return await lossy(context, 5)


async def loss_15(context: Context) -> Outcome:
    return await lossy(context, 15)


async def jitter(context: Context) -> Outcome:
    outcome = Outcome("jitter", "every packet held 10-110 ms at random, both ways, order kept")

    async def body(path: NetPath, caller: PathCaller, outcome: Outcome) -> None:
        outcome.notes = (
            f"HTTP round trip over the path {await round_trip_ms(caller.base_url):.0f} ms (median)"
        )
        await caller.connect()
        answered = [await caller.answered(turn) for turn in conversation(context)]
        outcome.checks["every turn answered"] = all(answered)

    return await on_path(context, outcome, "jitter", body, kind="jitter")


async def round_trip_ms(base_url: str, times: int = 9) -> float:
    """`GET /readyz` on a new connection each time: two round trips (the TCP handshake, the request)."""
    spent = []
    for _ in range(times):
        start = time.monotonic()
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
            (await http.get("/readyz")).raise_for_status()
        spent.append((time.monotonic() - start) * 1000)
    return statistics.median(spent)


async def outage_during(context: Context, during: Literal["reply", "turn"]) -> Outcome:
    """Turns answered, then an outage of OUTAGE_S at the next turn's first `reply_delta` ("reply") or 0.8 s
    into its sentence ("turn"), then the conversation goes on."""
    before, after = (0, 1) if context.short else (2, 2)
    where = "at the first reply_delta" if during == "reply" else "0.8 s into the sentence"
    outcome = Outcome(
        f"{OUTAGE_S:.0f} s outage mid-{during}", f"all packets dropped, both ways, {OUTAGE_S:.0f} s, {where}"
    )

    async def body(path: NetPath, caller: PathCaller, outcome: Outcome) -> None:
        await caller.connect()
        for turn in range(before):
            await caller.answered(turn)
        client = caller.client
        assert client is not None
        deltas, done = len(client.events("reply_delta")), len(client.events("reply_done"))
        speaking = asyncio.create_task(caller.speak(before))
        if during == "reply":
            async with asyncio.timeout(TURN_S):
                await client.until(lambda: len(client.events("reply_delta")) > deltas)
        else:
            await asyncio.sleep(LEAD_S + 0.8)
        path.outage()
        await asyncio.sleep(OUTAGE_S)
        path.restore()
        restored, restored_at = time.monotonic(), time.time()
        await speaking
        try:  # the turn in flight: its reply, late
            async with asyncio.timeout(TURN_S):
                await client.until(lambda: len(client.events("reply_done")) > done or not caller.connected)
        except TimeoutError:
            caller.errors.append(f"turn {before}: no reply_done within {TURN_S:.0f} s of the outage")
        back = [at for at, _ in client.speaker if at > restored_at]
        events = [event for event in client.events() if event.at > restored_at]
        replies = client.events("reply_done")[done:]
        answered = await caller.answered(before + 1)
        outcome.recovery_s = since(restored)
        assert caller.client is not None
        last = caller.client.events("reply_done")
        next_reply = last[-1].at - caller.sentence_ends[-1] if answered and last else None
        outcome.checks["next turn answered after the outage"] = answered
        for turn in range(before + 2, before + 1 + after):
            await caller.answered(turn)
        first = events[0] if events else None
        outcome.notes = ", ".join(
            (
                f"after the outage: server audio in {back[0] - restored_at:.2f} s" if back else "no audio",
                f"its first event in {first.at - restored_at:.2f} s ({first.message['type']})"
                if first
                else "no event",
                f"the reply in flight done in {replies[0].at - restored_at:.1f} s"
                if replies
                else "never done",
                "the next turn spoken then"
                + (
                    f", its reply done {next_reply:.1f} s after its sentence"
                    if next_reply is not None
                    else ""
                ),
            )
        )

    return await on_path(context, outcome, f"outage-{during}", body)


async def outage_3s(context: Context) -> Outcome:
    return await outage_during(context, "reply")


async def outage_3s_turn(context: Context) -> Outcome:
    return await outage_during(context, "turn")
