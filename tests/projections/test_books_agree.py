"""Positions and balances are two books of the same fills, and must agree to the unit.

For every asset A, what the fills moved on A's balance equals, over the instruments,
the positions in A (A the base), plus the realized PnL net of quote fees less the cost
basis still open (A the quote: the cash those trades moved), less the fees kept in A
beside the PnL (`fees_other`). It holds exactly whatever the fills: longs, shorts,
flips through zero, re-opening after flat, several instruments sharing an asset (ETH/BTC
moves BTC as its quote while BTC/USDT holds it as a base), and fees in the quote, the
base or a third asset."""

from __future__ import annotations

import json
from decimal import Context, Decimal, localcontext

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.core import POSITION_COLUMNS
from tests.projections.folding import Tape, fold

COL = {c: i for i, c in enumerate(POSITION_COLUMNS)}
INSTRUMENTS = ("BTC/USDT", "ETH/USDT", "ETH/BTC")
AMOUNT = st.decimals(min_value=Decimal("0.001"), max_value=Decimal(50), places=3)
FILL = st.tuples(
    st.sampled_from(INSTRUMENTS),
    st.booleans(),
    AMOUNT,
    AMOUNT,
    st.sampled_from(("quote", "base", "BNB", "none")),
    st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("0.01"), places=4),
)


@settings(max_examples=300, deadline=None)
@given(fills=st.lists(FILL, min_size=1, max_size=30))
def test_positions_and_balances_agree_on_every_asset(
    fills: list[tuple[str, bool, Decimal, Decimal, str, Decimal]],
) -> None:
    t = Tape()
    items = []
    for inst, buy, qty, price, fee_in, fee in fills:
        base, quote = inst.split("/")
        asset = {"quote": quote, "base": base, "BNB": "BNB", "none": quote}[fee_in]
        items.append(
            t.fill(
                "BUY" if buy else "SELL", str(qty), str(price), inst=inst, fee_asset=asset,
                fee="0" if fee_in == "none" else str(fee),
            )
        )  # fmt: skip
    positions, bad = fold("positions", items)
    assert not bad
    balances, bad = fold("balances", items)
    assert not bad
    held = {k[1]: Decimal(v[2]) for k, v in balances.dirty["balances"].items()}
    books: dict[str, Decimal] = {}
    with localcontext(Context(prec=500)):  # the test's own sums, exact
        for (_acct, inst), row in positions.dirty["positions"].items():
            base, quote = inst.split("/")
            r = {c: row[i] for c, i in COL.items()}
            books[base] = books.get(base, Decimal(0)) + Decimal(r["quantity"])
            cash = Decimal(r["realized_pnl"]) - Decimal(r["fees_quote"]) - Decimal(r["cost_basis"])
            books[quote] = books.get(quote, Decimal(0)) + cash
            for asset, amount in json.loads(str(r["fees_other"])).items():
                books[asset] = books.get(asset, Decimal(0)) - Decimal(amount)
    for asset in set(books) | set(held):
        assert books.get(asset, 0) == held.get(asset, 0), asset
