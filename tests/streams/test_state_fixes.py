"""Regressions for review 52's state and detector defects (each test failed before its fix)."""

from __future__ import annotations

import decimal
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from schemas import Envelope, decode, encode
from streams.detectors import all_detectors
from streams.surveillance_state import (
    HORIZON,
    AlertDraft,
    Context,
    InvalidDetectorConfig,
    Surveillance,
)
from streams.synthetic import Tape
from tests.streams.helpers import from_changelog


def fold(events: list[Envelope[Any]]) -> list[str]:
    return [a.payload.pattern for a in Surveillance(all_detectors()).process_batch(events)]


def books_json(s: Surveillance) -> dict[str, str]:
    return {k: v.model_dump_json() for k, v in s.store.books.items()}


# --- 5. an event whose detector raises is not half-applied --------------------------------


class Boom:
    """A detector that fails on one event (any detector error: a bug, bad arithmetic)."""

    NAME: ClassVar[str] = "zz_boom"
    VERSION: ClassVar[int] = 1
    PATTERN: ClassVar[str] = "BOOM"
    DEFAULTS: ClassVar[dict[str, str]] = {}

    def __init__(self, on: Envelope[Any], bad_draft: bool = False) -> None:
        self.on = on.event_id
        self.bad_draft = bad_draft

    def validate(self, params: dict[str, str]) -> None:
        pass

    def on_event(self, ctx: Context) -> list[AlertDraft]:
        if ctx.event.event_id != self.on:
            return []
        if not self.bad_draft:
            raise ArithmeticError("boom")
        now = ctx.now  # a draft the alert event cannot be built from (invalid account)
        return [AlertDraft("zz_boom", 1, "BOOM", "bad account!", "BTC/USDT", Decimal(1), now,
                           now, (), {}, "")]  # fmt: skip


def ladder_with_a_failing_cancel() -> tuple[list[Envelope[Any]], Envelope[Any]]:
    t = Tape()
    t.open_account("A1", "x")
    t.open_account("A2", "x")
    t.quote(0.5, "100.00", "100.10", "50", "50")
    t.submit(1.0, "A1", "big", "BUY", "1", "99.99")
    t.submit(1.1, "A1", "o2", "BUY", "1", "99.98")
    t.submit(1.2, "A1", "o3", "BUY", "1", "99.97")
    t.submit(1.4, "A2", "s", "SELL", "1", "100.10")
    t.fill(1.5, "s")
    crash = t.cancel(2.0, "big")
    t.cancel(2.1, "o2")
    t.cancel(2.2, "o3")
    return t.events, crash


@pytest.mark.parametrize(("restart", "bad_draft"), [(False, False), (True, False), (True, True)])
def test_an_event_whose_detector_raises_changes_nothing(restart: bool, bad_draft: bool) -> None:
    """Before: the cancel was applied to the book in place, but not stored (write-behind:
    never marked dirty), so the alerts after it depended on whether the worker restarted
    (r7: LAYERING without a restart, none with one)."""
    events, crash = ladder_with_a_failing_cancel()
    s = Surveillance([*all_detectors(), Boom(crash, bad_draft)])
    alerts: list[str] = []
    for e in events:
        if e is crash:
            before = books_json(s)
            with pytest.raises((ArithmeticError, ValueError)):
                s.process(e)
            assert books_json(s) == before, "the failed event left no trace"
            if restart:
                s = Surveillance(
                    [*all_detectors(), Boom(crash, bad_draft)], from_changelog(s.store)
                )
            continue
        alerts += [a.payload.pattern for a in s.process(e)]
    # as if the dead-lettered cancel had never been on the log: big stays open
    without = Surveillance(all_detectors()).process_batch([e for e in events if e is not crash])
    assert alerts == [a.payload.pattern for a in without] == []


# --- 6. a config that would make every event fail is refused -------------------------------


