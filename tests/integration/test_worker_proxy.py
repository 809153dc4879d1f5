"""The proxy of `serve --workers N` in front of two stand-in workers: real HTTP and WebSockets on loopback.

The workers are small Starlette apps that say who they are, so each routing rule shows: a new offer
goes to a worker that takes it, trickled candidates and event streams go where their connection lives,
a browser sticks to its worker, the client's address reaches the worker, and every worker's metrics come
out labelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from voice_assistant.workers.proxy import WorkerProxy
from voice_assistant.workers.routing import COOKIE

pytestmark = pytest.mark.integration


@dataclass
class StandInWorker:
    """Answers offers (or refuses them with 503 while `full`), streams events, echoes WebSockets."""

    index: int
    full: bool = False
    seen: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None

    def app(self) -> Starlette:
        async def offer(request: Request) -> Response:
            body = await request.json()
            self.seen.append({**body, "client": request.headers.get("x-forwarded-for")})
            if body["type"] == "offer" and self.full:
                return JSONResponse({"error": "full"}, status_code=503, headers={"Retry-After": "7"})
            session = body.get("session_id") or f"session-{self.index}-{len(self.seen)}"
            return JSONResponse({"type": "answer", "sdp": "v=0", "session_id": session, "worker": self.index})

        async def events(request: Request) -> Response:
            async def stream() -> AsyncIterator[bytes]:
                for n in range(3):
                    yield f"data: {self.index}-{n}\n\n".encode()
                    await asyncio.sleep(0)

            return StreamingResponse(stream(), media_type="text/event-stream")

        async def new_session(_: Request) -> Response:
            self.seen.append({"new session": True})
            return JSONResponse({"session_id": f"session-{self.index}"}, status_code=201)

        async def page(_: Request) -> Response:
            return PlainTextResponse(f"worker {self.index}")

        async def readyz(_: Request) -> Response:
            return JSONResponse({"ready": not self.full})

        async def metrics(_: Request) -> Response:
            return PlainTextResponse(
                "# HELP va_live_sessions Connected sessions.\n# TYPE va_live_sessions gauge\n"
                f"va_live_sessions {self.index + 1}.0\n"
            )

        async def echo(websocket: WebSocket) -> None:
            await websocket.accept()
            text = await websocket.receive_text()
            await websocket.send_text(f"{self.index}:{text}")
            await websocket.close(code=4000 + self.index)

        return Starlette(
            routes=[
                Route("/webrtc/offer", offer, methods=["POST"]),
                Route("/api/sessions/{session_id}/events", events),
                Route("/api/sessions", new_session, methods=["POST"]),
                Route("/", page),
                Route("/readyz", readyz),
                Route("/metrics", metrics),
                WebSocketRoute("/telephone/stream", echo),
            ]
        )


@contextlib.contextmanager
def serving(app: Any, **config: Any) -> Iterator[int]:
    """`app` on a loopback port in a thread of its own, until the block ends."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(5)


@dataclass
class Front:
    url: str
    workers: list[StandInWorker]
    proxy: WorkerProxy


@contextlib.contextmanager
def proxied(**config: Any) -> Iterator[Front]:
    workers = [StandInWorker(0), StandInWorker(1)]
    with contextlib.ExitStack() as stack:
        for worker in workers:
            worker.port = stack.enter_context(serving(worker.app()))
        proxy = WorkerProxy(workers)
        port = stack.enter_context(serving(proxy.app, **config))
        yield Front(f"http://127.0.0.1:{port}", workers, proxy)


@pytest.fixture
def front() -> Iterator[Front]:
    with proxied() as front:
        yield front


def offer(webrtc_id: str, **extra: str) -> dict[str, str]:
    return {"type": "offer", "sdp": "v=0", "webrtc_id": webrtc_id, **extra}


async def new_client_offers(http: httpx.AsyncClient, body: dict[str, str]) -> httpx.Response:
    """An offer from a client with no cookie yet (as each aiortc client, or a widget on another site)."""
    http.cookies.clear()
    return await http.post("/webrtc/offer", json=body)


