"""Regressions for the reviewer's detector/state defects (each failed before its fix)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import Envelope, encode
from streams.detectors import (
    LayeringDetector,
    MarkingCloseDetector,
    OrderToTradeDetector,
    SpoofingDetector,
    WashTradingDetector,
    all_detectors,
)
from streams.surveillance_state import (
    HORIZON,
    InvalidDetectorConfig,
    Surveillance,
    duration_s,
    params_for,
)
from streams.synthetic import Tape


def fold(events: list[Envelope[Any]]) -> list[Any]:
    return [a.payload for a in fold_envelopes(events)]


def fold_envelopes(events: list[Envelope[Any]]) -> list[Envelope[Any]]:
    return Surveillance(all_detectors()).process_batch(events)


def moved_later(events: list[Envelope[Any]], ev: Envelope[Any], to: int) -> list[Envelope[Any]]:
    """`ev` taken out and put back at position `to` (>= where it was) of the rest."""
    rest = [e for e in events if e is not ev]
    return [*rest[:to], ev, *rest[to:]]


def accounts(t: Tape) -> None:
    t.open_account("A1", "owner-x")
    t.open_account("A2", "owner-x")


# --- 1. a late opposite fill raises every alert it explains -------------------------------


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 4),
    gaps=st.lists(st.sampled_from([0.05, 0.2, 0.5]), min_size=4, max_size=4),
    data=st.data(),
)
def test_moving_the_opposite_fill_later_gives_the_same_spoofing_alerts(
    n: int, gaps: list[float], data: st.DataObject
) -> None:
    t = Tape()
    accounts(t)
    t.quote(0.5, "100.00", "100.10", "2", "2")
    for k in range(n):
        t.submit(1.0 + k * 0.1, "A1", f"big{k}", "BUY", "10", f"{99.95 - k * 0.05:.2f}")
    t.submit(2.0, "A2", "sell", "SELL", "1", "100.10")
    fill = t.fill(2.5, "sell")
    at = 3.0
    for k in range(n):
        at += gaps[k]
        t.cancel(at, f"big{k}")
    in_order = fold(t.events)
    spoofs = sorted(a.evidence["order_id"] for a in in_order if a.pattern == "SPOOFING")
    assert spoofs == [f"big{k}" for k in range(n)]
    pos = t.events.index(fill)
    to = data.draw(st.integers(pos, len(t.events) - 1))
    late = fold(moved_later(t.events, fill, to))
    assert sorted(a.alert_id for a in late) == sorted(a.alert_id for a in in_order)
    assert same_alerts(fold_envelopes(moved_later(t.events, fill, to)), fold_envelopes(t.events))


def four_spoofs_cancelled_50ms_apart() -> tuple[Tape, Envelope[Any], list[Envelope[Any]]]:
    """In order, the 3rd cancel completes a ladder (the 4th comes too late to join it)."""
    t = Tape()
    accounts(t)
    t.quote(0.5, "100.00", "100.10", "2", "2")
    for k in range(4):
        t.submit(1.0 + k * 0.1, "A1", f"big{k}", "BUY", "10", f"{99.95 - k * 0.05:.2f}")
    t.submit(2.0, "A2", "sell", "SELL", "1", "100.10")
    fill = t.fill(2.5, "sell")
    cancels = [t.cancel(3.05 + k * 0.05, f"big{k}") for k in range(4)]
    in_order = fold(t.events)
    ladders = [a for a in in_order if a.pattern == "LAYERING"]
    assert [[o["order_id"] for o in a.evidence["orders"]] for a in ladders] == [
        ["big2", "big1", "big0"]
    ]
    return t, fill, cancels


def same_alerts(a: list[Envelope[Any]], b: list[Envelope[Any]]) -> bool:
    """Same alert records, byte for byte (key, value and headers as produced: the event
    ids and times too, not only the payloads), in any order."""
    return sorted(encode(x) for x in a) == sorted(encode(x) for x in b)


def test_a_late_fill_raises_the_ladder_as_its_completing_cancel_did() -> None:
    """Layering v3 judged a fill folded after all 4 cancels against all of them at once and
    raised a 4-order ladder (another alert id); v4 replays the cancels in event time."""
    t, fill, _ = four_spoofs_cancelled_50ms_apart()
    late = fold_envelopes(moved_later(t.events, fill, len(t.events) - 1))
    assert same_alerts(late, fold_envelopes(t.events))


def test_a_late_cancel_raises_the_ladder_as_the_in_order_fold_does() -> None:
    """big1's cancel folded after big3's: v3 judged it with all 4 cancelled (a 4-order
    ladder); v4 judges big1 and then big2, big3 as of their own place in event time."""
    t, _, cancels = four_spoofs_cancelled_50ms_apart()
    late = fold_envelopes(moved_later(t.events, cancels[1], t.events.index(cancels[3])))
    assert same_alerts(late, fold_envelopes(t.events))


def test_a_late_fill_raises_both_layering_ladders_it_explains() -> None:
    t = Tape()
    accounts(t)
    t.quote(0.1, "100.00", "100.10", "50", "50")
    for k, px in enumerate(["99.90", "99.85", "99.80", "98.90", "98.85", "98.80"]):
        t.submit(0.2 + k * 0.05, "A1", f"L{k}", "BUY", "1", px)
    t.submit(0.6, "A2", "S", "SELL", "1", "100.10")
    fill = t.fill(0.7, "S")
    for k in range(6):
        t.cancel(1.0 + k * 0.1, f"L{k}")
    in_order = fold(t.events)
    assert [a.pattern for a in in_order] == ["LAYERING", "LAYERING"]
    late = fold(moved_later(t.events, fill, len(t.events) - 1))
    assert sorted(a.alert_id for a in late) == sorted(a.alert_id for a in in_order)


# --- 2. detector config validation ------------------------------------------------------


@pytest.mark.parametrize(
    ("detector", "params", "reason"),
    [
        ("order_to_trade", {"min_orders": "0"}, "min_orders"),
        ("spoofing", {"window_s": "5s"}, "window_s"),
        ("spoofing", {"window_s": "-1"}, "window_s"),
        ("spoofing", {"min_history": "NaN"}, "min_history"),
        ("marking_close", {"reference_times": ""}, "reference_times"),
        ("marking_close", {"reference_times": "25:00"}, "reference_times"),
        ("marking_close", {"minutes_before": "2.5"}, "minutes_before"),
        ("wash_trading", {"windows_s": "60"}, "unknown parameter"),
        ("wash_trading", {"same_account": "yes"}, "same_account"),
        ("layering", {"min_levels": "1"}, "min_levels"),
        ("no_such_detector", {"x": "1"}, "unknown detector"),
    ],
)
def test_an_invalid_config_raises_and_the_previous_one_stays(
    detector: str, params: dict[str, str], reason: str
) -> None:
    t = Tape()
    good = t.config(detector, 1) if detector != "no_such_detector" else None
    bad = t.config(detector, 2, 0, **params)
    s = Surveillance(all_detectors())
    if good is not None:
        s.process(good)
    before = dict(s.store.configs)
    with pytest.raises(InvalidDetectorConfig, match=reason):
        s.process(bad)
    assert dict(s.store.configs) == before


def test_config_versions_must_rise_and_partial_updates_merge() -> None:
    t = Tape()
    v1 = t.config("spoofing", 1, window_s="60", cancel_within_s="9")
    v2 = t.config("spoofing", 2, cancel_within_s="7")
    same = t.config("spoofing", 2, cancel_within_s="3")
    lower = t.config("spoofing", 1, cancel_within_s="1")
    s = Surveillance(all_detectors())
    s.process(v1)
    s.process(v2)
    for stale in (same, lower):
        with pytest.raises(InvalidDetectorConfig, match="not higher than 2"):
            s.process(stale)
    for again in (v1, v2):  # redelivered (at-least-once): a no-op, not an error
        assert s.process(again) == []
    params, version = params_for(SpoofingDetector(), s.store.configs)
    assert version == 2
    assert params["window_s"] == "60", "v2 named only cancel_within_s: window_s is kept"
    assert params["cancel_within_s"] == "7"
    assert params["min_history"] == SpoofingDetector.DEFAULTS["min_history"]


def test_valid_configs_are_accepted_by_every_detector() -> None:
    for det in all_detectors():
        det.validate(dict(det.DEFAULTS))
    MarkingCloseDetector().validate(
        {**MarkingCloseDetector.DEFAULTS, "reference_times": "08:00, 16:30:15"}
    )


# --- 3. layering: cancelled together both ways ------------------------------------------


def ladder(l2_at: float, l3_at: float) -> tuple[Tape, Envelope[Any]]:
    """Three resting buys of A1, A2's sell filled against, then the three cancels."""
    t = Tape()
    accounts(t)
    t.quote(0.1, "100.00", "100.10", "50", "50")
    t.submit(0.2, "A1", "L1", "BUY", "1", "99.90")
    t.submit(0.3, "A1", "L2", "BUY", "1", "99.85")
    t.submit(0.4, "A1", "L3", "BUY", "1", "99.80")
    t.submit(0.45, "A2", "S", "SELL", "1", "100.10")
    fill = t.fill(0.5, "S")
    t.cancel(1.0, "L1")
    t.cancel(l2_at, "L2")
    t.cancel(l3_at, "L3")
    return t, fill


