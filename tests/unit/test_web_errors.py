"""A request the store fails is refused as every refusal is: JSON `{"error"}`, here 503 with Retry-After."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import OperationalError

from voice_assistant.metrics import Metrics
from voice_assistant.web.errors import install_error_handlers

pytestmark = pytest.mark.unit


async def test_a_store_failure_is_a_503_json_error_that_clients_retry() -> None:
    app, metrics = FastAPI(), Metrics()
    install_error_handlers(app, metrics)

    @app.get("/api/sessions/{session_id}")
    async def read(session_id: str) -> None:
        # What any store call raises while the database is away (a real outage).
        raise OperationalError("SELECT sessions", None, ConnectionRefusedError("connection refused"))

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/api/sessions/0123")
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert response.json() == {"error": "the store failed: OperationalError"}
    assert metrics.registry.get_sample_value("va_errors_total", {"stage": "store"}) == 1