@pytest.mark.parametrize(
    ("detector", "params", "reason"),
    [
        ("spoofing", {"window_s": "100000000000"}, "window_s: .* must be <= 5400"),
        ("spoofing", {"cancel_within_s": "5401"}, "cancel_within_s"),
        ("spoofing", {"min_history": "50"}, "min_history"),
        ("order_to_trade", {"window_s": "100000000000"}, "window_s"),
        ("order_to_trade", {"min_orders": "1" + "0" * 5000}, "min_orders"),
        ("layering", {"cancel_together_s": "100000000000"}, "cancel_together_s"),
        ("layering", {"min_levels": "1000001"}, "min_levels"),
        ("wash_trading", {"window_s": "99999999999"}, "window_s"),
        ("marking_close", {"lookback_minutes": "100000000000"}, "lookback_minutes"),
        ("marking_close", {"minutes_before": "91", "lookback_minutes": "90"}, "minutes_before"),
        ("wash_trading", {"price_tolerance_bps": "1" * 65}, "longer than 64"),
    ],
)
def test_a_config_that_would_break_every_event_is_refused(
    detector: str, params: dict[str, str], reason: str
) -> None:
    """Before: these passed validation and then every event of the detector raised
    (OverflowError from `now - window`, ValueError from int() past 4,300 digits), so every
    order event was dead-lettered and no detector alerted (r5_config_overflow)."""
    t = Tape()
    t.open_account("A1", "x")
    t.open_account("A2", "x")
    bad = t.config(detector, 1, 0, **params)
    t.quote(0.5, "100.00", "100.10", "2", "2")
    t.submit(1.0, "A1", "big", "BUY", "10", "99.95")
    t.submit(2.0, "A2", "sell", "SELL", "1", "100.10")
    t.fill(2.5, "sell")
    t.cancel(4.0, "big")
    s = Surveillance(all_detectors())
    alerts: list[str] = []
    for e in t.events:
        if e is bad:
            with pytest.raises(InvalidDetectorConfig, match=reason):
                s.process(e)
            continue
        alerts += [a.payload.pattern for a in s.process(e)]
    assert alerts == ["SPOOFING"]


def test_the_largest_accepted_durations_fold() -> None:
    t = Tape()
    t.open_account("A1", "x")
    t.open_account("A2", "x")
    for det in ("spoofing", "order_to_trade", "wash_trading"):
        t.config(det, 1, window_s="5400")
    t.config("layering", 1, window_s="5400", cancel_together_s="5400")
    t.config("marking_close", 1, minutes_before="90", lookback_minutes="90")
    t.quote(0.5, "100.00", "100.10", "2", "2")
    t.submit(1.0, "A1", "big", "BUY", "10", "99.95")
    t.submit(2.0, "A2", "sell", "SELL", "1", "100.10")
    t.fill(2.5, "sell")
    t.cancel(4.0, "big")
    alerts = Surveillance(all_detectors()).process_batch(t.events)
    assert [a.payload.pattern for a in alerts] == ["SPOOFING"]


# --- 14. the cancel's own filled_quantity ---------------------------------------------------


def part_filled_spoof() -> tuple[list[Envelope[Any]], Envelope[Any]]:
    t = Tape()
    t.open_account("A1", "x")
    t.open_account("A2", "x")
    t.quote(0.5, "100.00", "100.10", "2", "2")
    t.submit(1.0, "A1", "big", "BUY", "10", "99.95")
    t.submit(2.0, "A2", "s", "SELL", "1", "100.10")
    t.fill(2.5, "s")
    f_big = t.fill(3.0, "big", qty="4")  # 4 of 10 filled: the cancel says filled_quantity=4
    t.cancel(3.5, "big")
    return t.events, f_big


def test_an_order_its_cancel_reports_filled_is_not_spoofing() -> None:
    """Before: with the order's fill folded after the cancel, SPOOFING "cancelled unfilled"
    (r19_cancel_says_filled)."""
    events, f_big = part_filled_spoof()
    assert fold(events) == []
    assert fold([e for e in events if e is not f_big] + [f_big]) == []


def test_an_order_filled_before_its_submit_was_folded_is_not_spoofing() -> None:
    """A marketable order's fill carries the same time as its submit and may be released
    first (r21): the fill then finds no order, but the cancel reports the fill."""
    t = Tape()
    t.open_account("A1", "x")
    t.open_account("A2", "x")
    t.quote(0.5, "100.00", "100.10", "2", "2")
    t.submit(0.8, "A2", "s", "SELL", "1", "100.00")
    t.fill(0.9, "s")
    sub = t.submit(1.0, "A1", "big", "BUY", "10", "100.10")
    fb = t.fill(1.0, "big", qty="4", price="100.10")
    t.cancel(3.0, "big")
    i = t.events.index(sub)
    assert fold([*t.events[:i], fb, sub, *t.events[i + 2 :]]) == []


def test_a_ladder_order_its_cancel_reports_filled_is_not_layered() -> None:
    t = Tape()
    t.open_account("A1", "x")
    t.open_account("A2", "x")
    t.quote(0.1, "100.00", "100.10", "50", "50")
    for k, px in enumerate(["99.90", "99.85", "99.80"]):
        t.submit(0.2 + k * 0.1, "A1", f"L{k}", "BUY", "1", px)
    t.submit(0.6, "A2", "S", "SELL", "1", "100.10")
    t.fill(0.7, "S")
    f1 = t.fill(0.8, "L1", qty="0.5")
    for k in range(3):
        t.cancel(1.0 + k * 0.1, f"L{k}")
    assert fold(t.events) == []
    assert fold([e for e in t.events if e is not f1] + [f1]) == []


