"""The balances projection's legs of a fill: no fee leg without a fee.

From a mutation audit (session 21): `fee > 0` made `fee >= 0` wrote a movement of 0 for
every fee-free fill (a row in movements, a count on the balance) and no pure
projection test failed.
"""

from __future__ import annotations

from decimal import Decimal

from projections.core import BalancesProjection
from tests.projections.folding import Tape, fold

D = Decimal


def test_a_fill_without_a_fee_moves_two_legs_and_one_with_a_fee_three() -> None:
    tape = Tape()
    free = tape.fill("BUY", "2", "100")
    paid = tape.fill("SELL", "1", "100", fee="0.1", fee_asset="USDT")
    assert BalancesProjection._legs(free) == [
        ("base", "BTC", D("2"), "TRADE"),
        ("quote", "USDT", D("-200"), "TRADE"),
    ]
    assert BalancesProjection._legs(paid) == [
        ("base", "BTC", D("-1"), "TRADE"),
        ("quote", "USDT", D("100"), "TRADE"),
        ("fee", "USDT", D("-0.1"), "FEE"),
    ]
    state, bad = fold("balances", [free, paid])
    assert not bad
    legs = sorted(row[1] for row in state.inserts["movements"].values())
    assert legs == ["base", "base", "fee", "quote", "quote"]
