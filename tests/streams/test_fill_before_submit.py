"""A fill folded before its own order's `OrderSubmitted`.

The engine stamps an order's events at its intent's append time (or up to
`order_events_ahead_ms` ahead of it: 0 by default, a simulation's more), while a resting
order's fill carries the time of the market data that filled it; and the sequencer
releases in event time. So a fill can be
stamped before the submission it follows on the log and be released first. The fill
found no order, and the order, folded next, stayed OPEN with nothing filled until the
horizon pruned it: filled orders looked unfilled, and order-to-trade did not judge the
fill at all (it looked the fill's account and instrument up through its order).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import Envelope, encode
from streams.detectors import OrderToTradeDetector, all_detectors
from streams.sequencer import sequence_log
from streams.surveillance_state import Surveillance
from streams.synthetic import Tape
from tests.streams.helpers import from_changelog
from tests.streams.test_properties import tapes


def fold(events: list[Envelope[Any]]) -> tuple[Surveillance, list[Any]]:
    s = Surveillance(all_detectors())
    return s, s.process_batch(events)


def test_a_fill_released_before_its_order_closes_it() -> None:
    t = Tape()
    t.open_account("A1", "x")
    t.submit(1.0, "A1", "o", "BUY", "2", "100.00")  # stamped ahead of the market data
    t.fill(0.9, "o", qty="0.5")
    t.fill(0.95, "o")
    released, _ = sequence_log(t.events)
    assert [e.event_type for e in released[1:]] == ["Fill", "Fill", "OrderSubmitted"]
    s, _ = fold(released)
    order = s.store.books["x"].orders["o"]
    assert (order.status, order.filled_qty) == ("FILLED", Decimal(2))
    assert order.ended_at == order.submitted_at  # not before it began
    assert order.end_event_id == t.events[-1].event_id
    assert s.store.books["x"].early_fills == {}


def test_a_partial_fill_released_before_its_order_is_the_orders() -> None:
    t = Tape()
    t.open_account("A1", "x")
    t.submit(1.0, "A1", "o", "BUY", "2", "100.00")
    t.fill(0.9, "o", qty="0.5")
    t.cancel(2.0, "o")
    s, _ = fold(sequence_log(t.events)[0])
    order = s.store.books["x"].orders["o"]
    assert (order.status, order.filled_qty, order.traded) == ("CANCELED", Decimal("0.5"), True)


def order_states(s: Surveillance) -> dict[tuple[str, str], tuple[Any, ...]]:
    """What the fold knows of each order's life (not its context at submission: the
    quote and size history in force then are judged elsewhere)."""
    return {
        (owner, oid): (o.status, o.filled_qty, o.ended_at, o.end_event_id, o.reported_filled)
        for owner, book in s.store.books.items()
        for oid, o in book.orders.items()
    }


@settings(max_examples=80, deadline=None)
@given(events=tapes(), data=st.data())
def test_an_orders_life_does_not_depend_on_the_fold_order(
    events: list[Envelope[Any]], data: st.DataObject
) -> None:
    """Any order of the same events, with a restart from the changelogs' JSON at any
    point, ends every order as the log order does: filled orders FILLED, nothing left
    waiting for an order that was folded."""
    shuffled = data.draw(st.permutations(events))
    cut = data.draw(st.integers(0, len(events)))
    s = Surveillance(all_detectors())
    s.process_batch(shuffled[:cut])
    s = Surveillance(all_detectors(), from_changelog(s.store))
    s.process_batch(shuffled[cut:])
    in_log, _ = fold(events)
    assert order_states(s) == order_states(in_log)
    for book in s.store.books.values():
        assert not set(book.early_fills) & set(book.orders)
        assert not set(book.pending_ends) & set(book.orders)


def otr_tape() -> Tape:
    """Q1's cancels come to 3 of 4 orders in the 10 s window (0.75, the limit 0.8) until
    o0 leaves the window: at the fill at 10.5, the 4th order is stamped 10.6 (ahead)."""
    t = Tape()
    t.open_account("Q1", "q")
    t.config("order_to_trade", 1, min_orders="3", window_s="10", max_cancel_ratio="0.8")
    t.submit(0.0, "Q1", "o0", "BUY", "1", "99.00")
    for i in (1, 2, 3):
        t.submit(float(i), "Q1", f"o{i}", "BUY", "1", "99.00")
        t.cancel(i + 0.05, f"o{i}")
    t.submit(10.6, "Q1", "o4", "BUY", "1", "99.00")
    t.fill(10.5, "o4")
    return t


def test_order_to_trade_judges_a_fill_folded_before_its_order() -> None:
    t = otr_tape()
    released, _ = sequence_log(t.events)
    assert [e.event_type for e in released[-2:]] == ["Fill", "OrderSubmitted"]
    in_log = [encode(a) for a in fold(t.events)[1]]
    in_release = [encode(a) for a in fold(released)[1]]
    assert in_release == in_log
    (alert,) = fold(released)[1]
    assert alert.payload.evidence["cancel_ratio"] == "1.0000"
    assert alert.payload.detector_version == OrderToTradeDetector.VERSION == 6


def test_order_to_trade_counts_a_cancel_stamped_before_its_order_at_its_own_judgement() -> None:
    """Orders stamped ahead of their intents' append time (order_events_ahead_ms allows),
    each cancel on time, 50 ms before its order's stamp. Folded in log order, each cancel
    is counted at its order's submission (never before it began) but was judged at its
    own stamp, a window that ended before both: neither the order nor its cancel counted,
    and three orders all cancelled raised nothing (released in event time, they did; the
    two alerts have other triggers, so other ids)."""
    t = Tape()
    t.open_account("Q1", "q")
    t.config("order_to_trade", 1, min_orders="3", window_s="60", max_cancel_ratio="0.7")
    for i in range(3):
        t.submit(1.0 + i, "Q1", f"o{i}", "BUY", "1", "99.00")
        t.cancel(0.95 + i, f"o{i}")
    assert [a.payload.evidence["cancels"] for a in fold(sequence_log(t.events)[0])[1]] == [3]
    (alert,) = fold(t.events)[1]
    assert (alert.payload.evidence["orders"], alert.payload.evidence["cancels"]) == (3, 3)
    assert alert.payload.window_end == t.time(3.0)
