"""`serve --workers`: how many, the command line each runs, and the routing decisions alone."""

from __future__ import annotations

import ctypes
import functools
import os
import signal
from typing import Any

import pytest
from pydantic import ValidationError

from voice_assistant.cli import SERVE_FLAGS, _settings, _worker_command, parser
from voice_assistant.config import Settings
from voice_assistant.workers import routing, supervisor
from voice_assistant.workers.routing import Router, session_in_path
from voice_assistant.workers.supervisor import PR_SET_PDEATHSIG, Worker, worker_count

pytestmark = pytest.mark.unit


def test_a_worker_per_core_where_workers_are_light_else_one() -> None:
    cores = len(os.sched_getaffinity(0))
    assert worker_count(Settings(model="tiny")) == cores
    assert worker_count(Settings(model="Qwen/Qwen2-Audio-7B-Instruct", backend="openai")) == cores
    assert worker_count(Settings(model="Qwen/Qwen2-Audio-7B-Instruct")) == 1  # each would load the model
    assert worker_count(Settings(model="Qwen/Qwen2-Audio-7B-Instruct", workers=3)) == 3


@pytest.mark.parametrize("given", ["0", "-3"])
def test_serve_workers_is_checked_as_va_workers_is(given: str) -> None:
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        _settings(parser().parse_args(["serve", "--workers", given]), SERVE_FLAGS)
    assert worker_count(_settings(parser().parse_args(["serve", "--workers", "3"]), SERVE_FLAGS)) == 3


def test_a_worker_runs_the_same_serve_flags_on_its_own_port() -> None:
    args = parser().parse_args(
        ["--log-level", "DEBUG", "serve", "--model", "tiny", "--port", "80", "--host", "0.0.0.0"]
        + ["--workers", "2", "--min-silence-ms", "500", "--data-dir", "/srv/va"]
    )
    command = _worker_command(args)
    assert command[1:6] == ["-m", "voice_assistant", "--log-level", "DEBUG", "serve"]
    flags = command[6:]
    assert dict(zip(flags[::2], flags[1::2], strict=True)) == {
        "--model": "tiny",
        "--data-dir": "/srv/va",
        "--min-silence-ms": "500",
    }


def test_new_work_goes_round_and_a_preference_comes_first() -> None:
    router = Router(3)
    assert [router.candidates()[0] for _ in range(4)] == [0, 1, 2, 0]
    assert router.candidates(preferred=2) == [2, 1, 0]  # then round from the next in turn (1)
    assert sorted(router.candidates()) == [0, 1, 2]


def test_a_connection_and_its_session_are_remembered_where_they_were_answered() -> None:
    router = Router(2)
    router.answered(1, webrtc_id="pc", session_id="s")
    assert router.for_connection("pc") == 1 and router.for_session("s") == 1
    router.answered(0, webrtc_id="pc2", session_id="s")  # reconnected elsewhere: the session moved
    assert router.for_session("s") == 0 and router.for_connection(None) is None


def test_old_connections_are_forgotten_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routing, "REMEMBERED", 2)
    router = Router(2)
    for i in range(3):
        router.answered(i % 2, webrtc_id=f"pc{i}", session_id=None)
    assert [router.for_connection(f"pc{i}") for i in range(3)] == [None, 1, 0]


@pytest.mark.parametrize("cookie", [None, "", "x", "-1", "2", "1.0", "\u00b2"])
def test_a_cookie_naming_no_worker_of_ours_is_ignored(cookie: str | None) -> None:
    assert Router(2).from_cookie(cookie) is None


def test_the_session_of_an_event_stream_path() -> None:
    assert session_in_path("/api/sessions/abc/events") == "abc"
    assert session_in_path("/api/sessions/abc") is None
    assert session_in_path("/api/sessions/abc/audio/0") is None


def test_a_worker_trusts_the_proxy_for_the_client_s_address_not_the_balancer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Behind a balancer the supervisor's environment names the balancer (uvicorn's FORWARDED_ALLOW_IPS);
    a worker is reached only through the proxy on loopback, so that is whom it must believe."""
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.2")
    monkeypatch.setenv("VA_WORKERS", "4")
    environment = Worker(0, ["voice-assistant", "serve"]).environment()
    assert environment["FORWARDED_ALLOW_IPS"] == "127.0.0.1" and environment["VA_WORKERS"] == "1"


def test_the_worker_s_child_only_calls_prctl_looked_up_before_the_fork(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Python code run between fork and exec in a process with threads may deadlock (a lock held by a
    thread that the fork left behind): the child gets libc's prctl itself, with its arguments bound."""
    started: list[dict[str, Any]] = []

    class Popen:
        pid = 1234

        def __init__(self, command: list[str], **options: Any) -> None:
            started.append(options)

    monkeypatch.setattr(supervisor.subprocess, "Popen", Popen)
    Worker(0, ["voice-assistant", "serve"]).start()
    (options,) = started
    preexec = options["preexec_fn"]
    assert isinstance(preexec, functools.partial) and not preexec.keywords
    assert isinstance(preexec.func, ctypes._CFuncPtr) and preexec.func.__name__ == "prctl"  # C, no Python
    assert preexec.args == (PR_SET_PDEATHSIG, signal.SIGTERM)
