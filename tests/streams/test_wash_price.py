"""Wash trading's price tolerance is the same whichever leg comes first.

It was taken in basis points of the later fill's price: a buy at 100.00 and a sell at
100.05002 are 5.0 bps apart of the sell's price but 5.002 of the buy's, so the same pair
was a wash trade when the sell came second and not when the buy did (and, folded out of
order, the fold order decided). Now it is taken of the two prices' mid.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.detectors import all_detectors
from streams.surveillance_state import Surveillance
from streams.synthetic import Tape


def wash(first: tuple[str, str], second: tuple[str, str], swap_fold: bool = False) -> list[str]:
    """A1 trades (side, price) `first` at 1.0 s, A2 (same owner) `second` at 1.5 s."""
    t = Tape()
    t.open_account("A1", "x")
    t.open_account("A2", "x")
    t.submit(1.0, "A1", "a", first[0], "1", first[1])
    t.fill(1.0, "a")
    t.submit(1.5, "A2", "b", second[0], "1", second[1])
    t.fill(1.5, "b")
    events = t.events
    if swap_fold:  # the later fill folded first (a late partition)
        events = [*events[:2], *events[4:], *events[2:4]]
    alerts = Surveillance(all_detectors()).process_batch(events)
    return [a.payload.pattern for a in alerts]


def test_the_same_pair_is_judged_alike_whichever_side_comes_first() -> None:
    buy_first = wash(("BUY", "100.00"), ("SELL", "100.05002"))
    sell_first = wash(("SELL", "100.05002"), ("BUY", "100.00"))
    assert buy_first == sell_first == []  # 5.0 bps of the mid 100.02501 is 5.0012...


def test_the_tolerance_is_in_basis_points_of_the_mid() -> None:
    assert wash(("BUY", "100.00"), ("SELL", "100.05"))  # 0.05 / 100.025 = 4.9988 bps
    assert wash(("SELL", "100.05"), ("BUY", "100.00"))
    assert wash(("BUY", "99.975"), ("SELL", "100.025")) == ["WASH_TRADING"]  # exactly 5 bps
    assert wash(("BUY", "99.97499"), ("SELL", "100.025")) == []


@settings(max_examples=200, deadline=None)
@given(
    low=st.integers(9_990_000, 10_010_000),
    diff=st.integers(0, 10_000),
    buy_first=st.booleans(),
    swap_fold=st.booleans(),
)
def test_wash_trading_price_verdict_is_symmetric(
    low: int, diff: int, buy_first: bool, swap_fold: bool
) -> None:
    """Any two prices (in 1e-5 steps near 100): the verdict depends on neither which side
    traded first nor which fill was folded first, and is |a - b| / mid <= 5 bps."""
    a, b = Decimal(low).scaleb(-5), Decimal(low + diff).scaleb(-5)
    buy, sell = ("BUY", str(a)), ("SELL", str(b))
    found = wash(*((buy, sell) if buy_first else (sell, buy)), swap_fold=swap_fold)
    mid = (a + b) / 2
    assert found == (["WASH_TRADING"] if (b - a) / mid * 10000 <= 5 else [])
