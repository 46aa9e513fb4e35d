"""The mark the pnl view values positions at is the engine's reference price: the newer
(by event time) of the last trade and the last mid, the trade on a tie. A print stamped
before the mark it follows in the log (a second venue's feed of the instrument, a late
or replayed capture) does not move it back in time."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.state import EngineState
from projections.core import PROJECTIONS
from projections.framework import Located, State
from tests.projections.folding import T0, Tape, fold

INST = "BTC/USDT"
MARKS = PROJECTIONS["positions"].table("marks")


def _mark(items: list[Located]) -> tuple[Decimal, str]:
    s, bad = fold("positions", items)
    assert not bad
    row = s.rows["marks"][(INST,)]
    assert row is not None
    return Decimal(row[1]), str(row[2])


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_late_quote_does_not_replace_a_newer_trade() -> None:
    t = Tape()
    items = [t.trade(INST, "100", at(10)), t.quote(INST, "90", "92", at(5))]
    assert _mark(items) == (Decimal(100), "TRADE")  # was the stale mid 91


def test_a_late_trade_does_not_replace_a_newer_one() -> None:
    t = Tape()
    items = [t.trade(INST, "100", at(10)), t.trade(INST, "80", at(9))]
    assert _mark(items) == (Decimal(100), "TRADE")
    items.append(t.quote(INST, "99", "101", at(11)))
    assert _mark(items) == (Decimal(100), "MID")


def test_on_a_tie_the_trade_is_the_mark() -> None:
    t = Tape()
    assert _mark([t.quote(INST, "90", "92", at(3)), t.trade(INST, "95", at(3))])[1] == "TRADE"
    t = Tape()
    assert _mark([t.trade(INST, "95", at(3)), t.quote(INST, "90", "92", at(3))])[1] == "TRADE"
    t = Tape()  # two of a kind at one time: the later in the log
    assert _mark([t.quote(INST, "90", "92", at(3)), t.quote(INST, "80", "82", at(3))])[0] == 81


def _stored(row: Any) -> tuple[Any, ...]:
    """The row as a batch reads it back from PostgreSQL: timestamps as datetimes."""
    out = list(row)
    for i in (4, 6):
        out[i] = datetime.fromisoformat(str(out[i]).replace("Z", "+00:00"))
    return tuple(out)


PRINTS = st.lists(
    st.tuples(
        st.booleans(),
        st.integers(1, 500).map(lambda c: Decimal(c) / 4),
        st.integers(0, 6),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(prints=PRINTS, cuts=st.sets(st.integers(1, 24)))
def test_the_mark_is_the_engines_reference_price_in_any_batch_split(
    prints: list[tuple[bool, Decimal, int]], cuts: set[int]
) -> None:
    t = Tape()
    items = [
        t.trade(INST, str(p), at(s)) if trade else t.quote(INST, str(p), str(p + 1), at(s))
        for trade, p, s in prints
    ]
    engine = EngineState()
    for item in items:
        engine.apply(item.event)
    ref = engine.price(INST).reference()
    assert ref is not None
    # folded batch by batch, each reading the row the last one stored
    row: Any = None
    for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(items)], strict=True):
        if a >= b:
            continue
        state = State(rows={"marks": {(INST,): row}})
        assert not PROJECTIONS["positions"].fold(state, items[a:b])
        row = _stored(state.rows["marks"][(INST,)])
    assert Decimal(row[1]) == ref[0]
    assert row[6] == ref[1]
    assert MARKS.columns[6] == "occurred_at"
