"""Snapshot slices: merged slices plus the tail fold to exactly what a full replay folds.

The pure harness plays a random stream over four accounts on three partitions; at random
points it takes the live state's slice of one partition (a worker's state right after a
commit); `test_slices_of_a_folded_log_fold_to_the_full_replay` takes them as the
snapshotter does, of a state folded from the log and cut anywhere. A full replay (reference topics, then every own-topic record) is compared with
the slices merged into a state holding the reference topics, followed by only the
records after each slice's offsets, on `canonical_state`; then both decide one more
intent, and must decide it identically.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.partitioning import murmur2, partition_for, signed32
from engine.processor import control
from engine.snapshot import (
    Slice,
    SnapshotError,
    canonical_state,
    capture,
    chunks,
    decode_slice,
    encode_slice,
    merge_slices,
    render,
    take_slice,
)
from engine.state import EngineState
from schemas import decode, encode, new_event
from schemas.events import (
    KillSwitchEngaged,
    KillSwitchReleased,
    RiskLimits,
    RiskLimitsChanged,
    Side,
)
from schemas.registry import COMPONENT_WRITTEN
from schemas.snapshots import FORMAT_VERSION
from tests.engine.pure import Harness, decision, transfer_fact
from tests.engine.test_state_fast import normalized

D = Decimal
ACCOUNTS = ("A1", "A2", "A3", "A4")
PART = {"A1": 0, "A2": 1, "A3": 0, "A4": 2}
OWN = ("risk.decisions", "orders.lifecycle")


def part(account: str) -> int:
    return PART.get(account, 0)


def limits(window: int) -> RiskLimits:
    return RiskLimits(
        max_order_notional=D("1e9"),
        max_position=D("1e6"),
        max_open_orders=10**6,
        max_orders_per_window=3,
        rate_window_seconds=window,
        price_collar_pct=D("0.5"),
    )


ACC = st.sampled_from(ACCOUNTS)
SIDE = st.sampled_from([Side.BUY, Side.SELL])
ACTION = st.one_of(
    st.tuples(
        st.just("limit"),
        ACC,
        SIDE,
        st.sampled_from(["0.1", "1", "2.5"]),
        st.integers(-20, 20),
        st.booleans(),
    ),
    st.tuples(st.just("market"), ACC, SIDE),
    st.tuples(st.just("trade"), st.integers(-30, 30), st.sampled_from(["0.2", "1", "5"])),
    st.tuples(st.just("quote"), st.integers(-20, 20)),
    st.tuples(st.just("cancel"), ACC, st.integers(0, 40)),
    st.tuples(st.just("resend"), st.integers(0, 40)),
    st.tuples(st.just("deposit"), ACC, st.sampled_from(["USDC", "BTC"])),
    st.tuples(st.just("release"), ACC),
    st.tuples(st.just("limits"), st.integers(1, 3)),
    st.tuples(st.just("wait"), st.sampled_from([0.5, 2.0, 400.0])),
    st.tuples(st.just("snap"), st.integers(0, 2)),
    st.tuples(st.just("snap"), st.integers(0, 2)),
    # A withdrawal's step (the transfer service's, on transfers.events): a request holds
    # its amount (most of the account's cash, or half a BTC it may not have), a REJECT
    # check frees it, a settlement debits it; steps may come in any order.
    st.tuples(
        st.just("withdraw"),
        ACC,
        st.integers(0, 2),
        st.sampled_from(["request", "check", "release", "settle"]),
        st.sampled_from(["PASS", "HOLD", "REJECT"]),
        st.sampled_from([("USDC", "9990000"), ("BTC", "0.5")]),
    ),
)


class Log:
    """The harness's outputs as the topics would hold them: own records per partition."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.ref: list[Any] = [e for e in h.inputs if e.topic not in OWN]
        self.own: list[tuple[str, int, tuple[Any, Any, Any]]] = []
        self.count: dict[tuple[str, int], int] = {}
        self.slices: dict[int, Slice] = {}
        self.version = 1
        self.add([e for e in h.inputs if e.topic in OWN])  # the deposits' `UnitsChanged`

    def add(self, outs: list[Any]) -> None:
        for e in outs:
            if e.topic in OWN:
                p = part(e.key)
                self.own.append((e.topic, p, encode(e)))
                self.count[(e.topic, p)] = self.count.get((e.topic, p), 0) + 1
            else:
                self.ref.append(e)

    def play(self, a: tuple[Any, ...]) -> None:
        h, kind = self.h, a[0]
        if kind == "limit":
            _, acc, side, qty, off, attach = a
            price = D(30000 + off * 10)
            extra: dict[str, Any] = {}
            if attach:
                sl, tp = (
                    (price - 300, price + 300) if side is Side.BUY else (price + 300, price - 300)
                )
                extra = {"stop_loss": sl, "take_profit": tp}
            self.add(h.order(side, D(qty), price, account=acc, **extra))
        elif kind == "market":
            self.add(h.order(a[2], D("0.3"), account=a[1]))
        elif kind in ("trade", "quote"):
            before = len(h.inputs)
            if kind == "trade":
                outs = h.trade(D(30000 + a[1] * 10), D(a[2]))
            else:
                mid = D(30000 + a[1] * 10)
                h.quote(mid - 1, mid + 1)
                outs = []
            self.ref += h.inputs[before : before + 1]  # the market event itself
            self.add(outs)
        elif kind == "cancel":
            self.add(h.cancel(f"c{a[2]}", account=a[1]))
        elif kind == "resend":
            self.add(h.resend(f"c{a[1]}") or [])
        elif kind == "deposit":
            h.n += 1
            from schemas.events import DepositReceived

            self.add(
                h.admin(
                    DepositReceived(
                        deposit_id=f"d{h.n}", account=a[1], asset=a[2], amount=D("1000")
                    )
                )
            )
        elif kind == "release":
            self.add(h.admin(KillSwitchEngaged(scope=a[1], engaged_by="admin", reason="t")))
            self.add(h.admin(KillSwitchReleased(scope=a[1], released_by="admin", reason="t")))
        elif kind == "limits":
            self.version += 1
            self.add(
                h.admin(
                    RiskLimitsChanged(
                        scope="*",
                        config_version=self.version,
                        limits=limits(a[1]),
                        changed_by="admin",
                    )
                )
            )
        elif kind == "withdraw":
            _, acc, n, step, outcome, (asset, amount) = a
            payload = transfer_fact(
                f"w-{acc}-{n}", step, acc, asset=asset, amount=amount, outcome=outcome
            )
            # the transfer service's steps; its check the travel rule's (the only one read)
            who = COMPONENT_WRITTEN.get(payload.EVENT_TYPE, "transfers")
            event = new_event(payload, producer=who, occurred_at=h.tick())
            self.ref.append(event)  # read in full by every worker, as the control topics
            self.add(control(h.state, event, h.ctx))
        elif kind == "wait":
            h.tick(a[1])
        else:
            p = a[1]
            offsets = {t: self.count.get((t, p), 0) for t in OWN}
            self.slices[p] = take_slice(h.state, p, offsets)


