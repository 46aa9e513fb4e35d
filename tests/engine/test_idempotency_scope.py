"""What the engine emits for an account never depends on which other accounts the deciding
worker happens to hold: client order ids are scoped to (producer, account), the idempotency
record's recent tier is bounded per account, and a public print fills each account's
resting orders on their own.

Intents are keyed by account, so two accounts of one producer can sit on partitions owned
by different workers. Before the account was part of the idempotency key, an id reused on
a second account was a "resend" (answered with the first account's decision) when one
worker held both partitions, and a new order when two workers did.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine import auth
from engine.idempotency import IdempotencyRecord
from engine.processor import process
from schemas import encode, new_event
from schemas.events import CancelIntent, MarketTrade, OrderIntent, OrderType, Side
from tests.engine.pure import INSTRUMENT, Harness, decision

ACCOUNTS = ("A1", "A2", "A3")
D = Decimal


def _world() -> Harness:
    h = Harness(cash=D("1000000"), accounts=ACCOUNTS)
    h.quote(D("30000"), D("30010"))
    return h


def test_one_client_order_id_on_two_accounts_is_two_orders() -> None:
    h = _world()
    first = h.order(Side.BUY, D("0.1"), D("29990"), account="A1")
    intent = h.last_intent
    assert intent is not None
    coid = intent.payload.client_order_id
    # The same order, client order id included, on the producer's other account.
    other = intent.payload.model_copy(
        update={"account": "A2", "quantity": D("0.2"), "limit_price": D("29980")}
    )
    second = h.feed(auth.sign(other, h.key), producer="p1")
    d1, d2 = decision(first), decision(second)
    assert d1.outcome == d2.outcome == "APPROVED"
    assert (d1.account, d2.account) == ("A1", "A2")
    assert d1.intent_event_id != d2.intent_event_id
    orders = [o for o in h.state.orders.values() if o.client_order_id == coid]
    assert sorted(o.account for o in orders) == ["A1", "A2"]
    # A cancel on A2 names A2's order, not A1's.
    out = h.cancel(coid, account="A2")
    assert decision(out).outcome == "APPROVED"
    live = {o.account for o in h.state.orders.values() if o.client_order_id == coid and not o.done}
    assert live == {"A1"}


_step_parts = (
    st.sampled_from(ACCOUNTS),
    st.sampled_from(("c1", "c2", "c3")),
    st.sampled_from(("buy", "sell", "cancel", "resend", "print")),
    st.integers(min_value=1, max_value=5),
)
_step = st.tuples(*_step_parts)
_timed_step = st.tuples(*_step_parts, st.sampled_from((10, 400, 1500)))
"""A step and the milliseconds since the last one: some beyond the small window below."""


def _wire(out: list[Any]) -> list[bytes]:
    return [encode(e)[1] for e in out]


@settings(max_examples=40, deadline=None)
@given(st.lists(_step, min_size=1, max_size=25))
def test_decisions_do_not_depend_on_the_other_accounts(steps: list[Any]) -> None:
    """One state holding every account decides each intent exactly as a state holding only
    that intent's account (as a worker owning only its partition would)."""
    _check_alone_equals_together([(*s, 10) for s in steps], _world())


@settings(max_examples=60, deadline=None)
@given(st.lists(_timed_step, min_size=1, max_size=30))
def test_resends_do_not_depend_on_the_other_accounts(steps: list[Any]) -> None:
    """Whether a resend is answered with the original decision (recent tier) or with a
    duplicate rejection (archived) depends only on the intent's own account: with a tier of
    two decisions and a one-second window, the other accounts' decisions must not push an
    account's decisions out of it."""
    h = _world()
    h.state.decisions = IdempotencyRecord(max_recent=2, window_seconds=1)
    _check_alone_equals_together(steps, h)


