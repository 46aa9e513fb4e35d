"""Each detector against synthetic tapes: positives, negatives and near misses."""

from __future__ import annotations

from typing import Any

import pytest

from schemas import Envelope
from schemas.events import SurveillanceAlert
from streams.detectors import MarkingCloseDetector, SpoofingDetector, all_detectors
from streams.surveillance_state import InvalidDetectorConfig, Surveillance
from streams.synthetic import Tape


def run(tape: Tape) -> list[SurveillanceAlert]:
    s = Surveillance(all_detectors())
    out: list[Envelope[SurveillanceAlert]] = []
    for e in tape.events:
        out.extend(s.process(e))
    return [a.payload for a in out]


def patterns(tape: Tape) -> list[str]:
    return [a.pattern for a in run(tape)]


def base(t: Tape) -> None:
    t.open_account("A1", "owner-x")
    t.open_account("A2", "owner-x")
    t.open_account("B1", "owner-y")
    t.quote(0.5, "100.00", "100.10", "2", "2")


def spoof(t: Tape, cancel_at: float = 4.0, filler: str = "A2", spoof_qty: str = "10") -> None:
    base(t)
    t.submit(1.0, "A1", "big", "BUY", spoof_qty, "99.95")
    t.submit(2.0, filler, "sell", "SELL", "1", "100.10")
    t.fill(2.5, "sell")
    t.cancel(cancel_at, "big")


# --- spoofing ---------------------------------------------------------------------------


def test_spoofing_judges_the_order_against_the_quote_in_force_at_submission() -> None:
    """A newer, deeper quote folded in before the order (it came in ahead of the engine's
    event) must not hide the order's size relative to the book it was placed into."""
    t = Tape()
    base(t)
    t.submit(1.0, "A1", "big", "BUY", "10", "99.95")
    t.submit(2.0, "A2", "sell", "SELL", "1", "100.10")
    t.fill(2.5, "sell")
    t.cancel(4.0, "big")
    deep = Tape(seed="deep")
    deep.quote(1.5, "100.00", "100.10", "50", "50")
    events = [*t.events[:4], deep.events[0], *t.events[4:]]
    alerts = [a.payload for a in Surveillance(all_detectors()).process_batch(events)]
    assert [a.pattern for a in alerts] == ["SPOOFING"]
    assert alerts[0].evidence["visible_qty_at_submit"] == "2"


def test_spoofing_judges_the_order_against_a_quote_folded_in_after_it() -> None:
    """The quote the order met reaches surveillance after the order (another partition):
    the order is judged, at its cancel, against that quote, not the older, deeper one."""
    t = Tape()
    t.open_account("A1", "owner-x")
    t.open_account("A2", "owner-x")
    t.quote(0.2, "100.00", "100.10", "8", "8")  # deep: 10 would be 1.25x the book
    t.submit(1.0, "A1", "big", "BUY", "10", "99.95")
    t.submit(2.0, "A2", "sell", "SELL", "1", "100.10")
    t.fill(2.5, "sell")
    t.cancel(4.0, "big")
    thin = Tape(seed="thin")
    thin.quote(0.5, "100.00", "100.10", "2", "2")  # in force at 1.0: 10 is 5x the book
    events = [*t.events[:4], thin.events[0], *t.events[4:]]  # folded after the order
    alerts = [a.payload for a in Surveillance(all_detectors()).process_batch(events)]
    assert [a.pattern for a in alerts] == ["SPOOFING"]
    assert alerts[0].evidence["visible_qty_at_submit"] == "2"
    assert alerts[0].evidence["size_vs_book"] == "5.0000"


def test_spoofing_positive_with_evidence() -> None:
    t = Tape()
    spoof(t)
    alerts = run(t)
    assert [a.pattern for a in alerts] == ["SPOOFING"]
    a = alerts[0]
    assert a.beneficial_owner == "owner-x"
    assert a.evidence["order_id"] == "big"
    assert a.evidence["size_vs_book"] == "5.0000"
    assert a.evidence["opposite_fills"][0]["account"] == "A2"
    assert a.related_accounts == ("A2",)
    assert a.detector_version == SpoofingDetector.VERSION
    assert len(a.triggering_event_ids) == 3


def test_spoofing_near_miss_cancelled_after_t_plus_epsilon() -> None:
    t = Tape()
    spoof(t, cancel_at=1.0 + 5.000001)
    assert "SPOOFING" not in patterns(t)