def _harness() -> Harness:
    h = Harness(limits(1), cash=D("10000000"), accounts=ACCOUNTS)
    h.state.partition_of = part
    h.state.decisions.max_recent = 3  # small, so slices cross the recent/archive boundary
    h.state.ended.max_recent = 2  # and the ended orders' too
    h.quote(D("29999"), D("30001"))
    return h


def _fresh(log: Log) -> EngineState:
    s = EngineState(partition_of=part)
    s.decisions.max_recent = 3
    s.ended.max_recent = 2
    for e in log.ref:
        s.apply(e)
    return s


def _apply_raw(s: EngineState, raw: tuple[Any, Any, Any]) -> None:
    k, v, hd = raw
    s.apply(decode(v, hd), (k, v, hd))


def full_replay(log: Log) -> EngineState:
    s = _fresh(log)
    for _t, _p, raw in log.own:
        _apply_raw(s, raw)
    return s


def from_slices(log: Log, slices: list[Slice]) -> tuple[EngineState, int]:
    """Reference topics, the slices, then the own records after their offsets — partition
    by partition, another interleaving than the full replay's. Returns the tail length."""
    s = _fresh(log)
    merge_slices(s, slices)
    start = {(t, sl.partition): sl.offsets[t] for sl in slices for t in OWN}
    seen: dict[tuple[str, int], int] = {}
    tail = 0
    for p in sorted(set(PART.values())):
        for t, q, raw in log.own:
            if q != p:
                continue
            i = seen.get((t, q), 0)
            seen[(t, q)] = i + 1
            if i >= start.get((t, q), 0):
                _apply_raw(s, raw)
                tail += 1
    return s, tail


