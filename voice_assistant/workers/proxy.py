"""The front of `serve --workers N`: one port, each request passed on to the worker process it belongs to.

Only HTTP and WebSockets come through here (offers, the API and its event streams, the UI, phone media
streams); WebRTC media goes straight to the worker over UDP, since the SDP answer carries that worker's
own ICE candidates. Routing decisions are `Router`'s. A worker that cannot be reached, or refuses a new
offer with 503 (it is full, or draining), is passed over for the next one; only when every worker
refuses does the client get the refusal. A worker that fails once the request went out is passed
over only for an idempotent request: a POST it may have carried out (a session created, an offer
answered) is not replayed elsewhere, the client gets 502, unless it is an offer to a worker that died
(its answer would be of no use). `/healthz` is this process's, `/readyz` is ready while any worker is,
and `/metrics` gathers every worker's, each sample labelled with its worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import httpx
import websockets
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection

from voice_assistant.wire_json import parse_json
from voice_assistant.workers.routing import COOKIE, Router, first_of, session_in_path

logger = logging.getLogger(__name__)

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
"""Headers that belong to one connection, not to the request (RFC 9110 7.6.1), and the ones httpx sets."""
REPLACED = frozenset({"x-forwarded-for", "x-forwarded-proto"})
"""Set by the proxy from what its own front door resolved (`_forwarded`), never passed on."""
OFFER_PATH = "/webrtc/offer"
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
WORKER_KEEP_ALIVE_S = 5.0
"""uvicorn's `timeout_keep_alive`, which the workers keep."""
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
"""Methods whose request may be sent again (RFC 9110 9.2.2): once or twice, the outcome is the same."""
DEATH_S, DEATH_POLL_S = 2.0, 0.05
"""How long a failed offer waits to see whether its worker died, and how often it looks."""
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Transport errors before any of the request went out: it can go to another worker, whatever it is."""


class Upstream(Protocol):
    """A worker as the proxy sees it."""

    @property
    def url(self) -> str:
        """Its base URL, http://127.0.0.1:port."""

    @property
    def pid(self) -> int | None:
        """Its process, for operators (/readyz); None while it is not running."""


