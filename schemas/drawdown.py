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

from decimal import (
    ROUND_FLOOR,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
)

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
