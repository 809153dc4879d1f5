"""A bound on the request bodies of this server's own routes.

They take a few kilobytes (an offer, the largest, up to 128 KiB), yet Starlette reads a body whole into
memory before a route can look at its size (`request.body()`, a webhook's form), so one request could hold
gigabytes. Past `MAX_BODY_BYTES` a request is refused with 413: at once when its `Content-Length` says so,
else as soon as that much of it has arrived. The Gradio UI's routes (its uploads) are its own.
"""

from __future__ import annotations

from typing import Final

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voice_assistant.web.errors import ApiError, error_response

MAX_BODY_BYTES: Final = 1024 * 1024
BOUNDED_PATHS: Final = ("/webrtc/", "/api/", "/telephone/", "/v1/")


class BodyLimit:
    """ASGI middleware: 413 `{"error": ...}` for a body past `max_bytes` on the bounded paths."""

    def __init__(self, app: ASGIApp, *, max_bytes: int = MAX_BODY_BYTES) -> None:
        self._app = app
        self._max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope["path"]).startswith(BOUNDED_PATHS):
            await self._app(scope, receive, send)
            return
        too_large = ApiError(413, f"the body is too large: more than {self._max_bytes} bytes")
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            await error_response(too_large)(scope, receive, send)
            return
        received = 0

        async def bounded() -> Message:
            """Raised in the route that reads the body, where the app's handlers answer it."""
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self._max_bytes:
                raise too_large
            return message

        await self._app(scope, bounded, send)
