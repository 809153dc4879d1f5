"""A fuzz pass of a live server's routes: generated malformed, oversized and out-of-order messages to every
HTTP and WebSocket route, with a bystander session alongside that must come through unharmed.

`fuzz_routes(base_url, cases=N, seed=S)` sends N cases to each route (the same cases for the same seed),
several at once, and returns a `FuzzReport`. What counts as handled:

- HTTP: a 2xx, or a 4xx whose body is JSON with an `error`. A 5xx is a server error; a 4xx without that
  body is unclear; a connection dropped without an answer is a crash.
- WebSockets: the server answers (`error` events, whatever else it sends) or closes with a code and a
  reason (1003 binary, 1008 policy, 1009 too big); a Realtime connection still open at the end must answer
  a probe (an unknown event gets its `error`). A close with 1011 or an `internal_error` event is a server
  error; a close without a reason is unclear; a close without a close frame (1006), or no answer to the
  probe, is a crash.
- The server answers `/healthz` at the end; the bystander, a REST session created before the pass and a
  Realtime connection open all along, reads back and answers a typed turn before and after it.

The server should run with the tiny model, without `VA_API_KEYS`, `VA_TWILIO_AUTH_TOKEN` or `VA_SITES`
(the cases then reach the parsers behind them), and with room for the pass: `VA_MAX_CALLS` and the offer
rates above what N cases use (tests/e2e/test_fuzz_routes.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import time
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import websockets

from benchmarks.phone_client import twiml_stream
from benchmarks.report import format_table

CONCURRENCY = 8
"""Cases in flight at once, across all routes."""
ANSWER_S = 15.0
"""How long a server may take to answer a case (a loaded 2-core machine, a 15 MiB event)."""
CALL_WAIT_S = 0.5
"""How long a media stream is watched for a close after its last message (a call that goes on is fine)."""
PROBE = json.dumps({"type": "fuzz.probe", "event_id": "fuzz-probe"})
MAX_OFFENDING = 10
MANUAL_TEXT = {"type": "session.update", "session": {"turn_detection": None, "output_modalities": ["text"]}}
BROWSER_OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 4005214130 4005214130 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "a=msid-semantic:WMS *",
        "m=audio 42882 UDP/TLS/RTP/SAVPF 96 0",
        "c=IN IP4 127.0.0.1",
        "a=sendrecv",
        "a=mid:0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=rtcp-mux",
        "a=rtpmap:96 opus/48000/2",
        "a=rtpmap:0 PCMU/8000",
        "a=ice-ufrag:SvsU",
        "a=ice-pwd:vaZEOJxGW3RQSBouSLFuBU",
        "a=fingerprint:sha-256 " + ":".join(["F9"] * 32),
        "a=setup:actpass",
        "",
    ]
)
"""What aiortc offers for one audio track (no candidates: nobody answers the server's ICE checks)."""
OFFERED = [f"fuzz-connection-{n}" for n in range(4)]
"""The ids whole offers take: their connections then get candidates, and offers again (409)."""
CANDIDATE = "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host"
REALTIME_TYPES = [
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "output_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.truncate",
    "conversation.item.delete",
    "conversation.item.retrieve",
    "response.create",
    "response.cancel",
]
TWILIO_EVENTS = ["connected", "start", "media", "mark", "dtmf", "stop", "clear"]


@dataclass(frozen=True)
class HttpCase:
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.method} {self.path[:80]} {_shown(self.body)} {self.headers or ''}".strip()


@dataclass(frozen=True)
class SocketCase:
    path: str
    messages: list[str | bytes]
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    call_token: bool = False
    """A phone stream: its `start` messages carry a real call's token (CALL_TOKEN)."""

    def __str__(self) -> str:
        shown = ", ".join(_shown(message) for message in self.messages[:4])
        more = f" (+{len(self.messages) - 4} more)" if len(self.messages) > 4 else ""
        return f"WS {self.path}?{urlencode(self.query)} {self.headers or ''} [{shown}{more}]"


