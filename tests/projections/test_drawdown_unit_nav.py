"""The drawdown projection keeps the last flows' NAV per unit when a flow has none.

From a mutation audit (session 21): writing `unit_nav` from every `UnitsChanged`, its
null too (a flow that found the capital gone, DRAWDOWN_BRAKE v8), passed every pure
drawdown test; the engine keeps the last NAV a flow was priced at (`unit_nav`) and
issues the next units at it.
"""

from __future__ import annotations

from decimal import Decimal

from projections.core import DRAWDOWN_COLUMNS
from schemas.events import UnitsChanged
from tests.projections.folding import Tape, fold

D = Decimal
UNIT_NAV = DRAWDOWN_COLUMNS.index("unit_nav")


def test_a_flow_without_a_nav_keeps_the_last_unit_nav() -> None:
    tape = Tape()
    priced = tape.ev(
        UnitsChanged(account="A1", flows=("d1",), units=D("100"), nav=D("2"), equity=D("200"))
    )
    wiped = tape.ev(
        UnitsChanged(account="A1", flows=("d2",), units=D("100"), nav=None, equity=D("50"))
    )
    state, bad = fold("drawdown", [priced, wiped])
    assert not bad
    row = state.rows["drawdowns"][("A1",)]
    assert row is not None and D(row[UNIT_NAV]) == 2