class WorkerProxy:
    def __init__(self, upstreams: Sequence[Upstream]) -> None:
        self._upstreams = list(upstreams)
        self._workers = [upstream.url for upstream in upstreams]
        self.router = Router(len(upstreams))
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=5.0, read=None, write=30.0, pool=None),
            # An idle connection is dropped here before the worker drops it (uvicorn: after 5 s): a POST sent
            # on one the worker is closing would fail after it went out, and is not sent again.
            limits=httpx.Limits(
                max_connections=None, max_keepalive_connections=64, keepalive_expiry=WORKER_KEEP_ALIVE_S / 2
            ),
        )
        self.app = Starlette(
            routes=[
                Route("/healthz", self._healthz),
                Route("/readyz", self._readyz),
                Route("/metrics", self._metrics),
                Route("/{path:path}", self._forward, methods=ALL_METHODS),
                WebSocketRoute("/{path:path}", self._forward_websocket),
            ],
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- this process's own answers

    async def _healthz(self, _: Request) -> Response:
        return JSONResponse({"status": "live"})

    async def _readyz(self, _: Request) -> Response:
        answers = await asyncio.gather(*(self._worker_readiness(up) for up in self._upstreams))
        ready = any(answer.get("ready") for answer in answers)
        return JSONResponse({"ready": ready, "workers": answers}, status_code=200 if ready else 503)

    async def _worker_readiness(self, upstream: Upstream) -> dict[str, Any]:
        answer: dict[str, Any] = {"pid": upstream.pid}
        try:
            response = await self._client.get(upstream.url + "/readyz", timeout=5.0)
            answer.update(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            answer.update(ready=False, status=f"unreachable: {type(exc).__name__}")
        return answer

    async def _metrics(self, _: Request) -> Response:
        texts = await asyncio.gather(*(self._worker_metrics(url) for url in self._workers))
        return PlainTextResponse(
            labelled_metrics(texts), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    async def _worker_metrics(self, url: str) -> str:
        with contextlib.suppress(httpx.HTTPError):
            response = await self._client.get(url + "/metrics", timeout=5.0)
            if response.status_code == 200:
                return response.text
        return ""

    # -- passing requests on

    async def _forward(self, request: Request) -> Response:
        body = await request.body()
        cookie = self.router.from_cookie(request.cookies.get(COOKIE))
        offer = _offer_fields(body) if request.url.path == OFFER_PATH else {}
        held = first_of(
            [
                self.router.for_connection(offer.get("webrtc_id")),
                self.router.for_session(offer.get("session_id") or session_in_path(request.url.path)),
            ]
        )
        # A new offer may go to any worker that takes it (a browser's own worker first: the cookie is for
        # the Gradio UI's state, which an offer here does not need); the rest go where their connection
        # lives.
        retry_refusals = offer.get("type") == "offer" and held is None
        refusal: httpx.Response | None = None
        for worker in self.router.candidates(first_of([held, cookie])):
            pid = self._upstreams[worker].pid
            try:
                upstream = await self._send(worker, request, body)
            except httpx.TransportError as exc:
                may_retry = _may_retry(request.method, exc)
                if not may_retry and offer.get("type") == "offer":
                    # An answer from a worker that died is of no use to anyone (its connection died with
                    # it): the offer may be made to another.
                    may_retry = await self._died(worker, pid)
                if not may_retry:
                    # The worker may have carried it out (a session created, an offer answered): once
                    # is all a request that is not idempotent may happen.
                    logger.warning(
                        "worker %d failed on %s %s: %r", worker, request.method, request.url.path, exc
                    )
                    if refusal is not None:
                        await refusal.aclose()
                    return JSONResponse(
                        {"error": "the worker failed while answering: the request may have been carried out"},
                        status_code=502,
                    )
                logger.warning("worker %d unreachable: %r", worker, exc)
                continue
            if retry_refusals and upstream.status_code == 503:
                if refusal is not None:
                    await refusal.aclose()
                refusal = upstream
                continue
            if refusal is not None:
                await refusal.aclose()
            if upstream.status_code == 200 and offer.get("type") == "offer":
                answer = await upstream.aread()
                await upstream.aclose()
                self.router.answered(
                    worker, webrtc_id=offer.get("webrtc_id"), session_id=_answered_session(answer)
                )
                return self._read_back(upstream, answer)
            return self._passed_back(upstream, worker, set_cookie=cookie is None)
        if refusal is not None:
            return self._passed_back(refusal, None, set_cookie=False)
        return JSONResponse({"error": "no worker can take this request now"}, status_code=503)

    async def _died(self, worker: int, pid: int | None) -> bool:
        """Whether the worker process `pid` is gone (its supervisor has seen it end, or started another),
        waiting `DEATH_S` at most for it to show: its sockets close while it dies."""
        if pid is None:
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEATH_S
        while self._upstreams[worker].pid == pid:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(DEATH_POLL_S)
        return True

    async def _send(self, worker: int, request: Request, body: bytes) -> httpx.Response:
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP | REPLACED]
        headers += _forwarded(request)
        upstream = self._client.build_request(
            request.method,
            self._workers[worker] + request.url.path,
            params=request.url.query,
            headers=headers,
            content=body,
        )
        upstream.headers["host"] = request.headers.get("host", "")
        return await self._client.send(upstream, stream=True)

    def _passed_back(self, upstream: httpx.Response, worker: int | None, *, set_cookie: bool) -> Response:
        response = StreamingResponse(
            upstream.aiter_raw(), status_code=upstream.status_code, background=BackgroundTask(upstream.aclose)
        )
        response.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in _end_to_end(upstream)]
        if "content-length" in upstream.headers:  # raw bytes pass on as they came: the length holds
            response.headers["content-length"] = upstream.headers["content-length"]
        if set_cookie and worker is not None:
            response.set_cookie(COOKIE, str(worker), httponly=True, samesite="lax")
        return response

    def _read_back(self, upstream: httpx.Response, content: bytes) -> Response:
        """An answer read here (to learn its session) goes back whole, as the worker sent it."""
        response = Response(content, status_code=upstream.status_code)
        response.raw_headers = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in _end_to_end(upstream)
            if k.lower() != "content-encoding"  # httpx has decoded it
        ]
        response.headers["content-length"] = str(len(content))
        return response

    async def _forward_websocket(self, websocket: WebSocket) -> None:
        cookie = self.router.from_cookie(websocket.cookies.get(COOKIE))
        path = websocket.url.path + (f"?{websocket.url.query}" if websocket.url.query else "")
        headers = [
            (k, v)
            for k, v in websocket.headers.items()
            if k.lower() not in HOP_BY_HOP | REPLACED and not k.lower().startswith("sec-websocket")
        ]
        for worker in self.router.candidates(cookie):
            url = self._workers[worker].replace("http://", "ws://", 1) + path
            try:
                upstream = await websockets.connect(
                    url,
                    additional_headers=headers + _forwarded(websocket),
                    subprotocols=websocket.scope.get("subprotocols") or None,
                    max_size=None,
                    open_timeout=10,
                )
            except (OSError, websockets.InvalidHandshake) as exc:
                logger.warning("worker %d refused a WebSocket: %s", worker, exc)
                continue
            async with upstream:
                await websocket.accept(subprotocol=upstream.subprotocol)
                await _pump(websocket, upstream)
            return
        await websocket.close(code=1013, reason="no worker can take this connection now")