def _check_alone_equals_together(steps: list[Any], h: Harness) -> None:
    alone = {acc: (copy.deepcopy(h.state), copy.deepcopy(h.ctx)) for acc in ACCOUNTS}
    sent: dict[tuple[str, str], Any] = {}
    at = h.now
    for i, (acc, coid, kind, qty, gap) in enumerate(steps):
        at += timedelta(milliseconds=gap)
        if kind == "print":
            _check_print(h, alone, at, qty)
            continue
        payload: OrderIntent | CancelIntent
        if kind == "resend" and (acc, coid) in sent:
            payload = sent[(acc, coid)]
        elif kind == "cancel":
            payload = CancelIntent(
                producer_id="p1",
                strategy_id="s",
                account=acc,
                client_order_id=f"k{i}",
                target_client_order_id=coid,
            )
        else:
            buy = kind != "sell"
            payload = auth.sign(
                OrderIntent(
                    producer_id="p1",
                    strategy_id="s",
                    account=acc,
                    client_order_id=coid,
                    instrument=INSTRUMENT,
                    side=Side.BUY if buy else Side.SELL,
                    order_type=OrderType.LIMIT,
                    quantity=D(qty) / 100,
                    limit_price=D("29990") if buy else D("30020"),
                ),
                h.key,
            )
            sent.setdefault((acc, coid), payload)
        if isinstance(payload, CancelIntent):
            payload = auth.sign(payload, h.key)
        event = new_event(payload, producer="p1", occurred_at=at)
        together = process(h.state, event, h.ctx)
        state, ctx = alone[acc]
        assert _wire(together) == _wire(process(state, event, ctx)), (i, acc, coid, kind)


def _check_print(h: Harness, alone: dict[str, Any], at: Any, n: int) -> None:
    """A public trade through the resting buys (odd n) or sells (even n), smaller than them:
    each account's resting orders fill exactly as they would on a worker holding that
    account alone (the print's size is not shared out among the accounts a worker holds)."""
    trade = MarketTrade(
        venue="v",
        instrument=INSTRUMENT,
        trade_id=f"t{at.isoformat()}",
        price=D("29985") if n % 2 else D("30025"),
        quantity=D(n) / 100,
        aggressor_side=Side.SELL if n % 2 else Side.BUY,
        exchange_ts=at,
    )
    event = new_event(trade, producer="md", occurred_at=at)
    together = process(h.state, event, h.ctx)
    for acc, (state, ctx) in alone.items():
        mine = [e for e in together if e.key == acc]
        assert _wire(mine) == _wire(process(state, event, ctx)), ("print", acc, n)


def test_an_unsigned_intent_cannot_take_or_read_a_client_order_id() -> None:
    """Rejections decided before the signature verified are not idempotency records: the
    producer's signed intent with the same id is decided on its own merits, and a forged
    resend of a decided id gets its own rejection, not the producer's decision."""
    h = _world()
    forged = OrderIntent(
        producer_id="p1",
        strategy_id="s",
        account="A1",
        client_order_id="victim-1",
        instrument=INSTRUMENT,
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        quantity=D("0.1"),
        limit_price=D("29990"),
        signature="00" * 64,
    )
    unknown = forged.model_copy(update={"producer_id": "nobody", "signature": None})
    outs = h.feed(forged, producer="attacker") + h.feed(unknown, producer="attacker")
    assert [decision([e]).reason for e in outs] == ["BAD_SIGNATURE", "UNKNOWN_PRODUCER"]
    assert ("p1", "A1", "victim-1") not in h.state.decisions
    signed = auth.sign(forged.model_copy(update={"signature": None}), h.key)
    first = decision(h.feed(signed, producer="p1"))
    assert first.outcome == "APPROVED"
    again = h.feed(forged, producer="attacker")
    assert [e.event_type for e in again] == ["IntentRejected"]
    assert decision(again).reason == "BAD_SIGNATURE"
    recorded = h.state.decisions.get(("p1", "A1", "victim-1"))
    assert recorded is not None and recorded.payload.outcome == "APPROVED"