def test_spoofing_at_exactly_t_still_alerts() -> None:
    t = Tape()
    spoof(t, cancel_at=6.0)
    assert patterns(t) == ["SPOOFING"]


def test_spoofing_opposite_fill_from_another_owner() -> None:
    t = Tape()
    spoof(t, filler="B1")
    assert patterns(t) == []


def test_spoofing_order_not_large() -> None:
    t = Tape()
    spoof(t, spoof_qty="5")  # 2.5x book, below 3x
    assert patterns(t) == []


def test_spoofing_partially_filled_order_is_not_spoof() -> None:
    t = Tape()
    base(t)
    t.submit(1.0, "A1", "big", "BUY", "10", "99.95")
    t.fill(1.5, "big", qty="1")
    t.submit(2.0, "A2", "sell", "SELL", "1", "100.10")
    t.fill(2.5, "sell")
    t.cancel(3.0, "big")
    assert patterns(t) == []


def test_spoofing_large_vs_median_without_quotes() -> None:
    t = Tape()
    t.open_account("A1", "o")
    for i in range(7):
        t.submit(i, "A1", f"n{i}", "BUY", "1", "50")
        t.cancel(i + 0.5, f"n{i}")
    t.submit(10, "A1", "s", "SELL", "1", "51")
    t.fill(10.5, "s")
    t.submit(10.6, "A1", "big", "BUY", "8", "50")
    t.cancel(11, "big")
    alerts = run(t)
    assert [a.pattern for a in alerts] == ["SPOOFING"]
    assert alerts[0].evidence["size_vs_median"] == "8.0000"


def test_market_maker_cancels_without_opposite_execution() -> None:
    t = Tape()
    base(t)
    for i in range(40):
        t.submit(1 + i, "B1", f"b{i}", "BUY", "20", "99.99")
        t.submit(1 + i, "B1", f"a{i}", "SELL", "20", "100.11")
        t.cancel(1.5 + i, f"b{i}")
        t.cancel(1.5 + i, f"a{i}")
    assert patterns(t) == []


def test_spoofing_config_event_changes_threshold() -> None:
    t = Tape()
    t.config("spoofing", 1, cancel_within_s="1")
    spoof(t)  # cancelled after 3s
    assert patterns(t) == []
    t2 = Tape()
    t2.config("spoofing", 1, cancel_within_s="1")
    t2.config("spoofing", 2, cancel_within_s="10")
    stale = t2.config("spoofing", 1, cancel_within_s="1")
    spoof(t2)
    s = Surveillance(all_detectors())
    alerts: list[Any] = []
    for e in t2.events:
        if e is stale:  # a stale version is refused (dead-lettered by the app), not stored
            with pytest.raises(InvalidDetectorConfig, match="not higher than 2"):
                s.process(e)
            continue
        alerts.extend(a.payload for a in s.process(e))
    assert [a.pattern for a in alerts] == ["SPOOFING"]
    assert alerts[0].evidence["config_version"] == 2


# --- layering ---------------------------------------------------------------------------


def layer(t: Tape, filler: str = "A2", levels: int = 4, cancel_gap: float = 0.1) -> None:
    base(t)
    for i in range(levels):
        t.submit(1 + i * 0.1, "A1", f"L{i}", "BUY", "1", f"{99.99 - i * 0.01:.2f}")
    t.submit(2.0, filler, "sell", "SELL", "1", "100.10")
    t.fill(2.5, "sell")
    for i in range(levels):
        t.cancel(3 + i * cancel_gap, f"L{i}")


def test_layering_positive() -> None:
    t = Tape()
    layer(t)
    alerts = run(t)
    assert [a.pattern for a in alerts] == ["LAYERING"]
    assert alerts[0].evidence["levels"] == 3  # alert raised as the third level is pulled
    assert alerts[0].evidence["price_levels"] == ["99.97", "99.98", "99.99"]


def test_layering_too_few_levels() -> None:
    t = Tape()
    layer(t, levels=2)
    assert patterns(t) == []


def test_layering_other_owner_fill() -> None:
    t = Tape()
    layer(t, filler="B1")
    assert patterns(t) == []


def test_layering_cancels_not_together() -> None:
    t = Tape()
    layer(t, cancel_gap=2.5)
    assert patterns(t) == []