def roundtrip(sl: Slice) -> Slice:
    blob, digest = encode_slice(sl)
    return decode_slice(b"".join(chunks(blob, 97)), digest)


_BUY = ("limit", "A1", Side.BUY, "0.1", 0, False)
_BUY2 = ("limit", "A2", Side.BUY, "0.1", 0, False)
_CASH = ("USDC", "9990000")
_HOLD = ("withdraw", "A1", 0, "request", "PASS", _CASH)
_BIG = ("limit", "A1", Side.BUY, "2.5", -5, False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ACTION, min_size=1, max_size=45))
# A release after the slice: only peaks of decisions after it count.
@example([_BUY, ("snap", 0), ("release", "A1")])
# Shorter limits after the slice, or longer: its rate windows need no change.
@example([("limits", 3), _BUY, ("wait", 2.0), _BUY, ("snap", 0), ("limits", 1)])
@example([_BUY, ("wait", 2.0), _BUY, ("snap", 0), ("limits", 3), _BUY])
# Slices taken at different times hold more recent decisions than the bound together.
@example([_BUY, _BUY, ("snap", 0), _BUY2, _BUY2, ("snap", 1)])
# A withdrawal requested before the slice, rejected and settled after it.
@example([_BUY, _HOLD, ("snap", 0), _BUY, ("withdraw", "A1", 0, "check", "REJECT", _CASH), _BUY])
@example([_HOLD, ("snap", 0), ("withdraw", "A1", 0, "settle", "PASS", _CASH), _BUY])
@example([_HOLD, ("withdraw", "A1", 0, "settle", "PASS", _CASH), ("snap", 0), _BUY])
# Rejected, orders rest on the freed money, then settled: the settlement cancels them.
@example([_HOLD, ("withdraw", "A1", 0, "check", "REJECT", _CASH), _BIG, ("snap", 0), _BIG,
          ("withdraw", "A1", 0, "settle", "PASS", _CASH), _BUY])  # fmt: skip
# ... the cancels in the slice: it carries the fact they were caused by (`unheld`, format 15).
@example([_HOLD, ("withdraw", "A1", 0, "check", "REJECT", _CASH), _BIG, _BIG,
          ("withdraw", "A1", 0, "settle", "PASS", _CASH), ("snap", 0), _BUY])  # fmt: skip
# A stop hit by a print its account's resting sell took in full (`OrderTriggered`), in the
# slice or in the tail; it sells at the next print, back above the stop.
@example([("deposit", "A2", "BTC"), ("limit", "A2", Side.BUY, "1", 0, True), ("trade", 0, "1"),
          ("quote", -100), ("limit", "A2", Side.SELL, "0.2", -50, False), ("trade", -40, "0.2"),
          ("snap", 1), ("trade", 10, "1"), ("snap", 0)])  # fmt: skip