def test_a_decided_client_order_id_answers_only_the_same_intent() -> None:
    """A resend gets the original decision back only if it is the same intent (its digest);
    other content under a decided id — a cancel reusing its order's id, a changed
    quantity — is a typed rejection, never the other intent's decision, and nothing is
    recorded or traded for it."""
    h = _world()
    first = h.order(Side.BUY, D("0.1"), D("29990"))
    intent = h.last_intent
    assert intent is not None
    coid = intent.payload.client_order_id
    order_id = decision(first).order_id
    same = h.resend(coid)
    assert same is not None and _wire(same) == _wire(first[:1])  # the original, byte for byte
    cancel = CancelIntent(
        producer_id="p1",
        strategy_id="s",
        account="A1",
        client_order_id=coid,
        target_client_order_id=coid,
    )
    changed = intent.payload.model_copy(update={"quantity": D("0.2"), "signature": None})
    for other in (cancel, changed):
        out = h.feed(auth.sign(other, h.key), producer="p1")
        assert [e.event_type for e in out] == ["IntentRejected"]
        assert decision(out).reason == "CLIENT_ORDER_ID_REUSED"
        assert not h.state.orders[order_id].done  # the order stays open, untouched
    recorded = h.state.decisions.get(("p1", "A1", coid))
    assert recorded is not None and recorded.event_id == first[0].event_id


def test_a_decision_without_a_digest_answers_no_resend() -> None:
    """Decisions written before the digest existed cannot tell a resend from another
    intent: fail closed with the typed rejection (the id is never traded again)."""
    h = _world()
    first = h.order(Side.BUY, D("0.1"), D("29990"))
    coid = first[0].payload.client_order_id
    legacy = first[0].model_copy(
        update={"payload": first[0].payload.model_copy(update={"intent_digest": None})}
    )
    key = ("p1", "A1", coid)
    state = type(h.state)()
    for ev in h.inputs:
        state.apply(ev)
    state.apply(legacy)
    h.state = state
    out = h.resend(coid)
    assert out is not None and decision(out).reason == "CLIENT_ORDER_ID_REUSED"
    assert "records no intent digest" in decision(out).detail
    assert state.decisions.get(key) is not None


def test_a_refusal_of_an_intent_on_another_partition_decides_nothing_about_it() -> None:
    """What a worker not owning the account answers a copy of a signed intent sent to its
    partition (`reject_misrouted`) is folded by the account's worker at a rebuild (it is
    keyed by the account): it must neither answer nor block the intent sent right, nor
    count in the producer's order rate. Before session 23 the copy got a recorded
    STALE_STATE decision (tests/engine/test_grown_partitions.py shows what it did)."""
    from engine.processor import reject_misrouted
    from schemas.events.orders import IntentRejectReason

    h = _world()
    intent = OrderIntent(
        producer_id="p1", strategy_id="s", account="A1", client_order_id="twin",
        instrument=INSTRUMENT, side=Side.BUY, order_type=OrderType.LIMIT,
        quantity=D("1"), limit_price=D("30010"),
    )  # fmt: skip
    signed = auth.sign(intent, h.key)
    other = copy.deepcopy(h.state)  # the worker the copy came to
    copied = new_event(signed, producer="p1", occurred_at=h.tick())
    out = reject_misrouted(other, copied, "not its account's partition")
    assert [(e.event_type, e.payload.reason) for e in out] == [
        ("IntentRejected", IntentRejectReason.WRONG_PARTITION)
    ]
    assert ("p1", "A1", "twin") not in other.decisions
    for e in out:  # the account's worker, rebuilt from the log
        h.state.apply(e)
    assert ("p1", "A1", "twin") not in h.state.decisions
    assert not h.state.rate
    real = decision(h.feed(signed, producer="p1"))
    assert real.outcome == "APPROVED", real
