"""The UDP sockets a process holds, from Linux /proc (what `psutil.Process.net_connections` reads)."""

from __future__ import annotations

import contextlib
import os
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

IpAddress = IPv4Address | IPv6Address


def _address(hex_address: str) -> IpAddress:
    """/proc/net writes an address as the kernel holds it: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hex_address)
    in_order = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return IPv4Address(in_order) if len(raw) == 4 else IPv6Address(in_order)


def udp_sockets(pid: int) -> list[tuple[IpAddress, int]]:
    """(local address, port) of every UDP socket, IPv4 and IPv6, that process `pid` has open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target.removeprefix("socket:[").removesuffix("]"))
    sockets = []
    for table in ("udp", "udp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, inode = fields[1], fields[9]
            if inode in inodes:
                address, port = local.split(":")
                sockets.append((_address(address), int(port, 16)))
    return sockets
