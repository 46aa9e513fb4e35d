"""`store.copy_block`'s fast path (plain strings written as-is) renders exactly what
escaping every value (`copy_block_escaped`) does, for any rows."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from projections import store
from projections.store import copy_block, copy_block_escaped


class _EqualsNone:
    """A value that says it equals None (it must not be counted as a NULL)."""

    def __eq__(self, other: object) -> bool:
        return other is None or other is self

    def __hash__(self) -> int:
        return 0

    def __str__(self) -> str:
        return "x"


class _Str(str):
    """A str subclass: takes `copy_text`'s general path, not the fast one."""


_special_text = st.text(
    alphabet=st.sampled_from(["\\", "\t", "\n", "\r", "N", "a", "é", "€", "😀", " ", '"', "\x00"]),
    max_size=8,
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
_values: st.SearchStrategy[Any] = st.one_of(
    st.text(),
    _special_text,
    st.just("\\N"),
    st.none(),
    st.booleans(),
    st.integers(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.datetimes(timezones=st.just(UTC)),
    _json.filter(lambda v: isinstance(v, dict | list)),
    st.builds(_EqualsNone),
    _special_text.map(_Str),
)
_rows = st.lists(
    st.lists(_values, max_size=6).map(tuple) | st.lists(_values, max_size=6), max_size=6
)


@given(_rows)
@example([("\\N",)])
@example([("a\tb", None)])
@example([("\\", None, None)])
@example([(None, _EqualsNone(), "\\")])
@example([("x\ny",), ()])
@example([("x\ny",)])
@example([("\r",)])
@example([(_Str("\\"),)])
@example([({"k": 'a"b'},)])
@example([("a",), ("b", "c")])
@example([("a", "b"), ("c",)])
@example([("a",), (None,)])
@example([("a",), ("",)])
@example([("a",), ("b\\",)])
@example([("a",), (_Str("b"),)])
@example([["a"], ("b",)])
def test_copy_block_is_copy_block_escaped(rows: list[Any]) -> None:
    assert copy_block(rows) == copy_block_escaped(rows)


def test_plain_rows_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(_rows: Any) -> str:
        raise AssertionError("took the value-by-value path")

    monkeypatch.setattr(store, "copy_block_escaped", refuse)
    rows = [
        ("e1", None, 3, True, Decimal("1.50"), datetime(2026, 1, 2, tzinfo=UTC), "café €"),
        ("e2", "x", None, False, Decimal("-0.000001"), None, '{"a": [1, 2]}'),
    ]
    assert copy_block(rows) == (
        "e1\t\\N\t3\tt\t1.50\t2026-01-02T00:00:00+00:00\tcafé €\n"
        'e2\tx\t\\N\tf\t-0.000001\t\\N\t{"a": [1, 2]}\n'
    )


def test_one_column_of_plain_strings_is_one_join(monkeypatch: pytest.MonkeyPatch) -> None:
    """A `_seen` table's rows (one event id each) are rendered by one join (session 23:
    ~0.12 against ~0.5 us a row), not row by row; anything else in one column is not."""
    ids = [("0190a1b2-0000-7000-8000-00000000000" + str(i),) for i in range(10)]
    calls: list[str | None] = []
    one_column = store._one_column

    def spy(rows: Any) -> str | None:
        calls.append(one_column(rows))
        return calls[-1]

    monkeypatch.setattr(store, "_one_column", spy)
    assert copy_block(ids) == copy_block_escaped(ids) == "".join(f"{i}\n" for (i,) in ids)
    assert calls == [copy_block_escaped(ids)]
    for other in ([("a",), (None,)], [("a",), ("b\tc",)], [("a",), (_Str("b"),)]):
        calls.clear()
        assert copy_block(other) == copy_block_escaped(other)
        assert calls == [None]