def test_slices_plus_tail_fold_to_the_full_replay(actions: list[tuple[Any, ...]]) -> None:
    h = _harness()
    log = Log(h)
    for a in actions:
        log.play(a)
    full = full_replay(log)
    slices = [roundtrip(s) for s in log.slices.values()]
    for s in log.slices.values():
        assert roundtrip(s) == s  # serialisation is the identity
        assert encode_slice(s) == encode_slice(roundtrip(s))  # and deterministic
    # Never refused: rate windows keep a fixed horizon, so a longer rate window coming in
    # force after a slice was taken leaves it usable.
    merged, tail = from_slices(log, slices)
    assert canonical_state(merged) == canonical_state(full)
    assert tail <= len(log.own)
    # The same next input is decided identically by both.
    for st_ in (merged, full):
        h.state = st_
        outs = h.order(Side.BUY, D("0.1"), D("29990"), account="A1")
        h.n -= 1  # the same client order id for the second state
        h.tick(-0.01)
        st_.applied = 0
        if st_ is merged:
            first = [normalized(e) for e in outs]
        else:
            assert [normalized(e) for e in outs] == first


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ACTION, min_size=1, max_size=45), st.randoms(use_true_random=False))
@example([_BUY, ("limits", 3), _BUY2, ("release", "A1"), _BUY], None)
def test_slices_of_a_folded_log_fold_to_the_full_replay(
    actions: list[tuple[Any, ...]], rnd: Any
) -> None:
    """The snapshotter's slices (engine.snapshotter): of a state folded from the log — the
    reference topics, then each own topic partition's records up to any cut, in any
    interleaving, so a cut may split what one transaction wrote — merged and followed by
    the records after the cuts, fold to the full replay's state."""
    h = _harness()
    log = Log(h)
    for a in actions:
        if a[0] != "snap":
            log.play(a)
    queues: dict[tuple[str, int], list[tuple[Any, Any, Any]]] = {}
    for t, p, raw in log.own:
        queues.setdefault((t, p), []).append(raw)
    pick = rnd if rnd is not None else __import__("random").Random(0)
    cut = {k: pick.randint(0, len(v)) for k, v in sorted(queues.items())}
    folded = _fresh(log)
    at = dict.fromkeys(queues, 0)
    live = [k for k in sorted(queues) if cut[k] > 0]
    while live:
        k = pick.choice(live)
        _apply_raw(folded, queues[k][at[k]])
        at[k] += 1
        if at[k] == cut[k]:
            live.remove(k)
    slices = [
        roundtrip(take_slice(folded, p, {t: cut.get((t, p), 0) for t in OWN}))
        for p in sorted(set(PART.values()))
    ]
    merged, tail = from_slices(log, slices)
    assert tail == len(log.own) - sum(cut.values())
    assert canonical_state(merged) == canonical_state(full_replay(log))


def test_a_restarted_engine_keeps_the_withdrawal_holds() -> None:
    """A worker restarted from a slice (and the log after it) or from the log alone holds
    what the live one held for requested withdrawals, and refuses the order only that
    money would pay for, as the live one did; a rejection after the slice frees it in
    both."""
    h = _harness()
    log = Log(h)
    for a in [_BUY, ("snap", 0), _HOLD, ("snap", 0), _BUY, ("snap", 1)]:
        log.play(a)
    live_held = dict(h.state.account("A1").held)
    assert live_held == {"USDC": D("9990000")}
    for state in (from_slices(log, list(log.slices.values()))[0], full_replay(log)):
        assert state.account("A1").held == live_held
        assert canonical_state(state) == canonical_state(h.state)
    live = h.state
    for state in (copy.deepcopy(live), from_slices(log, list(log.slices.values()))[0]):
        h.state = state  # a buy of 30,000 USDC: only the held cash would pay for it
        refused = decision(h.order(Side.BUY, D(1), D(30000)))
        assert refused.reason_codes == ("INSUFFICIENT_BALANCE",)
        h.n -= 1
        h.tick(-0.01)
    h.state = live
    log.play(("withdraw", "A1", 0, "check", "REJECT", _CASH))
    for state in (from_slices(log, list(log.slices.values()))[0], full_replay(log)):
        assert not state.account("A1").held
        assert canonical_state(state) == canonical_state(h.state)


