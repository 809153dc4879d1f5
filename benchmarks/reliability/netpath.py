"""The caller's network path to a server in a network namespace of its own, and the faults put on it.

`NetPath` makes a namespace and either a veth pair (faults: nftables rules on its end here) or a pair of TUN
devices joined by a delaying relay (jitter_link.py): the namespace end is the server's address, this end
the caller's, both private (10.77.N.0/24) with no route anywhere else. Its names carry this process's id;
what a run that died left behind (its process gone) is removed before anything is made, and everything
made is removed on `close()`. network.py says what the faults are.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from itertools import count
from pathlib import Path

PREFIX = "vanet"
"""Of every namespace (vanet-PID-N), device (vaPIDhN, vaPIDsN) and nftables table (vanet_PID_N) made here."""
_serial = count(1)
_ours: set[str] = set()
"""The namespaces of this process still open: the others with its id are a dead run's (the id reused)."""


def unavailable() -> str | None:
    """Why no path can be made here (not root, no `ip` or `nft`), or None."""
    if os.geteuid() != 0:
        return "not root: a network namespace, a veth pair and nftables rules need CAP_NET_ADMIN"
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if missing:
        return f"no {' and no '.join(missing)} on this machine (iproute2, nftables)"
    return None


def sh(*args: str, stdin: str | None = None, check: bool = True) -> str:
    done = subprocess.run(args, input=stdin, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_inside(namespace: str) -> None:
    """The processes still in `namespace` (a dead run's server or relay): SIGKILL, each by its id."""
    for pid in sh("ip", "netns", "pids", namespace, check=False).split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


def _stale(name: str, separator: str) -> bool:
    pid = int(name.split(separator)[1])
    return name not in _ours and (pid == os.getpid() or not _alive(pid))


def clean_stale() -> None:
    """Removes the namespaces and tables of runs whose process is gone (their devices go with them)."""
    for line in sh("ip", "netns", "list", check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        if re.fullmatch(rf"{PREFIX}-\d+-\d+", name) and _stale(name, "-"):
            _kill_inside(name)
            sh("ip", "netns", "del", name, check=False)
    for line in sh("nft", "list", "tables", check=False).splitlines():
        match = re.fullmatch(rf"table netdev ({PREFIX}_\d+_\d+)", line.strip())
        if match and _stale(match.group(1).replace("_", "-"), "-"):
            sh("nft", "delete", "table", "netdev", match.group(1), check=False)


def _free_subnet() -> int:
    used = {int(m) for m in re.findall(r"inet 10\.77\.(\d+)\.", sh("ip", "-o", "-4", "addr", "show"))}
    return next(n for n in range(1, 255) if n not in used)


class NetPath:
    """A namespace for the server, and the caller's path to it: `kind` "veth" (faults by `loss()` and
    `outage()`) or "jitter" (TUN devices and a relay delaying each packet `jitter_ms` at random)."""

    def __init__(self, kind: str = "veth", *, jitter_ms: tuple[int, int] = (10, 110)) -> None:
        clean_stale()
        serial, pid = next(_serial), os.getpid()
        self.kind = kind
        self.namespace = f"{PREFIX}-{pid}-{serial}"
        self.here, self.there = f"va{pid}h{serial}", f"va{pid}s{serial}"
        self.table = f"{PREFIX}_{pid}_{serial}"
        subnet = _free_subnet()
        self.caller_address, self.server_address = f"10.77.{subnet}.1", f"10.77.{subnet}.2"
        self.jitter_ms = jitter_ms
        self._relay: subprocess.Popen[str] | None = None
        _ours.add(self.namespace)
        try:
            self._make()
        except BaseException:
            self.close()
            raise

    def _make(self) -> None:
        ns = self.namespace
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        if self.kind == "jitter":
            self._start_relay()
            return
        sh("ip", "link", "add", self.here, "type", "veth", "peer", "name", self.there, "netns", ns)
        sh("ip", "addr", "add", f"{self.caller_address}/24", "dev", self.here)
        sh("ip", "link", "set", self.here, "up")
        sh("ip", "-n", ns, "addr", "add", f"{self.server_address}/24", "dev", self.there)
        sh("ip", "-n", ns, "link", "set", self.there, "up")
        # One chain of faults, on both hooks of this end: ingress is server -> caller, egress caller ->
        # server. A packet dropped at either is lost without a word to its sender, as on a real network.
        sh(
            "nft",
            "-f",
            "-",
            stdin=f"""
            table netdev {self.table} {{
                chain faults {{ }}
                chain from_server {{ type filter hook ingress device "{self.here}" priority 0; jump faults; }}
                chain to_server {{ type filter hook egress device "{self.here}" priority 0; jump faults; }}
            }}
            """,
        )

    def _start_relay(self) -> None:
        low, high = self.jitter_ms
        self._relay = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.reliability.jitter_link", self.namespace, self.here]
            + [self.there, self.caller_address, self.server_address, str(low), str(high)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert self._relay.stdout is not None
        if self._relay.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the jitter relay did not start (exit {self._relay.wait()})")

    def loss(self, percent: int) -> None:
        """From now on `percent` % of the UDP datagrams (all of WebRTC: ICE, DTLS, SCTP, RTP, RTCP) are
        dropped at random, each way; TCP (signalling, the REST API) is spared."""
        self._rule(f"meta l4proto udp numgen random mod 100 < {percent} drop")

    def outage(self) -> None:
        """From now on nothing passes, either way (UDP, TCP, ARP), until `restore()`."""
        self._rule("drop")

    def restore(self) -> None:
        """No faults: every rule out of the chain."""
        sh("nft", "flush", "chain", "netdev", self.table, "faults")

    def _rule(self, rule: str) -> None:
        assert self.kind == "veth", "faults are rules on the veth path"
        sh("nft", "add", "rule", "netdev", self.table, "faults", *rule.split())

    def close(self) -> None:
        """Everything made removed, whatever was made: the relay, what still runs inside, the namespace (its
        end of the veth goes with it, and so the pair), the table."""
        if self._relay is not None:
            self._relay.kill()
            self._relay.wait()
        _kill_inside(self.namespace)
        sh("ip", "netns", "del", self.namespace, check=False)
        sh("nft", "delete", "table", "netdev", self.table, check=False)
        sh("ip", "link", "del", self.here, check=False)
        _ours.discard(self.namespace)
