"""Every refusal is a JSON body `{"error": ...}` with a meaningful status."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from voice_assistant.errors import UnknownSession
from voice_assistant.metrics import Metrics
from voice_assistant.session.store_failures import store_failure

STORE_RETRY_AFTER_S = 5
"""What a client refused because the store failed is told to wait before it tries again."""


class ApiError(HTTPException):
    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status, detail=message, headers=headers)


def error_response(exc: StarletteHTTPException) -> JSONResponse:
    """For middleware, which the app's exception handlers do not reach."""
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def store_failed_response(exc: SQLAlchemyError, metrics: Metrics) -> JSONResponse:
    """The database is away (or refused the request): 503, which clients retry, not a bare 500."""
    event = store_failure("the store failed", exc, metrics=metrics, session_id=None)
    headers = {"Retry-After": str(STORE_RETRY_AFTER_S)}
    return JSONResponse({"error": event.message}, status_code=503, headers=headers)


def install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Ours (ApiError) and Starlette's own (404, 405, a body it cannot parse) alike."""
        return error_response(exc)

    @app.exception_handler(UnknownSession)
    async def _unknown(_: Request, exc: UnknownSession) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=404)

    @app.exception_handler(SQLAlchemyError)
    async def _store_failed(_: Request, exc: SQLAlchemyError) -> JSONResponse:
        return store_failed_response(exc, metrics)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        """Where and what, not the input: the client has it, and it may be bytes or a lone surrogate,
        which JSON in UTF-8 cannot hold (a 500 instead of the 422)."""
        details = [
            {"loc": error["loc"], "msg": error["msg"], "type": error["type"]} for error in exc.errors()
        ]
        return JSONResponse({"error": "invalid request", "details": details}, status_code=422)