async def test_new_offers_spread_and_their_candidates_follow_them(front: Front) -> None:
    async with httpx.AsyncClient(base_url=front.url) as http:
        answers = [(await new_client_offers(http, offer(f"pc{i}"))).json() for i in range(4)]
        assert sorted(a["worker"] for a in answers) == [0, 0, 1, 1]
        for answer, i in zip(answers, range(4), strict=True):
            candidate = {"type": "ice-candidate", "webrtc_id": f"pc{i}", "candidate": {}}
            assert (await http.post("/webrtc/offer", json=candidate)).json()["worker"] == answer["worker"]


async def test_a_full_worker_is_passed_over_and_only_a_full_house_refuses(front: Front) -> None:
    front.workers[0].full = True
    async with httpx.AsyncClient(base_url=front.url) as http:
        taken = [(await new_client_offers(http, offer(f"pc{i}"))).json()["worker"] for i in range(3)]
        assert taken == [1, 1, 1]
        front.workers[1].full = True
        refused = await new_client_offers(http, offer("pc-late"))
        assert refused.status_code == 503 and refused.headers["retry-after"] == "7"
        assert refused.json() == {"error": "full"}
        assert (await http.get("/readyz")).status_code == 503
        front.workers[1].full = False
        assert (await http.get("/readyz")).json()["ready"] is True


async def test_a_session_s_events_and_its_reconnect_go_to_the_worker_holding_it(front: Front) -> None:
    async with httpx.AsyncClient(base_url=front.url) as http:
        answers = [(await new_client_offers(http, offer(f"pc{i}"))).json() for i in range(2)]
        for answer in answers:
            stream = await http.get(f"/api/sessions/{answer['session_id']}/events")
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert stream.text == "".join(f"data: {answer['worker']}-{n}\n\n" for n in range(3))
            again = offer("pc-again-" + answer["session_id"], session_id=answer["session_id"])
            assert (await new_client_offers(http, again)).json()["worker"] == answer["worker"]


async def test_a_browser_sticks_to_the_worker_that_served_its_page(front: Front) -> None:
    async with httpx.AsyncClient(base_url=front.url) as first, httpx.AsyncClient(base_url=front.url) as other:
        pages = [(await first.get("/")).text, (await other.get("/")).text]
        assert sorted(pages) == ["worker 0", "worker 1"]
        for http, page in ((first, pages[0]), (other, pages[1])):
            worker = int(page[-1])
            assert http.cookies[COOKIE] == str(worker)
            assert [(await http.get("/")).text for _ in range(3)] == [page] * 3
            assert (await http.post("/webrtc/offer", json=offer(f"ui-{worker}"))).json()["worker"] == worker


async def test_a_new_offer_from_a_browser_whose_worker_is_full_goes_to_another(front: Front) -> None:
    """The widget on a page this server served (/demo) has the cookie; a new offer needs no Gradio state."""
    async with httpx.AsyncClient(base_url=front.url) as http:
        page = (await http.get("/")).text
        worker = int(page[-1])
        front.workers[worker].full = True
        answer = await http.post("/webrtc/offer", json=offer("widget"))
        assert answer.status_code == 200 and answer.json()["worker"] == 1 - worker
        candidate = {"type": "ice-candidate", "webrtc_id": "widget", "candidate": {}}
        assert (await http.post("/webrtc/offer", json=candidate)).json()["worker"] == 1 - worker
        assert (await http.get("/")).text == page  # the page itself stays where its state is


@pytest.mark.parametrize("trusted", [True, False], ids=["behind a local balancer", "facing the world"])
async def test_the_worker_sees_the_client_the_front_door_saw_never_a_forged_one(trusted: bool) -> None:
    """uvicorn takes `X-Forwarded-For` only from peers it trusts (loopback by default: a balancer on the
    machine); the proxy passes on the address so resolved and drops whatever else the client claimed."""
    with proxied(proxy_headers=trusted) as front:
        async with httpx.AsyncClient(base_url=front.url) as http:
            await http.post("/webrtc/offer", json=offer("pc"), headers={"X-Forwarded-For": "203.0.113.9"})
    (seen,) = [entry for worker in front.workers for entry in worker.seen]
    assert seen["client"] == ("203.0.113.9" if trusted else "127.0.0.1")


