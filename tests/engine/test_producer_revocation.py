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
from engine.snapshot import canonical_state
from engine.state import EngineState
from schemas import decode, encode, new_event
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
from signer_ffi.authn import RequesterRegistry
from tests.engine.pure import INSTRUMENT, Harness, decision, types

D = Decimal
LIMITS = RiskLimits(max_position=D("100"), max_order_notional=D("1e7"), price_collar_pct=D("0.2"))


class _World(Harness):
    """Two producers, p1 (the harness's) and p2, on accounts A1 and A2; every input and
    output kept in order (what a replay feeds again and what a rebuild folds)."""

    def __init__(self) -> None:
        self.fed: list[Any] = []
        self.outs: list[Any] = []
        super().__init__(LIMITS, accounts=("A1", "A2"))
        self.keys = {"p1": self.key}
        self.keys["p2"], pub2 = auth.new_keypair()
        assert types(self.admin(_registration("p2", pub2))) == ["ProducerRegistered"]
        self.quote(D("100"), D("101"), qty=D("100"))

    def feed(self, payload: Any, producer: str = "x") -> list[Any]:
        event = new_event(payload, producer=producer, occurred_at=self.tick())
        self.fed.append(event)
        out = process(self.state, event, self.ctx)
        self.outs.extend(out)
        return out

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

    def fold(self) -> EngineState:
        rebuilt = EngineState()
        for ev in self.fed:
            if ev.event_type in ("MarketTrade", "QuoteUpdated"):
                rebuilt.apply(ev)
        for ev in self.outs:
            k, v, hd = encode(ev)
            rebuilt.apply(decode(v, hd), (k, v, hd))
        return rebuilt


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