def test_a_restarted_engine_measures_drawdown_net_of_withdrawals() -> None:
    """Half the cash withdrawn after decisions recorded the peak: the live engine, one
    restarted from slices and the log after them, and one from the log alone all pass the
    next order with no drawdown, identically (DRAWDOWN v4; v3 braked it: 50% down). The
    settlement is read after the slice in one case, before it in the other."""
    for order in ("before", "after"):
        h = _harness()
        log = Log(h)
        out = ("USDC", "5000000")
        steps = [("withdraw", "A1", 0, s, "PASS", out) for s in ("request", "check", "release")]
        settle = ("withdraw", "A1", 0, "settle", "PASS", out)
        plan: list[tuple[Any, ...]] = [_BUY, ("snap", 0), *steps]
        plan += [settle, ("snap", 0), _BUY] if order == "before" else [("snap", 0), settle, _BUY]
        for a in plan:
            log.play(a)
        assert "A1" not in h.state.kill_switches, order
        live = h.state
        decided = []
        for state in _restarted(log, live):
            assert canonical_state(state) == canonical_state(live), order
            h.state = state
            outs = h.order(Side.BUY, D("0.1"), D("29990"), account="A1")
            h.n -= 1  # the same client order id for the next state
            h.tick(-0.01)
            d = decision(outs)
            assert d.outcome == "APPROVED", (order, d.reason_codes)
            decided.append([normalized(e) for e in outs])
        assert decided[0] == decided[1] == decided[2], order


def _restarted(log: Log, live: EngineState) -> tuple[EngineState, ...]:
    """The live state (a copy), one restarted from the slices and the log after them,
    and one from the log alone."""
    return (
        copy.deepcopy(live),
        from_slices(log, list(log.slices.values()))[0],
        full_replay(log),
    )


def test_a_restarted_engine_keeps_a_capital_gone_account_braked_until_a_release() -> None:
    """DRAWDOWN v8: a deposit that finds the capital gone (600 BTC bought on credit, BTC
    from 30,000 to 13,000: equity ~-218,000) marks the whole peak lost
    (`AccountState.wiped_at`, folded from its `UnitsChanged`): the live engine, one
    restarted from slices (taken before or after the deposit) and the log after them, and
    one from the log alone brake the next order alike; a release after the slice clears
    it in all three."""
    for order in ("before", "after"):
        h = _harness()
        log = Log(h)
        lim = limits(1).model_copy(update={"credit_limit": D("20000000")})
        log.add(h.admin(RiskLimitsChanged(scope="*", config_version=2, limits=lim,
                                          changed_by="admin")))  # fmt: skip
        for bid in ("29999", "12999"):
            before = len(h.inputs)
            h.quote(D(bid), D(bid) + 2, qty=D("1000"))
            log.ref += h.inputs[before : before + 1]
            if bid == "29999":
                log.add(h.order(Side.BUY, D("600"), D("30001"), account="A1"))
        plan: list[tuple[Any, ...]] = [("snap", 0), ("deposit", "A1", "USDC")]
        for a in plan if order == "before" else plan[::-1]:
            log.play(a)
        live = h.state
        assert live.account("A1").wiped_at is not None, order
        for state in _restarted(log, live):
            assert canonical_state(state) == canonical_state(live), order
            h.state = state
            outs = h.order(Side.BUY, D("0.1"), D("13001"), account="A1")
            h.n -= 1  # the same client order id for the next state
            h.tick(-0.01)
            assert decision(outs).reason_codes == ("DRAWDOWN_BRAKE",), order
        h.state = live
        log.play(("release", "A1"))
        assert live.account("A1").wiped_at is None
        for state in _restarted(log, live):
            assert canonical_state(state) == canonical_state(live), order


