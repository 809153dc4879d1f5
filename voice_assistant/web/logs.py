"""Session ids are bearer capabilities: they must not reach plain-text logs, the access log included."""

from __future__ import annotations

import logging
import re

_SESSION_ID = re.compile(r"\b[0-9a-f]{32}\b")


class RedactSessionIds(logging.Filter):
    """Replaces anything shaped like a session id in a record's arguments (the request path of an
    access-log line) by a placeholder; the record is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _SESSION_ID.sub("<session>", arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


def redact_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactSessionIds) for f in access.filters):
        access.addFilter(RedactSessionIds())
