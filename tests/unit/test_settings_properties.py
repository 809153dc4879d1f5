"""Properties of the settings read from the environment: any text in any `VA_*` variable is read, or refused
with a validation error that names that variable, never anything else; a value within a field's range, as
an operator writes it, reads back as itself."""

from __future__ import annotations

import contextlib
import json
import os
import types
import typing
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from annotated_types import Ge, Gt, Le, Lt
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import SettingsError

from voice_assistant.config import FLAT_NAMES, Settings
from voice_assistant.flat_settings import variable

pytestmark = pytest.mark.unit

environment_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"), max_size=30)
"""What an environment variable can hold."""
words = st.text(st.characters(exclude_categories=["Cs", "Z", "C"], exclude_characters=","), min_size=1)


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """`values` set in this process's environment for as long as the block runs."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def field_of(name: str) -> FieldInfo:
    group, field = FLAT_NAMES[name]
    annotation = Settings.model_fields[group].annotation
    assert isinstance(annotation, type)
    return annotation.model_fields[field]  # type: ignore[attr-defined, no-any-return]


def read(name: str) -> Any:
    group, field = FLAT_NAMES[name]
    value = getattr(getattr(Settings(), group), field)
    if isinstance(value, tuple):
        return tuple(item.get_secret_value() if isinstance(item, SecretStr) else item for item in value)
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def numbers(info: FieldInfo, kind: type) -> st.SearchStrategy[Any]:
    """The values within a numeric field's bounds."""
    bounds = {type(m): m for m in info.metadata if isinstance(m, Ge | Gt | Le | Lt)}
    low = bounds[Ge].ge if Ge in bounds else bounds[Gt].gt if Gt in bounds else None
    high = bounds[Le].le if Le in bounds else bounds[Lt].lt if Lt in bounds else None
    if kind is int:
        return st.integers(
            None if low is None else int(low) + (Gt in bounds),
            None if high is None else int(high) - (Lt in bounds),
        )
    return st.floats(
        low, high, exclude_min=Gt in bounds, exclude_max=Lt in bounds, allow_nan=False, allow_infinity=False
    )


SPECIAL: dict[str, tuple[st.SearchStrategy[Any], Any]] = {
    # (the values, how an operator writes one): the variables that are not a plain value.
    "end_of_turn_judge_ms": (st.lists(st.integers(32, 5000), max_size=5).map(tuple), lambda v: json.dumps(v)),
    "api_keys": (st.lists(words, max_size=3).map(tuple), ",".join),
    "sites": (
        st.dictionaries(words, st.lists(st.sampled_from(["https://shop.example", "http://localhost:8080"]))),
        json.dumps,
    ),
    "ice_addresses": (
        st.lists(st.integers(0x0A000001, 0x0AFFFFFE).map(IPv4Address), unique=True, max_size=3),
        lambda v: ",".join(map(str, v)),
    ),
    "turn_urls": (
        st.lists(
            st.builds(
                "stun:{}:{}".format, st.sampled_from(["turn.example", "10.0.0.1"]), st.integers(1, 65535)
            )
        ).map(tuple),
        ",".join,
    ),
}
"""The rest are a number, a word, a path or one of a few names."""


ALONE = sorted(set(FLAT_NAMES) - {"turn_username", "turn_credential", "turn_secret"})
"""The variables that may be set alone (TURN credentials need each other and a turn: URL: their rules are
tests/unit/test_ice_servers.py's)."""
TRUE, FALSE = ["true", "1", "yes", "on", "True"], ["false", "0", "no", "off", "FALSE"]


@st.composite
def written_values(draw: st.DrawFn) -> tuple[str, str, Any]:
    """(flat name, as written, what it should read back as) for any setting."""
    name = draw(st.sampled_from(ALONE))
    if name in SPECIAL:
        values, write = SPECIAL[name]
        value = draw(values)
        return name, write(value), value
    info = field_of(name)
    kind = info.annotation
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:  # X | None
        kind = next(option for option in typing.get_args(kind) if option is not type(None))
    if typing.get_origin(kind) is typing.Literal:
        value = draw(st.sampled_from(typing.get_args(kind)))
        return name, value, value
    if kind is bool:
        value = draw(st.booleans())
        return name, draw(st.sampled_from(TRUE if value else FALSE)), value
    if kind in (int, float):
        value = draw(numbers(info, kind))
        return name, repr(value), value
    text = draw(words)
    return name, text, Path(text) if kind is Path else text


@settings(max_examples=400)
@given(st.sampled_from(sorted(FLAT_NAMES)), environment_text)
def test_any_text_in_any_variable_is_read_or_refused_naming_it(name: str, text: str) -> None:
    named = variable(Settings, name)
    with environment({named: text}):
        try:
            Settings()
        except ValidationError as refusal:
            assert named in str(refusal), refusal
        except SettingsError as refusal:  # JSON that is not JSON
            assert named in str(refusal), refusal


@settings(max_examples=400)
@given(written_values())
def test_a_value_within_range_reads_back_as_written(written: tuple[str, str, Any]) -> None:
    name, text, value = written
    with environment({variable(Settings, name): text}):
        read_back = read(name)
    if name == "ice_addresses":
        read_back = [address.local for address in read_back]
    assert read_back == value