def test_a_restarted_engine_keeps_the_units_and_the_peak_per_unit() -> None:
    """DRAWDOWN v6: units are folded from the owner's `UnitsChanged`, never re-computed
    (a rebuild folds the deposits and settlements first, at none of the prices they were
    made at). A BTC holder down from its peak gets a deposit and settles a BTC
    withdrawal, the slice taken before or after them: the live engine, one restarted
    from slices and the log after them, and one from the log alone hold the same units,
    NAV and peak, and decide the next order identically."""
    for order in ("before", "after"):
        h = _harness()
        log = Log(h)
        btc = ("BTC", "0.5")
        flows: list[tuple[Any, ...]] = [
            ("deposit", "A1", "USDC"),
            *(("withdraw", "A1", 0, s, "PASS", btc) for s in ("request", "check", "settle")),
        ]
        plan: list[tuple[Any, ...]] = [("deposit", "A1", "BTC"), _BUY, ("quote", -20)]
        if order == "before":
            plan += [("snap", 0), *flows]
        else:
            plan += [*flows, ("snap", 0)]
        plan += [("quote", -15), ("trade", -16, "1")]
        for a in plan:
            log.play(a)
        live = h.state
        acc = live.account("A1")
        assert not acc.pending and acc.unitized >= {"withdrawal:w-A1-0"}, order
        decided = []
        for state in _restarted(log, live):
            assert canonical_state(state) == canonical_state(live), order
            got = state.account("A1")
            assert (got.units, got.unit_nav, got.peak_nav) == (
                acc.units,
                acc.unit_nav,
                acc.peak_nav,
            )
            h.state = state
            outs = h.order(Side.BUY, D("0.1"), D("29990"), account="A1")
            h.n -= 1  # the same client order id for the next state
            h.tick(-0.01)
            decided.append([normalized(e) for e in outs])
        assert decided[0] == decided[1] == decided[2], order
        assert "UnitsChanged" not in [t for t, _p in decided[0]], order


def test_a_slice_names_what_it_covers() -> None:
    h = _harness()
    log = Log(h)
    for a in [("limit", "A2", Side.BUY, "1", 0, True), ("trade", -1, "5"), ("snap", 1)]:
        log.play(a)
    sl = log.slices[1]
    assert sl.partition == 1 and sl.offsets == {t: log.count.get((t, 1), 0) for t in OWN}
    assert sl.offsets["risk.decisions"] >= 1 and sl.offsets["orders.lifecycle"] >= 3
    assert set(sl.body["accounts"]) == {"A2"}
    assert all(o["account"] == "A2" for o in sl.body["orders"])
    merged, tail = from_slices(log, [sl])
    assert tail == sum(1 for _t, p, _r in log.own if p != 1)  # nothing of partition 1
    assert canonical_state(merged) == canonical_state(full_replay(log))


def _one_slice() -> tuple[Log, Slice]:
    h = _harness()
    log = Log(h)
    for a in [("limit", "A1", Side.BUY, "1", 0, False), ("trade", 0, "1"), ("snap", 0)]:
        log.play(a)
    return log, log.slices[0]


def test_corrupt_truncated_or_unknown_slices_are_refused() -> None:
    _log, sl = _one_slice()
    blob, digest = encode_slice(sl)
    assert decode_slice(blob, digest) == sl
    with pytest.raises(SnapshotError, match="digest"):
        decode_slice(blob[:-5], digest)  # truncated
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0xFF
    with pytest.raises(SnapshotError, match="digest"):
        decode_slice(bytes(flipped), digest)  # corrupt
    with pytest.raises(SnapshotError, match="format"):
        decode_slice(blob, digest, format_version=FORMAT_VERSION + 1)
    import hashlib
    import json
    import zlib

    body = json.loads(zlib.decompress(blob))
    body["format"] = FORMAT_VERSION + 1
    bumped = zlib.compress(json.dumps(body).encode())
    with pytest.raises(SnapshotError, match="format"):
        decode_slice(bumped, hashlib.sha256(bumped).hexdigest())
    junk = b"not zlib"
    with pytest.raises(SnapshotError, match="unreadable"):
        decode_slice(junk, hashlib.sha256(junk).hexdigest())


def test_inconsistent_slices_are_refused() -> None:
    log, sl = _one_slice()
    with pytest.raises(SnapshotError, match="two slices"):
        merge_slices(_fresh(log), [sl, sl])
    wrong = Slice(1, sl.offsets, dict(sl.body, partition=1))
    with pytest.raises(SnapshotError, match="not on partition"):
        merge_slices(_fresh(log), [wrong])
    other = _fresh(log)
    other.decisions.max_recent = 4
    with pytest.raises(SnapshotError, match="idempotency"):
        merge_slices(other, [sl])


