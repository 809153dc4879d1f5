"""What must not reach a log: session ids, which are bearer capabilities (whoever has one reads and
resumes the session).

No log line names one. uvicorn's own lines carry request paths (`/api/sessions/<id>`, the Realtime
WebSocket's `?session_id=`): `redact_server_logs` puts a placeholder there. Our own lines that concern a
session carry `extra={"session": session_tag(id)}`, which the default format does not print and a
structured (JSON) formatter may: a tag that tells a session's lines apart and lets an operator who holds
an id find them, but from which no one can get the id back. Secrets (tokens, keys) and what was said or
replied are never logged at all.
"""

from __future__ import annotations

import hashlib
import logging
import re

_SESSION_ID = re.compile(r"\b[0-9a-f]{32}\b")
_SERVER_LOGGERS = ("uvicorn.access", "uvicorn.error")
"""uvicorn logs HTTP requests on the first, WebSocket handshakes (with their query) on the second."""


def session_tag(session_id: str | None) -> str | None:
    """The first 16 hex digits of the id's SHA-256: 64 bits, unique enough to tell sessions apart, and
    no way back to the 128-bit id."""
    return None if session_id is None else hashlib.sha256(session_id.encode()).hexdigest()[:16]


class RedactSessionIds(logging.Filter):
    """Replaces anything shaped like a session id in a record's arguments (the request path of an
    access-log line) by a placeholder; the record is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _SESSION_ID.sub("<session>", arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


def redact_server_logs() -> None:
    """Once per process, before uvicorn serves (the CLI's, the worker proxy's, an app made in a test)."""
    for name in _SERVER_LOGGERS:
        server = logging.getLogger(name)
        if not any(isinstance(f, RedactSessionIds) for f in server.filters):
            server.addFilter(RedactSessionIds())