async def test_websockets_pass_both_ways_and_close_with_the_worker_s_code(front: Front) -> None:
    url = front.url.replace("http://", "ws://") + "/telephone/stream"
    closes = []
    for _ in range(2):
        async with websockets.connect(url) as ws:
            await ws.send("hello")
            reply = await ws.recv()
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.recv()
            closes.append((reply, ws.close_code))
    assert sorted(closes) == [("0:hello", 4000), ("1:hello", 4001)]


async def test_metrics_of_every_worker_come_out_labelled(front: Front) -> None:
    async with httpx.AsyncClient(base_url=front.url) as http:
        text = (await http.get("/metrics")).text
    assert text.count("# TYPE va_live_sessions gauge") == 1
    assert 'va_live_sessions{worker="0"} 1.0' in text and 'va_live_sessions{worker="1"} 2.0' in text


async def test_readyz_reports_each_worker(front: Front) -> None:
    async with httpx.AsyncClient(base_url=front.url) as http:
        answer = (await http.get("/readyz")).json()
    assert answer == {"ready": True, "workers": [{"pid": None, "ready": True}, {"pid": None, "ready": True}]}


@dataclass
class DroppingWorker:
    """Reads each request whole, then hangs up without an answer: it may have carried the request out."""

    port: int = 0
    requests: list[bytes] = field(default_factory=list)
    dies: bool = False
    """Its process dies as it hangs up (SIGKILL while it answered), as its supervisor then sees."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self.dies and self.requests else 4242

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(
            (int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length")), 0
        )
        self.requests.append(lines[0] + b" " + await reader.readexactly(length))
        writer.close()


@contextlib.asynccontextmanager
async def behind_a_failing_worker(
    failing: DroppingWorker | None,
) -> AsyncIterator[tuple[httpx.AsyncClient, StandInWorker]]:
    """Worker 0 fails (hangs up, or with None: nothing listens on its port), worker 1 answers; the
    client's cookie sends it to worker 0 first."""
    healthy = StandInWorker(1)
    server: asyncio.Server | None = None
    with contextlib.ExitStack() as stack:
        healthy.port = stack.enter_context(serving(healthy.app()))
        if failing is None:
            failing = DroppingWorker(port=closed_port())
        else:
            server = await asyncio.start_server(failing.serve, "127.0.0.1", 0)
            failing.port = server.sockets[0].getsockname()[1]
        proxy = WorkerProxy([failing, healthy])
        port = stack.enter_context(serving(proxy.app))
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", cookies={COOKIE: "0"}) as http:
                yield http, healthy
        finally:
            if server is not None:
                server.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_post_the_worker_may_have_carried_out_is_not_replayed_on_another() -> None:
    dropping = DroppingWorker()
    async with behind_a_failing_worker(dropping) as (http, healthy):
        created = await http.post("/api/sessions", json={})
        answered = await http.post("/webrtc/offer", json=offer("pc"))
    assert created.status_code == 502 and answered.status_code == 502
    assert "may have been carried out" in created.json()["error"]
    assert len(dropping.requests) == 2 and healthy.seen == []  # one session at most, one answer at most


async def test_an_idempotent_request_goes_to_another_worker_when_one_fails() -> None:
    dropping = DroppingWorker()
    async with behind_a_failing_worker(dropping) as (http, _):
        page = await http.get("/")
    assert page.text == "worker 1" and len(dropping.requests) == 1


async def test_any_request_goes_to_another_worker_when_one_cannot_be_reached() -> None:
    async with behind_a_failing_worker(None) as (http, healthy):
        created = await http.post("/api/sessions", json={})
        answered = await http.post("/webrtc/offer", json=offer("pc"))
    assert created.status_code == 201 and answered.json()["worker"] == 1
    assert healthy.seen[0] == {"new session": True}


async def test_an_offer_to_a_worker_that_died_meanwhile_goes_to_another() -> None:
    """Its answer, if it made one, died with it; a session it may have created is another matter."""
    dying = DroppingWorker(dies=True)
    async with behind_a_failing_worker(dying) as (http, healthy):
        answered = await http.post("/webrtc/offer", json=offer("pc", session_id="s"))
    assert answered.status_code == 200 and answered.json()["worker"] == 1
    dying = DroppingWorker(dies=True)
    async with behind_a_failing_worker(dying) as (http, healthy):
        created = await http.post("/api/sessions", json={})
    assert created.status_code == 502 and healthy.seen == []
