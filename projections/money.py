"""The two decimal contexts every projection computes money in, fixed here so that no row
depends on the thread's ambient decimal context (28 digits by default, and anybody's to
change) and a rebuild reproduces every row to the digit.

`EXACT` for every sum, difference and product: exact, or an error. `RATIO` for the few
divisions a projection makes (a partial close's share of a position's cost basis and its
average cost, in projections/core.py; a partial slice's share of a tax lot's basis and a
sale's proceeds, in projections/tax/money.py): fixed, so a replay rounds them alike.
"""

from __future__ import annotations

from decimal import (
    MAX_EMAX,
    MAX_PREC,
    MIN_EMIN,
    ROUND_HALF_EVEN,
    Context,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
)

EXACT = Context(
    prec=MAX_PREC,
    rounding=ROUND_HALF_EVEN,
    Emax=MAX_EMAX,
    Emin=MIN_EMIN,
    traps=[InvalidOperation, DivisionByZero, Overflow, Inexact],
)
"""Money arithmetic: at the largest precision a sum or product of finite decimals is
exact (and costs what the digits cost, not the precision); Inexact trapped all the same,
so a rounded result can only ever be refused (quarantined), never stored."""

RATIO = Context(prec=28, rounding=ROUND_HALF_EVEN, Emax=MAX_EMAX, Emin=MIN_EMIN)
"""A projection's divisions: 28 significant digits, ROUND_HALF_EVEN, exact when the
quotient has no more (1.5E-18 stays 1.5E-18; the old quantum of 18 decimal places made
it 2E-18, and a flat round trip realized -5E-10)."""
