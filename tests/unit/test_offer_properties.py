"""Properties of what `POST /webrtc/offer` parses before it hands an offer to fastrtc: its body, the offer
and candidate shapes, and the SDP. A well-formed offer reads back as sent; anything else is an ApiError
with a 4xx status (a JSON error), never another exception."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiortc.sdp import SessionDescription
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from tests.support.strategies import json_objects, json_values
from voice_assistant.web.errors import ApiError
from voice_assistant.web.json_bodies import json_object
from voice_assistant.web.offer import MAX_OFFER_BYTES, IceCandidate, Offer, _parse, _require_audio

pytestmark = pytest.mark.unit

MAX_BODY = 2 * MAX_OFFER_BYTES
"""What the route reads at most."""
ids = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=128)


def body_of(raw: bytes) -> dict[str, Any]:
    """The offer route's body as it reads it."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    request = Request({"type": "http", "method": "POST", "headers": []}, receive)
    return asyncio.run(json_object(request, max_bytes=MAX_BODY))


def refused(status: int, run: Any, *args: Any) -> Any:
    """`run(*args)`, or None when it refuses with ApiError(`status`)."""
    try:
        return run(*args)
    except ApiError as refusal:
        assert refusal.status_code == status and refusal.detail
        return None


@st.composite
def mutated(draw: st.DrawFn, sdp: str) -> str:
    """A real offer with a few of its lines dropped, doubled, replaced or garbled."""
    lines = sdp.split("\r\n")
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(lines) - 1))
        match draw(st.sampled_from(["drop", "double", "replace", "garble"])):
            case "drop" if len(lines) > 1:
                del lines[at]
            case "double":
                lines.insert(at, lines[at])
            case "replace":
                lines[at] = draw(st.text(max_size=40))
            case _:
                tokens = lines[at].split(" ")
                tokens[draw(st.integers(0, len(tokens) - 1))] = draw(st.text(max_size=12))
                lines[at] = " ".join(tokens)
    return "\r\n".join(lines)


@settings(max_examples=200)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_body_is_a_json_object_or_a_400(raw: bytes) -> None:
    body = refused(400, body_of, raw)
    assert body is None or isinstance(body, dict)


@settings(max_examples=200)
@given(json_objects(["sdp", "type", "webrtc_id", "session_id", "candidate"]))
def test_any_object_is_an_offer_a_candidate_or_a_400(fields: dict[str, Any]) -> None:
    body = body_of(json.dumps(fields).encode())
    refused(400, _parse, IceCandidate if body.get("type") == "ice-candidate" else Offer, body)


@settings(max_examples=200)
@given(st.text(min_size=1, max_size=300), ids, st.none() | ids)
def test_a_well_formed_offer_reads_back_as_sent(sdp: str, webrtc_id: str, session_id: str | None) -> None:
    sent = {"sdp": sdp, "type": "offer", "webrtc_id": webrtc_id, "session_id": session_id}
    offer = _parse(Offer, body_of(json.dumps(sent).encode()))
    assert offer.model_dump() == sent


@settings(max_examples=100)
@given(
    ids,
    st.fixed_dictionaries(
        {"candidate": st.text(max_size=200)},
        optional={
            "sdpMid": st.none() | st.text(max_size=64),
            "sdpMLineIndex": st.none() | st.integers(0, 1024),
        },
    ),
)
def test_a_well_formed_candidate_reads_back_as_sent(webrtc_id: str, candidate: dict[str, Any]) -> None:
    sent = {"type": "ice-candidate", "webrtc_id": webrtc_id, "candidate": candidate}
    read = _parse(IceCandidate, body_of(json.dumps(sent).encode())).model_dump()
    assert read == {**sent, "candidate": {"sdpMid": None, "sdpMLineIndex": None, **candidate}}


@settings(max_examples=200)
@given(st.text(max_size=300))
def test_any_text_as_sdp_is_read_or_a_400(sdp: str) -> None:
    refused(400, _require_audio, sdp)


@settings(max_examples=300)
@given(st.data())
def test_a_garbled_browser_offer_is_read_or_a_400(offer_sdp: str, data: st.DataObject) -> None:
    refused(400, _require_audio, data.draw(mutated(offer_sdp)))


@settings(max_examples=50)
@given(st.integers(1, 65535), st.text("abcdefghijklmnopqrstuvwxyz0123456789+/", min_size=4, max_size=32))
def test_a_browser_offer_with_other_ports_and_credentials_round_trips(
    offer_sdp: str, port: int, ufrag: str
) -> None:
    """aiortc writes back what it read, so the offer fastrtc is handed is the one the browser made."""
    description = SessionDescription.parse(offer_sdp)
    description.media[0].port = port
    description.media[0].ice.usernameFragment = ufrag
    sdp = str(description)
    _require_audio(sdp)
    assert str(SessionDescription.parse(sdp)) == sdp


@settings(max_examples=50)
@given(json_values)
def test_a_body_too_large_is_a_413_whatever_it_holds(value: Any) -> None:
    raw = json.dumps({"padding": "x" * MAX_BODY, "value": value}).encode()
    refused(413, body_of, raw)
