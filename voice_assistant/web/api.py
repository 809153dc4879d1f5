"""The sessions REST API, the SSE event stream, health and metrics."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from voice_assistant.assistant import Assistant
from voice_assistant.clock import utc_now
from voice_assistant.events import ReconnectRequested
from voice_assistant.history.export import session_archive
from voice_assistant.web.admission import Admission
from voice_assistant.web.errors import ApiError

MAX_INTEGER = 2**31 - 1
"""The largest turn index or list offset asked of the store: PostgreSQL's INTEGER, well within SQLite's;
past it the drivers fail (SQLite with OverflowError: a 500), where the client should get a 422."""


def api_router(assistant: Assistant, admission: Admission) -> APIRouter:
    router = APIRouter()
    store = assistant.store

    def require_admin(authorization: str | None) -> None:
        token = assistant.settings.web.admin_token
        if token is None:
            raise ApiError(403, "the admin API is disabled: set VA_ADMIN_TOKEN")
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            given.encode(), token.get_secret_value().encode()
        ):
            raise ApiError(401, "admin token required: Authorization: Bearer <VA_ADMIN_TOKEN>")

    @router.post("/api/sessions", status_code=201)
    async def create_session() -> dict[str, str]:
        return {"session_id": await assistant.new_session()}

    @router.get("/api/sessions")
    async def list_sessions(
        authorization: str | None = Header(None),
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0, le=MAX_INTEGER),
    ) -> dict[str, Any]:
        require_admin(authorization)
        sessions = await store.list_sessions(limit=limit, offset=offset)
        return {"sessions": [session.to_json(with_turns=False) for session in sessions]}

    @router.get("/api/sessions/{session_id}")
    async def get_session(session_id: str) -> dict[str, Any]:
        return (await store.get_session(session_id)).to_json()

    @router.delete("/api/sessions/{session_id}", status_code=204)
    async def delete_session(session_id: str) -> Response:
        await store.delete_session(session_id)
        return Response(status_code=204)

    @router.get("/api/sessions/{session_id}/export")
    async def export_session(session_id: str) -> StreamingResponse:
        record = await store.get_session(session_id)  # before the response starts: 404 if unknown
        return StreamingResponse(
            session_archive(store, record, exported_at=utc_now()),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="session-{session_id}.zip"'},
        )

    @router.get("/api/sessions/{session_id}/turns/{index}/audio")
    async def turn_audio(session_id: str, index: int = Path(ge=0, le=MAX_INTEGER)) -> Response:
        try:
            audio = await store.turn_audio(session_id, index)
        except LookupError as exc:
            raise ApiError(404, str(exc)) from exc
        return Response(audio, media_type="audio/flac")

    async def known_session(session_id: str) -> str:
        if not await store.session_exists(session_id):
            raise ApiError(404, "unknown session")
        return session_id

    @router.get("/api/sessions/{session_id}/events", response_class=EventSourceResponse)
    async def events(session_id: str = Depends(known_session)) -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent(comment="subscribed")
        async for event in assistant.hub.subscribe(session_id):
            yield ServerSentEvent(raw_data=event.to_json())
        # The hub closed: this server drains, and the stream must end for it to exit.
        yield ServerSentEvent(raw_data=ReconnectRequested().to_json())

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "live"}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        if not assistant.ready.is_set():
            status = "failed: " + assistant.startup_error if assistant.startup_error else "starting"
            return JSONResponse({"ready": False, "status": status}, status_code=503)
        try:
            await store.ping()
        except Exception as exc:
            return JSONResponse(
                {"ready": False, "status": f"store unreachable: {type(exc).__name__}"}, status_code=503
            )
        if (refusal := admission.refusal(offer=True)) is not None:
            return JSONResponse(
                {"ready": False, "status": refusal.kind, "reason": refusal.reason},
                status_code=503,
                headers={"Retry-After": str(admission.retry_after_s)},
            )
        return JSONResponse(
            {"ready": True, "model": assistant.settings.model.name, "ready_after_s": assistant.ready_after_s}
        )

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(assistant.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @router.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def no_such_route(request: Request) -> Response:
        """Last of the API's routes: any other path under /api/ (an empty segment too) is a 404 with a
        JSON error, as the contract's are, not the UI's page-not-found."""
        raise ApiError(404, f"no such route: {request.method} {request.url.path}")

    return router