Case = HttpCase | SocketCase
CALL_TOKEN = "fuzz-call-token"
"""Stands for a real call's token in a phone case's messages (as JSON writes it), fetched when it runs."""


def _shown(value: str | bytes | None, limit: int = 60) -> str:
    if value is None:
        return ""
    text = repr(value[:limit])
    return f"{text}... ({len(value)})" if len(value) > limit else text


@dataclass(frozen=True)
class Outcome:
    label: str
    """What the server did: `400`, `close 1008`, `answered`, `error invalid_json` ..."""
    problem: str | None = None
    """None: handled as it should be; else `server error`, `unclear` or `crash`."""


@dataclass
class Offending:
    route: str
    case: str
    outcome: str


@dataclass
class FuzzReport:
    seed: int
    cases: dict[str, int] = field(default_factory=dict)
    """Cases tried, per route."""
    outcomes: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per route: how often each outcome (status, close code, error code) was seen."""
    server_errors: int = 0
    """5xx answers, WebSocket closes with 1011, `internal_error` events."""
    unclear: int = 0
    """Refusals without a reason: a 4xx without a JSON `error`, a close without a reason."""
    crashes: int = 0
    """Connections dropped without an answer (a reset, 1006, no answer to the probe)."""
    alive: bool = False
    """The server answered /healthz after the pass."""
    bystander_ok: bool = False
    bystander: str = ""
    offending: list[Offending] = field(default_factory=list)
    """The first few cases that were not handled, with what happened."""
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        problems = self.server_errors + self.unclear + self.crashes
        return problems == 0 and self.alive and self.bystander_ok

    def record(self, route: str, case: Case, outcome: Outcome) -> None:
        self.cases[route] = self.cases.get(route, 0) + 1
        seen = self.outcomes.setdefault(route, {})
        seen[outcome.label] = seen.get(outcome.label, 0) + 1
        if outcome.problem is None:
            return
        if outcome.problem == "server error":
            self.server_errors += 1
        elif outcome.problem == "unclear":
            self.unclear += 1
        else:
            self.crashes += 1
        if len(self.offending) < MAX_OFFENDING:
            self.offending.append(Offending(route, str(case)[:300], f"{outcome.problem}: {outcome.label}"))

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "clean": self.clean}

    def table(self) -> str:
        rows = [
            [
                route,
                count,
                ", ".join(f"{label} x{n}" for label, n in Counter(self.outcomes[route]).most_common(4)),
            ]
            for route, count in self.cases.items()
        ]
        summary = (
            f"{sum(self.cases.values())} cases in {self.seconds:.1f} s: {self.server_errors} server errors,"
            f" {self.unclear} unclear, {self.crashes} crashes; alive: {self.alive};"
            f" bystander: {self.bystander}"
        )
        return format_table(["route", "cases", "most seen"], rows) + "\n" + summary


class Generator:
    """Every route's cases, drawn from one seeded random source: the same seed, the same cases."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def pick(self, *choices: Any) -> Any:
        return self.random.choice(choices)

    def text(self) -> str:
        """A string as a client might send one: empty, ASCII, any character, control characters."""
        length = self.random.choice([0, 1, 5, 40, 300])
        alphabet = self.pick(
            "abcdefghijklmnopqrstuvwxyz0123456789",
            "\0\n\r\t \"'\\{}[]:,<>&%/?#=;",
            "\u00e9\u4e2d\U0001f600\ufffd\u202e\ud800",
        )
        return "".join(self.random.choice(alphabet) for _ in range(length))

    def frame(self) -> str:
        """`text()` as a WebSocket text frame, a URL or a form can carry it: no lone surrogate (those
        reach the server as JSON escapes, in `value()`)."""
        return self.text().replace("\ud800", "\ufffd")

    def value(self, depth: int = 0) -> Any:
        """Any JSON value, NaN and lone surrogates included."""
        makers: list[Callable[[], Any]] = [
            lambda: None,
            lambda: self.pick(True, False),
            lambda: self.pick(0, -1, 1, 2**31, -(2**63), 10**30, 7),
            lambda: self.pick(0.5, -1e308, 1e-300, float("nan"), float("inf")),
            self.text,
            lambda: self.pick("offer", "ice-candidate", "audio/pcm", "server_vad", "message", "user"),
        ]
        if depth < 3:
            makers += [
                lambda: [self.value(depth + 1) for _ in range(self.random.randrange(4))],
                lambda: {self.text(): self.value(depth + 1) for _ in range(self.random.randrange(4))},
                lambda: {key: self.value(depth + 1) for key in self.random.sample(KNOWN_KEYS, 3)},
            ]
        return self.random.choice(makers)()

    def garbage(self) -> bytes:
        """A body that is no JSON object: bytes, text, JSON of another kind, JSON nested too deep."""
        return self.pick(
            lambda: self.random.randbytes(self.random.randrange(1, 200)),
            lambda: self.text().encode("utf-8", "surrogatepass"),
            lambda: json.dumps(self.value()).encode(),
            lambda: b"[" * self.random.choice([40, 5000, 100_000]),
            lambda: b'{"a": 1, "a": 2, ' + b'"b": ' * 3,
        )()

    def oversized(self) -> bytes:
        return b'{"sdp": "' + b"v" * self.random.choice([200_000, 2_000_000]) + b'"}'

    def sdp(self) -> str:
        """The browser's offer with a few lines dropped, doubled or garbled."""
        lines = BROWSER_OFFER.split("\r\n")
        for _ in range(self.random.randrange(1, 4)):
            at = self.random.randrange(len(lines))
            match self.random.randrange(3):
                case 0:
                    del lines[at]
                case 1:
                    lines.insert(at, lines[at])
                case _:
                    lines[at] = lines[at][: self.random.randrange(len(lines[at]) + 1)] + self.text()
        return "\r\n".join(lines)

    def headers(self) -> dict[str, str]:
        """Some of the headers the routes read, with values printable in an HTTP header."""
        printable = "".join(char for char in self.text() if " " <= char <= "~").strip()
        headers = {
            "Origin": self.pick("https://evil.example", "null", "http://[::1", printable),
            "X-Site-Key": self.pick("shop", "", printable),
            "Authorization": self.pick("Bearer x", "Bearer", "Basic Zm9v", printable),
            "X-Twilio-Signature": printable,
            "Content-Type": self.pick(
                "application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"
            ),
        }
        return {key: headers[key] for key in self.random.sample(sorted(headers), self.random.randrange(3))}

    # -- the routes

    def offer(self) -> HttpCase:
        connection = self.pick(*OFFERED, self.frame() or "x")
        candidate = self.pick(
            self.value(),
            {"candidate": self.pick(self.text(), self.value(), CANDIDATE), "sdpMid": self.value()},
        )
        body = self.pick(
            self.garbage,
            self.oversized,
            lambda: json.dumps({key: self.value() for key in ("sdp", "type", "webrtc_id")}).encode(),
            lambda: json.dumps(
                {"sdp": self.sdp(), "type": "offer", "webrtc_id": connection, "session_id": self.value()}
            ).encode(),
            lambda: json.dumps(  # a whole offer: a connection (the first time), 409 (its id again), 404
                {
                    "sdp": BROWSER_OFFER,
                    "type": "offer",
                    "webrtc_id": connection,
                    "session_id": self.pick(None, "0" * 32),
                }
            ).encode(),
            lambda: json.dumps(
                {"type": "ice-candidate", "webrtc_id": connection, "candidate": candidate}
            ).encode(),
        )()
        return HttpCase("POST", "/webrtc/offer", body, self.headers())

    def segment(self) -> str:
        """`frame()` as one path segment: a `/`, `.` or `..` would make another path (Gradio's)."""
        return quote(self.frame().replace("/", "").strip(".") or "x", safe="%")

    def session_path(self) -> str:
        session = self.pick(self.segment, lambda: "0" * 32, lambda: "%00" + "a" * 31, lambda: "a" * 5000)()
        return f"/api/sessions/{session}"

    def sessions(self) -> HttpCase:
        index = self.pick("0", "-1", "99999999999999999999999", self.segment(), "1e3")
        query = {
            "limit": self.pick("1", "0", "abc", "1001", "-5"),
            "offset": self.pick("0", "-1", str(10**20)),
        }
        return self.pick(
            lambda: HttpCase("POST", "/api/sessions", self.garbage(), self.headers()),
            lambda: HttpCase("GET", "/api/sessions?" + urlencode(query), None, self.headers()),
            lambda: HttpCase(self.pick("GET", "DELETE"), self.session_path(), None, self.headers()),
            lambda: HttpCase("GET", f"{self.session_path()}/turns/{index}/audio"),
            lambda: HttpCase("GET", f"{self.session_path()}/events", None, self.headers()),
        )()

    def page(self) -> HttpCase:
        path = self.pick("/widget.js", "/demo", "/webrtc/ice-servers")
        return HttpCase("GET", f"{path}?{urlencode({self.frame(): self.frame()})}", None, self.headers())

    def webhook(self) -> HttpCase:
        form = {self.pick("From", "To", "CallSid", self.frame()): self.frame() for _ in range(3)}
        body = self.pick(
            lambda: urlencode(form).encode(),
            self.garbage,
            lambda: b"--x\r\nContent-Disposition: form-data; name=" + self.random.randbytes(20),
            lambda: b"From=" + b"1" * 2_000_000,
        )()
        content_type = self.pick(
            "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "multipart/form-data"
        )
        return HttpCase("POST", "/telephone/incoming", body, {**self.headers(), "Content-Type": content_type})

    def client_secret(self) -> HttpCase:
        session = self.pick(self.value, lambda: self.session(), lambda: {"type": self.value()})()
        body = self.pick(
            self.garbage,
            lambda: json.dumps({"session": session, "expires_after": {"seconds": self.value()}}).encode(),
            lambda: json.dumps({"session": session}).encode(),
            lambda: b'{"session": ' * 40 + b"{}" + b"}" * 40,
        )()
        return HttpCase("POST", "/v1/realtime/client_secrets", body, self.headers())

    def session(self) -> dict[str, Any]:
        """A session.update's session, GA or beta shaped, with some fields wrong."""
        detection = {
            "type": self.pick("server_vad", "semantic_vad", "push_to_talk", self.value()),
            self.pick("threshold", "prefix_padding_ms", "silence_duration_ms", "eagerness"): self.value(),
        }
        audio = {"input": {"format": self.pick({"type": "audio/pcm", "rate": self.value()}, self.value())}}
        return {
            key: value
            for key, value in {
                "type": self.pick("realtime", "transcription", self.value()),
                "instructions": self.pick(self.text(), self.value()),
                "turn_detection": self.pick(None, detection, self.value()),
                "audio": self.pick(audio, {"input": {"turn_detection": detection}}, self.value()),
                "output_modalities": self.pick(["text"], ["audio"], [], ["video"], self.value()),
                "input_audio_format": self.pick("pcm16", "g711_ulaw", "mp3", self.value()),
                "voice": self.pick("alloy", {"id": self.value()}, self.value()),
            }.items()
            if self.random.random() < 0.5
        }

    def realtime_event(self) -> str | bytes:
        kind = self.pick(*REALTIME_TYPES)
        return self.pick(
            lambda: json.dumps(
                {"type": kind, **{key: self.value() for key in self.random.sample(KNOWN_KEYS, 3)}}
            ),
            lambda: json.dumps({"type": "session.update", "session": self.session()}),
            lambda: json.dumps(MANUAL_TEXT),
            lambda: json.dumps(
                {"type": "input_audio_buffer.append", "audio": self.pick("AAAA", "AAE=", "%%%", "")}
            ),
            lambda: json.dumps({"type": "conversation.item.create", "item": self.item()}),
            lambda: json.dumps(
                {"type": self.pick("response.create", "response.cancel", "input_audio_buffer.commit")}
            ),
            lambda: json.dumps(
                {"type": "conversation.item.truncate", "item_id": self.text(), "audio_end_ms": self.value()}
            ),
            lambda: json.dumps({"type": self.text(), "event_id": self.text()}),
            self.frame,
            lambda: self.random.randbytes(self.random.randrange(1, 50)),
            lambda: "[" * 100_000,
        )()

    def item(self) -> Any:
        part = self.pick(
            {"type": "input_text", "text": self.pick(self.text(), self.value())},
            {"type": "input_audio", "audio": self.pick("AAAA", "AAE=", "***", self.value())},
            {"type": self.value()},
            self.value(),
        )
        return self.pick(
            {"type": "message", "role": "user", "content": self.pick([part], [part, part], part, [])},
            {"type": "message", "role": self.pick("assistant", "system", self.value()), "content": [part]},
            {"type": "function_call_output", "call_id": "c1", "output": "{}"},
            self.value(),
        )

    def realtime(self) -> SocketCase:
        messages: list[str | bytes] = [self.realtime_event() for _ in range(self.random.randrange(1, 8))]
        if self.random.random() < 0.1:  # a flood
            messages += [self.realtime_event()] * 200
        if self.random.random() < 0.03:  # past the protocol's 15 MiB, or past the socket's 16 MiB
            messages.append(self.pick("x" * (15 * 1024 * 1024 + 1), "x" * (17 * 1024 * 1024)))
        query = {key: self.frame() for key in self.random.sample(["model", "session_id", self.frame()], 1)}
        if self.random.random() < 0.8:  # most cases reach the events, past the refusals of a bad query
            query = {}
        headers = self.pick({}, {"OpenAI-Beta": "realtime=v1"}, {"Authorization": "Bearer whatever"})
        return SocketCase("/v1/realtime", messages, query, headers)

    def start(self, token: str, *, garbled: bool = False) -> dict[str, Any]:
        """A stream's `start` with `token`, as Twilio sends it, or with its fields garbled."""
        media_format = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
        details = {"streamSid": "MZfuzz", "customParameters": {"token": token}, "mediaFormat": media_format}
        if garbled:
            details[self.pick("streamSid", "customParameters", "mediaFormat")] = self.value()
        return {"event": "start", "streamSid": "MZfuzz", "start": details}

    def twilio_message(self, token: str) -> str | bytes:
        start = self.start(token, garbled=self.random.random() < 0.5)
        payload = self.pick(base64.b64encode(self.random.randbytes(160)).decode(), "***", "", self.value())
        return self.pick(
            lambda: json.dumps(start),
            lambda: json.dumps({"event": "media", "streamSid": "MZfuzz", "media": {"payload": payload}}),
            lambda: json.dumps({"event": self.pick(*TWILIO_EVENTS), self.text(): self.value()}),
            lambda: json.dumps({"event": "mark", "streamSid": "MZfuzz", "mark": {"name": self.text()}}),
            lambda: json.dumps({"event": "stop"}),
            self.frame,
            lambda: self.random.randbytes(self.random.randrange(1, 50)),
            lambda: "[" * 50_000,
            lambda: json.dumps({"event": "media", "media": {"payload": "A" * 70_000}}),
        )()

    def call(self) -> SocketCase:
        real = self.random.random() < 0.5
        token = CALL_TOKEN if real else self.pick("", "made-up", self.frame())
        messages = [self.twilio_message(token) for _ in range(self.random.randrange(1, 8))]
        if real and self.random.random() < 0.7:  # most real calls start as Twilio starts them, then go wrong
            messages.insert(0, json.dumps(self.start(token)))
        if self.random.random() < 0.1:  # garbage without end
            messages += [self.frame() or "x"] * 60
        return SocketCase("/telephone/stream", messages, call_token=real)