def test_layering_levels_not_consecutive() -> None:
    t = Tape()
    base(t)
    for i, px in enumerate(["99.99", "99.50", "99.00"]):
        t.submit(1 + i * 0.1, "A1", f"L{i}", "BUY", "1", px)
    t.submit(2.0, "A2", "sell", "SELL", "1", "100.10")
    t.fill(2.5, "sell")
    for i in range(3):
        t.cancel(3 + i * 0.1, f"L{i}")
    assert patterns(t) == []


def test_layering_sequential_requotes_are_not_a_ladder() -> None:
    """A market maker moving one bid down a level per second, with an ask filled meanwhile."""
    t = Tape()
    base(t)
    t.submit(1.0, "A2", "ask", "SELL", "1", "100.10")
    for i in range(4):
        t.submit(1.0 + i * 0.6, "A1", f"q{i}", "BUY", "1", f"{99.99 - i * 0.01:.2f}")
        t.cancel(1.5 + i * 0.6, f"q{i}")
    t.fill(2.0, "ask")
    assert patterns(t) == []


# --- wash trading -----------------------------------------------------------------------


def wash(t: Tape, seller: str = "A2", gap: float = 1.0, qty2: str = "3") -> None:
    base(t)
    t.submit(1, "A1", "w1", "BUY", "3", "100.05")
    t.submit(1, seller, "w2", "SELL", qty2, "100.05")
    t.fill(2, "w1")
    t.fill(2 + gap, "w2")


def test_wash_positive() -> None:
    t = Tape()
    wash(t)
    alerts = run(t)
    assert [a.pattern for a in alerts] == ["WASH_TRADING"]
    assert alerts[0].evidence["net_quantity"] == "0"
    assert alerts[0].related_accounts == ("A1",)


def test_wash_different_owner() -> None:
    t = Tape()
    wash(t, seller="B1")
    assert patterns(t) == []


def test_wash_too_far_apart() -> None:
    t = Tape()
    wash(t, gap=5.001)
    assert patterns(t) == []


def test_wash_size_mismatch() -> None:
    t = Tape()
    wash(t, qty2="2")
    assert patterns(t) == []


def test_wash_round_trip_counts_each_leg_once() -> None:
    t = Tape()
    base(t)
    t.submit(1, "A1", "x1", "SELL", "2", "100")
    t.submit(1, "A2", "x2", "BUY", "2", "100")
    t.submit(1, "A2", "x3", "SELL", "2", "100")
    t.submit(1, "A1", "x4", "BUY", "2", "100")
    for i, o in enumerate(["x1", "x2", "x3", "x4"]):
        t.fill(2 + i * 0.5, o)
    alerts = run(t)
    assert [a.pattern for a in alerts] == ["WASH_TRADING", "WASH_TRADING"]


# --- order-to-trade ---------------------------------------------------------------------


def test_order_to_trade_breach_alerts_once_per_window() -> None:
    t = Tape()
    t.open_account("A1", "o")
    t.config("order_to_trade", 1, min_orders="20", max_order_to_trade="10", window_s="60")
    for i in range(40):
        t.submit(i * 0.5, "A1", f"o{i}", "BUY", "1", "100")
        t.cancel(i * 0.5 + 0.1, f"o{i}")
    alerts = run(t)
    assert [a.pattern for a in alerts] == ["ORDER_TO_TRADE"]
    assert alerts[0].evidence["orders"] == 20


def test_order_to_trade_under_threshold_with_trades() -> None:
    t = Tape()
    t.open_account("A1", "o")
    t.config("order_to_trade", 1, min_orders="20", max_order_to_trade="10", window_s="60")
    for i in range(40):
        t.submit(i * 0.5, "A1", f"o{i}", "BUY", "1", "100")
        if i % 5 == 0:
            t.fill(i * 0.5 + 0.1, f"o{i}")
        else:
            t.cancel(i * 0.5 + 0.1, f"o{i}")
    assert patterns(t) == []


# --- marking the close ------------------------------------------------------------------


def close_tape(minutes_before_close: list[float]) -> Tape:
    t = Tape()  # T0 is 14:00, default reference 16:00
    t.open_account("A1", "o")
    for i, m in enumerate(minutes_before_close):
        at = 7200 - m * 60
        t.submit(at, "A1", f"m{i}", "BUY", "1", None)
        t.fill(at + 0.01, f"m{i}", price="100")
    return t


