"""A projector's connection parses json and jsonb with `projector.json_loads`: the
standard library's values, faster, and an integer beyond 64 bits still read."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from projections.projector import json_loads

_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)  # fmt: skip


@given(_VALUES)
def test_the_standard_librarys_values(value: Any) -> None:
    text = json.dumps(value)
    assert json_loads(text) == json.loads(text)
    assert json_loads(text.encode()) == json.loads(text)


def test_an_integer_beyond_64_bits() -> None:
    assert json_loads('{"n": 123456789012345678901234567890}') == {
        "n": 123456789012345678901234567890
    }
