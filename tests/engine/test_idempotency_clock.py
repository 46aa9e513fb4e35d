"""The idempotency record is not ranked on a clock the producer controls.

A resent intent (same producer, account, client order id, content) gets its original
decision back while that decision is in the account's recent tier (at most `max_recent`,
none more than `window_seconds` behind the account's newest), and is never traded twice
beyond it (a fingerprint answers with a duplicate rejection). Until session 24 the tier was
ranked by each decision's event time, its intent's `occurred_at`: one intent stamped an
hour ahead (a cancel, which no clock check refuses, or an order refused CLOCK_SKEW, whose
refusal is recorded too) set the account's newest an hour ahead, and every decision of the
account, any producer's, went to the archive at once for that hour: their resends got
`INVALID_INTENT` ("duplicate") instead of their decisions. Now the tier is ranked by the
broker's append time the decision records (`received_at`).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import auth
from engine.processor import process
from schemas import new_event
from schemas.events import (
    CancelIntent,
    OrderIntent,
    OrderType,
    ProducerRegistered,
    Side,
)
from tests.engine.pure import INSTRUMENT, Harness, decision
from tests.engine.test_snapshot import Log, _harness, full_replay

D = Decimal


def _world() -> tuple[Harness, Log, Any]:
    h = _harness()
    key2, pub2 = auth.new_keypair()
    h.admin(
        ProducerRegistered(
            producer_id="p2", public_key=pub2, accounts=("A1",), registered_by="admin"
        )
    )
    return h, Log(h), key2


def _order(producer: str, coid: str, qty: str = "0.1") -> OrderIntent:
    return OrderIntent(
        producer_id=producer,
        strategy_id="s",
        account="A1",
        client_order_id=coid,
        instrument=INSTRUMENT,
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        quantity=D(qty),
        limit_price=D("29990"),
    )


def _resend(h: Harness, state: Any, intent: Any) -> list[Any]:
    """The same signed intent again, in a new envelope stamped at its arrival."""
    return process(
        state, new_event(intent, producer=intent.producer_id, occurred_at=h.tick()), h.ctx
    )


@pytest.mark.parametrize("kind", ["cancel", "order"])
def test_an_intent_stamped_far_ahead_does_not_push_the_accounts_decisions_out(kind: str) -> None:
    h, log, key2 = _world()
    out = h.order(Side.BUY, D("0.1"), D("29990"))  # p1's, stamped at its arrival
    log.add(out)
    (original,) = [e for e in out if e.event_type == "RiskDecision"]
    assert h.last_intent is not None
    mine = h.last_intent.payload
    h.n += 1
    far: OrderIntent | CancelIntent = (
        CancelIntent(
            producer_id="p2",
            strategy_id="s",
            account="A1",
            client_order_id=f"x{h.n}",
            target_client_order_id="nothing",
        )
        if kind == "cancel"
        else _order("p2", f"x{h.n}")
    )
    event = new_event(auth.sign(far, key2), producer="p2", occurred_at=h.now + timedelta(hours=1))
    refused = process(h.state, event, h.ctx, h.tick())
    log.add(refused)
    d = decision(refused)
    assert d.intent_digest is not None  # recorded under p2's key
    if kind == "order":
        assert d.reason_codes == ("CLOCK_SKEW",)
    h.tick(1)
    again = _resend(h, h.state, mine)
    assert [(e.event_id, e.event_type) for e in again] == [(original.event_id, "RiskDecision")]
    rebuilt = full_replay(log)  # a restart folds the same record
    again = _resend(h, rebuilt, mine)
    assert [(e.event_id, e.event_type) for e in again] == [(original.event_id, "RiskDecision")]


OFFSETS = st.sampled_from([-3600.0, -6.0, -4.0, 0.0, 0.5, 2.0, 3600.0])
STEP = st.one_of(
    st.tuples(st.just("send"), st.sampled_from(["p1", "p2"]), OFFSETS, st.booleans()),
    st.tuples(st.just("resend"), st.integers(0, 30), OFFSETS),
    st.tuples(st.just("wait"), st.sampled_from([0.5, 30.0, 61.0])),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(STEP, min_size=1, max_size=30))
def test_a_resend_is_never_traded_twice_whatever_the_stamps(steps: list[Any]) -> None:
    """Any stamps, resends at any time, a tier of 3: every client order id is decided and
    submitted once, live and after a restart; a resend answers with its original decision
    or, beyond the recent tier, a duplicate refusal, never a new decision."""
    h, log, key2 = _world()
    keys = {"p1": h.key, "p2": key2}
    sent: list[Any] = []
    decided: dict[tuple[str, str], Any] = {}
    submitted: list[tuple[str, str]] = []

    def check(out: list[Any], intent: Any) -> None:
        for e in out:
            if e.event_type == "OrderSubmitted" and e.payload.parent_order_id is None:
                submitted.append((e.payload.producer_id, e.payload.client_order_id))
        k = (intent.producer_id, intent.client_order_id)
        d = next(e for e in out if e.event_type in ("RiskDecision", "IntentRejected"))
        if k not in decided:
            decided[k] = d
        elif d.event_id != decided[k].event_id:
            assert d.event_type == "IntentRejected" and d.payload.reason == "INVALID_INTENT", d
            assert "duplicate" in d.payload.detail

    for step in steps:
        if step[0] == "wait":
            h.tick(step[1])
            continue
        if step[0] == "send":
            _, producer, offset, cancel = step
            h.n += 1
            p: OrderIntent | CancelIntent = (
                CancelIntent(
                    producer_id=producer,
                    strategy_id="s",
                    account="A1",
                    client_order_id=f"c{h.n}",
                    target_client_order_id=f"c{h.n - 1}",
                )
                if cancel
                else _order(producer, f"c{h.n}")
            )
            intent = auth.sign(p, keys[producer])
            sent.append(intent)
        else:
            _, i, offset = step
            if not sent:
                continue
            intent = sent[i % len(sent)]
        arrival = h.tick()
        event = new_event(
            intent, producer=intent.producer_id, occurred_at=arrival + timedelta(seconds=offset)
        )
        out = process(h.state, event, h.ctx, arrival)
        log.add(out)
        check(out, intent)
    assert len(submitted) == len(set(submitted))
    rebuilt = full_replay(log)
    for intent in sent:
        out = _resend(h, rebuilt, intent)
        check(out, intent)
        assert not [e for e in out if e.event_type == "OrderSubmitted"]
