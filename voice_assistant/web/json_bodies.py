"""JSON in and out of the routes that read a body themselves: bounded, parsed as outside JSON, echoed safely.

FastAPI's own body parameters take a body of any size and any content type (text/plain arrives as bytes,
which then fail to render in the 422: a 500), and nesting that only fails when the answer is encoded.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from voice_assistant.web.errors import ApiError
from voice_assistant.wire_json import parse_json


async def json_object(
    request: Request, *, max_bytes: int, empty: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The body as a JSON object: 413 past `max_bytes`, 400 for anything else than an object; an empty
    body is `empty` where the route allows one (else 400)."""
    raw = await request.body()
    if len(raw) > max_bytes:
        raise ApiError(413, f"the body is too large: more than {max_bytes} bytes")
    if not raw and empty is not None:
        return empty
    try:
        body = parse_json(raw)
    except ValueError as exc:
        raise ApiError(400, f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


class EscapedJSONResponse(JSONResponse):
    """JSON with every character past ASCII escaped, for answers that echo what a client sent: a lone
    surrogate (a `\\ud800` escape in its JSON) goes back as the escape it came as, where UTF-8 cannot
    hold it (Starlette's JSONResponse fails to encode it: a 500)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode("ascii")