def test_marking_close_positive() -> None:
    alerts = run(close_tape([50, 4.5, 4, 3, 2, 1, 0.5]))
    assert [a.pattern for a in alerts] == ["MARKING_THE_CLOSE"]
    assert alerts[0].evidence["aggressive_fills_in_window"] == 5


def test_marking_close_spread_out_trading() -> None:
    assert patterns(close_tape([55, 50, 45, 40, 35, 30, 25, 20, 15, 4, 3, 2, 1, 0.5])) == []


def test_marking_close_outside_window() -> None:
    assert patterns(close_tape([9, 8, 7, 6, 5.5])) == []


# --- robustness -------------------------------------------------------------------------


def test_unknown_owner_and_unknown_order_are_harmless() -> None:
    t = Tape()
    t.quote(0, "1", "2")
    t.submit(1, "Z9", "z", "BUY", "1", "1.5")
    t.cancel(2, "z")
    t.cancel(3, "z")  # duplicate cancel
    t.fill(4, "z")  # fill for a closed order
    assert patterns(t) == []


def test_duplicate_events_do_not_duplicate_alerts() -> None:
    t = Tape()
    spoof(t)
    s = Surveillance(all_detectors())
    ids = [a.payload.alert_id for e in t.events + t.events for a in s.process(e)]
    assert len(ids) == 1


# --- out-of-order folding ---------------------------------------------------------------


def fill_folded_last(t: Tape) -> list[Envelope[SurveillanceAlert]]:
    """The opposite fill folded in after the cancels it preceded (a late partition)."""
    fill = next(e for e in t.events if e.event_type == "Fill")
    rest = [e for e in t.events if e is not fill]
    return Surveillance(all_detectors()).process_batch([*rest, fill])


def test_spoofing_found_when_the_fill_is_folded_after_the_cancel() -> None:
    t = Tape()
    spoof(t)
    in_order = Surveillance(all_detectors()).process_batch(t.events)
    late = fill_folded_last(t)
    assert [a.payload.pattern for a in late] == ["SPOOFING"]
    assert late[0].payload.alert_id == in_order[0].payload.alert_id, "same evidence, same id"


def test_layering_found_when_the_fill_is_folded_after_the_cancels() -> None:
    t = Tape()
    layer(t)
    assert [a.payload.pattern for a in fill_folded_last(t)] == ["LAYERING"]


def test_a_fill_after_the_cancel_in_time_is_still_not_spoofing() -> None:
    t = Tape()
    base(t)
    t.submit(1.0, "A1", "big", "BUY", "10", "99.95")
    t.cancel(2.0, "big")
    t.submit(2.5, "A2", "sell", "SELL", "1", "100.10")
    t.fill(3.0, "sell")
    assert patterns(t) == []


def test_marking_close_counts_a_fill_at_the_reference_time_itself() -> None:
    """A fill stamped exactly at the close (16:00:00.000000) is the print most likely to
    set the closing price; it was taken for the next day's close (the next reference
    time was the first strictly after it), so it counted in no window at all: four
    aggressive fills before the close and the fifth at it raised nothing."""
    t = Tape()  # T0 is 14:00, default reference 16:00
    t.open_account("A1", "o")
    for i, at in enumerate([7197.0, 7198.0, 7199.0, 7199.5, 7200.0]):
        t.submit(at, "A1", f"m{i}", "BUY", "1", None)
        t.fill(at, f"m{i}", price="100")
    alerts = run(t)
    assert [a.pattern for a in alerts] == ["MARKING_THE_CLOSE"]
    assert alerts[0].evidence["reference_time"] == "2026-01-05T16:00:00.000000Z"
    assert alerts[0].evidence["aggressive_fills_in_window"] == 5
    assert alerts[0].detector_version == MarkingCloseDetector.VERSION


def test_marking_close_a_fill_just_after_the_close_is_the_next_days() -> None:
    t = Tape()
    t.open_account("A1", "o")
    for i, at in enumerate([7197.0, 7198.0, 7199.0, 7199.5, 7200.000001]):
        t.submit(at, "A1", f"m{i}", "BUY", "1", None)
        t.fill(at, f"m{i}", price="100")
    assert patterns(t) == []
