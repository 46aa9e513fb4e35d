"""What `build_context` reads from the engine state, and `evaluate` failing closed.

From a mutation audit (session 21): the rule context's open leaves, pending flows and
rate-window end, and `evaluate`'s rejection of a context it cannot build, could each be
changed without a test failing; the rule tests build their contexts from a state where
those are zero or equal.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from engine.risk.evaluator import build_context, evaluate, run_rules
from engine.risk.rules import RiskContext
from engine.state import EngineState
from schemas.events import OrderIntent, OrderType, RiskLimits, Side
from tests.engine.pure import INSTRUMENT, Harness

D = Decimal
LIMITS = RiskLimits(
    max_order_notional=D("1000000"),
    max_position=D("100"),
    max_open_orders=50,
    price_collar_pct=D("0.05"),
    max_orders_per_window=2,
    rate_window_seconds=1,
)


def _intent(side: Side = Side.BUY, qty: str = "0.01", limit: str = "29000") -> OrderIntent:
    return OrderIntent(
        producer_id="p1",
        strategy_id="s",
        account="A1",
        client_order_id="x",
        instrument=INSTRUMENT,
        side=side,
        order_type=OrderType.LIMIT,
        quantity=D(qty),
        limit_price=D(limit),
    )


def _build(
    h: Harness, at: datetime | None = None, received_at: datetime | None = None
) -> RiskContext:
    at = h.now if at is None else at
    return build_context(
        h.state,
        _intent(),
        at,
        consumer_lag=0,
        taker_fee_rate=D("0.001"),
        received_at=at if received_at is None else received_at,
    )


def _harness() -> Harness:
    h = Harness(LIMITS)
    h.quote(D("30000"), D("30001"))
    return h


def test_the_context_carries_the_resting_orders_on_the_instrument() -> None:
    h = _harness()
    h.admin_deposit("BTC", D("1"))
    h.order(Side.BUY, D("0.3"), D("29000"))
    h.tick(1.1)  # out of the rate window
    h.order(Side.SELL, D("0.2"), D("31000"))
    h.tick(1.1)
    ctx = _build(h)
    assert (ctx.open_buy_leaves, ctx.open_sell_leaves, ctx.open_orders) == (D("0.3"), D("0.2"), 2)


def test_the_open_buys_of_the_base_asset_are_summed_over_its_pairs() -> None:
    """Buys resting on BTC/USDC (0.3) and BTC/EURC (0.2) both add BTC; one on ETH/BTC
    (0.7) spends it."""
    h = _harness()
    h.quote(D("0.9"), D("0.9001"), instrument="EURC/USDC")
    h.quote(D("27000"), D("27001"), instrument="BTC/EURC")
    h.quote(D("0.05"), D("0.05001"), instrument="ETH/BTC")
    h.admin_deposit("EURC", D("100000"))
    h.admin_deposit("BTC", D("1"))
    for qty, limit, instrument in (
        ("0.3", "29000", "BTC/USDC"),
        ("0.2", "26000", "BTC/EURC"),
        ("0.7", "0.049", "ETH/BTC"),
    ):
        out = h.order(Side.BUY, D(qty), D(limit), instrument=instrument)
        assert "OrderSubmitted" in [e.event_type for e in out], instrument
        h.tick(1.1)  # out of the rate window
    ctx = _build(h)
    assert (ctx.open_buy_leaves, ctx.open_base_buy_leaves) == (D("0.3"), D("0.5"))


def test_the_rate_window_ends_at_the_broker_time_not_the_stamp() -> None:
    """Two orders 0.9 s before the broker's time of a third, stamped 0.9 s ahead of it
    (within the skew tolerance): the window of 1 s back from the broker's time holds
    both, so 2 a second refuses it; counted back from the stamp it would hold none."""
    h = _harness()
    h.order(Side.BUY, D("0.01"), D("29000"))
    h.order(Side.BUY, D("0.01"), D("29000"))
    h.tick(0.9)
    ctx = _build(h, at=h.now + timedelta(milliseconds=900), received_at=h.now)
    assert ctx.recent_orders == 2
    assert run_rules(ctx).reason_codes == ("ORDER_RATE",)


def test_orders_older_than_the_window_are_not_counted() -> None:
    h = _harness()
    h.order(Side.BUY, D("0.01"), D("29000"))
    h.order(Side.BUY, D("0.01"), D("29000"))
    h.tick(1.5)
    assert _build(h).recent_orders == 0


def test_the_book_is_the_one_in_force_at_the_intents_own_time() -> None:
    """The paper venue fills an order against the book of its event time: the context's
    touch is that book's, not the one in force when the broker appended the intent."""
    h = _harness()
    stamped = h.now + timedelta(milliseconds=5)
    h.quote(D("30100"), D("30101"))  # 10 ms after the first
    ctx = _build(h, at=stamped, received_at=h.now + timedelta(milliseconds=500))
    assert (ctx.best_bid, ctx.best_ask) == (D("30000"), D("30001"))
    assert ctx.book_time is not None and ctx.book_time < stamped


def test_flows_not_yet_in_units_leave_the_account_unmeasured() -> None:
    h = _harness()
    h.admin_deposit("SOL", D("10"))  # no SOL price: not turned into units
    h.quote(D("150"), D("150.1"), instrument="SOL/USDC")  # priced now, not yet in units
    ctx = _build(h)
    assert ctx.flows_pending and ctx.equity is not None
    assert run_rules(ctx).reason_codes == ("NO_MARK",)


def test_a_context_that_cannot_be_built_rejects(monkeypatch: pytest.MonkeyPatch) -> None:
    h = _harness()

    def unvaluable(self: EngineState, account: str, marks: object = None) -> Decimal | None:
        raise ValueError("cannot value")

    monkeypatch.setattr(EngineState, "equity", unvaluable)
    ev = evaluate(
        h.state, _intent(), h.now, consumer_lag=0, taker_fee_rate=D("0.001"), received_at=h.now
    )
    assert not ev.passed and ev.reason_codes == ("RULE_ERROR",) and ev.context is None
    assert [(r.rule_id, r.passed) for r in ev.results] == [("CONTEXT", False)]
