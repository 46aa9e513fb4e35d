"""Properties: replays and restarts from serialised state (between any batches) never
change the alerts."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

from schemas import Envelope, encode
from streams.detectors import all_detectors
from streams.surveillance_state import Surveillance
from streams.synthetic import Tape
from tests.streams.helpers import from_changelog

ACCOUNTS = [("A1", "x"), ("A2", "x"), ("B1", "y"), ("B2", "y"), ("C1", "z")]


@st.composite
def tapes(draw: st.DrawFn) -> list[Envelope[Any]]:
    """Random interleavings of quotes, orders, fills and cancels over a few owners, with
    ladders (3 orders on consecutive levels), pulls (every open order of an account
    cancelled 50 ms apart) and crosses (two accounts' opposite orders filled together), so
    that layering and wash trading occur too, not only spoofing."""
    t = Tape(seed=str(draw(st.integers(0, 10**6))))
    for acc, owner in ACCOUNTS:
        t.open_account(acc, owner)
    at = 0.0
    open_orders: list[str] = []
    n = draw(st.integers(5, 60))
    kinds = ["quote", "submit", "submit", "cancel", "fill", "ladder", "pull", "cross"]
    for i in range(n):
        at += draw(st.sampled_from([0.05, 0.2, 0.7, 2.0, 6.0]))
        kind = draw(st.sampled_from(kinds))
        if kind == "ladder":
            acc = draw(st.sampled_from([a for a, _ in ACCOUNTS]))
            side = draw(st.sampled_from(["BUY", "SELL"]))
            for k, px in enumerate(["99.97", "99.98", "99.99"]):
                t.submit(at + k * 0.01, acc, f"o{i}l{k}", side, "1", px)
                open_orders.append(f"o{i}l{k}")
        elif kind == "pull" and open_orders:
            acc = t.orders[open_orders[draw(st.integers(0, len(open_orders) - 1))]].account
            mine = [o for o in open_orders if t.orders[o].account == acc]
            for k, oid in enumerate(mine):
                t.cancel(at + k * 0.05, oid)
                open_orders.remove(oid)
        elif kind == "cross":
            buyer, seller = draw(st.sampled_from([("A1", "A2"), ("B2", "B1"), ("A1", "C1")]))
            t.submit(at, buyer, f"o{i}b", "BUY", "1", "100.00")
            t.submit(at, seller, f"o{i}s", "SELL", "1", "100.00")
            t.fill(at + 0.01, f"o{i}b")
            t.fill(at + 0.02, f"o{i}s")
        elif kind == "quote":
            t.quote(at, "100.00", "100.10", draw(st.sampled_from(["1", "2", "5"])), "2")
        elif kind == "submit" or not open_orders:
            acc = draw(st.sampled_from([a for a, _ in ACCOUNTS]))
            side = draw(st.sampled_from(["BUY", "SELL"]))
            qty = draw(st.sampled_from(["1", "2", "10"]))
            px = draw(st.sampled_from(["99.97", "99.98", "99.99", "100.00", "100.10"]))
            t.submit(at, acc, f"o{i}", side, qty, px)
            open_orders.append(f"o{i}")
        else:
            oid = open_orders.pop(draw(st.integers(0, len(open_orders) - 1)))
            if kind == "cancel":
                t.cancel(at, oid)
            else:
                t.fill(at, oid)
    return t.events


def alert_ids(events: list[Envelope[Any]]) -> list[str]:
    return [str(a.payload.alert_id) for a in Surveillance(all_detectors()).process_batch(events)]


def records(events: list[Envelope[Any]], cuts: list[int]) -> list[tuple[bytes, bytes, Any]]:
    """The alert records produced folding `events` in batches cut at `cuts`, the worker
    restarting from its changelogs after each batch (as after a rebalance or a crash
    after a commit)."""
    s = Surveillance(all_detectors())
    out: list[tuple[bytes, bytes, Any]] = []
    for lo, hi in itertools.pairwise([0, *sorted(cuts), len(events)]):
        out.extend(encode(a) for a in s.process_batch(events[lo:hi]))
        s = Surveillance(all_detectors(), from_changelog(s.store))
    return out


@settings(max_examples=60, deadline=None)
@given(events=tapes(), data=st.data())
def test_batches_with_restarts_between_them_give_the_same_alert_records(
    events: list[Envelope[Any]], data: st.DataObject
) -> None:
    """Not only batching (`process_batch` is a loop over `process` on the same state, so
    cutting the input alone cannot change anything): each batch is folded by a worker
    restarted from the JSON the changelogs hold, and the records must be byte-identical."""
    cuts = data.draw(st.lists(st.integers(0, len(events)), min_size=1, max_size=6))
    assert records(events, cuts) == records(events, [])


@settings(max_examples=40, deadline=None)
@given(events=tapes())
def test_replay_yields_the_same_alert_ids(events: list[Envelope[Any]]) -> None:
    first = alert_ids(events)
    assert alert_ids(events) == first
    assert len(set(first)) == len(first)


@settings(max_examples=40, deadline=None)
@given(events=tapes(), data=st.data())
def test_restart_from_serialised_state_is_invisible(
    events: list[Envelope[Any]], data: st.DataObject
) -> None:
    """What the faust changelog stores (JSON) is enough to carry on exactly."""
    cut = data.draw(st.integers(0, len(events)))
    s = Surveillance(all_detectors())
    out = [str(a.payload.alert_id) for a in s.process_batch(events[:cut])]
    s2 = Surveillance(all_detectors(), from_changelog(s.store))
    out += [str(a.payload.alert_id) for a in s2.process_batch(events[cut:])]
    assert out == alert_ids(events)


def patterns(events: list[Envelope[Any]]) -> set[str]:
    return {a.payload.pattern for a in Surveillance(all_detectors()).process_batch(events)}


def test_the_random_tapes_do_produce_alerts() -> None:
    """Guard against the properties above passing vacuously: the strategy itself reaches
    tapes with each of spoofing, layering and wash trading (before review 52 this built
    a tape of its own, and ~18% of the strategy's tapes raised anything, spoofing mostly)."""
    for pattern in ("SPOOFING", "LAYERING", "WASH_TRADING"):
        find(
            tapes().map(patterns),  # the tapes' own repr is tens of kB
            lambda found, p=pattern: p in found,  # type: ignore[misc]
            settings=settings(
                max_examples=500, database=None, deadline=None, phases=[Phase.generate]
            ),
        )
