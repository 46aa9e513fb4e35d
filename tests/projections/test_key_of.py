"""`Table.key_of` gives every primary key as the text of its values, whatever the path
(one column, two columns through an itemgetter, more): the key a value read back from
the database has is the key of its text from an event."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from projections.framework import Table


class _Str(str):
    """A str subclass: keys as its plain text."""


_values: st.SearchStrategy[Any] = st.one_of(
    st.text(max_size=5),
    st.text(max_size=5).map(_Str),
    st.integers(),
    st.booleans(),
    st.uuids(),
    st.decimals(allow_nan=False),
)


@given(row=st.lists(_values, min_size=4, max_size=4).map(tuple), width=st.integers(1, 4))
def test_key_of_is_the_text_of_the_key_columns(row: tuple[Any, ...], width: int) -> None:
    columns = ("a", "b", "c", "d")
    pk = columns[-width:][::-1]  # not a prefix, and not in column order
    key = Table("t", columns, pk).key_of(row)
    assert key == tuple(str(row[columns.index(c)]) for c in pk)
    assert all(type(k) is str for k in key)


def test_a_uuid_keys_as_its_text() -> None:
    u = uuid.UUID(int=7)
    assert Table("t", ("id", "n"), ("id", "n")).key_of((u, 3)) == (str(u), "3")
