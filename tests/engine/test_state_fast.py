"""The fast paths change nothing: incremental exposure, bounded idempotency, eviction, codec.

Each property compares the fast structure with a recomputation from scratch or with the
canonical slow path.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import auth, idempotency
from engine.codec import decode_record
from engine.idempotency import FingerprintSet, IdempotencyRecord
from engine.processor import process
from engine.state import ZERO, EngineState, Exposure, split_instrument
from schemas import MalformedEventError, decode, encode, new_event
from schemas.events import OrderIntent, OrderType, RiskLimits, Side
from tests.engine.pure import INSTRUMENT, Harness, decision

D = Decimal
SAMPLES = Path(__file__).parents[1] / "schemas" / "samples"
LIMITS = RiskLimits(
    max_order_notional=D("1e9"),
    max_position=D("1e6"),
    max_open_orders=10**6,
    max_orders_per_window=10**6,
    price_collar_pct=D("0.5"),
)


def recomputed(state: EngineState, account: str) -> Exposure:
    """The exposure by walking the open parent orders, as the engine used to per intent."""
    x = Exposure()
    for oid in sorted(state.account(account).open_orders):
        o = state.orders[oid]
        if o.parent_order_id is None:
            x.add(o, 1)
    return x


def check_invariants(state: EngineState) -> None:
    for name, acc in state.accounts.items():
        assert acc.exposure == recomputed(state, name), name
        for oid in acc.open_orders:
            assert not state.orders[oid].done
    for o in state.orders.values():
        if o.done:
            # A done order is only kept for children it may still arm or has open.
            if o.parent_order_id is None:
                waiting = not o.children and o.filled > 0 and (o.stop_loss or o.take_profit)
                live = any(c in state.orders and not state.orders[c].done for c in o.children)
                assert waiting or live, o.order_id


ACTION = st.one_of(
    st.tuples(
        st.just("limit"),
        st.sampled_from([Side.BUY, Side.SELL]),
        st.sampled_from(["0.1", "0.5", "1", "2.5"]),
        st.integers(-30, 30),
        st.booleans(),
    ),
    st.tuples(st.just("market"), st.sampled_from([Side.BUY, Side.SELL]), st.just("0.3")),
    st.tuples(st.just("trade"), st.integers(-40, 40), st.sampled_from(["0.2", "1", "5"])),
    st.tuples(st.just("cancel"), st.integers(0, 40)),
    st.tuples(st.just("quote"), st.integers(-20, 20)),
)


_ORDER_ID = re.compile(r"\bo-[0-9a-f]{24}\b")
ID_FIELDS = {
    "order_id",
    "intent_event_id",
    "decision_event_id",
    "fill_id",
    "venue_trade_id",
    "uti",
    "parent_order_id",
    "venue_order_id",
    "signature",
    "quote_id",  # a quote's event id (fresh in each run)
    "producer_key",  # each harness has a key of its own
}


def normalized(e: Any) -> tuple[str, dict[str, Any]]:
    """An output without the ids that differ between two runs (intent ids are fresh)."""
    d = e.payload.model_dump(mode="json", exclude=ID_FIELDS)
    if isinstance(d.get("detail"), str):  # a late cancel's names the order
        d["detail"] = _ORDER_ID.sub("o-<id>", d["detail"])
    return e.event_type, d


def run_actions(h: Harness, actions: list[tuple[Any, ...]]) -> list[Any]:
    """Drive the harness; returns every output, for comparing runs."""
    outs: list[Any] = []
    for a in actions:
        kind = a[0]
        if kind == "limit":
            _, side, qty, off, attach = a
            price = D(30000 + off * 10)
            extra: dict[str, Any] = {}
            if attach:
                extra = (
                    {"stop_loss": price - 300, "take_profit": price + 300}
                    if side is Side.BUY
                    else {"stop_loss": price + 300, "take_profit": price - 300}
                )
            outs += h.order(side, D(qty), price, **extra)
        elif kind == "market":
            outs += h.order(a[1], D(a[2]))
        elif kind == "trade":
            outs += h.trade(D(30000 + a[1] * 10), D(a[2]))
        elif kind == "cancel":
            outs += h.cancel(f"c{a[1]}")
        else:
            mid = D(30000 + a[1] * 10)
            h.quote(mid - 1, mid + 1)
    return outs


def _harness() -> Harness:
    h = Harness(LIMITS, cash=D("10000000"))
    h.quote(D("29999"), D("30001"))
    h.admin_deposit("BTC", D("100"))  # priced: its units are issued with it
    return h


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ACTION, min_size=1, max_size=40))
def test_incremental_exposure_equals_recomputation(actions: list[tuple[Any, ...]]) -> None:
    h = _harness()
    for a in actions:
        run_actions(h, [a])
        check_invariants(h.state)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ACTION, min_size=1, max_size=30), st.integers(1, 4))
def test_pruning_never_changes_a_decision(actions: list[tuple[Any, ...]], keep: int) -> None:
    """A tiny replay window decides every new intent exactly as an unbounded one, and a
    resend of any decided intent never trades again in either."""
    full, tiny = _harness(), _harness()
    # The same intent ids in both: two children one trade reaches share it in order-id
    # order (so the fills' quantities, not only their order, follow the ids).
    full.ids_from = tiny.ids_from = "pruning"
    tiny.state.decisions = IdempotencyRecord(max_recent=keep)
    full.state.decisions = IdempotencyRecord(max_recent=10**9, window_seconds=10**9)
    for act in actions:
        # Per input, the same outputs (compared as a multiset).
        a = sorted(repr(normalized(e)) for e in run_actions(full, [act]))
        b = sorted(repr(normalized(e)) for e in run_actions(tiny, [act]))
        assert a == b, act
    for h in (full, tiny):
        for i in range(1, h.n + 1):
            again = h.resend(f"c{i}")
            if again is None:
                continue
            kinds = {e.event_type for e in again}
            assert kinds <= {"RiskDecision", "IntentRejected"} and len(again) == 1, kinds
    assert len(tiny.state.decisions.recent) <= keep


def test_resend_beyond_the_window_is_refused_not_traded() -> None:
    h = _harness()
    h.state.decisions = IdempotencyRecord(max_recent=1)
    first = h.order(Side.BUY, D("0.1"), D("29990"))
    assert first[0].payload.outcome == "APPROVED"
    second = h.order(Side.BUY, D("0.1"), D("29990"))  # pushes the first out of the recent tier
    again = h.resend(first[0].payload.client_order_id)
    assert again is not None and [e.event_type for e in again] == ["IntentRejected"]
    assert "duplicate client_order_id" in again[0].payload.detail
    recent = h.resend(second[0].payload.client_order_id)
    assert recent is not None and recent[0] == second[0]
    assert h.state.decisions.get(("p1", "A1", second[0].payload.client_order_id)) is not None


def test_rebuilt_state_matches_live_state() -> None:
    """Folding the engine's outputs (as read back from the log) yields the live state."""
    h = _harness()
    outs = run_actions(
        h,
        [
            ("limit", Side.BUY, "1", -1, True),
            ("limit", Side.SELL, "0.5", 2, False),
            ("trade", -2, "0.4"),
            ("limit", Side.BUY, "2.5", 0, False),
            ("trade", -2, "5"),
            ("trade", -40, "5"),
            ("cancel", 4),
            ("market", Side.BUY, "0.3"),
        ],
    )
    rebuilt = EngineState()
    for ev in h.inputs:  # reference facts and market data, as the worker reads them
        rebuilt.apply(ev)
    for ev in outs:
        k, v, hd = encode(ev)
        rebuilt.apply(decode(v, hd), (k, v, hd))
    for name, acc in h.state.accounts.items():
        r = rebuilt.account(name)
        assert (r.balances, r.positions, r.exposure, r.open_orders) == (
            acc.balances,
            acc.positions,
            acc.exposure,
            acc.open_orders,
        )
    assert set(rebuilt.orders) == set(h.state.orders)
    assert list(rebuilt.decisions.recent) == list(h.state.decisions.recent)
    assert [r.value for r in rebuilt.decisions.recent.values()] == [
        r.value for r in h.state.decisions.recent.values()
    ]