def ladder_with_a_straggler() -> tuple[Tape, Envelope[Any]]:
    # L3 28.5 s after L1: not cancelled together (cancel_together_s = 2)
    return ladder(1.5, 30.0)


def test_an_order_cancelled_long_after_does_not_join_the_ladder() -> None:
    t, fill = ladder_with_a_straggler()
    assert fold(t.events) == []
    assert fold(moved_later(t.events, fill, len(t.events) - 1)) == []
    evs = list(t.events)
    c3 = evs.pop()
    i = next(k for k, e in enumerate(evs) if e.event_type == "OrderCanceled")
    assert fold([*evs[:i], c3, *evs[i:]]) == []


# --- 4. spoofing's min_history at submission ---------------------------------------------


def history_tape(more_before_cancel: bool) -> Tape:
    t = Tape()
    accounts(t)
    t.submit(0.1, "A1", "s1", "BUY", "1", "90")
    t.cancel(0.15, "s1")
    t.submit(0.2, "A1", "s2", "BUY", "1", "90")
    t.cancel(0.25, "s2")
    t.submit(1.0, "A1", "big", "BUY", "10", "99.95")  # 3rd order: too little history
    t.submit(1.5, "A2", "sell", "SELL", "1", "100.10")
    t.fill(1.6, "sell")

    def more(at: float) -> None:
        for k in range(4):
            t.submit(at + k * 0.1, "A1", f"m{k}", "BUY", "1", "90")
            t.cancel(at + k * 0.1 + 0.05, f"m{k}")

    if more_before_cancel:
        more(2.0)
        t.cancel(3.0, "big")
    else:
        t.cancel(3.0, "big")
        more(3.5)
    return t


