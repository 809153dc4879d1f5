"""`POST /webrtc/offer`: fastrtc's offer plus an optional `session_id`, answered with the session id."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Container
from dataclasses import dataclass
from typing import Any, TypeVar

from aiortc.sdp import SessionDescription
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from fastrtc import Stream
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from voice_assistant.assistant import Assistant
from voice_assistant.web.admission import Admission
from voice_assistant.web.errors import ApiError
from voice_assistant.web.json_bodies import json_object
from voice_assistant.web.sites import ConnectionLimits

logger = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

MAX_OFFER_BYTES = 64 * 1024
BINDING_TTL_S = 120.0
"""An offer's session waits this long for its connection's handler to start."""
_FULL = "concurrency_limit_reached"
_REFUSALS = {"connection_already_exists": 409}
_CANDIDATE_REFUSALS = {"unknown_connection": 404, "connection_closed": 409}


class Offer(BaseModel):
    sdp: str = Field(min_length=1, max_length=MAX_OFFER_BYTES)
    type: str = Field(pattern="^offer$")
    webrtc_id: str = Field(min_length=1, max_length=128)
    session_id: str | None = Field(None, max_length=128)


class CandidateInit(BaseModel):
    """A browser's trickled candidate (`RTCIceCandidate.toJSON()`), with the fields fastrtc reads typed:
    it logs a traceback for a candidate that is no string, and passes the rest to aiortc as they are."""

    model_config = ConfigDict(extra="allow")
    candidate: str = Field(max_length=1024)
    sdpMid: str | None = Field(default=None, max_length=64)
    sdpMLineIndex: int | None = Field(default=None, ge=0, le=1024)


class IceCandidate(BaseModel):
    type: str = Field(pattern="^ice-candidate$")
    webrtc_id: str = Field(min_length=1, max_length=128)
    candidate: CandidateInit


class Bindings:
    """Which session each offered connection belongs to, from the offer until its handler starts."""

    def __init__(self) -> None:
        self._sessions: dict[str, tuple[str, float]] = {}

    def bind(self, webrtc_id: str, session_id: str) -> None:
        now = time.monotonic()
        for stale in [key for key, (_, at) in self._sessions.items() if now - at > BINDING_TTL_S]:
            del self._sessions[stale]
        self._sessions[webrtc_id] = (session_id, now)

    def take(self, webrtc_id: str) -> str | None:
        binding = self._sessions.pop(webrtc_id, None)
        return binding[0] if binding else None

    def __contains__(self, webrtc_id: str) -> bool:
        return webrtc_id in self._sessions

    def waiting(self, open_connections: Container[str]) -> bool:
        """Whether an answered offer's connection is still open but its handler has not started yet."""
        return any(webrtc_id in open_connections for webrtc_id in self._sessions)


@dataclass(frozen=True)
class NewOffers:
    """What a new WebRTC offer must pass before it is answered, wherever it comes in: `POST /webrtc/offer`
    and the Gradio UI's component server (web/ui_offer.py)."""

    ready: asyncio.Event
    """The model is loaded and warm."""
    admission: Admission
    limits: ConnectionLimits

    async def admit(self, request: Request) -> None:
        """503 while the model is not ready, the worker refuses new work (with `Retry-After`), 429 past
        the offer rates of the client's address and site key."""
        if not self.ready.is_set():
            raise ApiError(503, "the server is starting: the model is not ready yet")
        self.admission.admit_offer()
        await self.limits.admit(request)


def offer_router(assistant: Assistant, stream: Stream, offers: NewOffers, bindings: Bindings) -> APIRouter:
    router = APIRouter()
    admission, limits = offers.admission, offers.limits

    @router.post("/webrtc/offer")
    async def offer(request: Request) -> Any:
        body = await json_object(request, max_bytes=2 * MAX_OFFER_BYTES)
        if body.get("type") == "ice-candidate":
            candidate = _parse(IceCandidate, body)
            added = await stream.handle_offer(
                candidate.model_dump(), set_outputs=stream.set_additional_outputs(candidate.webrtc_id)
            )
            if (reason := _failure_reason(added)) is not None:
                raise ApiError(_CANDIDATE_REFUSALS.get(reason, 400), f"ICE candidate refused: {reason}")
            return added
        parsed = _parse(Offer, body)
        _require_audio(parsed.sdp)
        await offers.admit(request)
        if parsed.session_id:
            if not await assistant.store.session_exists(parsed.session_id):
                raise ApiError(404, "unknown session")
            session_id = parsed.session_id
        else:
            session_id = await assistant.new_session()
        if parsed.webrtc_id in stream.pcs or parsed.webrtc_id in bindings:
            raise ApiError(409, f"connection {parsed.webrtc_id} already exists")

        await limits.hold(request, parsed.webrtc_id)
        bindings.bind(parsed.webrtc_id, session_id)
        try:
            answer = await stream.handle_offer(
                {"sdp": parsed.sdp, "type": parsed.type, "webrtc_id": parsed.webrtc_id},
                set_outputs=stream.set_additional_outputs(parsed.webrtc_id),
            )
        except Exception as exc:
            bindings.take(parsed.webrtc_id)
            pc = stream.pcs.pop(parsed.webrtc_id, None)
            if pc is not None:
                await pc.close()
            stream.clean_up(parsed.webrtc_id)
            logger.info("offer refused: %s", exc)
            raise ApiError(400, f"malformed offer: {exc}") from exc
        if (reason := _failure_reason(answer)) is not None:
            bindings.take(parsed.webrtc_id)
            if reason == _FULL:  # between the admission above and now, others took the last places
                raise admission.busy(f"the server is full ({reason})")
            raise ApiError(_REFUSALS.get(reason, 400), reason)
        return {**answer, "session_id": session_id}

    return router


def _parse(model: type[M], body: dict[str, Any]) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ApiError(400, f"malformed offer: {problems}") from exc


def _require_audio(sdp: str) -> None:
    """aiortc answers almost any text; an offer without an audio section would connect to nothing."""
    try:
        description = SessionDescription.parse(sdp)
    except Exception as exc:
        raise ApiError(400, f"malformed offer: unreadable SDP ({exc})") from exc
    if not any(media.kind == "audio" for media in description.media):
        raise ApiError(400, "malformed offer: the SDP has no audio section (send a microphone track)")


def _failure_reason(answer: Any) -> str | None:
    """fastrtc reports a refusal as 200 {"status": "failed", "meta": {"error": ...}}; None: no refusal."""
    if not isinstance(answer, JSONResponse):
        return None
    body = json.loads(bytes(answer.body))
    if body.get("status") != "failed":
        return None
    return str(body.get("meta", {}).get("error", "refused"))
