"""A cancel that comes too late says so: `TOO_LATE_TO_CANCEL` (FIX CxlRejReason 0), not
`UNKNOWN_ORDER` (1), for an order that is done — filled, canceled, expired, rejected —
whether the worker saw it end or folded it from the log or a snapshot slice.

Before session 19 both were `UNKNOWN_ORDER` ("no open order ... on ..."): a strategy could
not tell an order that traded (reconcile the position) from an id it never used (a bug).
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from engine.snapshot import canonical_state, merge_slices, release_partitions
from schemas.events import RiskLimits, Side, TimeInForce
from tests.engine.pure import Harness, decision, types
from tests.engine.test_snapshot import (
    _BUY,
    Log,
    _apply_raw,
    _harness,
    from_slices,
    full_replay,
    roundtrip,
)
from tests.engine.test_state_fast import normalized

D = Decimal
TOO_LATE, UNKNOWN = "TOO_LATE_TO_CANCEL", "UNKNOWN_ORDER"


def _h(accounts: tuple[str, ...] = ("A1",)) -> Harness:
    h = Harness(RiskLimits(max_order_notional=D("1000"), max_position=D("100")), accounts=accounts)
    h.quote(D("100"), D("101"), qty=D("2"))
    return h


def _order_id(out: list[Any]) -> str:
    return str(next(e.payload.order_id for e in out if e.event_type == "OrderSubmitted"))


def test_a_cancel_of_a_filled_order_is_too_late() -> None:
    h = _h()
    out = h.order(Side.BUY, D("1"))
    assert types(out)[-1] == "Fill"
    target = f"c{h.n}"
    refused = decision(h.cancel(target))
    assert refused.reason == TOO_LATE
    assert refused.detail == (
        f"no open order {target!r} on A1: too late to cancel, order {_order_id(out)} is "
        "FILLED, filled 1 of 1"
    )
    assert target not in {k[2] for k in h.state.client_orders}  # evicted all the same


def test_a_cancel_of_a_canceled_or_expired_order_is_too_late_and_names_the_cause() -> None:
    h = _h()
    rest = h.order(Side.BUY, D("1"), D("99"))
    resting = f"c{h.n}"
    assert decision(h.cancel(resting)).outcome == "APPROVED"
    again = decision(h.cancel(resting))
    assert again.reason == TOO_LATE
    assert f"order {_order_id(rest)} is CANCELED (CLIENT), filled 0 of 1" in again.detail
    # An IOC that took 2 of 3 (the displayed size) and expired.
    ioc = h.order(Side.BUY, D("3"), D("101"), tif=TimeInForce.IOC)
    assert types(ioc)[-2:] == ["Fill", "OrderExpired"]
    late = decision(h.cancel(f"c{h.n}"))
    assert late.reason == TOO_LATE
    assert f"order {_order_id(ioc)} is EXPIRED (IOC_REMAINDER), filled 2 of 3" in late.detail


def test_a_cancel_of_an_id_never_used_or_of_a_rejected_intent_is_unknown() -> None:
    h = _h()
    never = decision(h.cancel("nope"))
    assert (never.reason, never.detail) == (UNKNOWN, "no open order 'nope' on A1")
    # Rejected by risk (over the 1,000 notional): no order was ever placed.
    assert decision(h.order(Side.BUY, D("50"), D("100"))).outcome == "REJECTED"
    rejected = decision(h.cancel(f"c{h.n}"))
    assert rejected.reason == UNKNOWN
    assert "intent placed no order (it was rejected, or is a cancel)" in rejected.detail
    # A cancel's own id names no order either.
    h.order(Side.BUY, D("1"), D("99"))
    h.cancel(f"c{h.n}")
    of_a_cancel = decision(h.cancel(f"c{h.n}"))
    assert of_a_cancel.reason == UNKNOWN and "placed no order" in of_a_cancel.detail


def test_a_cancel_on_another_account_learns_nothing_of_the_order() -> None:
    """The same client order id on an account the order is not on: UNKNOWN_ORDER with
    the detail of an id never used (no order id, no final state)."""
    h = _h(accounts=("A1", "A2"))
    h.order(Side.BUY, D("1"))
    target = f"c{h.n}"
    elsewhere = decision(h.cancel(target, account="A2"))
    assert (elsewhere.reason, elsewhere.detail) == (UNKNOWN, f"no open order {target!r} on A2")
    assert decision(h.cancel(target, account="A1")).reason == TOO_LATE


def test_an_order_older_than_the_kept_ends_is_still_too_late() -> None:
    h = _h()
    h.state.ended.max_recent = 2
    h.order(Side.BUY, D("1"))
    first = f"c{h.n}"
    for _ in range(3):
        h.order(Side.BUY, D("0.1"))
    assert len(h.state.ended.recent) == 2 and len(h.state.ended.archive) == 2
    old = decision(h.cancel(first))
    assert old.reason == TOO_LATE and "final state is on orders.lifecycle" in old.detail


def test_a_done_parent_still_held_for_its_children_is_too_late_once_they_are_done() -> None:
    h = _h()
    h.order(Side.BUY, D("1"), D("101"), stop_loss=D("90"), take_profit=D("110"))
    parent = f"c{h.n}"
    assert decision(h.cancel(parent)).outcome == "APPROVED"  # withdraws the armed pair
    late = decision(h.cancel(parent))
    assert late.reason == TOO_LATE and "is FILLED, filled 1 of 1" in late.detail


def _play_late(log: Log) -> dict[str, str]:
    """Orders on A1 (partition 0, with A3) that end in every way, with slices of partition
    0 between them; returns their client order ids by name."""
    h, ids = log.h, {}

    def step(name: str | None, action: tuple[Any, ...]) -> None:
        log.play(action)
        if name is not None:
            ids[name] = f"c{h.n}"

    step("filled_old", ("market", "A1", Side.BUY))
    step("canceled", ("limit", "A1", Side.BUY, "1", 0, False))  # rests
    step(None, ("snap", 0))
    step("on_a3", ("market", "A3", Side.SELL))  # on A1's partition
    step(None, ("market", "A1", Side.BUY))
    step(None, ("snap", 0))
    step(None, ("wait", 2.0))  # past the harness's rate window (3 orders a second)
    step(None, ("cancel", "A1", int(ids["canceled"][1:])))
    step("filled", ("market", "A1", Side.SELL))  # filled_old is archived (2 ends kept)
    step("open", ("limit", "A2", Side.BUY, "1", 0, False))  # another partition, resting
    return ids


def _late_cancels(h: Harness, ids: dict[str, str]) -> list[list[Any]]:
    """The cancels decided on `h.state`; the harness's ids and clock rewound after them, so
    the next state gets the very same intents."""
    n, now = h.n, h.now
    outs = [
        [normalized(e) for e in h.cancel(ids[name], account=a)]
        for name, a in (
            ("canceled", "A1"),
            ("filled_old", "A1"),
            ("filled", "A1"),
            ("on_a3", "A1"),  # another account's order
            ("open", "A2"),
        )
    ]
    h.n, h.now = n, now
    return outs


def test_a_late_cancel_is_decided_the_same_after_a_restart_or_a_hand_over() -> None:
    """Live, after a full replay, from slices plus the tail (a restart, or a worker taking
    the partitions over), and on a worker that gave partition 0 up and took it back."""
    h = _harness()
    log = Log(h)
    ids = _play_late(log)
    live = h.state
    back = copy.deepcopy(live)
    release_partitions(back, {0})
    slice0 = roundtrip(log.slices[0])
    merge_slices(back, [slice0])
    counts: dict[str, int] = {}
    for t, p, raw in log.own:  # partition 0's records after the slice's offsets
        if p != 0:
            continue
        i = counts.get(t, 0)
        counts[t] = i + 1
        if i >= slice0.offsets[t]:
            _apply_raw(back, raw)
    states = {
        "live": copy.deepcopy(live),
        "replay": full_replay(log),
        "slices": from_slices(log, [roundtrip(s) for s in log.slices.values()])[0],
        "handed back": back,
    }
    for name, state in states.items():
        assert canonical_state(state) == canonical_state(live), name
    decided = {}
    for name, state in states.items():
        h.state = state
        decided[name] = _late_cancels(h, ids)
    reasons = [
        next((p["reason"] for t, p in out if t == "IntentRejected"), "APPROVED")
        for out in decided["live"]
    ]
    assert reasons == [TOO_LATE, TOO_LATE, TOO_LATE, UNKNOWN, "APPROVED"]
    details = [
        next(p["detail"] for t, p in out if t == "IntentRejected") for out in decided["live"][:3]
    ]
    assert "is CANCELED (CLIENT), filled 0 of 1" in details[0]
    assert "final state is on orders.lifecycle" in details[1]
    assert "is FILLED, filled 0.3 of 0.3" in details[2]
    for name, outs in decided.items():
        assert outs == decided["live"], name


def test_a_slice_carries_the_ended_orders() -> None:
    h = _harness()
    log = Log(h)
    for a in [_BUY, ("market", "A1", Side.BUY), ("snap", 0)]:
        log.play(a)
    body = log.slices[0].body
    assert [e[0][2] for e in body["ended"]] == [f"c{h.n}"]  # the market order filled
    assert body["ended_max"] == 2