KNOWN_KEYS = [
    "type", "event_id", "sdp", "webrtc_id", "session_id", "candidate", "session", "item", "item_id",
    "audio", "audio_end_ms", "content_index", "response", "event", "streamSid", "start", "media", "mark",
]  # fmt: skip
"""The fields the parsers read: objects that have them get past the first checks."""
ROUTES: dict[str, Callable[[Generator], Case]] = {
    "POST /webrtc/offer": Generator.offer,
    "/api/sessions...": Generator.sessions,
    "GET /widget.js, /demo, /webrtc/ice-servers": Generator.page,
    "POST /telephone/incoming": Generator.webhook,
    "POST /v1/realtime/client_secrets": Generator.client_secret,
    "WS /telephone/stream": Generator.call,
    "WS /v1/realtime": Generator.realtime,
}


class Runner:
    """Sends cases to one server and judges what it did."""

    def __init__(self, base_url: str, http: httpx.AsyncClient) -> None:
        self._base = base_url.rstrip("/")
        self._ws = self._base.replace("http", "ws", 1)
        self._http = http

    async def run(self, case: Case) -> Outcome:
        try:
            async with asyncio.timeout(ANSWER_S):
                if isinstance(case, HttpCase):
                    return await self._request(case)
                return await self._socket(case)
        except TimeoutError:
            return Outcome("no answer", "crash")

    async def _request(self, case: HttpCase) -> Outcome:
        try:
            request = self._http.build_request(
                case.method, case.path, content=case.body, headers=case.headers
            )
            response = await self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            return Outcome(f"dropped ({type(exc).__name__})", "crash")
        try:
            status = response.status_code
            if status < 400:
                return Outcome(str(status))  # an event stream is not read: it would not end
            await response.aread()
            if status >= 500:
                return Outcome(f"{status} {response.text[:80]}", "server error")
            try:
                error = response.json().get("error")
            except ValueError:
                error = None
            return Outcome(str(status), None if isinstance(error, str) and error else "unclear")
        finally:
            await response.aclose()

    async def _socket(self, case: SocketCase) -> Outcome:
        messages = case.messages
        if case.call_token:
            token = await self._call_token()
            messages = [m.replace(CALL_TOKEN, token) if isinstance(m, str) else m for m in messages]
        url = f"{self._ws}{case.path}" + (f"?{urlencode(case.query)}" if case.query else "")
        realtime = case.path == "/v1/realtime"
        errors: Counter[str] = Counter()
        try:
            async with websockets.connect(url, additional_headers=case.headers, max_size=None) as socket:
                for message in messages:
                    await socket.send(message)
                if not realtime:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(CALL_WAIT_S):
                            async for _ in socket:  # the greeting's media and marks
                                pass
                    return (
                        _closed(socket.close_code, socket.close_reason)
                        if socket.close_code
                        else Outcome("open")
                    )
                await socket.send(PROBE)
                async for raw in socket:
                    event = json.loads(raw)
                    if event.get("type") != "error":
                        continue
                    code = str(event["error"].get("code"))
                    if code == "internal_error":
                        return Outcome(f"error {code}", "server error")
                    if event["error"].get("event_id") == "fuzz-probe":
                        return Outcome(
                            f"answered after {errors.most_common(1)[0][0]}" if errors else "answered"
                        )
                    errors[code] += 1
                return _closed(socket.close_code, socket.close_reason, before_the_probe=True)
        except websockets.ConnectionClosed as closed:
            received = closed.rcvd
            return _closed(received.code, received.reason) if received else _closed(1006, "")
        except (OSError, websockets.InvalidHandshake) as exc:
            return Outcome(f"refused ({type(exc).__name__})", "crash")

    async def _call_token(self) -> str:
        """A real call's one-time token, as Twilio's webhook gets it; none when the server answers none."""
        try:
            answer = await self._http.post("/telephone/incoming", data={"From": "+15550009999"})
            return twiml_stream(answer.text)[1].get("token", "")
        except (httpx.HTTPError, ConnectionRefusedError, ElementTree.ParseError):  # busy, 403, no answer
            return ""


