"""Text as every database stores it: NUL and lone surrogates become U+FFFD, the replacement character.

A model's text may hold NUL (the tiny models emit it often, a real one can; PostgreSQL's text types
refuse it, SQLite keeps it) or a lone surrogate (an OpenAI-compatible server's JSON may carry one; UTF-8
cannot, so both drivers fail), and so may an id a client sends. The column types below replace both on
the way in: that covers every writer and every lookup at once (a lookup by such an id finds nothing
instead of failing), needs no migration (the DDL is the plain type's), and reads back the same from
SQLite and PostgreSQL. U+FFFD rather than dropping the character: the text keeps its length and still
shows that something was there. The session applies `storable` to a model's text as it arrives, so that
what a client is sent live (`reply_delta`, `reply_done`, `transcript`) is what the store keeps.

The JSON columns need nothing: json.dumps escapes both as `\\u0000` / `\\ud800`, which PostgreSQL's
`json` type (not `jsonb`) keeps as written.
"""

from __future__ import annotations

import re

from sqlalchemy import Dialect, String, Text
from sqlalchemy.types import TypeDecorator

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def storable(text: str) -> str:
    """`text` as the store will keep it."""
    return _UNSTORABLE.sub(REPLACEMENT, text)


class StorableString(TypeDecorator[str]):
    """A String column that stores `storable(value)`."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else storable(value)


class StorableText(StorableString):
    """The same for unbounded text (TEXT)."""

    impl = Text
    cache_ok = True
