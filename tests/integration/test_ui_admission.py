"""The Gradio UI's own offers go through admission as `POST /webrtc/offer` does: on the real app (real
Gradio, fastrtc and aiortc), an overloaded or draining worker refuses them with 503 + Retry-After, an
idle one answers them, and ICE candidates still reach fastrtc."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastrtc import WebRTC

from voice_assistant.config import Settings
from voice_assistant.web.app import create_app

pytestmark = pytest.mark.integration

UI_OFFER = "/gradio_api/component_server/"
"""Where fastrtc's component in the UI posts its offers (Gradio's JS client adds the slash)."""


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    app = create_app(Settings(model="tiny", data_dir=tmp_path))
    yield app
    for pc in list(microphone(app).pcs.values()):
        await pc.close()


def microphone(app: FastAPI) -> WebRTC:
    (component,) = [block for block in app.state.stream.ui.blocks.values() if isinstance(block, WebRTC)]
    return component


def ui_call(app: FastAPI, data: dict[str, Any]) -> dict[str, Any]:
    """The body Gradio's JS client posts for the component's `offer` server function."""
    return {"session_hash": "page", "component_id": microphone(app)._id, "fn_name": "offer", "data": data}


def ui_offer(app: FastAPI, sdp: str, webrtc_id: str) -> dict[str, Any]:
    return ui_call(app, {"sdp": sdp, "type": "offer", "webrtc_id": webrtc_id})


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client


def overload(app: FastAPI) -> None:
    app.state.load.observe(at=1000.0, lag_s=10.0, cpu_s=0.0)


def refused(app: FastAPI, kind: str) -> float | None:
    value: float | None = app.state.assistant.metrics.registry.get_sample_value(
        "va_refused_total", {"reason": kind}
    )
    return value


async def test_an_idle_worker_answers_the_uis_offer(
    app: FastAPI, http: httpx.AsyncClient, offer_sdp: str
) -> None:
    response = await http.post(UI_OFFER, json=ui_offer(app, offer_sdp, "idle"))
    assert response.status_code == 200 and response.json()["type"] == "answer"
    assert "idle" in microphone(app).pcs


async def test_an_overloaded_worker_refuses_the_uis_offer_with_retry_after(
    app: FastAPI, http: httpx.AsyncClient, offer_sdp: str
) -> None:
    overload(app)
    response = await http.post(UI_OFFER, json=ui_offer(app, offer_sdp, "busy"))
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert response.json()["error"].startswith("the server is overloaded (event-loop lag")
    assert "busy" not in microphone(app).pcs and refused(app, "overloaded") == 1
    # Without the slash too; and a candidate is no new connection: fastrtc answers it.
    assert (await http.post(UI_OFFER.rstrip("/"), json=ui_offer(app, offer_sdp, "b"))).status_code == 503
    candidate = ui_call(app, {"type": "ice-candidate", "webrtc_id": "busy", "candidate": {}})
    answered = await http.post(UI_OFFER, json=candidate)
    assert answered.status_code == 200 and answered.json()["meta"]["error"] == "unknown_connection"


async def test_a_draining_worker_refuses_the_uis_offer(
    app: FastAPI, http: httpx.AsyncClient, offer_sdp: str
) -> None:
    app.state.drain.admission.start_draining()
    response = await http.post(UI_OFFER, json=ui_offer(app, offer_sdp, "late"))
    assert response.status_code == 503 and "shutting down" in response.json()["error"]
    assert refused(app, "draining") == 1