# --- 15. layering counts price levels, not orders -----------------------------------------


def test_orders_at_one_price_are_not_a_ladder() -> None:
    """Before: three orders at one price raised LAYERING "3 BUY orders on 1 consecutive
    levels" with min_levels = 3 (r17_layering_one_level)."""
    t = Tape()
    t.open_account("A1", "x")
    t.open_account("A2", "x")
    t.quote(0.5, "100.00", "100.10", "50", "50")
    for k in range(3):
        t.submit(1.0 + k * 0.1, "A1", f"o{k}", "BUY", "1", "99.95")
    t.submit(1.5, "A2", "s", "SELL", "1", "100.10")
    t.fill(1.6, "s")
    for k in range(3):
        t.cancel(2.0 + k * 0.1, f"o{k}")
    assert fold(t.events) == []


def test_two_orders_on_each_of_three_levels_are_a_ladder() -> None:
    t = Tape()
    t.open_account("A1", "x")
    t.open_account("A2", "x")
    t.quote(0.5, "100.00", "100.10", "50", "50")
    for k, px in enumerate(["99.95", "99.95", "99.90", "99.90", "99.85", "99.85"]):
        t.submit(1.0 + k * 0.1, "A1", f"o{k}", "BUY", "1", px)
    t.submit(1.8, "A2", "s", "SELL", "1", "100.10")
    t.fill(1.9, "s")
    for k in range(6):
        t.cancel(2.0 + k * 0.1, f"o{k}")
    alerts = Surveillance(all_detectors()).process_batch(t.events)
    assert [a.payload.pattern for a in alerts] == ["LAYERING"]
    assert alerts[0].payload.evidence["levels"] == 3
    assert len(alerts[0].payload.evidence["orders"]) == 5  # the 5th cancel completes 3 levels


# --- 13. an account's owner learned while its order is open ---------------------------------


def owner_learned_midorder() -> tuple[list[Envelope[Any]], list[Envelope[Any]]]:
    t = Tape()
    opened = t.open_account("A1", "x", at=0)
    t.quote(0.5, "100.00", "100.10", "2", "2")
    t.submit(1.0, "A1", "big", "BUY", "10", "99.95")
    s = t.submit(2.0, "A1", "s", "SELL", "1", "100.10")
    t.fill(2.5, "s")
    t.cancel(4.0, "big")
    late = [e for e in t.events if e is not opened]
    late.insert(late.index(s), opened)  # the accounts partition delivers it after the submit
    return t.events, late


def test_an_order_submitted_before_its_accounts_owner_was_known_is_still_judged() -> None:
    """Before: the cancel went to the owner's book, where the order was not: the spoof was
    missed and the order stayed OPEN in the `account:A1` book for ever (r16)."""
    in_order, late = owner_learned_midorder()
    s = Surveillance(all_detectors())
    alerts = [a.payload for a in s.process_batch(late)]
    expected = [a.payload for a in Surveillance(all_detectors()).process_batch(in_order)]
    assert [a.pattern for a in expected] == ["SPOOFING"]
    assert alerts == expected
    assert list(s.store.books) == ["x"]
    assert s.store.books["x"].orders["big"].status == "CANCELED"


def test_the_accounts_own_book_joins_the_owners_other_accounts() -> None:
    t = Tape()
    t.open_account("A2", "x")
    opened = t.open_account("A1", "x")
    t.quote(0.5, "100.00", "100.10", "2", "2")
    big = t.submit(1.0, "A1", "big", "BUY", "10", "99.95")
    t.submit(2.0, "A2", "s", "SELL", "1", "100.10")
    t.fill(2.5, "s")
    t.cancel(4.0, "big")
    late = [e for e in t.events if e is not opened]
    late.insert(late.index(big) + 1, opened)
    s = Surveillance(all_detectors())
    alerts = [a.payload for a in s.process_batch(late)]
    assert alerts == [a.payload for a in Surveillance(all_detectors()).process_batch(t.events)]
    assert [a.pattern for a in alerts] == ["SPOOFING"]
    assert list(s.store.books) == ["x"]


# --- 12. one quote stamped an hour ahead -----------------------------------------------------


