"""JSON from outside the process: malformed or too deeply nested is a ValueError, never a RecursionError."""

from __future__ import annotations

import pytest

from voice_assistant.wire_json import MAX_DEPTH, parse_json

pytestmark = pytest.mark.unit


def test_json_as_deep_as_allowed_is_read() -> None:
    nested: list[object] = []
    for _ in range(MAX_DEPTH - 1):
        nested = [nested]
    assert parse_json("[" * MAX_DEPTH + "]" * MAX_DEPTH) == nested
    assert parse_json(b'{"a": {"b": [1, {"c": null}]}}') == {"a": {"b": [1, {"c": None}]}}


@pytest.mark.parametrize(
    "text",
    [
        "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),  # decodes, but no message here is so deep
        '{"a": ' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1),
        "[" * 100_000,  # past the decoder's recursion limit
        '{"a": ' * 100_000,
    ],
)
def test_deeper_json_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="nested deeper"):
        parse_json(text)


def test_what_is_not_json_is_a_value_error() -> None:
    for text in ("", "{", b"\xff\xfe"):
        with pytest.raises(ValueError):
            parse_json(text)