def test_a_longer_rate_window_after_the_slice_leaves_it_usable() -> None:
    h = _harness()
    log = Log(h)
    for a in [("limit", "A1", Side.BUY, "1", 0, False), ("wait", 2.0)]:
        log.play(a)
    log.play(("limit", "A1", Side.BUY, "1", 0, False))
    log.play(("snap", 0))
    log.play(("limits", 3))
    log.play(("limit", "A1", Side.BUY, "1", 0, False))
    merged, _tail = from_slices(log, [log.slices[0]])
    assert canonical_state(merged) == canonical_state(full_replay(log))


def test_a_slice_pruned_shorter_than_the_horizon_is_refused() -> None:
    """A slice written by an engine that pruned rate windows to the limits in force (1 s
    here; ORDER_RATE v2) lacks entries the fixed horizon keeps: a full replay instead."""
    log, sl = _one_slice()
    old = Slice(sl.partition, sl.offsets, dict(sl.body, rate_pruned_min_us=1_000_000))
    with pytest.raises(SnapshotError, match="rate windows"):
        merge_slices(_fresh(log), [old])


def test_kafka_murmur2_vectors() -> None:
    # Kafka's own UtilsTest.testMurmur2 values (Java signed ints).
    vectors = {
        "21": -973932308,
        "foobar": -790332482,
        "a-little-bit-long-string": -985981536,
        "a-little-bit-longer-string": -1486304829,
        "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        "abc": 479470107,
    }
    for s, v in vectors.items():
        assert signed32(murmur2(s.encode())) == v
    assert all(0 <= partition_for(f"acc-{i}", 6) < 6 for i in range(100))


def test_a_capture_is_not_changed_by_what_the_worker_does_next() -> None:
    """The worker captures on its loop and renders on the writer's thread later: what it
    processes in between must not leak into the slice."""
    h = _harness()
    log = Log(h)
    for a in [
        ("limit", "A1", Side.BUY, "1", -5, True),
        ("limit", "A1", Side.SELL, "0.5", 8, False),
        ("trade", -6, "0.4"),
    ]:
        log.play(a)
    offsets = {t: log.count.get((t, 0), 0) for t in OWN}
    expected = take_slice(h.state, 0, offsets)
    cap = capture(h.state, 0)
    later: list[tuple[Any, ...]] = [
        ("trade", -6, "5"),
        ("cancel", "A1", 2),
        ("market", "A1", Side.BUY),
        ("deposit", "A1", "USDC"),
        ("limits", 2),
        ("limit", "A3", Side.BUY, "2.5", 0, True),
    ]
    for step in later:
        log.play(step)
    assert take_slice(h.state, 0, offsets) != expected  # the state did move on
    assert render(cap, offsets) == expected


class _Msg:
    """Just enough of a confluent-kafka Message for the worker's reference handler."""

    def __init__(self, event: Any) -> None:
        self.k, self.v, self.h = encode(event)

    def value(self) -> bytes:
        return bytes(self.v)

    def headers(self) -> Any:
        return self.h

    def topic(self) -> str:
        return "risk.config"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 0


def test_a_longer_rate_window_leaves_a_running_workers_state_exact() -> None:
    """Rate windows keep a fixed horizon whatever the limits: after a longer window comes
    in force the live state is still what a full replay folds, so a hand-over may fold onto
    it (ORDER_RATE v2 had to rebuild in full)."""
    from deploy.settings import Settings
    from engine.worker import EngineWorker
    from schemas import new_event

    w = EngineWorker(Settings(kafka_port=1, topic_prefix="unit."), wid="u")
    try:
        w.exact = True
        for version, window in [(1, 1), (2, 30), (3, 2)]:
            change = RiskLimitsChanged(
                scope="*", config_version=version, limits=limits(window), changed_by="admin"
            )
            w._handle_reference(_Msg(new_event(change, producer="engine")), [])  # type: ignore[arg-type]
            assert w.exact, window
    finally:
        w.close()
