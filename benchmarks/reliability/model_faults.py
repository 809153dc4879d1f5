"""The model failing, hanging past its timeout, and its server restarting, each in the middle of a call.

Our server runs the OpenAI backend against a stand-in vLLM (benchmarks/standin_vllm.py: vLLM itself cannot run
here), a process of its own that the scenario switches to failing (HTTP 500), hanging (no text after the
stream opens) or kills and starts again. In each, the turn spoken during the fault must be stored and end
in an `error` and its `reply_done`, and the next turn, once the fault is over, must be answered. The
recovery runs from the fault's end to that turn's `reply_done` (its 2-3 s of speech included).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from benchmarks.reliability.scenario import Caller, Context, Outcome, log_clean, since, stored_turns
from benchmarks.server import ServerProcess, free_port
from benchmarks.standin_vllm import MODEL

FIRST_TOKEN_TIMEOUT_S = 3.0


class ModelServer:
    """The stand-in vLLM as a process on a port of its own, which a restart keeps."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        module = "benchmarks.standin_vllm"
        self.process = subprocess.Popen([sys.executable, "-m", module, str(self.port)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/v1/models", timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError("the stand-in model server did not start")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def mode(self, mode: str) -> None:
        httpx.post(f"{self.url}/control/{mode}", timeout=5).raise_for_status()


def our_server(folder: Path, model: ModelServer) -> ServerProcess:
    command = [sys.executable, "-m", "voice_assistant", "serve", "--model", MODEL, "--data-dir", str(folder)]
    env = {
        "VA_BACKEND": "openai",
        "VA_OPENAI_BASE_URL": f"{model.url}/v1",
        "VA_OPENAI_FIRST_TOKEN_TIMEOUT_S": str(FIRST_TOKEN_TIMEOUT_S),
        "VA_END_OF_TURN": "silence",
    }
    return ServerProcess(folder, env=env, command=command)


async def _fault(
    context: Context,
    name: str,
    injected: str,
    begin: Callable[[ModelServer], None],
    end: Callable[[ModelServer], None],
) -> Outcome:
    outcome = Outcome(name, injected)
    folder = context.folder(name.replace(" ", "-"))
    model = ModelServer()
    await asyncio.to_thread(model.start)
    server = our_server(folder, model)
    caller = Caller(server.url)
    try:
        await asyncio.to_thread(server.start)
        await caller.connect()
        await caller.turn(0)
        await asyncio.to_thread(begin, model)
        await caller.turn(1)
        outcome.checks["that turn still ends in reply_done"] = await caller.answered(1)
        assert caller.client is not None
        errors = [e.message["data"] for e in caller.client.events("error")]
        outcome.checks["an error event for the turn"] = any(error.get("turn") == 1 for error in errors)
        await asyncio.to_thread(end, model)
        over = time.monotonic()
        outcome.checks["next turn answered"] = await caller.turn(2)
        outcome.recovery_s = since(over)
        assert caller.session_id is not None
        turns = await stored_turns(server.url, caller.session_id)
    finally:
        await caller.hang_up()
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(model.kill)
    outcome.count(caller, turns)
    outcome.checks["server log clean"] = log_clean(server.log())
    return outcome


async def model_fails(context: Context) -> Outcome:
    return await _fault(
        context,
        "model fails",
        "the model server answers 500",
        lambda m: m.mode("fail"),
        lambda m: m.mode("ok"),
    )


async def model_hangs(context: Context) -> Outcome:
    injected = f"no text after the stream opens (timeout {FIRST_TOKEN_TIMEOUT_S:.0f} s)"
    return await _fault(context, "model hangs", injected, lambda m: m.mode("hang"), lambda m: m.mode("ok"))


async def model_restarts(context: Context) -> Outcome:
    return await _fault(
        context,
        "model server restarts",
        "killed, started again after the turn",
        ModelServer.kill,
        ModelServer.start,
    )


MODEL_SCENARIOS: dict[str, Callable[[Context], Awaitable[Outcome]]] = {
    "model-fails": model_fails,
    "model-hangs": model_hangs,
    "model-restarts": model_restarts,
}
