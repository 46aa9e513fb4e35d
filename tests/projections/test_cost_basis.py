"""Positions keep an exact cost basis: the cost of the open position is only ever moved
(to realized PnL as units close, or kept), never rounded away, so realized + unrealized
equals the cash flow plus the position at the mark exactly; the average cost is shown,
not used."""

from __future__ import annotations

from decimal import Context, Decimal, localcontext
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.core import POSITION_COLUMNS
from tests.projections.folding import Tape, fold

COL = {c: i for i, c in enumerate(POSITION_COLUMNS)}


def _row(items: list[Any], inst: str = "BTC/USDT") -> dict[str, Any]:
    s, bad = fold("positions", items)
    assert not bad
    row = s.dirty["positions"][("ACC001", inst)]
    return {c: row[i] for c, i in COL.items()}


def test_a_flat_round_trip_at_one_price_realizes_nothing() -> None:
    t = Tape()
    buy = t.fill("BUY", "1000000000", "0.0000000000000000015", inst="PEPE/BTC", fee_asset="BTC")
    sell = t.fill("SELL", "1000000000", "0.0000000000000000015", inst="PEPE/BTC", fee_asset="BTC")
    opened = _row([buy], "PEPE/BTC")
    assert Decimal(opened["avg_cost"]) == Decimal("1.5E-18")  # was 2E-18 (18 places)
    assert Decimal(opened["cost_basis"]) == Decimal("1.5E-9")
    flat = _row([buy, sell], "PEPE/BTC")
    assert Decimal(flat["quantity"]) == 0 and Decimal(flat["realized_pnl"]) == 0  # was -5E-10
    assert Decimal(flat["cost_basis"]) == 0


def test_a_non_terminating_average_leaves_the_totals_exact() -> None:
    t = Tape()
    items = [t.fill("BUY", "1", "1"), t.fill("BUY", "2", "2")]
    row = _row(items)
    assert Decimal(row["cost_basis"]) == 5
    assert Decimal(row["avg_cost"]) == Decimal(5) / Decimal(3)  # shown, 28 digits
    items.append(t.fill("SELL", "1", "2"))
    row = _row(items)
    # realized + the rest at the mark (2) == cash flow + position at the mark, exactly
    realized, qty, cost = (Decimal(row[c]) for c in ("realized_pnl", "quantity", "cost_basis"))
    assert realized + (qty * 2 - cost) == Decimal(-1 - 4 + 2) + qty * 2
    items.append(t.fill("SELL", "2", "2"))
    assert Decimal(_row(items)["realized_pnl"]) == Decimal(-1 - 4 + 2 + 4)


DEC = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal(1000), places=6)


@settings(max_examples=200, deadline=None)
@given(fills=st.lists(st.tuples(st.booleans(), DEC, DEC), min_size=1, max_size=20))
def test_pnl_is_conserved_exactly(fills: list[tuple[bool, Decimal, Decimal]]) -> None:
    """Whatever the fills (longs, shorts, flips), flattening at the last price realizes
    exactly the cash flow: no rounding of the average leaks into realized PnL."""
    with localcontext(Context(prec=200)):  # the test's own sums, exact
        _flatten(fills)


def _flatten(fills: list[tuple[bool, Decimal, Decimal]]) -> None:
    t = Tape()
    items = [t.fill("BUY" if b else "SELL", str(q), str(p)) for b, q, p in fills]
    cash = sum((-q * p if b else q * p for b, q, p in fills), Decimal(0))
    qty = sum((q if b else -q for b, q, _ in fills), Decimal(0))
    last = fills[-1][2]
    if qty:
        items.append(t.fill("SELL" if qty > 0 else "BUY", str(abs(qty)), str(last)))
    row = _row(items)
    assert Decimal(row["quantity"]) == 0 and Decimal(row["cost_basis"]) == 0
    assert Decimal(row["realized_pnl"]) == cash + qty * last
