"""The book an order meets is not the producer's to choose.

An order intent's `occurred_at` is its producer's word, accepted within FRESHNESS's skew
window (5 s before to 1 s after the broker's append time, `received_at`). Until session 24
the order met, and the rules valued it at, the book in force at that stamp: a producer
stamping 3.5 s back picked the best quote of the last 5 s (a market buy after the price
rose 500 filled at the ask before the rise, a sell after a fall at the bid before it).
Now it meets the book at its order events' time (`processor.order_events_at`: the append
time, at most `max_intent_ahead_ms` after it), the time it is submitted at.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from engine import auth
from engine.processor import process
from schemas import new_event
from schemas.events import CancelIntent, OrderIntent, OrderType, RiskLimits, Side
from tests.engine.pure import INSTRUMENT, Harness, decision

D = Decimal
LIMITS = RiskLimits(max_position=D("100"), max_order_notional=D("1e7"))


def _send(h: Harness, side: Side, stamp: datetime, arrival: datetime) -> list[Any]:
    """A market order of 1 stamped `stamp` by its producer, appended at `arrival`."""
    h.n += 1
    intent = OrderIntent(
        producer_id="p1",
        strategy_id="s",
        account="A1",
        client_order_id=f"c{h.n}",
        instrument=INSTRUMENT,
        side=side,
        order_type=OrderType.MARKET,
        quantity=D("1"),
    )
    event = new_event(auth.sign(intent, h.key), producer="p1", occurred_at=stamp)
    return process(h.state, event, h.ctx, arrival)


def _moved(side: Side) -> tuple[Harness, datetime, datetime]:
    """A book 29,999 / 30,001, then 3 s later one moved 500 against `side`: (harness, the
    first book's time, the arrival 1 s after the second)."""
    h = Harness(LIMITS)
    h.admin_deposit("BTC", D("10"))
    h.quote(D("29999"), D("30001"))
    first = h.now
    h.tick(3)
    up = D(500) if side is Side.BUY else D(-500)
    h.quote(D("29999") + up, D("30001") + up)
    return h, first, h.tick(1)


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
@pytest.mark.parametrize("back_s", [0.0, 2.0, 3.5])
def test_a_backdated_order_meets_the_book_at_its_arrival(side: Side, back_s: float) -> None:
    h, first, arrival = _moved(side)
    stamp = arrival - timedelta(seconds=back_s)
    assert back_s == 0 or stamp < first + timedelta(seconds=3)  # the older book's time
    out = _send(h, side, stamp, arrival)
    d = decision(out)
    assert d.outcome == "APPROVED", d
    touch = D("30501") if side is Side.BUY else D("29499")
    assert [e.payload.price for e in out if e.event_type == "Fill"] == [touch]
    notional = next(r for r in d.rule_results if r.rule_id == "MAX_ORDER_NOTIONAL")
    # A sell is valued at the highest of reference (the newest mid) and the bid it meets.
    assert notional.detail == f"notional {touch if side is Side.BUY else D('29500')}"
    submitted = next(e for e in out if e.event_type == "OrderSubmitted")
    assert submitted.occurred_at == arrival


@pytest.mark.parametrize("ahead_ms", [1, 500, 900, 1000])
def test_an_order_stamped_ahead_is_submitted_at_its_arrival(ahead_ms: int) -> None:
    """Stamped ahead within FRESHNESS's `max_intent_ahead_ms` (accepted: a producer's clock
    may run a little fast), it is still submitted, and meets the book, at its append time.
    Until session 24 its events, and the book it met, lay at its stamp (at most 1 s
    later): a quote the engine had read from after the intent was sent (30,801 here), and
    its own events moved up to 1 s later in surveillance's event time."""
    h, _first, arrival = _moved(Side.BUY)
    h.tick(0.5)
    h.quote(D("30799"), D("30801"))  # read before the intent (market data is read ahead)
    out = _send(h, Side.BUY, arrival + timedelta(milliseconds=ahead_ms), arrival)
    assert decision(out).outcome == "APPROVED"
    assert [e.payload.price for e in out if e.event_type == "Fill"] == [D("30501")]
    assert {e.occurred_at for e in out if e.topic == "orders.lifecycle"} == {arrival}


def test_a_cancel_stamped_ahead_ends_its_order_at_its_arrival() -> None:
    h, _first, arrival = _moved(Side.BUY)
    out = _send(h, Side.BUY, arrival, arrival)
    rest = h.order(Side.BUY, D("1"), D("30000"))  # a resting bid
    target = next(e.payload.client_order_id for e in rest if e.event_type == "OrderSubmitted")
    assert decision(out).outcome == "APPROVED"
    h.n += 1
    cancel = CancelIntent(
        producer_id="p1",
        strategy_id="s",
        account="A1",
        client_order_id=f"c{h.n}",
        target_client_order_id=target,
    )
    at = h.tick(2)
    event = new_event(
        auth.sign(cancel, h.key), producer="p1", occurred_at=at + timedelta(seconds=0.9)
    )
    ended = process(h.state, event, h.ctx, at)
    assert [e.event_type for e in ended] == ["RiskDecision", "CancelRequested", "OrderCanceled"]
    assert {e.occurred_at for e in ended[1:]} == {at}
