"""Exact USD arithmetic for tax lots, and the one rounding a form asks for.

Every sum, difference and product is exact (`EXACT`, the projections' context of
projections/money.py, traps Inexact, so a result that would have to be rounded is an
error, never a silently rounded number). The only divisions are the shares of a lot's
basis and of a sale's proceeds that a partial slice takes (`share`, in `RATIO`, as the
positions projection's partial close: fixed, so a replay reproduces it to the digit);
the last slice takes what is left, so nothing is lost or made up by that rounding.
Cents appear only where a form prints an amount (`cents`).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, ROUND_HALF_UP, Context, Decimal, InvalidOperation

from projections.money import EXACT as EXACT  # re-exported: the tax modules compute in it
from projections.money import RATIO

ZERO = Decimal(0)
CENT = Decimal("0.01")

DEFAULT_USD_ASSETS: frozenset[str] = frozenset({"USD", "USDC"})
"""Assets taken as US dollars at par. USDC is the engine's one USD-pegged stablecoin
(`RiskLimits.allowed_stablecoins` defaults to USDC and EURC; EURC is pegged to the euro,
so it is not here); "USD" for a fiat leg. A stablecoin held at par is cash here: no lots
are kept for it and spending it is no disposal (a limit, docs/projections.md)."""


def share(total: Decimal, part: Decimal, whole: Decimal) -> Decimal:
    """`total * part / whole`, the share of `total` that `part` of `whole` units takes:
    exactly `total` when `part == whole` (the last slice takes what is left)."""
    if part == whole:
        return total
    return RATIO.divide(EXACT.multiply(total, part), whole)


def cents(amount: Decimal) -> Decimal:
    """`amount` in dollars and cents, rounded half up.

    Forms 8949 and 1099-DA print dollars and cents; the fold keeps every digit and only
    the printed form rounds. Half up (0.005 -> 0.01) because that is how the forms'
    readers (and a person checking them by hand) round; half-even would move a total by at
    most a cent either way. A row's gain is then computed from its rounded proceeds and
    basis, so every printed row adds up (column h = d - e)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP, context=EXACT_QUANTIZE)


EXACT_QUANTIZE = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[InvalidOperation])
"""`cents`' context: rounding is the point there, so Inexact is not trapped."""


def total(amounts: Iterable[Decimal]) -> Decimal:
    """The exact sum of `amounts`."""
    out = ZERO
    for a in amounts:
        out = EXACT.add(out, a)
    return out
