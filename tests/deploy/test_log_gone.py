"""`deploy.kafka.log_gone`: the one "is this the same log?" check of every reader (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from deploy.kafka import log_gone

A, B = "Zm9vYmFyYmF6cXV4cXV1eA", "cXV1eHF1eGJhemJhcmZvbw"


def test_the_same_log_in_range_is_held() -> None:
    assert log_gone("t", 0, 5, 0, 10, id_then=A, id_now=A) is None
    assert log_gone("t", 0, 10, 0, 10) is None  # at the end: nothing to read yet
    assert log_gone("t", 0, -2, 0, 0) is None  # from the beginning of an uncut log


def test_a_topic_created_again_is_not_the_same_log_whatever_the_offsets() -> None:
    why = log_gone("t", 3, 5, 0, 10, id_then=A, id_now=B, said="stored")
    assert why == (
        f"t[3]: stored 5 in topic id {A}, the topic's id is {B} now (it was deleted and "
        "created again)"
    )
    assert "from its beginning in topic id" in (
        log_gone("t", 0, -2, 0, 9, id_then=A, id_now=B) or ""
    )


def test_no_stored_id_is_compared_by_offsets_alone() -> None:
    assert log_gone("t", 0, 5, 0, 10, id_then=None, id_now=B) is None
    assert log_gone("t", 0, 5, 0, 10, id_then=A, id_now=None) is None  # topic not described
    assert log_gone("t", 0, 11, 0, 10, id_then=None, id_now=B) == (
        "t[0]: from offset 11, the log holds 0..10"
    )


def test_out_of_range_and_cut_starts() -> None:
    assert log_gone("t", 1, 3, 4, 10) == "t[1]: from offset 3, the log holds 4..10"
    assert log_gone("t", 1, 12, 0, 10, said="stored") == "t[1]: stored 12, the log holds 0..10"
    assert log_gone("t", 1, -2, 4, 10) == "t[1]: from its beginning, the log holds 4..10"


@given(
    offset=st.integers(-2, 50),
    low=st.integers(-1, 50),
    high=st.integers(-1, 50),
    ids=st.tuples(st.sampled_from([None, A, B]), st.sampled_from([None, A, B])),
)
def test_held_exactly_when_same_id_and_in_range(
    offset: int, low: int, high: int, ids: tuple[str | None, str | None]
) -> None:
    then, now = ids
    lo, hi = max(low, 0), max(high, 0)
    same = then is None or now is None or then == now
    in_range = lo == 0 if offset < 0 else lo <= offset <= hi
    assert (log_gone("t", 0, offset, low, high, id_then=then, id_now=now) is None) == (
        same and in_range
    )
