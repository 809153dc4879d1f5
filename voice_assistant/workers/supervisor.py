"""`serve --workers N`: N server processes on loopback ports behind one proxy on the public port.

One process's event loop saturates near one core (aiortc does its per-packet work in Python), so a
machine with more cores serves more callers with more processes. Each worker is a whole server (its own
model, VAD, WebRTC connections); what they share lives in the database. The supervisor starts them,
starts again one that dies (its connections are gone, but every finished turn is stored and a client
that reconnects resumes on another), and on SIGTERM or SIGINT passes the signal on at once, so each
worker drains its conversations while the proxy keeps serving, and exits after the last of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Sequence
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from voice_assistant.config import Settings
from voice_assistant.workers.proxy import WorkerProxy

logger = logging.getLogger(__name__)

RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
"""Waits before starting a worker again after it died, growing while it keeps dying at start."""
PR_SET_PDEATHSIG = 1
"""prctl(2): the signal a process gets when its parent dies."""
STOP_MARGIN_S = 30.0
"""Beyond a worker's own drain (`VA_DRAIN_TIMEOUT_S`): its shutdown, storing what is left."""


def worker_count(settings: Settings) -> int:
    """VA_WORKERS, else one per usable core where a worker is light (a remote or tiny model), else one:
    each worker loads its own copy of an in-process model."""
    if settings.web.workers is not None:
        return settings.web.workers
    if settings.backend.kind == "openai" or settings.model.name == "tiny":
        return len(os.sched_getaffinity(0))
    return 1


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def die_with_parent() -> Callable[[], object]:
    """What the worker runs before its program: Linux sends it SIGTERM (a drain) if the supervisor dies,
    even by SIGKILL, so no worker is left holding connections that nothing routes to. libc's prctl is
    looked up here, in the supervisor: between fork and exec, with the supervisor's threads frozen
    mid-way (one may hold the loader's or the allocator's lock), the child only calls it."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return functools.partial(prctl, PR_SET_PDEATHSIG, int(signal.SIGTERM))


class Worker:
    """One `voice-assistant serve` process on a loopback port, started again when it dies."""

    def __init__(self, index: int, command: Sequence[str]) -> None:
        self.index = index
        self.port = free_loopback_port()
        self._command = [*command, "--host", "127.0.0.1", "--port", str(self.port)]
        self.process: subprocess.Popen[bytes] | None = None
        self._deaths = 0
        self._started_at = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    def environment(self) -> dict[str, str]:
        """The supervisor's environment, but a plain server (VA_WORKERS=1) that takes the client's address
        from the proxy in front of it (on loopback), whichever balancer the proxy itself trusts."""
        return {**os.environ, "VA_WORKERS": "1", "FORWARDED_ALLOW_IPS": "127.0.0.1"}

    def start(self) -> None:
        self.process = subprocess.Popen(self._command, env=self.environment(), preexec_fn=die_with_parent())
        self._started_at = time.monotonic()
        logger.info("worker %d started (pid %d, port %d)", self.index, self.process.pid, self.port)

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    async def watch(self, stopping: asyncio.Event) -> None:
        """Start the worker again each time it dies, until the supervisor stops."""
        while not stopping.is_set():
            assert self.process is not None
            code = await asyncio.to_thread(self.process.wait)
            if stopping.is_set():
                return
            lived = time.monotonic() - self._started_at
            self._deaths = 0 if lived > max(RESTART_BACKOFF_S) else self._deaths + 1
            wait = RESTART_BACKOFF_S[min(self._deaths, len(RESTART_BACKOFF_S) - 1)]
            logger.error(
                "worker %d exited with %s after %.0f s: starting again in %g s", self.index, code, lived, wait
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), wait)
            if not stopping.is_set():
                self.start()

    async def stopped(self, within_s: float) -> None:
        if self.process is None:
            return
        try:
            await asyncio.wait_for(asyncio.to_thread(self.process.wait), within_s)
        except TimeoutError:
            logger.error("worker %d did not exit within %g s: killed", self.index, within_s)
            self.process.kill()
            await asyncio.to_thread(self.process.wait)


class _ProxyServer(uvicorn.Server):
    """uvicorn with the signal also passed to the workers the moment it comes. On SIGTERM the proxy
    goes on serving while they drain (the streams of their live sessions pass through it, and a new
    offer gets a worker's 503 instead of a closed port), and stops once the last worker has exited;
    SIGINT, or a second SIGTERM, stops it at once."""

    def __init__(
        self, config: uvicorn.Config, workers: Sequence[Worker], stopping: asyncio.Event, stop_within_s: float
    ) -> None:
        super().__init__(config)
        self._workers = workers
        self._stopping = stopping
        self._draining = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_within_s = stop_within_s
        """How long the workers may take to exit once the signal went on."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        for worker in self._workers:
            worker.signal(sig)
        if self.loop is None:
            super().handle_exit(sig, frame)
            return
        # A signal handler may run between any two steps of the loop: hand over to the loop.
        self.loop.call_soon_threadsafe(self._stopping.set)
        if sig == signal.SIGTERM and not self._draining:
            self._draining = True
            self.loop.call_soon_threadsafe(self._stop_after_workers)
            return
        super().handle_exit(sig, frame)

    def _stop_after_workers(self) -> None:
        async def stop() -> None:
            await asyncio.gather(*(worker.stopped(self.stop_within_s) for worker in self._workers))
            self.should_exit = True

        self._stopper = asyncio.ensure_future(stop())


def serve(settings: Settings, worker_command: Sequence[str], *, workers: int, log_level: str) -> None:
    """Run `workers` copies of `worker_command` (a `serve` command line without host and port) behind
    the proxy on the settings' host and port, until a signal stops them all."""
    pool = [Worker(index, worker_command) for index in range(workers)]
    proxy = WorkerProxy(pool)
    stopping = asyncio.Event()

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        server.loop = asyncio.get_running_loop()
        for worker in pool:
            worker.start()
        watching = [asyncio.create_task(worker.watch(stopping)) for worker in pool]
        try:
            yield
        finally:
            stopping.set()
            for worker in pool:  # SIGINT or SIGTERM already went on; this is for any other way out
                worker.signal(signal.SIGTERM)
            await asyncio.gather(*(worker.stopped(server.stop_within_s) for worker in pool))
            for task in watching:
                task.cancel()
            await proxy.aclose()

    proxy.app.router.lifespan_context = lifespan
    config = uvicorn.Config(
        proxy.app,
        host=settings.web.host,
        port=settings.web.port,
        log_level=log_level,
        lifespan="on",
        server_header=False,  # the worker's own headers pass through
        date_header=False,
    )
    server = _ProxyServer(config, pool, stopping, settings.web.drain_timeout_s + STOP_MARGIN_S)
    logger.info("%d workers behind http://%s:%d", workers, settings.web.host, settings.web.port)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn raises a captured SIGINT again once stopped
        server.run()
