"""Hypothesis strategies the property tests of the parsers share."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
"""Any JSON value: NaN and the infinities included (Python's json reads them), lone surrogates too (a
`\\ud800` escape decodes to one)."""


def json_objects(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects of some of `keys` (the fields a parser looks at), each with any value."""
    return st.dictionaries(st.sampled_from(keys), json_values, max_size=len(keys))
