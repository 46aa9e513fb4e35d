"""Revoking a strategy producer's key at once, and rotating keys (session 18, helper-89).

Before: nothing could revoke a producer (its key worked until a re-registration silently
replaced it, and its resting orders kept trading), and a `ProducerRegistered` with
another key replaced the key with no record of what it replaced. Now `ProducerRevoked`
(a tightening command) rejects the producer's intents (`PRODUCER_REVOKED`) and cancels
its open orders on every account, on every worker, and again after a lost transaction;
a key changes only by `ProducerKeyRotated`, which names the key it replaces.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine import auth
from engine.control import stale_admin_reason
from engine.processor import Context, catch_up, control, process
from engine.snapshot import canonical_state, merge_slices, take_slice
from engine.state import EngineState
from schemas import new_event
from schemas.events import (
    CancelIntent,
    OrderIntent,
    OrderType,
    ProducerKeyRotated,
    ProducerRegistered,
    ProducerRevoked,
    RiskLimits,
    Side,
    TimeInForce,
)
from schemas.events.orders import IntentRejectReason
from schemas.topics import Topic
from signer_ffi.authn import RequesterRegistry
from tests.engine.pure import INSTRUMENT, Recording, decision, types

D = Decimal
LIMITS = RiskLimits(max_position=D("100"), max_order_notional=D("1e7"), price_collar_pct=D("0.2"))


class _World(Recording):
    """Two producers, p1 (the harness's) and p2, on accounts A1 and A2; every input and
    output kept in order (what a replay feeds again and what a rebuild folds)."""

    def __init__(self) -> None:
        super().__init__(LIMITS, accounts=("A1", "A2"))
        self.keys = {"p1": self.key}
        self.keys["p2"], pub2 = auth.new_keypair()
        assert types(self.admin(_registration("p2", pub2))) == ["ProducerRegistered"]
        self.quote(D("100"), D("101"), qty=D("100"))

    def intent(self, producer: str, account: str, side: Side, qty: int, limit: int) -> Any:
        self.n += 1
        intent = OrderIntent(
            producer_id=producer,
            strategy_id="s",
            account=account,
            client_order_id=f"c{self.n}",
            instrument=INSTRUMENT,
            side=side,
            order_type=OrderType.LIMIT,
            quantity=D(qty),
            limit_price=D(limit),
            time_in_force=TimeInForce.GTC,
        )
        return self.feed(auth.sign(intent, self.keys[producer]), producer=producer)


def _registration(producer: str, pub: str, accounts: tuple[str, ...] = ("A1", "A2")) -> Any:
    return ProducerRegistered(
        producer_id=producer, public_key=pub, accounts=accounts, registered_by="admin"
    )


def _revoke(producer: str = "p1", reason: str = "key leaked") -> ProducerRevoked:
    return ProducerRevoked(producer_id=producer, reason=reason, revoked_by="admin")


def _open_parents(state: EngineState, producer: str) -> list[str]:
    return sorted(
        o.order_id
        for o in state.orders.values()
        if o.producer_id == producer and not o.done and o.parent_order_id is None
    )


@settings(max_examples=40, deadline=None)
@given(
    resting=st.lists(
        st.tuples(
            st.sampled_from(["p1", "p2"]),
            st.sampled_from(["A1", "A2"]),
            st.sampled_from([Side.BUY, Side.SELL]),
            st.integers(1, 3),
            st.integers(1, 4),
        ),
        min_size=1,
        max_size=8,
    ),
    filled_with_stops=st.booleans(),
)
def test_revocation_cancels_every_open_order_of_the_producer_at_once(
    resting: list[tuple[str, str, Side, int, int]], filled_with_stops: bool
) -> None:
    """In the same transaction as the fact: every open order the revoked producer placed,
    on every account, is canceled (`PRODUCER_REVOKED`); the other producer's stay, and so
    do armed stop/take children (they only close). A fold of the log is the live state,
    and a replay of the inputs gives the same events."""
    w = _World()
    w.admin_deposit("BTC", D("50"))
    w.admin_deposit("BTC", D("50"), account="A2")
    if filled_with_stops:
        w.order(Side.BUY, D("2"), stop_loss=D("80"), take_profit=D("120"))
    for producer, account, side, qty, offset in resting:
        limit = 100 - offset if side is Side.BUY else 101 + offset
        assert types(w.intent(producer, account, side, qty, limit))[-1] == "OrderAccepted"
    armed = {i for i, o in w.state.orders.items() if o.parent_order_id is not None and not o.done}
    mine, theirs = _open_parents(w.state, "p1"), _open_parents(w.state, "p2")
    out = w.admin(_revoke())
    assert types(out) == ["ProducerRevoked"] + ["OrderCanceled"] * len(mine)
    assert [e.payload.order_id for e in out[1:]] == mine
    assert {e.payload.reason for e in out[1:]} <= {"PRODUCER_REVOKED"}
    assert all(e.causation_id == out[0].causation_id for e in out)
    assert _open_parents(w.state, "p1") == [] and _open_parents(w.state, "p2") == theirs
    assert all(not w.state.orders[i].done for i in armed)  # the children stay armed
    assert "p1" in w.state.revoked and "p1" not in w.state.producers
    assert canonical_state(w.fold()) == canonical_state(w.state)
    again = EngineState()
    ctx = Context(event_time_is_arrival=True)
    replayed = [e for ev in w.fed for e in process(again, ev, ctx)]
    assert [(e.event_id, e.event_type) for e in replayed] == [
        (e.event_id, e.event_type) for e in w.outs
    ]


def test_revocation_cancels_on_every_worker_and_after_a_lost_transaction() -> None:
    """The worker that decides the revocation cancels the orders of the accounts it owns;
    every other worker reads the fact on the control topics and cancels its own, caused
    by the fact; a worker whose cancels were lost with its transaction finds them again
    after its rebuild (`catch_up`), with the same event ids."""
    w = _World()
    w.intent("p1", "A1", Side.BUY, 1, 97)
    w.intent("p1", "A2", Side.BUY, 2, 98)
    w.intent("p1", "A2", Side.BUY, 3, 96)
    w.intent("p2", "A2", Side.BUY, 1, 95)
    before = copy.deepcopy(w.state)
    w.ctx.owns = lambda a: a == "A1"
    out = w.admin(_revoke())
    assert types(out) == ["ProducerRevoked", "OrderCanceled"]
    assert out[1].payload.account == "A1"
    fact = out[0]
    w2 = copy.deepcopy(before)
    ctx2 = Context(event_time_is_arrival=True, owns=lambda a: a == "A2")
    got = control(w2, fact, ctx2)
    assert types(got) == ["OrderCanceled"] * 2
    assert {e.payload.account for e in got} == {"A2"}
    assert all(e.causation_id == fact.event_id for e in got)
    assert [w2.orders[i].account for i in _open_parents(w2, "p1")] == ["A1"]  # not its own
    assert len(_open_parents(w2, "p2")) == 1
    assert control(w2, fact, ctx2) == []  # read again: folded once, nothing more
    w3 = copy.deepcopy(before)
    w3.apply(fact)  # a rebuild folds the fact; its cancels were never committed
    assert len(_open_parents(w3, "p1")) == 3
    found = catch_up(w3, ctx2, lambda a: a == "A2")
    assert [e.event_id for e in found] == [e.event_id for e in got]
    assert canonical_state(w3) == canonical_state(w2)


def test_a_revoked_producers_intents_are_rejected_until_a_rotation() -> None:
    """After the revocation its orders and cancels are rejected `PRODUCER_REVOKED` (with
    the reason), never recorded under their client order id; a rotation naming the
    revoked key brings it back with the new key, its accounts kept, the old key refused."""
    w = _World()
    placed = w.intent("p1", "A1", Side.BUY, 1, 97)
    target = placed[0].payload.client_order_id
    w.admin(_revoke(reason="laptop stolen"))
    rejected = decision(w.intent("p1", "A1", Side.BUY, 1, 97))
    assert rejected.reason is IntentRejectReason.PRODUCER_REVOKED
    assert "laptop stolen" in rejected.detail
    assert ("p1", "A1", rejected.client_order_id) not in w.state.decisions
    cancel = CancelIntent(
        producer_id="p1",
        strategy_id="s",
        account="A1",
        client_order_id="x1",
        target_client_order_id=target,
    )
    out = w.feed(auth.sign(cancel, w.keys["p1"]), producer="p1")
    assert decision(out).reason is IntentRejectReason.PRODUCER_REVOKED
    assert decision(w.intent("p2", "A1", Side.BUY, 1, 97)).outcome == "APPROVED"
    # Back with a new key: the old one no longer verifies.
    old = w.keys["p1"]
    new, new_pub = auth.new_keypair()
    rotation = ProducerKeyRotated(
        producer_id="p1",
        public_key=new_pub,
        previous_key=auth.public_hex(old),
        rotated_by="admin",
    )
    assert types(w.admin(rotation)) == ["ProducerKeyRotated"]
    assert "p1" not in w.state.revoked and w.state.producers["p1"].accounts == {"A1", "A2"}
    assert decision(w.intent("p1", "A2", Side.BUY, 1, 97)).reason is (
        IntentRejectReason.BAD_SIGNATURE
    )
    w.keys["p1"] = new
    assert decision(w.intent("p1", "A2", Side.BUY, 1, 97)).outcome == "APPROVED"
    assert canonical_state(w.fold()) == canonical_state(w.state)


def test_key_changes_are_explicit_and_checked() -> None:
    """A registration never changes a key (a rotation names the key it replaces), an
    admin is not revoked, nor anyone twice, nor an unknown producer."""
    w = _World()
    p1_key = auth.public_hex(w.keys["p1"])
    _, other = auth.new_keypair()

    def refused(payload: Any) -> str:
        out = w.admin(payload)
        assert types(out) == ["AdminCommandRejected"], types(out)
        return str(out[0].payload.reason)

    assert "ProducerKeyRotated" in refused(_registration("p1", other))
    assert w.state.producers["p1"].public_key == p1_key
    # The same key again: a restatement (its accounts may change).
    assert types(w.admin(_registration("p1", p1_key, ("A1",)))) == ["ProducerRegistered"]
    assert w.state.producers["p1"].accounts == {"A1"}
    assert "not registered" in refused(_revoke("nobody"))
    assert "admin" in refused(_revoke("admin"))

    def rotation(previous: str, new: str) -> ProducerKeyRotated:
        return ProducerKeyRotated(
            producer_id="p1", public_key=new, previous_key=previous, rotated_by="admin"
        )

    _, third = auth.new_keypair()
    assert "current key" in refused(rotation(other, third))
    assert "previous key" in refused(rotation(p1_key, p1_key))
    assert types(w.admin(_revoke())) == ["ProducerRevoked"]
    assert "already revoked" in refused(_revoke())
    assert "revoked" in refused(_registration("p1", p1_key))
    assert "revoked" in refused(_registration("p1", other))
    assert types(w.admin(rotation(p1_key, other))) == ["ProducerKeyRotated"]
    assert w.state.producers["p1"].public_key == other


def test_a_revoked_admin_key_never_reopens_unsigned_commands() -> None:
    """Admin keys live in the same registry: a revoked key of an admin name still counts
    as registered, so the unsigned bootstrap (no admin key registered yet) cannot come
    back by revoking it (an admin itself is not revoked; here `ops` is made an admin after
    its revocation)."""
    w = _World()
    _, pub = auth.new_keypair()
    assert types(w.admin(_registration("ops", pub, ()))) == ["ProducerRegistered"]
    assert types(w.admin(_revoke("ops"))) == ["ProducerRevoked"]
    w.ctx.admins = frozenset({"admin", "ops"})
    out = w.admin(_revoke("p2"))  # unsigned, by an admin without a key
    assert types(out) == ["AdminCommandRejected"]
    assert "registered (ops)" in out[0].payload.reason


def test_revocation_is_a_tightening_command() -> None:
    """Decided even on a stale view of the control topics (it only stops trading); a
    rotation or registration, which lets a key trade, is not."""
    assert stale_admin_reason("ProducerRevoked", "lag unknown") is None
    assert stale_admin_reason("ProducerKeyRotated", "lag unknown") is not None
    assert stale_admin_reason("ProducerRegistered", "lag unknown") is not None


def test_the_signers_registry_follows_rotations_and_revocations() -> None:
    """The FROST participants answer requesters by the registry folded from the accounts
    topic: a revoked requester's key is dropped, a rotated one replaced."""
    reg = RequesterRegistry()
    _, k1 = auth.new_keypair()
    _, k2 = auth.new_keypair()

    def fact(payload: Any) -> Any:
        return new_event(payload, producer="engine")

    assert reg.apply(fact(_registration("c", k1, ())))
    assert reg.apply(
        fact(ProducerKeyRotated(producer_id="c", public_key=k2, previous_key=k1, rotated_by="a"))
    )
    assert reg.key_of("c") == k2
    assert not reg.apply(new_event(_revoke("c"), producer="admin"))  # a command, not a fact
    assert reg.key_of("c") == k2
    assert reg.apply(fact(_revoke("c")))
    assert reg.key_of("c") is None


def _rotate(w: _World, producer: str = "p1") -> None:
    """Rotate `producer`'s key (the revoked one, or the one in force) to a new one."""
    new, new_pub = auth.new_keypair()
    rotation = ProducerKeyRotated(
        producer_id=producer,
        public_key=new_pub,
        previous_key=auth.public_hex(w.keys[producer]),
        rotated_by="admin",
    )
    assert types(w.admin(rotation)) == ["ProducerKeyRotated"]
    w.keys[producer] = new


def _revoke_elsewhere(w: _World, reason: str = "key leaked") -> list[Any]:
    """Another worker (owning none of the accounts) decides the revocation; the worker
    owning them reads the fact (`control`) and cancels its orders, caused by the fact.
    Returns those cancels, which its transaction then loses: never on the log."""
    reader = copy.deepcopy(w.state)
    owns, w.ctx.owns = w.ctx.owns, lambda a: False
    out = w.admin(_revoke(reason=reason))
    w.ctx.owns = owns
    assert types(out) == ["ProducerRevoked"]
    lost = control(reader, out[0], w.ctx)
    w.state = reader  # the reader goes on deciding: it folded the fact and its cancels
    return lost


def _reference(w: _World) -> EngineState:
    """A state holding the reference topics only (what a slice is merged into)."""
    state = EngineState()
    for ev in w.fed:
        if ev.event_type in ("MarketTrade", "QuoteUpdated"):
            state.apply(ev)
    for ev in w.outs:
        if ev.topic not in (Topic.DECISIONS, Topic.ORDERS):
            state.apply(ev)
    return state


def test_cancels_lost_before_a_rotation_are_made_after_the_rebuild() -> None:
    """Session 19 (helper-100; found by helper-97): the revocation's cancels lost with
    their transaction, then the key rotated before the rebuild. The fold saw revoked, then
    rotated, reinstated the producer, and `catch_up` cancelled nothing: the orders the
    leaked key placed stayed open and could trade (fail open). Now every order placed
    with a revoked key is cancelled after the rebuild (a restart, a hand-over, from a
    slice), once, with the ids the lost cancels had; the orders the new key placed stay."""
    w = _World()
    w.intent("p1", "A1", Side.BUY, 1, 97)
    w.intent("p1", "A2", Side.BUY, 2, 98)
    w.intent("p2", "A2", Side.BUY, 1, 95)
    lost = _revoke_elsewhere(w)
    assert types(lost) == ["OrderCanceled"] * 2
    assert {e.payload.reason for e in lost} == {"PRODUCER_REVOKED"}
    _rotate(w)
    fresh = [w.intent("p1", a, Side.BUY, 1, 96)[-1].payload.order_id for a in ("A1", "A2")]
    whole = w.fold()
    for ev in lost:
        whole.apply(ev)  # what the log would hold had the transaction committed
    for owned in (("A1", "A2"), ("A2",)):  # a restart; a hand-over of A2 alone
        rebuilt = w.fold()
        assert len(_open_parents(rebuilt, "p1")) == 4
        found = catch_up(rebuilt, w.ctx, lambda a, owned=owned: a in owned)  # type: ignore[misc]
        assert [e.event_id for e in found] == [
            e.event_id for e in lost if e.payload.account in owned
        ]
        assert set(fresh) <= set(_open_parents(rebuilt, "p1"))
        assert catch_up(rebuilt, w.ctx, lambda a, owned=owned: a in owned) == []  # type: ignore[misc]
    assert canonical_state(rebuilt) != canonical_state(whole)  # A1's still open there
    found = catch_up(rebuilt, w.ctx, lambda a: True)
    assert canonical_state(rebuilt) == canonical_state(whole)
    # From a slice: merged into a state holding the reference topics.
    sliced = _reference(w)
    merge_slices(sliced, [take_slice(w.fold(), 0, {})])
    assert canonical_state(sliced) == canonical_state(w.fold())
    found = catch_up(sliced, w.ctx, lambda a: True)
    assert [e.event_id for e in found] == [e.event_id for e in lost]
    assert canonical_state(sliced) == canonical_state(whole)


def test_each_revocation_cancels_what_its_keys_placed_and_never_the_new_keys() -> None:
    """Revoke, rotate, trade with the new key, revoke again: each revocation cancels the
    orders of the keys it revoked (the one in force and every earlier one), never those of
    a key rotated in after it, live and after a rebuild that lost both revocations'
    cancels (the same events again, each caused by its own revocation)."""
    w = _World()
    w.intent("p1", "A1", Side.BUY, 1, 97)
    first = _revoke_elsewhere(w)
    _rotate(w)
    w.intent("p1", "A1", Side.BUY, 1, 96)
    w.intent("p1", "A2", Side.BUY, 1, 95)
    w.intent("p2", "A2", Side.BUY, 1, 94)
    second = _revoke_elsewhere(w, reason="again")
    assert types(first) == ["OrderCanceled"]
    assert types(second) == ["OrderCanceled"] * 2
    assert {e.payload.order_id for e in first} & {e.payload.order_id for e in second} == set()
    whole = w.fold()
    for ev in first + second:
        whole.apply(ev)
    rebuilt = w.fold()
    found = catch_up(rebuilt, w.ctx, lambda a: True)
    assert sorted(e.event_id for e in found) == sorted(e.event_id for e in first + second)
    assert canonical_state(rebuilt) == canonical_state(whole) == canonical_state(w.state)
    assert len(_open_parents(rebuilt, "p2")) == 1


def test_an_order_a_stale_worker_accepted_with_the_revoked_key_is_cancelled() -> None:
    """A worker that had not read the revocation (nor the rotation after it) accepted an
    order signed with the leaked key: placed after the revocation by any clock, but with
    the revoked key, so a rebuild cancels it (the key decides, not a time)."""
    w = _World()
    stale = copy.deepcopy(w.state)
    lost = _revoke_elsewhere(w)
    assert lost == []
    leaked = w.keys["p1"]
    _rotate(w)
    w.state, fresh = stale, w.state
    w.keys["p1"], new = leaked, w.keys["p1"]
    assert types(w.intent("p1", "A1", Side.BUY, 1, 97))[-1] == "OrderAccepted"  # stale view
    w.state, w.keys["p1"] = fresh, new
    rebuilt = w.fold()
    assert len(_open_parents(rebuilt, "p1")) == 1
    found = catch_up(rebuilt, w.ctx, lambda a: True)
    assert types(found) == ["OrderCanceled"]
    assert found[0].payload.reason == "PRODUCER_REVOKED"
    assert _open_parents(rebuilt, "p1") == []


def test_a_rotation_back_to_a_revoked_key_is_refused() -> None:
    """A revoked key never comes back: what it placed is cancelled on every recovery."""
    w = _World()
    leaked = auth.public_hex(w.keys["p1"])
    w.admin(_revoke())
    _rotate(w)
    back = ProducerKeyRotated(
        producer_id="p1",
        public_key=leaked,
        previous_key=auth.public_hex(w.keys["p1"]),
        rotated_by="admin",
    )
    out = w.admin(back)
    assert types(out) == ["AdminCommandRejected"]
    assert "revoked" in out[0].payload.reason


class _CountedOrders(dict[str, Any]):
    """`EngineState.orders` counting the orders its `values()` hands out."""

    visits = 0

    def values(self) -> Any:
        for v in super().values():
            self.visits += 1
            yield v


def test_catch_up_reads_the_open_orders_once_whatever_the_revocations() -> None:
    """Revocations are never undone, so they pile up over a cluster's life (every producer
    ever revoked), and `catch_up` runs at every restart and hand-over. It looked at every
    open order once per revocation (and venue): 300 revocations over 100,000 open orders
    took 10.5 s (bench numbers in the commit). Now one pass finds each order's revocation
    by its key: the orders visited do not grow with the revocations, and the lost cancels
    are made all the same, with the same ids."""
    visits = []
    for others in (1, 40):
        w = _World()
        for i in range(6):
            w.intent("p2", ("A1", "A2")[i % 2], Side.BUY, 1, 90 + i)
        w.intent("p1", "A1", Side.BUY, 1, 97)
        for i in range(others):
            _, pub = auth.new_keypair()
            assert types(w.admin(_registration(f"x{i}", pub))) == ["ProducerRegistered"]
            assert types(w.admin(_revoke(f"x{i}"))) == ["ProducerRevoked"]
        lost = _revoke_elsewhere(w)
        assert types(lost) == ["OrderCanceled"]
        rebuilt = w.fold()
        rebuilt.orders = counted = _CountedOrders(rebuilt.orders)
        found = catch_up(rebuilt, w.ctx, lambda a: True)
        visits.append(counted.visits)
        assert [e.event_id for e in found] == [e.event_id for e in lost]
        assert len(_open_parents(rebuilt, "p2")) == 6
    assert visits == [7, 7], visits  # p2's six orders and p1's, once


def test_a_resend_is_refused_while_revoked_and_answered_with_the_original_after_a_rotation() -> (
    None
):
    """Decided in session 20 (issue #3: "a resent intent gets the original decision back
    and is never traded twice"): while the producer is revoked, a resend of an intent
    decided before the revocation is refused `PRODUCER_REVOKED` like any of its intents
    (decided before a signature is checked: the only key that could verify it is the
    revoked, compromised one), not recorded, and trades nothing; once the key is rotated,
    the same intent signed with the new key (the digest leaves the signature out) gets the
    original decision back, byte for byte. The same live and after a restart."""
    w = _World()
    placed = w.intent("p1", "A1", Side.BUY, 1, 97)
    original = placed[0]
    assert original.event_type == "RiskDecision" and original.payload.outcome == "APPROVED"
    intent = w.fed[-1].payload
    assert intent.client_order_id == original.payload.client_order_id

    def resend(state: EngineState, key: Any) -> list[Any]:
        again = auth.sign(intent.model_copy(update={"signature": None}), key)
        return process(state, new_event(again, producer="p1", occurred_at=w.tick()), w.ctx)

    assert resend(w.state, w.keys["p1"]) == [original]  # before the revocation
    revoked = w.admin(_revoke())
    assert types(revoked) == ["ProducerRevoked", "OrderCanceled"]
    for state in (w.state, w.fold()):  # live; after a restart
        out = resend(state, w.keys["p1"])
        assert types(out) == ["IntentRejected"]
        assert out[0].payload.reason is IntentRejectReason.PRODUCER_REVOKED
        recorded = state.decisions.get(("p1", "A1", intent.client_order_id))
        assert recorded is not None and recorded.envelope == original
        assert _open_parents(state, "p1") == []
    old = w.keys["p1"]
    _rotate(w)
    for state in (w.state, w.fold()):
        assert resend(state, w.keys["p1"]) == [original]
        out = resend(state, old)
        assert types(out) == ["IntentRejected"]
        assert out[0].payload.reason is IntentRejectReason.BAD_SIGNATURE
        assert _open_parents(state, "p1") == []
