"""Admission for the Gradio UI's own offers, as for `POST /webrtc/offer` (web/admission.py).

The UI's fastrtc component does not post to `/webrtc/offer`: it calls its `offer` server function through
Gradio's component server, `POST /gradio_api/component_server/` (the UI is mounted at /) with
`{"fn_name": "offer", "data": {"type": "offer", "sdp": ..., "webrtc_id": ...}, ...}`, and its ICE
candidates the same way with `"type": "ice-candidate"`. A new offer there passes the same checks
(`NewOffers`: the model ready, admission, the per-address offer rate) with the same refusals;
candidates, and every other call, pass.
"""

from __future__ import annotations

from typing import Any

from gradio.route_utils import API_PREFIX
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voice_assistant.metrics import Metrics
from voice_assistant.web.errors import ApiError, error_response, store_failed_response
from voice_assistant.web.offer import NewOffers
from voice_assistant.wire_json import parse_json

UI_OFFER_PATH = f"{API_PREFIX}/component_server"
"""Gradio answers it with and without the trailing slash; its JS client sends the slash."""


class UiOfferGate:
    """ASGI middleware: reads the body of a JSON call to Gradio's component server, refuses a new offer
    that `NewOffers` refuses, and passes the body on unchanged otherwise."""

    def __init__(self, app: ASGIApp, *, offers: NewOffers, metrics: Metrics) -> None:
        self._app = app
        self._offers = offers
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _is_json_component_call(scope):
            await self._app(scope, receive, send)
            return
        messages = await _whole_body(receive)
        if _is_new_offer(b"".join(message.get("body", b"") for message in messages)):
            try:
                await self._offers.admit(Request(scope))
            except ApiError as refused:
                await error_response(refused)(scope, receive, send)
                return
            except SQLAlchemyError as exc:  # the app's error handlers do not reach middleware
                await store_failed_response(exc, self._metrics)(scope, receive, send)
                return

        async def replayed() -> Message:
            return messages.pop(0) if messages else await receive()

        await self._app(scope, replayed, send)


def _is_json_component_call(scope: Scope) -> bool:
    if scope["type"] != "http" or scope["method"] != "POST":
        return False
    if str(scope["path"]).rstrip("/") != UI_OFFER_PATH:
        return False
    content_type: bytes = dict(scope["headers"]).get(b"content-type", b"")
    return content_type.lower().startswith(b"application/json")


async def _whole_body(receive: Receive) -> list[Message]:
    messages = [await receive()]
    while messages[-1]["type"] == "http.request" and messages[-1].get("more_body", False):
        messages.append(await receive())
    return messages


def _is_new_offer(body: bytes) -> bool:
    """A malformed call is Gradio's to refuse, with its own error."""
    try:
        call: Any = parse_json(body)
    except ValueError:
        return False
    if not isinstance(call, dict) or call.get("fn_name") != "offer":
        return False
    data = call.get("data")
    return isinstance(data, dict) and data.get("type") == "offer"
