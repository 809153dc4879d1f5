"""`python -m benchmarks.standin_vllm PORT`: a stand-in for a vLLM server, whose faults a
scenario turns on and off.

A stand-in only because vLLM cannot run here (no GPU, no weights): it speaks what our OpenAI backend reads
of vLLM (`GET /v1/models`, streamed `POST /v1/chat/completions`: SSE chunks, then `[DONE]`), and
`POST /control/{mode}` sets how it answers from then on: `ok` (a short reply), `fail` (HTTP 500, as a
crashing engine answers), `hang` (the stream opens and never sends text). A restart is the process
killed and started again on its port.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MODEL = "stand-in/audio-model"
REPLY = ("All ", "right", ".")
MODES = ("ok", "fail", "hang")


class StandInModel:
    def __init__(self) -> None:
        self.mode = "ok"
        self.app = Starlette(
            routes=[
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/control/{mode}", self._control, methods=["POST"]),
            ]
        )

    async def _models(self, _: Request) -> Response:
        return JSONResponse(
            {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "stand-in"}]}
        )

    async def _control(self, request: Request) -> Response:
        mode = request.path_params["mode"]
        if mode not in MODES:
            return JSONResponse({"error": f"mode is one of {MODES}"}, status_code=400)
        self.mode = mode
        return JSONResponse({"mode": mode})

    async def _chat(self, request: Request) -> Response:
        await request.json()
        if self.mode == "fail":
            return JSONResponse({"object": "error", "message": "engine died", "code": 500}, status_code=500)
        return StreamingResponse(self._stream(hang=self.mode == "hang"), media_type="text/event-stream")

    async def _stream(self, *, hang: bool) -> AsyncIterator[str]:
        yield chunk({"role": "assistant", "content": ""})
        if hang:
            await asyncio.Event().wait()
        for text in REPLY:
            yield chunk({"content": text})
        yield chunk({}, finish_reason="stop")
        yield "data: [DONE]\n\n"


def chunk(delta: dict[str, str], finish_reason: str | None = None) -> str:
    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
    body = {
        "id": "stand-in",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": MODEL,
        "choices": [choice],
    }
    return f"data: {json.dumps(body)}\n\n"


if __name__ == "__main__":
    uvicorn.run(StandInModel().app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
