"""The OpenAI Realtime endpoint's HTTP side: `GET /v1/realtime` (WebSocket) and client secrets.

A client points its OpenAI SDK (or Pipecat's or LiveKit's OpenAI Realtime service) at this server's
`/v1` and talks to whatever model is served here. The key is checked against `VA_API_KEYS` (when set):
in `Authorization: Bearer`, or, from a browser that cannot set headers, in the WebSocket subprotocol
`openai-insecure-api-key.KEY`, as OpenAI takes it. A browser should not hold the key at all: its page's
server mints a short-lived one with `POST /v1/realtime/client_secrets`. Such a key is signed, not
stored (an HMAC under the API keys), so every instance that shares `VA_API_KEYS` accepts it.

Each connection is one of our sessions; `?session_id=` (a documented extension) continues an earlier
one, whose turns the model then hears.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, WebSocket

from voice_assistant.assistant import Assistant
from voice_assistant.session.pipeline import SessionPipeline
from voice_assistant.session.store_failures import store_failure
from voice_assistant.session.window import CHARS_PER_TOKEN
from voice_assistant.transport import realtime_protocol as rt
from voice_assistant.transport.message_rate import MessageRate
from voice_assistant.transport.realtime import RealtimeConnection, check_text_length
from voice_assistant.web.admission import Admission
from voice_assistant.web.drain import Live
from voice_assistant.web.errors import ApiError
from voice_assistant.web.json_bodies import EscapedJSONResponse, json_object
from voice_assistant.web.sites import ConnectionLimits

POLICY_VIOLATION, TRY_AGAIN_LATER = 1008, 1013
MAX_REASON_BYTES = 123
"""A WebSocket close reason is at most 123 bytes of UTF-8 (RFC 6455): a longer one fails the close, and the
client is dropped (1006) instead of told."""
SECRET_PREFIX = "ek_"
BROWSER_KEY = "openai-insecure-api-key."
MAX_SECRET_REQUEST_BYTES = 64 * 1024
"""A client secret's request is its session's settings: instructions, formats, turn detection."""


class ClientSecrets:
    """Short-lived keys, signed with a key derived from the API keys: valid wherever those are the same."""

    def __init__(self, api_keys: tuple[str, ...], ttl_s: int) -> None:
        material = "\n".join(sorted(api_keys)).encode() or secrets.token_bytes(32)
        self._key = hashlib.sha256(b"voice-assistant client secret\n" + material).digest()
        self.ttl_s = ttl_s

    def mint(
        self, session: dict[str, Any], *, ttl_s: int | None = None, now: float | None = None
    ) -> tuple[str, int]:
        """A key and when it expires (Unix seconds); it carries the session settings it was minted with."""
        expires_at = int((now or time.time()) + (ttl_s or self.ttl_s))
        body = _b64(json.dumps({"exp": expires_at, "session": session}, separators=(",", ":")).encode())
        return f"{SECRET_PREFIX}{body}.{_b64(self._sign(body))}", expires_at

    def session(self, key: str, *, now: float | None = None) -> dict[str, Any] | None:
        """The session settings of a valid, unexpired key; None for anything else."""
        body, _, signature = key.removeprefix(SECRET_PREFIX).partition(".")
        try:
            if not hmac.compare_digest(base64.urlsafe_b64decode(signature + "=="), self._sign(body)):
                return None
            claims = json.loads(base64.urlsafe_b64decode(body + "=="))
        except (binascii.Error, ValueError):
            return None
        if not isinstance(claims, dict) or claims.get("exp", 0) < (now or time.time()):
            return None
        session = claims.get("session")
        return session if isinstance(session, dict) else {}

    def _sign(self, body: str) -> bytes:
        return hmac.new(self._key, body.encode(), hashlib.sha256).digest()


def close_reason(message: str) -> str:
    """As much of `message` as a close frame holds (a query's model name or session id may be long, and
    not ASCII), cut between characters."""
    return message.encode()[:MAX_REASON_BYTES].decode(errors="ignore")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def realtime_router(
    assistant: Assistant, admission: Admission, limits: ConnectionLimits, live: Live[RealtimeConnection]
) -> APIRouter:
    """`limits`: the new and open connections a client address may have (not a key holder's: see
    `counted`); `live`: the connections in progress, filled here, for the drain to end each at a quiet
    moment."""
    router = APIRouter()
    settings = assistant.settings
    api_keys = tuple(key.get_secret_value() for key in settings.web.api_keys)
    client_secrets = ClientSecrets(api_keys, settings.web.client_secret_ttl_s)
    served = {name for name in (settings.model.name, settings.backend.served_model) if name}
    max_text_chars = settings.history.token_budget * CHARS_PER_TOKEN

    def session_change(raw: Any) -> rt.SessionChange:
        """A key's session settings, refused (ProtocolError) as a `session.update` would refuse them."""
        change = rt.session_change(raw)
        if change.instructions is not None:
            check_text_length(change.instructions, max_text_chars, param="session.instructions")
        return change

    def counted(key: str) -> bool:
        """Whether a connection counts against its address's limits: not one that gives an API key (a
        server of the operator's own, which may speak for many users from one address), but one with a
        client secret (a browser) or any, when the endpoint is open."""
        return not api_keys or key.startswith(SECRET_PREFIX)

    def key_session(key: str) -> dict[str, Any] | None:
        """The session settings a key brings ({} for an API key); None when it is not accepted."""
        if key.startswith(SECRET_PREFIX):
            return client_secrets.session(key)
        # Compared with every key, each in constant time: how long it takes tells nothing of which matched.
        matches = [secrets.compare_digest(key.encode(), known.encode()) for known in api_keys]
        return {} if not api_keys or any(matches) else None

    def bearer(authorization: str | None) -> str:
        scheme, _, given = (authorization or "").partition(" ")
        return given.strip() if scheme.lower() == "bearer" else ""

    @router.post("/v1/realtime/client_secrets")
    async def mint_client_secret(
        http: Request, authorization: Annotated[str | None, Header()] = None
    ) -> EscapedJSONResponse:
        """Answered as it is, not through a response model: the session echoed may hold a lone surrogate
        anywhere, a key included, which pydantic's serializer cannot encode (a 500)."""
        key = bearer(authorization)
        if key.startswith(SECRET_PREFIX) or key_session(key) is None:
            raise ApiError(401, "an API key is required: Authorization: Bearer <one of VA_API_KEYS>")
        request = await json_object(http, max_bytes=MAX_SECRET_REQUEST_BYTES, empty={})
        session = request.get("session") or {}
        try:
            session_change(session)  # refused now rather than when the browser connects
        except rt.ProtocolError as exc:
            raise ApiError(400, str(exc)) from exc
        expires = request.get("expires_after") or {}
        seconds = expires.get("seconds") if isinstance(expires, dict) else None
        if seconds is not None and (not isinstance(seconds, int) or not 10 <= seconds <= 7200):
            raise ApiError(400, "expires_after.seconds must be a whole number from 10 to 7200")
        value, expires_at = client_secrets.mint(session, ttl_s=seconds)
        return EscapedJSONResponse(
            {"value": value, "expires_at": expires_at, "session": {"type": "realtime", **session}}
        )

    @router.websocket("/v1/realtime")
    async def realtime(websocket: WebSocket) -> None:
        offered = websocket.scope.get("subprotocols") or []
        browser_key = next((p.removeprefix(BROWSER_KEY) for p in offered if p.startswith(BROWSER_KEY)), "")
        await websocket.accept(subprotocol="realtime" if "realtime" in offered else None)
        events = rt.ServerEvents(beta="realtime=v1" in websocket.headers.get("openai-beta", ""))

        async def refuse(message: str, code: str, close: int, kind: str = "invalid_request_error") -> None:
            await websocket.send_json(events.error(rt.ProtocolError(message, code=code), kind=kind))
            await websocket.close(close, close_reason(message))

        key = bearer(websocket.headers.get("authorization")) or browser_key
        initial = key_session(key)
        if initial is None:
            await refuse("a valid API key or client secret is required", "invalid_api_key", POLICY_VIOLATION)
            return
        model = websocket.query_params.get("model")
        if model is not None and model not in served:
            await refuse(
                f"the model {model!r} is not served here; this server serves {', '.join(sorted(served))}",
                "model_not_found",
                POLICY_VIOLATION,
            )
            return
        if not assistant.ready.is_set():
            await refuse(
                "the server is starting: try again shortly",
                "server_not_ready",
                TRY_AGAIN_LATER,
                "server_error",
            )
            return
        if (refusal := admission.refusal(offer=True)) is not None:
            admission.counted(refusal)
            await refuse(
                f"{refusal.reason}: try again in {admission.retry_after_s} s",
                "server_busy",
                TRY_AGAIN_LATER,
                "server_error",
            )
            return
        try:
            start = session_change(initial) if initial else None
        except rt.ProtocolError as exc:
            await refuse(str(exc), exc.code, POLICY_VIOLATION)
            return
        place = secrets.token_hex(8)
        """This connection's place among its address's open ones."""
        try:
            if counted(key):
                await limits.admit(websocket)
                await limits.hold(websocket, place, alive=lambda: True)
        except ApiError as refused:
            await refuse(str(refused.detail), "rate_limit_exceeded", TRY_AGAIN_LATER)
            return
        except Exception as exc:  # the store is away, as below
            store_failure(
                "the connection could not be counted", exc, metrics=assistant.metrics, session_id=None
            )
            await refuse("the session store is unreachable: try again shortly", "session_unavailable", 1011)
            return
        try:
            await converse(websocket, events, refuse, model, start)
        finally:
            await limits.release(place)

    async def converse(
        websocket: WebSocket,
        events: rt.ServerEvents,
        refuse: Callable[..., Awaitable[None]],
        model: str | None,
        start: rt.SessionChange | None,
    ) -> None:
        """The admitted connection: its session opened (or resumed), then served until either side closes."""
        session_id = websocket.query_params.get("session_id")
        try:
            known = session_id is None or await assistant.store.session_exists(session_id)
            session_id = session_id or await assistant.new_session()
        except (
            Exception
        ) as exc:  # the store is away: refused with why; the next connection works once it is back
            store_failure("the session could not be opened", exc, metrics=assistant.metrics, session_id=None)
            await refuse(
                "the session store is unreachable: try again shortly",
                "session_unavailable",
                1011,
                "server_error",
            )
            return
        if not known:
            await refuse(f"unknown session {session_id!r}", "session_not_found", POLICY_VIOLATION)
            return
        pipelines = assistant.pipelines

        async def open_pipeline(connection: RealtimeConnection) -> SessionPipeline:
            sink = connection if pipelines.can_speak else None
            return await pipelines.open(
                session_id, publish=connection.publish, sink=sink, plain_barge_in=True
            )

        connection = RealtimeConnection(
            websocket,
            session_id=session_id,
            open_pipeline=open_pipeline,
            store=assistant.store,
            metrics=assistant.metrics,
            model_name=model or settings.model.name,
            instructions=settings.model.system_prompt,
            events=events,
            messages=MessageRate(settings.web.max_messages_per_second),
            max_text_chars=max_text_chars,
            start=start,
        )
        live.add(connection)
        try:
            await connection.run()
        finally:
            live.discard(connection)

    return router
