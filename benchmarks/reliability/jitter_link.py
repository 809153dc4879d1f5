"""Jitter without netem: two TUN devices, one here and one in a network namespace, and this process between
them holding every IP packet for a random time before it passes it on.

`python -m benchmarks.reliability.jitter_link NAMESPACE HERE THERE ADDRESS PEER MIN_MS MAX_MS` makes the
device HERE (ADDRESS, its peer PEER) in this namespace and THERE (PEER, its peer ADDRESS) in NAMESPACE, and
relays each packet after a delay drawn uniformly from MIN_MS..MAX_MS, each way. A packet never overtakes the
one before it in its direction (order kept, as netem's `delay` does with a rate). It prints "ready" once both
devices are up and runs until it is killed; the devices go with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import heapq
import itertools
import os
import random
import select
import struct
import subprocess
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000


def open_tun(name: str) -> int:
    """A TUN device `name` (IP packets, no header), non-blocking; it lasts as long as the descriptor."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def bring_up(device: str, address: str, peer: str) -> None:
    subprocess.run(["ip", "addr", "add", address, "peer", peer, "dev", device], check=True)
    subprocess.run(["ip", "link", "set", device, "up"], check=True)


def enter(namespace: str) -> None:
    """This (single-threaded) process, and what it runs, into `namespace`'s network (Python 3.11 has no
    os.setns)."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open(f"/run/netns/{namespace}") as handle:
        if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns {namespace}: {os.strerror(error)}")


def relay(here: int, there: int, low_s: float, high_s: float) -> None:
    other = {here: there, there: here}
    last_due = {here: 0.0, there: 0.0}
    pending: list[tuple[float, int, int, bytes]] = []  # (due, order, to, packet)
    order = itertools.count()
    while True:
        timeout = max(pending[0][0] - time.monotonic(), 0.0) if pending else None
        readable, _, _ = select.select([here, there], [], [], timeout)
        now = time.monotonic()
        for source in readable:
            to = other[source]
            while True:
                try:
                    packet = os.read(source, 65536)
                except BlockingIOError:
                    break
                due = max(now + random.uniform(low_s, high_s), last_due[to])
                last_due[to] = due
                heapq.heappush(pending, (due, next(order), to, packet))
        while pending and pending[0][0] <= time.monotonic():
            _, _, to, packet = heapq.heappop(pending)
            with contextlib.suppress(OSError):  # a full device queue drops it, as a link would
                os.write(to, packet)


def main(argv: list[str]) -> None:
    namespace, here_name, there_name, address, peer, low_ms, high_ms = argv
    here = open_tun(here_name)
    bring_up(here_name, address, peer)
    enter(namespace)
    there = open_tun(there_name)
    bring_up(there_name, peer, address)
    print("ready", flush=True)
    relay(here, there, float(low_ms) / 1000, float(high_ms) / 1000)


if __name__ == "__main__":
    main(sys.argv[1:])