def spoof_with_quotes(glitch: bool) -> list[Envelope[Any]]:
    t = Tape()
    t.open_account("A1", "x")
    t.open_account("A2", "x")
    t.quote(0.5, "100.00", "100.10", "1", "1")
    if glitch:
        t.quote(3600.0, "100.00", "100.10", "1", "1")  # one bad timestamp
    for k in range(5):  # correct quotes keep flowing
        t.quote(1.0 + k * 0.1, "100.00", "100.10", "1", "1")
    t.submit(2.0, "A1", "big", "BUY", "10", "99.95")  # 10x the visible bid
    t.submit(2.1, "A2", "s", "SELL", "1", "100.10")
    t.fill(2.2, "s")
    t.cancel(3.0, "big")
    return t.events


def test_one_quote_stamped_an_hour_ahead_does_not_blind_the_book() -> None:
    """Before: the history was pruned against the newest quote's time, so every correct
    quote after the glitch fell out of it and the order met no book (r3)."""
    normal = Surveillance(all_detectors()).process_batch(spoof_with_quotes(False))
    s = Surveillance(all_detectors())
    glitched = s.process_batch(spoof_with_quotes(True))
    assert [a.payload.pattern for a in normal] == ["SPOOFING"]
    # the tapes' event ids differ (one more event): the same verdict and evidence
    assert [a.payload.evidence for a in glitched] == [a.payload.evidence for a in normal]
    assert len(s.store.quotes["BTC/USDT"].history) == 6


# --- 17. the fold's arithmetic does not depend on the ambient decimal context ---------------


def dust_spoof(big_qty: str, bid_qty: str) -> list[Envelope[Any]]:
    t = Tape()
    t.open_account("A1", "x")
    t.open_account("A2", "x")
    t.quote(0.5, "0.000000001", "0.000000002", bid_qty, "1")
    t.submit(1.0, "A1", "big", "BUY", big_qty, "0.000000001")
    t.submit(2.0, "A2", "s", "SELL", "1", "0.000000002")
    t.fill(2.5, "s")
    t.cancel(4.0, "big")
    return t.events


@pytest.mark.parametrize(
    ("big_qty", "bid_qty"),
    [
        ("1000000000000", "0.000000000000000001"),  # ratio 1e30: quantize raised before
        ("9" * 100, "0." + "0" * 99 + "1"),  # ratio ~1e200, still schema-valid sizes
        ("10", "3"),
    ],
)
def test_spoofing_arithmetic_never_raises_and_ignores_the_ambient_context(
    big_qty: str, bid_qty: str
) -> None:
    """Before: `quantize` raised InvalidOperation (the cancel was dead-lettered, the spoof
    missed) and under another ambient precision the same events gave other bytes (r6)."""
    events = dust_spoof(big_qty, bid_qty)
    alerts = Surveillance(all_detectors()).process_batch(events)
    assert [a.payload.pattern for a in alerts] == ["SPOOFING"]
    with decimal.localcontext() as ctx:
        ctx.prec = 3
        ctx.traps[decimal.Inexact] = True
        again = Surveillance(all_detectors()).process_batch(events)
    assert [encode(a) for a in again] == [encode(a) for a in alerts]
    payload = alerts[0].payload
    ratio = Decimal(big_qty) / Decimal(bid_qty) if len(big_qty) < 20 else None
    if ratio is not None and ratio < 10**6:
        assert payload.evidence["size_vs_book"] == format(ratio.quantize(Decimal("0.0001")), "f")
    # the alert is a valid event on the wire (the score is capped into the schema's range)
    _key, value, headers = encode(alerts[0])
    assert decode(value, headers) == alerts[0]


# --- 16. state is bounded by the horizon ---------------------------------------------------


def test_state_is_bounded_by_the_horizon_in_event_time() -> None:
    """Before: `counters` kept an emptied list per account|instrument ever seen, `sizes`
    and `last_alert` were never pruned, an order whose end was never folded stayed for
    ever, and the book of an owner who went quiet was never pruned at all (r9)."""
    t = Tape()
    t.open_account("A1", "x")
    for i in range(50):  # one order on each of 50 instruments
        t.submit(i * 0.01, "A1", f"o{i}", "BUY", "1", "1.00", instrument=f"C{i}/USDT")
        t.cancel(i * 0.01 + 0.001, f"o{i}")
    t.submit(1.0, "A1", "never-ended", "BUY", "1", "1.00")
    later = HORIZON.total_seconds() + 3600  # not money: seconds of a test tape
    for k in range(8):
        t.submit(later + k, "A1", f"n{k}", "BUY", "1", "1.00")
        t.cancel(later + k + 0.5, f"n{k}")
    for j in range(20):  # one-off accounts with no AccountOpened (their own owners)
        t.submit(later + 30 + j, f"Z{j}", f"z{j}", "BUY", "1", "1.00")
    s = Surveillance(all_detectors())
    s.process_batch(t.events)
    x = s.store.books["x"]
    assert list(x.counters) == ["A1|BTC/USDT"]
    assert "never-ended" not in x.orders
    assert len(s.store.books) == 21
    tail = Tape(seed="tail")
    tail.open_account("Q", "q")
    for k in range(10):  # three days later, another owner trades
        tail.submit(later + 86400 * 3 + k, "Q", f"q{k}", "BUY", "1", "1.00")
    s.process_batch(tail.events)
    assert list(s.store.books) == ["q"], "the quiet owners' books are gone"


