"""One cap on every request body (`VA_MAX_BODY_BYTES`), before any route or middleware reads it whole.

Without it a client decides how much memory a request takes: Starlette reads a JSON or form body into
memory, and so does the Gradio UI's offer gate. A body whose `Content-Length` is over the cap is refused
at once, unread; one sent in chunks without a length is refused as soon as what arrived passes it. Either
way the answer is 413 with a JSON error, as every refusal here is. Routes may cap lower (an offer).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voice_assistant.web.errors import ApiError, error_response


class BodyTooLarge(ApiError):
    """Raised from `receive` to whoever reads past the cap: FastAPI passes an HTTPException on as it is
    (any other error while reading a body becomes its 400)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"the request body is larger than {max_bytes} bytes (VA_MAX_BODY_BYTES)")


class BodyLimit:
    """ASGI middleware: HTTP requests only (a WebSocket's messages have their own limits)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self._app = app
        self._max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        too_large = BodyTooLarge(self._max_bytes)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            await error_response(too_large)(scope, receive, send)
            return
        received = 0
        answering = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._max_bytes:
                    raise too_large
            return message

        async def sent(message: Message) -> None:
            nonlocal answering
            answering = answering or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, counted, sent)
        except BodyTooLarge:  # a middleware read it (the app's error handlers do not reach there)
            if answering:
                raise
            await error_response(too_large)(scope, receive, send)
