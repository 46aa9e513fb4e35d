"""An order's end (cancel, expiry, rejection) stamped before its own submission.

The engine stamps an order's events with their intents' times, which producers choose
(an order intent may lie 1 s ahead of the broker's clock, a cancel intent is not bounded
at all), so a cancel can carry an earlier time than the order it cancels although it
follows it on the log. The sequencer releases in event time, so such a cancel was folded
before its order, found no order and was dropped: the order stayed OPEN in its owner's
book, the spoof was never judged and its cancel never counted (review helper-134). A
cancel folded after its order but stamped before it made a negative lifetime and ended
the window for the opposite fills before the order existed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import Envelope, encode
from schemas.events import OrderCanceled, OrderSubmitted
from streams.detectors import all_detectors
from streams.sequencer import sequence_log
from streams.surveillance_state import Surveillance
from streams.synthetic import Tape
from tests.streams.helpers import from_changelog
from tests.streams.test_properties import tapes


def spoof_with_early_cancel(fill_at: float = 0.9) -> Tape:
    """A1's 50-lot bid (10x the book) stamped 1.0, cancelled by an event stamped 0.8 that
    follows it on the log; A2 (same owner) sells into the book at `fill_at`."""
    t = Tape()
    t.open_account("A1", "x")
    t.open_account("A2", "x")
    t.quote(0.1, "100.00", "100.10", "5", "5")
    t.submit(0.2, "A2", "s", "SELL", "1", "100.00")
    t.submit(1.0, "A1", "big", "BUY", "50", "99.97")
    t.fill(fill_at, "s")
    t.cancel(0.8, "big")
    return t


def fold(events: list[Envelope[Any]]) -> tuple[Surveillance, list[Any]]:
    s = Surveillance(all_detectors())
    return s, s.process_batch(events)


def test_a_cancel_released_before_its_order_still_ends_it_and_is_judged() -> None:
    t = spoof_with_early_cancel()
    released, _ = sequence_log(t.events)
    big = [e.event_type for e in released if getattr(e.payload, "order_id", "") == "big"]
    assert big == ["OrderCanceled", "OrderSubmitted"], "released in event time"
    s, alerts = fold(released)
    assert s.store.books["x"].orders["big"].status == "CANCELED"
    assert [a.payload.pattern for a in alerts] == ["SPOOFING"]
    ev = alerts[0].payload.evidence
    assert ev["canceled_at"] == ev["submitted_at"]  # not before it
    assert ev["lifetime_s"] == "0.000000"


def test_a_cancel_stamped_before_its_order_does_not_end_it_before_it_began() -> None:
    """Folded in log order (the order first): the lifetime was -0.2 s and the window for
    the opposite fills closed at 0.8 s, before the order existed, so A2's sale at 0.9 s
    did not count."""
    t = spoof_with_early_cancel()
    _, alerts = fold(t.events)
    assert [a.payload.pattern for a in alerts] == ["SPOOFING"]
    assert alerts[0].payload.evidence["lifetime_s"] == "0.000000"


def test_either_fold_order_gives_the_same_alert_record() -> None:
    t = spoof_with_early_cancel()
    released, _ = sequence_log(t.events)
    in_log = [encode(a) for a in fold(t.events)[1]]
    in_release = [encode(a) for a in fold(released)[1]]
    assert in_log == in_release
    assert len(in_log) == 1


def test_the_early_cancel_counts_in_the_order_to_trade_ratio() -> None:
    t = Tape()
    t.open_account("Q1", "q")
    t.config("order_to_trade", 1, min_orders="3", window_s="60", max_cancel_ratio="0.5")
    for i in range(3):
        t.submit(1.0 + i, "Q1", f"o{i}", "BUY", "1", "99.00")
        t.cancel(0.9 + i, f"o{i}")  # each cancel stamped 0.1 s before its order
    released, _ = sequence_log(t.events)
    _, alerts = fold(released)
    assert [a.payload.pattern for a in alerts] == ["ORDER_TO_TRADE"]
    assert alerts[0].payload.evidence["cancels"] == 3


def test_an_end_whose_order_never_comes_is_pruned_with_the_horizon() -> None:
    t = Tape()
    t.open_account("A1", "x")
    t.submit(0.5, "A1", "o", "BUY", "1", "99.00")
    t.cancel(1.0, "o")
    t.events.pop(1)  # the order's submit never reached surveillance
    s, _ = fold(t.events)
    assert list(s.store.books["x"].pending_ends) == ["o"]
    for i in range(4):  # the owner's prune clock: the lower median of their last 7 times
        t.submit(3 * 3600 + i, "A1", f"later{i}", "BUY", "1", "99.00")
    s.process_batch(t.events[-4:])
    assert s.store.books["x"].pending_ends == {}


@st.composite
def tapes_with_early_ends(draw: st.DrawFn) -> list[Envelope[Any]]:
    """Random tapes where some cancels are stamped up to 2 s before their own order (on
    the log they still follow it)."""
    events = draw(tapes())
    submitted = {
        e.payload.order_id: e.occurred_at for e in events if isinstance(e.payload, OrderSubmitted)
    }
    out = []
    for e in events:
        if isinstance(e.payload, OrderCanceled) and draw(st.booleans()):
            early = timedelta(milliseconds=draw(st.integers(1, 2000)))
            e = e.model_copy(update={"occurred_at": submitted[e.payload.order_id] - early})
        out.append(e)
    return out


@settings(max_examples=60, deadline=None)
@given(events=tapes_with_early_ends(), data=st.data())
def test_no_cancelled_order_stays_open_whatever_its_cancels_stamp(
    events: list[Envelope[Any]], data: st.DataObject
) -> None:
    """Folded in the sequencer's release order, with a restart from the changelogs' JSON
    at any point: every order with a cancel on the log is CANCELED, and the alerts are
    those of a fold without the restart."""
    released, _ = sequence_log(events)
    cut = data.draw(st.integers(0, len(released)))
    s = Surveillance(all_detectors())
    out = [encode(a) for a in s.process_batch(released[:cut])]
    s = Surveillance(all_detectors(), from_changelog(s.store))
    out += [encode(a) for a in s.process_batch(released[cut:])]
    cancelled = {e.payload.order_id for e in events if isinstance(e.payload, OrderCanceled)}
    for book in s.store.books.values():
        for oid in cancelled & set(book.orders):
            assert book.orders[oid].status == "CANCELED", oid
            assert book.orders[oid].ended_at >= book.orders[oid].submitted_at  # type: ignore[operator]
        assert not cancelled & set(book.pending_ends)
    assert out == [encode(a) for a in fold(released)[1]]