def test_spoofing_min_history_is_the_history_at_submission() -> None:
    assert fold(history_tape(True).events) == fold(history_tape(False).events) == []
    t = history_tape(False)
    fill = next(e for e in t.events if e.event_type == "Fill")
    assert fold(moved_later(t.events, fill, len(t.events) - 1)) == []


# --- 5. a future-dated event does not prune evidence ------------------------------------


def prune_tape(skew_s: float) -> Tape:
    t = Tape()
    accounts(t)
    t.quote(0.5, "100.00", "100.10", "2", "2")
    t.submit(1.0, "A1", "big", "BUY", "10", "99.95")
    t.submit(2.0, "A2", "sell", "SELL", "1", "100.10")
    t.fill(2.5, "sell")
    t.submit(3.0, "A2", "x", "BUY", "1", "90")
    t.cancel(3.5 + skew_s, "x")
    t.cancel(4.0, "big")
    return t


def test_one_event_stamped_hours_ahead_does_not_prune_the_owners_evidence() -> None:
    normal = fold(prune_tape(0).events)
    skewed = fold(prune_tape(2 * 3600).events)
    assert [a.pattern for a in normal] == ["SPOOFING"]
    assert [a.alert_id for a in skewed] == [a.alert_id for a in normal]


def test_old_evidence_is_still_pruned_as_time_moves_on() -> None:
    t = Tape()
    accounts(t)
    t.submit(1.0, "A2", "sell", "SELL", "1", "100.10")
    t.fill(1.5, "sell")
    later = HORIZON.total_seconds() + 60  # not money: seconds of a test tape
    for k in range(8):
        t.submit(later + k, "A1", f"q{k}", "BUY", "1", "90")
    s = Surveillance(all_detectors())
    s.process_batch(t.events)
    assert s.store.books["owner-x"].fills == []
    assert "sell" not in s.store.books["owner-x"].orders


