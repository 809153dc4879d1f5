"""A store call that failed on a session's path: logged once, counted, and told to the client.

The store raises what its driver raises (sqlalchemy's OperationalError while the database is away, a
DataError for what it refuses): whoever made the call reports it here and goes on, so that the next
turn works once the database is back. The client's message names only the error's type: a database
error's text may hold SQL.
"""

from __future__ import annotations

import logging

from voice_assistant.events import ErrorRaised
from voice_assistant.metrics import Metrics
from voice_assistant.redaction import session_tag

logger = logging.getLogger(__name__)

STAGE = "store"
"""The `va_errors_total` label of every store failure."""


def store_failure(
    what: str, error: Exception, *, metrics: Metrics, session_id: str | None, turn: int | None = None
) -> ErrorRaised:
    """Log and count the failure; the `error` event to send (or to hold until its turn's reply is done)."""
    logger.error("%s", what, exc_info=error, extra={"session": session_tag(session_id), "turn": turn})
    metrics.errors.labels(STAGE).inc()
    return ErrorRaised(message=f"{what}: {type(error).__name__}", turn=turn)