def _closed(code: int | None, reason: str | None, *, before_the_probe: bool = False) -> Outcome:
    """A socket the server closed: with what code, and why."""
    if code is None or code == 1006:
        return Outcome("dropped (1006)", "crash")
    if code == 1011:
        return Outcome(f"close 1011 {reason}", "server error")
    if code == 1000 and before_the_probe:  # a bad event is answered, not ended without a word
        return Outcome("close 1000 before the probe was answered", "unclear")
    why = (reason or "").split("'")[0].split('"')[0][:50].strip()  # not what the reason quotes
    return Outcome(f"close {code} {why}".strip(), None if reason or code == 1000 else "unclear")


async def bystander_before(base_url: str) -> tuple[str, Any, str]:
    """A REST session created, and a Realtime connection answering a typed turn: (the REST session, the
    open connection, its session)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        created = await http.post("/api/sessions")
        created.raise_for_status()
    socket = await websockets.connect(base_url.replace("http", "ws", 1) + "/v1/realtime", max_size=None)
    session = await _next(socket, "session.created")
    await socket.send(json.dumps(MANUAL_TEXT))
    await typed_turn(socket)
    return created.json()["session_id"], socket, session["session"]["id"]


async def typed_turn(socket: Any) -> None:
    """A typed turn, answered: AssertionError when the response does not complete."""
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Are you there?"}]}
    await socket.send(json.dumps({"type": "conversation.item.create", "item": item}))
    await socket.send(json.dumps({"type": "response.create"}))
    done = await _next(socket, "response.done")
    assert done["response"]["status"] == "completed", done


async def _next(socket: Any, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(60):
        while True:
            event: dict[str, Any] = json.loads(await socket.recv())
            if event["type"] == kind:
                return event


async def bystander_after(base_url: str, rest_session: str, socket: Any, realtime_session: str) -> str:
    """What is wrong with the bystander after the pass; "" when nothing is."""
    try:
        await typed_turn(socket)
        await socket.close()
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            rest = await http.get(f"/api/sessions/{rest_session}")
            turns = (await http.get(f"/api/sessions/{realtime_session}")).json()["turns"]
    except (AssertionError, OSError, TimeoutError, websockets.ConnectionClosed, httpx.HTTPError) as exc:
        return f"{type(exc).__name__}: {exc}"[:200]
    if rest.status_code != 200:
        return f"the REST session reads {rest.status_code}"
    if len(turns) != 2 or not all(turn["reply_text"] for turn in turns):
        return f"the Realtime session holds {len(turns)} turns: {turns}"[:200]
    return ""


async def fuzz_routes(base_url: str, *, cases: int, seed: int) -> FuzzReport:
    """`cases` generated cases to each route of the server at `base_url`, several at once, with a bystander
    alongside; the report says what the server did with each."""
    started = time.monotonic()
    report = FuzzReport(seed=seed)
    generator = Generator(seed)
    work = [(route, make(generator)) for route, make in ROUTES.items() for _ in range(cases)]
    generator.random.shuffle(work)
    rest_session, socket, realtime_session = await bystander_before(base_url)
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base_url, timeout=ANSWER_S, limits=limits) as http:
        runner = Runner(base_url, http)
        slots = asyncio.Semaphore(CONCURRENCY)

        async def one(route: str, case: Case) -> None:
            async with slots:
                report.record(route, case, await runner.run(case))

        await asyncio.gather(*(one(route, case) for route, case in work))
        try:
            report.alive = (await http.get("/healthz")).status_code == 200
        except httpx.HTTPError:
            report.alive = False
    problem = await bystander_after(base_url, rest_session, socket, realtime_session)
    report.bystander_ok, report.bystander = not problem, problem or "unharmed"
    report.seconds = time.monotonic() - started
    return report