def test_fingerprint_set_merges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(idempotency, "_MERGE_AT", 7)
    fs, ref = FingerprintSet(), set()
    for i in range(0, 3000, 3):
        fp = idempotency.fingerprint(("p", "A", str(i)))
        fs.add(fp)
        ref.add(fp)
    assert len(fs) == len(ref)
    for i in range(3000):
        fp = idempotency.fingerprint(("p", "A", str(i)))
        assert (fp in fs) == (fp in ref)


@pytest.mark.parametrize("path", sorted(SAMPLES.glob("*.json")), ids=lambda p: p.stem)
def test_fast_decode_agrees_with_schemas_decode(path: Path) -> None:
    slow = decode(path.read_bytes())
    _k, v, hd = encode(slow)
    assert decode_record(v, hd) == decode(v, hd) == slow
    # Wrong or missing headers fall back to the canonical path and its verdict.
    assert decode_record(v, None) == slow
    bad = [("event_type", b"OrderIntent" if slow.event_type != "OrderIntent" else b"Fill")]
    with pytest.raises(MalformedEventError):
        decode_record(v, bad + hd[1:])


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_fast_decode_rejects_exactly_what_decode_rejects(data: st.DataObject) -> None:
    sample = data.draw(st.sampled_from(sorted(SAMPLES.glob("*.json"))))
    event = decode(sample.read_bytes())
    _, value, headers = encode(event)
    raw = json.loads(value)
    path = data.draw(st.sampled_from(["payload", "top"]))
    target = raw["payload"] if path == "payload" else raw
    field = data.draw(st.sampled_from(sorted(target)))
    target[field] = data.draw(
        st.one_of(st.none(), st.integers(), st.text(max_size=5), st.floats(), st.booleans())
    )
    mutated = json.dumps(raw).encode()
    try:
        expected: Any = decode(mutated, headers)
    except MalformedEventError:
        expected = MalformedEventError
    try:
        got: Any = decode_record(mutated, headers)
    except MalformedEventError:
        got = MalformedEventError
    assert got == expected


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=64, max_size=64), st.integers(0, 63), st.booleans())
def test_libsodium_and_openssl_agree_on_signatures(junk: bytes, flip: int, use_junk: bool) -> None:
    key, pub = auth.new_keypair()
    intent = auth.sign(
        OrderIntent(
            producer_id="p1",
            strategy_id="s",
            account="A1",
            client_order_id="x",
            instrument=INSTRUMENT,
            side=Side.BUY,
            order_type=OrderType.MARKET,
            quantity=D("1"),
        ),
        key,
    )
    sig = bytearray(bytes.fromhex(intent.signature or ""))
    if use_junk:
        sig = bytearray(junk)
    else:
        sig[flip] ^= 1
    for candidate in (intent, intent.model_copy(update={"signature": sig.hex()})):
        assert auth.verify(candidate, pub) == auth.verify_openssl(candidate, pub)
    assert auth.verify(intent, pub)


