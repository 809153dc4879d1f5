"""A throwaway PostgreSQL server of a scenario's own, which it may stop and start at will.

Made with the system's `initdb` / `pg_ctl` in the scenario's folder, on a free port, trusting local
connections: stopping it hurts nobody else's database (CI's shared cluster goes on serving the tests).
PostgreSQL refuses to run as root, so as root it runs as the `postgres` user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from benchmarks.server import free_port

BIN = Path("/usr/lib/postgresql")


def _bin_dir() -> Path | None:
    versions = sorted(BIN.glob("*/bin/pg_ctl"), key=lambda path: int(path.parent.parent.name))
    return versions[-1].parent if versions else None


def available() -> bool:
    return _bin_dir() is not None


class TemporaryPostgres:
    def __init__(self, folder: Path) -> None:
        bin_dir = _bin_dir()
        if bin_dir is None:
            raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql")
        self._bin = bin_dir
        self.folder = folder / "pgdata"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*prefix, *command], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} failed ({done.returncode}): {done.stderr.strip()}")

    def init(self) -> None:
        self.folder.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run(str(self._bin / "initdb"), "-D", str(self.folder), "-A", "trust", "-U", "postgres")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder}"
        log = str(self.folder / "server.log")
        self._run(str(self._bin / "pg_ctl"), "-D", str(self.folder), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        """A fast shutdown: open connections are cut, as when a database host goes away."""
        self._run(str(self._bin / "pg_ctl"), "-D", str(self.folder), "-m", "fast", "-w", "stop")

    def close(self) -> None:
        if (self.folder / "postmaster.pid").exists():
            self.stop()