def test_an_accounts_sizes_and_suppression_go_with_its_last_order() -> None:
    t = Tape()
    t.open_account("A1", "x")
    t.open_account("B1", "x")
    t.config("order_to_trade", 1, window_s="10", min_orders="3", max_cancel_ratio="0.5")
    for k in range(3):
        t.submit(1 + k, "B1", f"b{k}", "BUY", "1", "90")
        t.cancel(1.5 + k, f"b{k}")
    later = HORIZON.total_seconds() + 60
    for k in range(8):
        t.submit(later + k, "A1", f"a{k}", "BUY", "1", "90")
    s = Surveillance(all_detectors())
    alerts = s.process_batch(t.events)
    assert [a.payload.pattern for a in alerts] == ["ORDER_TO_TRADE"]
    x = s.store.books["x"]
    assert list(x.sizes) == ["A1"]
    assert x.last_alert == {}


# --- 10. wash trading pairs by event time, not fold order -----------------------------------


def test_wash_pairing_does_not_depend_on_the_candidates_fold_order() -> None:
    """Two sells of the owner (A2 at 1.5 s, A3 at 2.0 s) both match A1's buy (1.0 s),
    folded last: before, the buy paired with whichever sell was folded first (r2)."""
    t = Tape()
    for a in ("A1", "A2", "A3"):
        t.open_account(a, "x")
    t.submit(0.9, "A1", "b", "BUY", "1", "100.00")
    t.submit(0.9, "A2", "s2", "SELL", "1", "100.00")
    t.submit(0.9, "A3", "s3", "SELL", "1", "100.00")
    fb = t.fill(1.0, "b")
    f2 = t.fill(1.5, "s2")
    f3 = t.fill(2.0, "s3")
    head = t.events[:6]

    def legs(order: list[Envelope[Any]]) -> list[list[str]]:
        alerts = Surveillance(all_detectors()).process_batch([*head, *order])
        return [sorted(leg["account"] for leg in a.payload.evidence["legs"]) for a in alerts]

    assert legs([fb, f2, f3]) == [["A1", "A2"]]  # in order
    assert legs([f2, f3, fb]) == [["A1", "A2"]]
    assert legs([f3, f2, fb]) == [["A1", "A2"]]


def test_a_close_marked_before_the_owner_was_known_is_not_alerted_again() -> None:
    """The suppression key of marking the close names the owner: `account:M1` before the
    `AccountOpened`, `m` after; the merged book must keep the close suppressed."""
    t = Tape()
    for k in range(8):  # 15:56:00 .. 15:59:30
        if k == 6:
            t.open_account("M1", "m", at=6960 + 30 * k - 1)
        t.submit(6960 + 30 * k, "M1", f"m{k}", "BUY", "1", None)
        t.fill(6960 + 30 * k + 0.1, f"m{k}", price="100")
    alerts = Surveillance(all_detectors()).process_batch(t.events)
    assert [a.payload.pattern for a in alerts] == ["MARKING_THE_CLOSE"]


# --- an alert's cause: the newest of its triggers, whichever fold completed it ------------


def test_an_alert_names_its_newest_trigger_as_its_cause() -> None:
    from streams.scenario import build_scenario, run_through_engine
    from streams.sequencer import sequence_log

    events, _state = sequence_log(run_through_engine(build_scenario(seed=1, minutes=2)))
    alerts = Surveillance(all_detectors()).process_batch(events)
    assert alerts
    by_id = {e.event_id: e for e in events}
    for a in alerts:
        triggers = a.payload.triggering_event_ids
        assert a.causation_id == max(triggers, key=str)
        assert a.correlation_id == a.event_id  # a case of its own
        newest = max(by_id[t].occurred_at for t in triggers if t in by_id)
        assert by_id[a.causation_id].occurred_at == newest