def test_split_and_zero_helpers() -> None:
    assert split_instrument("BTC/USDC") == ("BTC", "USDC") and ZERO == 0


def test_process_outputs_are_folded_once() -> None:
    h = _harness()
    out = h.order(Side.BUY, D("1"), D("30001"))
    assert [e.event_type for e in out][:3] == ["RiskDecision", "OrderSubmitted", "OrderAccepted"]
    assert h.state.fills_applied == 1 and not h.state.orders  # filled and evicted
    assert h.last_intent is not None
    assert process(h.state, h.last_intent, h.ctx)[0].event_id == out[0].event_id


def _rebuilt(h: Harness, outs: list[Any]) -> EngineState:
    """A fresh state folded from the log: reference facts and market data, then outputs."""
    state = EngineState()
    for ev in h.inputs:
        state.apply(ev)
    for ev in outs:
        k, v, hd = encode(ev)
        state.apply(decode(v, hd), (k, v, hd))
    return state


def test_drawdown_peak_survives_a_rebuild() -> None:
    h = _harness()  # 10M USDC + 100 BTC at ~30,000: equity ~13M
    outs = list(h.order(Side.BUY, D("0.1"), D("29990")))
    assert outs[0].payload.peak_equity is not None and outs[0].payload.peak_equity > D("12e6")
    h.quote(D("24999"), D("25001"))  # equity ~12.5M: drawdown ~4%, under the 10% brake
    outs += h.order(Side.BUY, D("0.1"), D("24990"))
    h.quote(D("14999"), D("15001"))  # ~11.5M: ~11.5% below the peak
    rebuilt = _rebuilt(h, outs)
    assert rebuilt.account("A1").peak_nav == h.state.account("A1").peak_nav
    h.state = rebuilt  # a restart: without the folded peak it would re-learn ~11.5M
    assert "DRAWDOWN_BRAKE" in decision(h.order(Side.BUY, D("0.1"), D("14990"))).reason_codes


def test_released_brake_resets_the_peak_after_a_rebuild_too() -> None:
    from schemas.events import KillSwitchEngaged, KillSwitchReleased

    h = _harness()
    outs = list(h.order(Side.BUY, D("0.1"), D("29990")))
    h.admin(KillSwitchEngaged(scope="A1", engaged_by="admin", reason="t"))
    h.admin(KillSwitchReleased(scope="A1", released_by="admin", reason="t"))
    h.quote(D("14999"), D("15001"))
    rebuilt = _rebuilt(h, outs)
    assert rebuilt.account("A1").peak_nav == 0 == h.state.account("A1").peak_nav
    h.state = rebuilt
    assert decision(h.order(Side.BUY, D("0.1"), D("14990"))).outcome == "APPROVED"


def test_an_intent_stamped_before_a_release_does_not_raise_the_live_peak() -> None:
    """Live and fold raise the peak by one rule (`AccountState.raise_peak`): an intent
    stamped before a release but decided after it leaves the peak reset in both."""
    from schemas.events import KillSwitchEngaged, KillSwitchReleased

    h = _harness()
    outs = list(h.order(Side.BUY, D("0.1"), D("29990")))
    stamped = h.tick()
    h.admin(KillSwitchEngaged(scope="A1", engaged_by="admin", reason="t"))
    h.admin(KillSwitchReleased(scope="A1", released_by="admin", reason="t"))
    intent = OrderIntent(
        producer_id="p1",
        strategy_id="s",
        account="A1",
        client_order_id="backlog",
        instrument=INSTRUMENT,
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        quantity=D("0.1"),
        limit_price=D("29990"),
    )
    event = new_event(auth.sign(intent, h.key), producer="p1", occurred_at=stamped)
    outs += process(h.state, event, h.ctx)
    assert h.state.account("A1").peak_nav == 0 == _rebuilt(h, outs).account("A1").peak_nav
