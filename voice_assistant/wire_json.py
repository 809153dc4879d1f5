"""JSON from outside the process (clients, Twilio, the environment): malformed in any way is a ValueError.

`json.loads` raises RecursionError, not ValueError, for arrays or objects nested past the interpreter's
recursion limit (`[[[[...`, a few kilobytes), which every parser that catches ValueError let escape: a
500, a phone stream dropped with 1006, a Realtime connection closed. And JSON nested just under that
limit decodes, then fails whatever walks it again (FastAPI's encoder, `json.dumps`). No message of these
protocols nests more than a few levels, so anything deeper than `MAX_DEPTH` is refused as malformed.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32
"""Far deeper than any message here (a Realtime `session.update` nests five levels)."""


def parse_json(text: str | bytes) -> Any:
    """The value of `text`; ValueError for anything that is not JSON, or nests deeper than MAX_DEPTH."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    containers = [value] if isinstance(value, dict | list) else []
    for _ in range(MAX_DEPTH):
        containers = [
            child
            for container in containers
            for child in (container.values() if isinstance(container, dict) else container)
            if isinstance(child, dict | list)
        ]
    if containers:
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
    return value
