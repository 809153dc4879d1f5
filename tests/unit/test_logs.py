"""Session ids stay out of plain-text logs, the access log's request paths included."""

from __future__ import annotations

import logging

import pytest

from voice_assistant.errors import UnknownSession
from voice_assistant.history.store import new_session_id
from voice_assistant.web.logs import RedactSessionIds

pytestmark = pytest.mark.unit


def test_an_access_log_line_keeps_everything_but_the_session_id() -> None:
    session_id = new_session_id()
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/api/sessions/{session_id}/turns/0/audio", "1.1", 200),
        None,
    )
    assert RedactSessionIds().filter(record)
    line = record.getMessage()
    assert session_id not in line
    assert line == '127.0.0.1:5000 - "GET /api/sessions/<session>/turns/0/audio HTTP/1.1" 200'


def test_an_unknown_session_error_does_not_repeat_the_id() -> None:
    session_id = new_session_id()
    error = UnknownSession(session_id)
    assert session_id not in str(error) and error.session_id == session_id