async def _pump(client: WebSocket, upstream: ClientConnection) -> None:
    """Both ways until either side closes; the other side is then closed with the same code."""

    async def to_upstream() -> None:
        with contextlib.suppress(WebSocketDisconnect, websockets.ConnectionClosed):
            while True:
                message = await client.receive()
                if message["type"] == "websocket.disconnect":
                    await upstream.close(message.get("code", 1000))
                    return
                if message.get("text") is not None:
                    await upstream.send(message["text"])
                elif message.get("bytes") is not None:
                    await upstream.send(message["bytes"])

    async def to_client() -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            try:
                async for message in upstream:
                    if isinstance(message, str):
                        await client.send_text(message)
                    else:
                        await client.send_bytes(message)
            except websockets.ConnectionClosed:
                pass
            await client.close(upstream.close_code or 1000, upstream.close_reason or "")

    tasks = [asyncio.create_task(to_upstream()), asyncio.create_task(to_client())]
    _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def _forwarded(connection: Request | WebSocket) -> list[tuple[str, str]]:
    """Who the worker is talking to: its per-address limits count the client, not this proxy. The
    client's own X-Forwarded-For is replaced, not extended: it could name anyone."""
    client = connection.client.host if connection.client else "unknown"
    scheme = "https" if connection.url.scheme in ("https", "wss") else "http"
    return [("x-forwarded-for", client), ("x-forwarded-proto", scheme)]


def _offer_fields(body: bytes) -> dict[str, str]:
    """The routing fields of an offer body; a malformed one is the worker's to refuse, with its reason."""
    try:
        parsed = parse_json(body)
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {k: v for k in ("type", "webrtc_id", "session_id") if isinstance(v := parsed.get(k), str)}


def _may_retry(method: str, error: httpx.TransportError) -> bool:
    return method.upper() in IDEMPOTENT or isinstance(error, NEVER_SENT)


def _end_to_end(upstream: httpx.Response) -> list[tuple[str, str]]:
    return [(k, v) for k, v in upstream.headers.multi_items() if k.lower() not in HOP_BY_HOP]


def _answered_session(answer: bytes) -> str | None:
    with contextlib.suppress(ValueError):
        body = json.loads(answer)
        if isinstance(body, dict) and isinstance(body.get("session_id"), str):
            return str(body["session_id"])
    return None


def labelled_metrics(texts: Sequence[str]) -> str:
    """Every worker's metrics in one exposition, each sample with a `worker` label."""
    families: dict[str, tuple[str, str, list[str]]] = {}
    for worker, text in enumerate(texts):
        for family in text_string_to_metric_families(text):
            _, _, lines = families.setdefault(family.name, (family.documentation, family.type, []))
            for sample in family.samples:
                labels = {**sample.labels, "worker": str(worker)}
                rendered = ",".join(f'{k}="{_escaped(v)}"' for k, v in labels.items())
                lines.append(f"{sample.name}{{{rendered}}} {_number(sample.value)}")
    out: list[str] = []
    for name, (documentation, kind, lines) in families.items():
        out += [f"# HELP {name} {_escaped(documentation, quotes=False)}", f"# TYPE {name} {kind}", *lines]
    return "\n".join(out) + "\n"


def _escaped(value: str, *, quotes: bool = True) -> str:
    value = value.replace("\\", "\\\\").replace("\n", "\\n")
    return value.replace('"', '\\"') if quotes else value


def _number(value: float) -> str:
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
