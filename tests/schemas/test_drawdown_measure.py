"""`schemas.drawdown`, the one definition of the drawdown measure, at its edges.

From a mutation audit (session 21): the engine and projection tests reach these through
whole scenarios, where a boundary (equity exactly 0, a peak of 0, a peak recorded at the
same time as another) rarely falls. Each assertion here failed on a mutant that those
tests let pass.
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.drawdown import (
    VALUATION,
    drawdown,
    lost_in_full,
    nav_per_unit,
    peak_in_money,
    peak_since,
)
from schemas.drawdown import add_peak as record

D = Decimal


def test_lost_in_full_needs_a_peak_and_either_a_wipe_or_no_units_below_zero() -> None:
    assert lost_in_full(D("1"), D("0"), D("-0.01"), False)  # v7: no units, below zero
    assert lost_in_full(D("1"), D("100"), D("50"), True)  # v8: wiped since the release
    assert not lost_in_full(D("1"), D("0"), D("0"), False)  # withdrew everything: no loss
    assert not lost_in_full(D("1"), D("100"), D("-5"), False)  # units left: measured
    assert not lost_in_full(D("1"), D("0"), None, False)  # cannot be valued: NO_MARK's
    # No peak above zero (never valued, or released): nothing to have lost.
    assert not lost_in_full(D("0"), D("0"), D("-5"), False)
    assert not lost_in_full(D("0"), D("100"), D("50"), True)


def test_nav_per_unit_rounds_down_and_drawdown_is_exact_at_the_quantum() -> None:
    assert nav_per_unit(D("2"), D("3")) == D("0." + "6" * 60)  # 60 digits, down
    assert nav_per_unit(D("-2"), D("3")) == D("-0." + "6" * 59 + "7")  # down is floor
    assert drawdown(D("1"), D("0.9")) == D("0.1")
    # peak - NAV in 28 digits (as the brake took it before the context was explicit):
    # 0.500000000000000000000000000001 rounds to 0.5; the quotient has 60.
    peak = D("1.000000000000000000000000000001")
    assert drawdown(peak, D("0.5")) == VALUATION.divide(D("0.5"), peak)
    assert drawdown(peak, D("0.5")) != D("0.5")
    assert peak_in_money(D("1.0000000000009"), D("1")) == D("1.000000000001")
    assert peak_in_money(D("0.5"), D("3")) == D("1.500000000000")


def test_the_measure_does_not_depend_on_the_threads_context() -> None:
    with localcontext() as c:
        c.prec = 5
        assert nav_per_unit(D("2"), D("3")) == D("0." + "6" * 60)
        assert drawdown(D("3"), D("1")) == D("0." + "6" * 59 + "7")


def _since(recorded: list[tuple[int, Decimal]], at: int | None) -> Decimal:
    """The definition: the highest peak recorded at or after `at` (None: any), else 0."""
    return max((p for t, p in recorded if at is None or t >= at), default=D(0))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 8).map(D)),
        max_size=12,
    )
)
def test_peak_since_is_the_highest_peak_recorded_at_or_after(
    recorded: list[tuple[int, Decimal]],
) -> None:
    """Whatever order the peaks come in, and at equal times too."""
    peaks: list[tuple[int, Decimal]] = []
    for at, peak in recorded:
        record(peaks, at, peak)
        assert [t for t, _ in peaks] == sorted({t for t, _ in peaks})  # one per time, sorted
        assert all(a[1] > b[1] for a, b in pairwise(peaks))  # decreasing
    for at in (None, *range(8)):
        assert peak_since(peaks, at) == _since(recorded, at), (recorded, peaks, at)


def test_peak_since_examples() -> None:
    peaks: list[tuple[int, Decimal]] = []
    assert peak_since(peaks, None) == 0
    record(peaks, 3, D("10"))
    record(peaks, 1, D("5"))  # older and lower: a later peak covers it
    assert peaks == [(3, D("10"))]
    record(peaks, 5, D("7"))
    record(peaks, 5, D("8"))  # the same time, higher: replaces it
    record(peaks, 4, D("8"))  # as high as a later one: nothing new
    assert peaks == [(3, D("10")), (5, D("8"))]
    assert [peak_since(peaks, t) for t in (None, 3, 4, 5, 6)] == [10, 10, 8, 8, 0]
    record(peaks, 6, D("10"))  # as high as the oldest: covers every one before it
    assert peaks == [(6, D("10"))]
