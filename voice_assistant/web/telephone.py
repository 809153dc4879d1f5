"""The phone bridge's HTTP side: Twilio's voice webhook (TwiML) and the media-stream WebSocket."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

from fastapi import APIRouter, Request, Response, WebSocket, WebSocketDisconnect
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, VoiceResponse

from voice_assistant.assistant import Assistant
from voice_assistant.audio_rate import AudioStreams
from voice_assistant.clock import utc_now
from voice_assistant.session.store_failures import store_failure
from voice_assistant.transport.message_rate import MessageRate
from voice_assistant.transport.phone import PhoneCall
from voice_assistant.web.admission import Admission
from voice_assistant.web.errors import ApiError

STREAM_PATH = "/telephone/stream"
BUSY = "Sorry, all our lines are busy right now. Please call again in a few minutes. Goodbye."
UNAVAILABLE = "Sorry, the assistant cannot take calls right now. Please try again later. Goodbye."
CALLS = "calls"
"""The lease pool of the calls in progress on every instance (history/leases.py)."""
OVERLOADED = "Sorry, the assistant is very busy right now. Please call again in a minute. Goodbye."
"""Said when admission control refuses the call: the server is overloaded or shutting down."""


def _twiml(response: VoiceResponse) -> Response:
    return Response(str(response), media_type="application/xml")


def _refusal(words: str) -> Response:
    response = VoiceResponse()
    response.say(words)
    response.hangup()
    return _twiml(response)


def telephone_router(
    assistant: Assistant, admission: Admission, calls: set[PhoneCall], audio: AudioStreams
) -> APIRouter:
    """`calls`: the calls in progress, filled here, for the drain to end each at a quiet moment; `audio`:
    where each call reports the audio it receives, for the load sensor."""
    router = APIRouter()
    settings = assistant.settings

    def public(request: Request) -> str:
        """Where the world reaches this server: VA_PUBLIC_URL behind a proxy, else the request's own."""
        return (settings.web.public_url or str(request.base_url)).rstrip("/")

    async def verified_form(request: Request) -> dict[str, str]:
        try:
            form = {key: str(value) for key, value in (await request.form()).items()}
        except ValueError as exc:  # python-multipart's parse errors, which Starlette lets through (a 500)
            raise ApiError(400, f"the webhook's form cannot be read: {exc}") from exc
        token = settings.phone.twilio_auth_token
        if token is not None:
            url = public(request) + request.url.path + (f"?{request.url.query}" if request.url.query else "")
            signature = request.headers.get("X-Twilio-Signature", "")
            if not signature or not RequestValidator(token.get_secret_value()).validate(url, form, signature):
                raise ApiError(403, "missing or invalid X-Twilio-Signature")
        return form

    async def call_token(caller: str) -> str:
        """The one-time token of a new call's stream, for the caller's session (or a new one)."""
        if settings.phone.sessions == "per-caller" and caller:
            session_id = await assistant.store.caller_session(
                await assistant.store.caller_hash(caller), now=utc_now()
            )
        else:
            session_id = await assistant.new_session()
        return await assistant.store.issue_call_token(session_id, now=utc_now())

    @router.post("/telephone/incoming")
    async def incoming(request: Request) -> Response:
        form = await verified_form(request)
        if not assistant.ready.is_set() or not assistant.pipelines.can_speak:
            return _refusal(UNAVAILABLE)
        if (refusal := admission.refusal(offer=False)) is not None:
            admission.counted(refusal)
            return _refusal(OVERLOADED)
        max_calls = settings.phone.max_calls
        if await assistant.leases.count(CALLS) >= max_calls:  # before a session is made for nothing
            return _refusal(BUSY)
        try:
            token = await call_token(form.get("From", ""))
            # The check that holds: the place is taken with it, under the pool's lock on every instance,
            # until the stream spends the token (on whichever instance) or the token runs out.
            ttl_s = settings.phone.call_token_ttl_s
            if await assistant.leases.reserve(CALLS, token, limit=max_calls, seconds=ttl_s) is not None:
                return _refusal(BUSY)
        except Exception as exc:  # the store is away: a polite refusal, not Twilio's "application error"
            store_failure("the call could not be answered", exc, metrics=assistant.metrics, session_id=None)
            return _refusal(UNAVAILABLE)
        base = urlsplit(public(request))
        stream_url = urlunsplit(
            ("wss" if base.scheme == "https" else "ws", base.netloc, base.path + STREAM_PATH, "", "")
        )
        response = VoiceResponse()
        connect = Connect()
        stream = connect.stream(url=stream_url)
        stream.parameter(name="token", value=token)
        response.append(connect)
        return _twiml(response)

    @router.websocket(STREAM_PATH)
    async def stream(websocket: WebSocket) -> None:
        spent: list[str] = []

        async def spend_token(token: str) -> str | None:
            """The token's session, the call counted as in progress from here on (on every instance)."""
            ttl = timedelta(seconds=settings.phone.call_token_ttl_s)
            session_id = await assistant.store.spend_call_token(token, now=utc_now(), ttl=ttl)
            if session_id is not None:
                await assistant.leases.take(CALLS, token, limit=None, alive=lambda: True, take_over=True)
                spent.append(token)
            return session_id

        call = PhoneCall(
            websocket,
            pipelines=assistant.pipelines,
            metrics=assistant.metrics,
            audio=audio,
            spend_token=spend_token,
            greeting=settings.phone.greeting,
            messages=MessageRate(settings.web.max_messages_per_second),
        )
        calls.add(call)
        try:
            with contextlib.suppress(WebSocketDisconnect):
                await call.run()
        finally:
            for token in spent:
                await assistant.leases.release(token)
            calls.discard(call)

    return router
