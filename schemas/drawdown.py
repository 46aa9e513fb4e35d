"""The drawdown measure: NAV per unit, drawdown from the peak, and the peak in money.

One definition for every reader of the engine's drawdown bookkeeping: the engine's
DRAWDOWN_BRAKE rule, its brake at a decision and at a print (`engine.state`,
`engine.processor`, `engine.venue.paper`), and the `drawdown` projection
(`projections.core.DrawdownProjection`), so a brake's `KillSwitchEngaged.drawdown` and
the projection's figure are the same digits by construction, not by two copies kept
equal (docs/engine.md, *What the peak is*). Every context is explicit: no value depends
on the thread's ambient context.
"""

from __future__ import annotations

from bisect import bisect_left
from decimal import (
    ROUND_FLOOR,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
)
from typing import Any

VALUATION = Context(
    prec=60, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)
"""Where marks and equity terms are computed: explicit, so a value never depends on the
ambient context, and wide, so rounding stays far below `EQUITY_QUANTUM`."""
DRAWDOWN_DIFFERENCE = Context(
    prec=28, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)
"""Where a drawdown's `peak - NAV` is computed (its quotient by the peak is in `VALUATION`):
the default context's 28 digits, which it was computed in implicitly (the thread's
ambient context) until it was made explicit, so no recorded drawdown and no decision at
the threshold changed; 60 digits would round some differently (docs/engine.md)."""
NAV_ROUNDING = VALUATION.copy()
NAV_ROUNDING.rounding = ROUND_FLOOR
"""NAV per unit is rounded down: a flow, which issues or redeems units rounded up, can
only lower it, never show as a gain."""
ZERO = Decimal(0)
EQUITY_QUANTUM = Decimal("1E-12")
"""Each holding's value is rounded to this before summing: the sum of such terms is exact,
so equity does not depend on the order the balances are summed in."""


def nav_per_unit(equity: Decimal, units: Decimal) -> Decimal:
    """`equity` / `units` (units > 0), 60 digits rounded down."""
    return NAV_ROUNDING.divide(equity, units)


def drawdown(peak: Decimal, nav: Decimal) -> Decimal:
    """1 - `nav` / `peak` (peak > 0): the difference in `DRAWDOWN_DIFFERENCE`, the
    quotient in `VALUATION`."""
    return VALUATION.divide(DRAWDOWN_DIFFERENCE.subtract(peak, nav), peak)


def peak_in_money(peak_nav: Decimal, units: Decimal) -> Decimal:
    """The peak in the account's money: peak NAV per unit x units, to `EQUITY_QUANTUM`
    (what decisions' and brakes' `peak_equity` say since DRAWDOWN_BRAKE v6)."""
    return VALUATION.multiply(peak_nav, units).quantize(EQUITY_QUANTUM, context=VALUATION)


def add_peak(peaks: list[tuple[Any, Decimal]], at: Any, peak: Decimal) -> None:
    """Record in `peaks` a peak recorded at event time `at` (a decision's, a fill's, a
    `PeakEquityRaised`'s or a `UnitsChanged`'s `peak_nav`). `peaks` holds suffix maxima:
    sorted by time, peaks strictly decreasing, so `peak_since(peaks, t)` is the highest
    peak recorded at or after `t` whatever order the peaks came in (a function of the set
    recorded, which is what lets a release read on another topic reset the peak as a
    replay would). `at`: any totally ordered stamp, one kind per list (the engine's
    datetimes; the projection's event-time text, which orders as the times do)."""
    i = bisect_left(peaks, (at,))
    if i < len(peaks) and peaks[i][1] >= peak:
        return  # a peak at or after `at` already at least this high
    j, k = i, i
    while j > 0 and peaks[j - 1][1] <= peak:
        j -= 1
    while k < len(peaks) and peaks[k][0] == at:
        k += 1
    peaks[j:k] = [(at, peak)]


def peak_since(peaks: list[tuple[Any, Decimal]], at: Any) -> Decimal:
    """The highest peak in `peaks` (suffix maxima, `add_peak`) recorded at or after
    `at` (None: any), 0 if none: the peak a release at `at` leaves."""
    if not peaks:
        return ZERO
    i = 0 if at is None else bisect_left(peaks, (at,))
    return peaks[i][1] if i < len(peaks) else ZERO


def lost_in_full(peak: Decimal, units: Decimal, equity: Decimal | None, wiped: bool) -> bool:
    """Whether an account whose flows are all turned into units has lost its whole peak
    (DRAWDOWN_BRAKE v7, v8; the brake then measures 1): it has a peak above zero, and a
    flow found its capital gone since its last release (`wiped`: a `UnitsChanged` with
    `nav` null and units kept, v8), or it has no units left while its equity is below
    zero (a settled withdrawal took more than it was worth, v7)."""
    if peak <= 0:
        return False
    return wiped or (equity is not None and equity < 0 and units <= 0)
