"""Holding period and coverage: what decides a disposal's Form 8949 box.

Dates are UTC calendar dates (the log's time; a taxpayer's own time zone can move a
trade across midnight: a limit, docs/projections.md)."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

COVERED_FROM = date(2026, 1, 1)
"""Final 1099-DA regulations (T.D. 10000): a broker reports basis for digital assets
acquired in the account by purchase on or after 1 January 2026 (covered securities).
Earlier acquisitions and transfers in (deposits) are noncovered."""


class Term(StrEnum):
    SHORT = "SHORT"
    LONG = "LONG"


def anniversary(acquired: date) -> date:
    """The same day one year on; 29 February's is 28 February of a common year."""
    try:
        return acquired.replace(year=acquired.year + 1)
    except ValueError:  # 29 February, and the next year is not a leap year
        return acquired.replace(year=acquired.year + 1, day=28)


def term(acquired: date, sold: date) -> Term:
    """LONG if held more than one year: the holding period starts the day after
    acquisition and includes the day of sale, so a sale after the anniversary is long
    (acquired 2025-03-01: 2026-03-01 is short, 2026-03-02 long; acquired 2024-02-29: the
    anniversary is 2025-02-28, so 2025-03-01 is long)."""
    return Term.LONG if sold > anniversary(acquired) else Term.SHORT


def is_covered(purchase: bool, acquired: date) -> bool:
    """Whether the broker reports this lot's basis (box G/J): bought in the account on or
    after `COVERED_FROM`. A deposit (a transfer in) is never covered."""
    return purchase and acquired >= COVERED_FROM


def box(covered: bool, t: Term) -> str:
    """Form 8949's digital-asset box from tax year 2025: G/J when a 1099-DA reported
    basis, H/K when it did not (I/L, no 1099-DA at all, is never ours: we issue one)."""
    if t is Term.SHORT:
        return "G" if covered else "H"
    return "J" if covered else "K"
