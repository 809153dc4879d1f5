"""Session ids stay out of logs: uvicorn's request paths and WebSocket handshakes, and the tag our own lines
carry in `extra`."""

from __future__ import annotations

import logging

import pytest

from voice_assistant.errors import UnknownSession
from voice_assistant.history.store import new_session_id
from voice_assistant.redaction import RedactSessionIds, redact_server_logs, session_tag

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


def test_a_websocket_handshake_line_keeps_its_query_but_not_the_session_id() -> None:
    session_id = new_session_id()
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5000", f"/v1/realtime?model=tiny&session_id={session_id}"),
        None,
    )
    assert RedactSessionIds().filter(record)
    assert (
        record.getMessage()
        == '127.0.0.1:5000 - "WebSocket /v1/realtime?model=tiny&session_id=<session>" [accepted]'
    )


def test_a_session_s_log_tag_tells_sessions_apart_and_is_not_the_id() -> None:
    one, other = new_session_id(), new_session_id()
    assert session_tag(one) == session_tag(one) != session_tag(other)
    tag = session_tag(one)
    assert tag is not None and len(tag) == 16 and tag not in one
    assert session_tag(None) is None


def test_the_servers_loggers_are_redacted_once() -> None:
    redact_server_logs()
    redact_server_logs()
    for name in ("uvicorn.access", "uvicorn.error"):
        assert sum(isinstance(f, RedactSessionIds) for f in logging.getLogger(name).filters) == 1
