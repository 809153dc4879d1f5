"""The Gradio UI's own offers pass the checks of `POST /webrtc/offer`: on the real app (real Gradio,
fastrtc and aiortc), an overloaded or draining worker refuses them with 503 + Retry-After, so does one
whose model is not ready, an address past its offer rate gets 429, an idle worker answers them, and ICE
candidates still reach fastrtc. A worker whose streams lose audio is overloaded too, `/readyz` says so."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastrtc import WebRTC
from sqlalchemy.exc import OperationalError

from voice_assistant.audio_rate import MIN_STREAMS
from voice_assistant.config import Settings
from voice_assistant.load import SAMPLE_EVERY_S, WINDOW_S
from voice_assistant.web.app import create_app

pytestmark = pytest.mark.integration

UI_OFFER = "/gradio_api/component_server/"
"""Where fastrtc's component in the UI posts its offers (Gradio's JS client adds the slash)."""
PER_ADDRESS = 3


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    app = create_app(Settings(model="tiny", data_dir=tmp_path, offers_per_minute_per_address=PER_ADDRESS))
    app.state.assistant.ready.set()  # the model's loading is not what these tests are about
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


async def test_a_worker_whose_streams_lose_audio_is_not_ready_and_refuses_the_uis_offer(
    app: FastAPI, http: httpx.AsyncClient, offer_sdp: str
) -> None:
    """Its loop neither lags nor uses a core: only the audio its connections report shows the loss."""
    load = app.state.load
    with contextlib.ExitStack() as stack:
        streams = [stack.enter_context(load.audio.connected()) for _ in range(MIN_STREAMS)]
        for tick in range(round(WINDOW_S * 2 / SAMPLE_EVERY_S)):
            for received in streams:
                received(SAMPLE_EVERY_S / 2)
            load.observe(at=1000.0 + tick * SAMPLE_EVERY_S, lag_s=0.0, cpu_s=0.0)
    ready = await http.get("/readyz")
    assert ready.status_code == 503 and ready.json()["status"] == "overloaded"
    assert "50% of its audio in real time < 90%" in ready.json()["reason"]
    response = await http.post(UI_OFFER, json=ui_offer(app, offer_sdp, "losing"))
    assert response.status_code == 503 and "50% of its audio" in response.json()["error"]
    assert "losing" not in microphone(app).pcs


async def test_a_draining_worker_refuses_the_uis_offer(
    app: FastAPI, http: httpx.AsyncClient, offer_sdp: str
) -> None:
    app.state.drain.admission.start_draining()
    response = await http.post(UI_OFFER, json=ui_offer(app, offer_sdp, "late"))
    assert response.status_code == 503 and "shutting down" in response.json()["error"]
    assert refused(app, "draining") == 1


async def test_a_worker_whose_model_is_not_ready_refuses_the_uis_offer(
    app: FastAPI, http: httpx.AsyncClient, offer_sdp: str
) -> None:
    app.state.assistant.ready.clear()
    response = await http.post(UI_OFFER, json=ui_offer(app, offer_sdp, "early"))
    assert response.status_code == 503 and "not ready" in response.json()["error"]
    assert "early" not in microphone(app).pcs


async def test_the_uis_offers_count_in_the_per_address_rate_with_the_others(
    app: FastAPI, http: httpx.AsyncClient, offer_sdp: str
) -> None:
    ui = [await http.post(UI_OFFER, json=ui_offer(app, offer_sdp, f"ui-{n}")) for n in range(PER_ADDRESS - 1)]
    contract = await http.post("/webrtc/offer", json={"sdp": offer_sdp, "type": "offer", "webrtc_id": "w"})
    assert [r.status_code for r in ui] == [200] * (PER_ADDRESS - 1) and contract.status_code == 200
    late = await http.post(UI_OFFER, json=ui_offer(app, offer_sdp, "late"))
    assert late.status_code == 429 and "retry-after" in late.headers
    assert "too many new connections from this address" in late.json()["error"]
    assert "late" not in microphone(app).pcs


async def test_the_uis_offer_while_the_store_is_away_is_a_503_to_retry(
    app: FastAPI, http: httpx.AsyncClient, offer_sdp: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def away(*_: Any, **__: Any) -> None:
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(app.state.assistant.store, "hit", away)
    response = await http.post(UI_OFFER, json=ui_offer(app, offer_sdp, "stored"))
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert "stored" not in microphone(app).pcs
