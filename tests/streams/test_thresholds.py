"""The documented thresholds, exactly at and around their edges (hypothesis over the pure
detectors): spoofing's size against the book (>=) and lifetime (<=), the order-to-trade
and cancel ratios (>) and the minimum order count (>=), wash trading's window and
tolerances (<=, inclusive)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.detectors import all_detectors
from streams.surveillance_state import Surveillance
from streams.synthetic import Tape


def patterns(t: Tape) -> list[str]:
    return [a.payload.pattern for a in Surveillance(all_detectors()).process_batch(t.events)]


@settings(max_examples=150, deadline=None)
@given(
    book=st.integers(1, 50),
    ratio_hundredths=st.sampled_from([299, 300, 301, 250, 350]),
    lifetime_us=st.sampled_from([4_999_999, 5_000_000, 5_000_001, 1_000_000, 7_000_000]),
)
def test_spoofing_fires_exactly_at_size_vs_book_and_cancel_within(
    book: int, ratio_hundredths: int, lifetime_us: int
) -> None:
    """size >= 3x the visible same-side quantity, alive <= 5 s (the defaults)."""
    qty = Decimal(book) * Decimal(ratio_hundredths) / 100
    t = Tape()
    t.open_account("A1", "x")
    t.open_account("A2", "x")
    t.quote(0.5, "100.00", "100.10", str(book), str(book))
    t.submit(1.0, "A1", "big", "BUY", str(qty), "99.95")
    t.submit(1.5, "A2", "sell", "SELL", "1", "100.10")
    t.fill(1.6, "sell")
    t.cancel(1.0 + lifetime_us / 1_000_000, "big")  # Tape rounds to the microsecond
    expected = qty / book >= 3 and lifetime_us <= 5_000_000
    assert ("SPOOFING" in patterns(t)) == expected


@settings(max_examples=100, deadline=None)
@given(
    orders=st.integers(1, 9),
    cancels=st.integers(0, 9),
    trades=st.integers(0, 3),
)
def test_order_to_trade_fires_exactly_above_its_ratios(
    orders: int, cancels: int, trades: int
) -> None:
    """>= min_orders, and orders/trades > max_order_to_trade or cancels/orders >
    max_cancel_ratio; set to 4 orders, ratio 3, cancel ratio 0.5 here."""
    trades = min(trades, orders)
    cancels = min(cancels, orders - trades)
    t = Tape()
    t.open_account("Q1", "q")
    t.config("order_to_trade", 1, min_orders="4", max_order_to_trade="3",
             max_cancel_ratio="0.5", window_s="60")  # fmt: skip
    t.quote(0.1, "100.00", "100.10", "5", "5")
    steps = []  # the traded orders first, so the ratios reach their edges at the end
    for i in range(orders):
        t.submit(1.0 + i, "Q1", f"o{i}", "BUY", "1", "99.00")
        steps.append(("o", 1))
        if i < trades:
            t.fill(1.5 + i, f"o{i}")
            steps.append(("f", 1))
    for i in range(cancels):
        t.cancel(30.0 + i, f"o{trades + i}")
        steps.append(("c", 1))
    found = "ORDER_TO_TRADE" in patterns(t)
    # judged at each of Q1's events, on the counts so far (all inside the window)
    n = {"o": 0, "f": 0, "c": 0}
    expected = False
    for kind, _ in steps:
        n[kind] += 1
        o, f, c = n["o"], n["f"], n["c"]
        if o >= 4 and (Decimal(o) / max(f, 1) > 3 or Decimal(c) / o > Decimal("0.5")):
            expected = True
    assert found == expected, (orders, cancels, trades)


@settings(max_examples=150, deadline=None)
@given(
    gap_us=st.sampled_from([4_999_999, 5_000_000, 5_000_001, 0]),
    size_permille=st.sampled_from([990, 989, 1000, 1010, 1011]),
    price_cents=st.sampled_from([10000, 10005, 10006, 9995, 9994]),
)
def test_wash_trading_tolerances_are_inclusive(
    gap_us: int, size_permille: int, price_cents: int
) -> None:
    """Within 5 s, size within 1 %, price within 5 bps of the two prices' mid."""
    size = Decimal(size_permille) / 1000
    price = Decimal(price_cents) / 100
    t = Tape()
    t.open_account("A1", "x")
    t.open_account("A2", "x")
    t.submit(1.0, "A1", "b", "BUY", "1", "100.00")
    t.fill(1.0, "b")
    later = 1.0 + gap_us / 1_000_000
    t.submit(later, "A2", "s", "SELL", str(size), str(price))
    t.fill(later, "s")
    size_ok = abs(1 - size) / max(Decimal(1), size) <= Decimal("0.01")
    price_ok = abs(Decimal(100) - price) / ((100 + price) / 2) * 10000 <= 5
    expected = gap_us <= 5_000_000 and size_ok and price_ok
    assert ("WASH_TRADING" in patterns(t)) == expected
