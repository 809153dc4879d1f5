"""A real server process on a free port, for end-to-end tests and benchmarks; their WebRTC on loopback."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from voice_assistant.ice_addresses import parse_ice_addresses
from voice_assistant.transport.ice import gather_host_candidates_on

LOOPBACK = "127.0.0.1"
"""The servers' `VA_ICE_ADDRESSES` and this process's: test and benchmark media never leave the machine."""


def keep_webrtc_on_loopback() -> None:
    """This process's aiortc peers (`VoiceClient`) gather host candidates on loopback only, as the
    servers started here do (aioice would leave 127.0.0.1 out and use the network's address)."""
    gather_host_candidates_on(parse_ice_addresses(LOOPBACK))


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants now (a `--workers` server's workers; Linux /proc)."""
    tree, index = [pid], 0
    while index < len(tree):
        for task in Path(f"/proc/{tree[index]}/task").glob("*"):
            with contextlib.suppress(OSError):  # a thread or a process that just ended
                tree += [int(child) for child in (task / "children").read_text().split()]
        index += 1
    return tree


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`voice-assistant serve --model tiny` by default; `command` runs another server (a peer), which is
    given `--port` and must answer `GET /readyz` with 200 once it can take connections. Both get
    `VA_ICE_ADDRESSES=127.0.0.1` unless `env` says otherwise."""

    def __init__(
        self,
        data_dir: Path,
        *,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.env = env or {}
        self.args = args or []
        self._command = command
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "server.log"
        self.ready_after_s: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 120.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        started = time.monotonic()
        self.process = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.environment(),
        )
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    self.ready_after_s = time.monotonic() - started
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"server not ready after {timeout} s:\n{self.log()}")

    def environment(self) -> dict[str, str]:
        """The one place a server's environment is made: this process's, what every test and benchmark
        server runs with (one process, unless `env` asks for workers), then this server's own `env`."""
        common = {"PYTHONUNBUFFERED": "1", "VA_ICE_ADDRESSES": LOOPBACK, "VA_WORKERS": "1"}
        return {**os.environ, **common, **self.env}

    def command(self) -> list[str]:
        if self._command is not None:
            return [*self._command, "--port", str(self.port), *self.args]
        return [
            *(sys.executable, "-m", "voice_assistant", "serve", "--model", "tiny"),
            *("--port", str(self.port), "--data-dir", str(self.data_dir), *self.args),
        ]

    def stop(self, *, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def cpu_seconds(self) -> float:
        """CPU time the server's processes (its workers too) have used so far (Linux /proc), to tell
        work from busy waiting. A worker started again after dying starts from zero."""
        assert self.process is not None, "not started"
        return sum(process_cpu_seconds(pid) for pid in process_tree(self.process.pid))

    def rss_mb(self) -> float:
        """The resident memory of the server's processes (Linux /proc)."""
        assert self.process is not None, "not started"
        return sum(_rss_mb(pid) for pid in process_tree(self.process.pid))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-20000:] if self.log_path.exists() else ""


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc")