# --- 6. windows end at the triggering event ----------------------------------------------


def test_order_to_trade_ignores_events_after_its_window() -> None:
    t = Tape()
    t.open_account("Q1", "owner-q")
    t.config(
        "order_to_trade",
        1,
        window_s="10",
        min_orders="5",
        max_cancel_ratio="0.5",
        max_order_to_trade="1000",
    )
    early: list[Envelope[Any]] = []
    late: list[Envelope[Any]] = []
    for k in range(3):
        early += [t.submit(1 + k, "Q1", f"e{k}", "BUY", "1", "90"), t.cancel(1.5 + k, f"e{k}")]
    for k in range(4):
        late += [t.submit(30 + k, "Q1", f"l{k}", "BUY", "1", "90"), t.cancel(30.5 + k, f"l{k}")]
    head = t.events[:2]
    assert fold(head + early + late) == []
    assert fold(head + late + early) == []


def test_marking_close_ignores_fills_after_the_triggering_one() -> None:
    # a close fill at 15:59:10 folded before the others: when the 5th earlier fill
    # completes the pattern, the later fill is not part of its evidence
    t = Tape()
    t.open_account("M1", "owner-m")
    for k in range(5):
        t.submit(6960 + 30 * k, "M1", f"m{k}", "BUY", "1", None)
        t.fill(6960 + 30 * k + 0.1, f"m{k}", price="100")
    t.submit(7150, "M1", "after", "BUY", "1", None)  # 15:59:10, folded first
    after = t.fill(7150.1, "after", price="100")
    evs = [*t.events[:1], t.events[-2], after, *t.events[1:-2]]
    alerts = fold(evs)
    assert len(alerts) == 1
    assert "f-after-1" not in [f["fill_id"] for f in alerts[0].evidence["fills"]]


# --- 7. marking the close: one alert per owner's episode ---------------------------------


def test_marking_close_alerts_once_per_owner_not_per_account() -> None:
    t = Tape()
    t.open_account("M1", "owner-m")
    t.open_account("M2", "owner-m")
    for k in range(8):  # 15:56:00 .. 15:59:30, alternating accounts
        acc = "M1" if k % 2 == 0 else "M2"
        at = 6960 + 30 * k
        t.submit(at, acc, f"m{k}", "BUY", "1", None)
        t.fill(at + 0.1, f"m{k}", price="100")
    alerts = fold(t.events)
    assert [a.pattern for a in alerts] == ["MARKING_THE_CLOSE"]
    assert alerts[0].detector_version == MarkingCloseDetector.VERSION


# --- 8. exact durations -------------------------------------------------------------------


@given(st.integers(0, 10**12))
def test_duration_s_is_exact(micros: int) -> None:
    text = duration_s(timedelta(microseconds=micros))
    whole, frac = text.split(".")
    assert len(frac) == 6
    assert int(whole) * 1_000_000 + int(frac) == micros


def test_layering_evidence_prints_the_cancel_spread_exactly() -> None:
    t, _fill = ladder(1.1, 1.3)
    (a,) = fold(t.events)
    assert a.evidence["cancel_spread_s"] == "0.300000"
    assert "within 0.300000s" in a.summary


def test_changed_detectors_are_versioned() -> None:
    assert SpoofingDetector.VERSION == 7
    assert LayeringDetector.VERSION == 7
    assert OrderToTradeDetector.VERSION == 6
    assert WashTradingDetector.VERSION == 5
    assert MarkingCloseDetector.VERSION == 7
