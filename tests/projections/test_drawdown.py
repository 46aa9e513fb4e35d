"""The drawdown projection: each account's drawdown state as the engine's brake measures
it (DRAWDOWN_BRAKE v6: units, NAV per unit, peak, 1 - NAV / peak), and the history of
its unit changes and peak moves. Until it existed no projection folded `UnitsChanged` or
`PeakEquityRaised` (`decisions` ignores both), so nobody could answer from the read side
why an account was braked, from what peak, at what units, or when its units changed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploy.settings import Settings
from engine import state as engine_state
from projections import core, query
from projections.bulkload import BulkBuild
from projections.checksum import checksum
from projections.core import PROJECTIONS
from projections.framework import Located, State
from projections.projector import Projector
from projections.rebuild import create_schema, rebuild
from projections.store import RawRecord, apply_records, decode_one, prepare
from schemas import EventPayload, encode, new_event
from schemas.drawdown import (
    DRAWDOWN_DIFFERENCE,
    EQUITY_QUANTUM,
    NAV_ROUNDING,
    VALUATION,
    drawdown,
    peak_in_money,
)
from schemas.events import DepositReceived
from schemas.events.risk import (
    DecisionOutcome,
    KillSwitchEngaged,
    KillSwitchReleased,
    PeakEquityRaised,
    RiskDecision,
    UnitsChanged,
)
from schemas.topics import Topic
from tests.engine.pure import Harness, decision
from tests.projections.folding import Tape, fold
from tests.projections.helpers import as_records, produce
from tests.projections.test_properties import _interleave, _split

D = Decimal
P = PROJECTIONS["drawdown"]
COLS = core.DRAWDOWN_COLUMNS
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _units(account: str, flows: tuple[str, ...], units: str, nav: str | None, equity: str,
           peak: str | None = None) -> UnitsChanged:  # fmt: skip
    return UnitsChanged(
        account=account, flows=flows, units=D(units), nav=None if nav is None else D(nav),
        equity=D(equity), peak_nav=None if peak is None else D(peak),
    )  # fmt: skip


def _decision(account: str, equity: str | None, peak: str | None, n: int = 0) -> RiskDecision:
    return RiskDecision(
        account=account, producer_id="p1", strategy_id="s", client_order_id=f"c{n}",
        intent_event_id=uuid.UUID(int=10**6 + n), intent_kind="ORDER",
        outcome=DecisionOutcome.APPROVED, risk_config_version=1,
        equity=None if equity is None else D(equity),
        peak_nav=None if peak is None else D(peak),
    )  # fmt: skip


def _row(state: State, account: str = "A1") -> dict[str, Any]:
    row = state.rows["drawdowns"][(account,)]
    assert row is not None
    return dict(zip(COLS, row, strict=True))


def _history(state: State) -> list[tuple[str, str, Any, Any, Any]]:
    """(event type, change, units, peak before, peak after) of each history row."""
    return [
        (r[2], r[3], r[5], r[9], r[10]) for r in state.inserts.get("drawdown_events", {}).values()
    ]


def test_a_deposit_during_a_drawdown_does_not_erase_it_hand_computed() -> None:
    """docs/engine.md's example, per unit: 100 in at NAV 1 (100 units, peak 1); equity
    falls to 92 (8% down); a deposit of 46 buys 50 units at NAV 0.92 (150 units, equity
    138): still 8% down, where v5 called 138 a new peak (0%); a fall to 135 is 10% (NAV
    0.9). A peak found at a print, and one the engine measures from after a release
    (lower), are history rows; a decision that moves nothing is not."""
    t = Tape()
    s, bad = fold("drawdown", [t.ev(_units("A1", ("deposit:d1",), "100", "1", "100", "1"))])
    assert not bad
    r = _row(s)
    assert (r["units"], r["nav"], r["peak_nav"], r["drawdown"]) == (100, 1, 1, 0)
    assert r["peak_equity"] == 100

    s, bad = fold("drawdown", [t.ev(_decision("A1", "92", "1"))], s)
    r = _row(s)
    assert (r["nav"], r["drawdown"], r["valued_by"]) == (D("0.92"), D("0.08"), "RiskDecision")

    s, bad = fold("drawdown", [t.ev(_units("A1", ("deposit:d2",), "150", "0.92", "138"))], s)
    r = _row(s)
    assert (r["units"], r["unit_nav"], r["equity"]) == (150, "0.92", 138)
    assert (r["nav"], r["peak_nav"], r["drawdown"]) == (D("0.92"), 1, D("0.08"))  # not 0
    assert r["peak_equity"] == 150  # the peak in money at today's units: 1 x 150

    s, bad = fold("drawdown", [t.ev(_decision("A1", "135", "1", 1))], s)
    assert (_row(s)["nav"], _row(s)["drawdown"]) == (D("0.9"), D("0.1"))

    s, bad = fold("drawdown", [t.ev(PeakEquityRaised(account="A1", instrument="BTC/USDC",
                                                     peak_equity=D(165), peak_nav=D("1.1")))],
                  s)  # fmt: skip
    r = _row(s)
    assert (r["nav"], r["peak_nav"], r["drawdown"], r["equity"]) == (D("1.1"), D("1.1"), 0, 165)

    cancel = t.ev(_decision("A1", None, None, 2))  # a cancel: not valued, changes nothing
    count = r["event_count"]
    s, bad = fold("drawdown", [cancel], s)
    assert not bad and _row(s)["event_count"] == count

    # A release resets the engine's peak (risk.config) to the highest recorded since:
    # none yet (0); its next decision measures from 0.99 at NAV 0.95: drawdown
    # (0.99 - 0.95) / 0.99, the quotient in 60 digits.
    release = KillSwitchReleased(scope="A1", released_by="admin", reason="reviewed")
    s, bad = fold("drawdown", [t.ev(release)], s)
    r = _row(s)
    assert (r["peak_nav"], r["drawdown"], r["recorded_peak"]) == (0, 0, D("1.1"))
    s, bad = fold("drawdown", [t.ev(_decision("A1", "142.5", "0.99", 3))], s)
    r = _row(s)
    assert r["drawdown"] == VALUATION.divide(D("0.04"), D("0.99"))
    assert len(r["drawdown"].as_tuple().digits) == 60
    assert r["peak_equity"] == (D("0.99") * 150).quantize(EQUITY_QUANTUM)
    assert _history(s) == [
        ("UnitsChanged", "UNITS", 100, None, 1),
        ("UnitsChanged", "UNITS", 150, 1, 1),
        ("PeakEquityRaised", "PEAK_RAISED", 150, 1, D("1.1")),
        ("RiskDecision", "PEAK_LOWERED", 150, D("1.1"), D("0.99")),
    ]
    assert not bad


def test_the_projections_contexts_are_the_engines() -> None:
    """One definition (`schemas.drawdown`): the projection and the engine call the same
    functions, in the same contexts."""
    peak, nav, units = Decimal("1.1"), Decimal("0.99"), Decimal(150)
    assert core.drawdown_of(nav, peak) == drawdown(peak, nav)
    assert core.peak_money(peak, units) == peak_in_money(peak, units)
    assert engine_state.VALUATION is VALUATION and engine_state.EQUITY_QUANTUM is EQUITY_QUANTUM
    assert VALUATION.prec == 60 and VALUATION.rounding == "ROUND_HALF_EVEN"
    assert DRAWDOWN_DIFFERENCE.prec == 28
    assert DRAWDOWN_DIFFERENCE.rounding == VALUATION.rounding
    assert EQUITY_QUANTUM == Decimal("1E-12")
    assert NAV_ROUNDING.prec == VALUATION.prec and NAV_ROUNDING.rounding == "ROUND_FLOOR"


def _measure(peak: Decimal, nav: Decimal) -> Decimal:
    """The projection's documented drawdown, the engine's: peak - NAV in 28 significant
    digits, its quotient by the peak in 60, half-even."""
    return VALUATION.divide(DRAWDOWN_DIFFERENCE.subtract(peak, nav), peak)


class _Recorder(Harness):
    """The engine's harness, keeping what it wrote to risk.decisions, in order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.written: list[Any] = []
        super().__init__(*args, **kwargs)

    def feed(self, payload: EventPayload, producer: str = "x") -> list[Any]:
        out = super().feed(payload, producer)
        self.written += out
        return out


def _folded(h: _Recorder, state: State, start: int) -> int:
    """Fold what the engine wrote to risk.decisions and risk.config since `start`; the
    next start."""
    items: list[Located] = []
    for i, e in enumerate(h.written[start:], start):
        if e.topic in (Topic.DECISIONS, Topic.RISK_CONFIG):
            _k, v, hd = encode(e)
            d = decode_one(RawRecord(str(e.topic), 0, i, v, hd))
            assert isinstance(d, Located), d
            items.append(d)
    assert not P.fold(state, items)
    return len(h.written)


def test_the_projection_measures_what_the_engine_measured() -> None:
    """The engine's own example (tests/engine/test_withdrawals.py): 10,000 USDC, 6,000 in
    BTC at 30,000; BTC to 26,000 (8% down); 1,000 USDC deposited: still 8%; BTC to
    24,000: the next buy is braked. Folded from what the engine wrote, the projection's
    units, peak and NAV are the engine's to the last of their 60 digits, its drawdown
    the rule's measure, and at the brake its drawdown, peak and equity are the
    `KillSwitchEngaged`'s."""
    from schemas.events import RiskLimits, Side

    limits = RiskLimits(
        max_order_notional=D("1e9"), max_position=D("1e6"), max_open_orders=1000,
        max_orders_per_window=1000, rate_window_seconds=1, price_collar_pct=D("0.5"),
    )  # fmt: skip
    h = _Recorder(limits, cash=D("10000"))
    h.quote(D("29999"), D("30001"))
    state = State()
    at = _folded(h, state, 0)
    assert _row(state)["units"] == 10000 and _row(state)["peak_nav"] == 1  # the first deposit
    assert decision(h.order(Side.BUY, D("0.2"), D("30001"))).outcome == "APPROVED"
    h.quote(D("25999"), D("26001"))
    h.n += 1
    h.admin(DepositReceived(deposit_id=f"dd{h.n}", account="A1", asset="USDC", amount=D(1000)))
    at = _folded(h, state, at)
    acc = h.state.account("A1")
    nav = h.state.nav("A1", h.state.equity("A1"))
    assert nav is not None
    r = _row(state)
    assert (r["units"], r["nav"], r["peak_nav"]) == (acc.units, nav, acc.peak_nav)
    assert r["drawdown"] == _measure(acc.peak_nav, nav)
    assert D("0.079") < r["drawdown"] < D("0.081")  # a deposit during the drawdown: still 8%
    assert _history(state)[-1][:2] == ("UnitsChanged", "UNITS")

    h.quote(D("23999"), D("24001"))
    braked = decision(h.order(Side.BUY, D("0.001"), D("24000")))
    assert braked.reason_codes == ("DRAWDOWN_BRAKE",)
    (brake,) = [e.payload for e in h.written if isinstance(e.payload, KillSwitchEngaged)]
    _folded(h, state, at)
    r = _row(state)
    nav = h.state.nav("A1", brake.equity)
    assert nav is not None and r["nav"] == nav and r["peak_nav"] == acc.peak_nav
    assert r["drawdown"] == _measure(acc.peak_nav, nav) and D("0.116") < r["drawdown"] < D("0.118")
    assert r["drawdown"] == brake.drawdown  # to the digit (fold version 1: to 27 digits)
    assert r["peak_equity"] == brake.peak_equity and r["equity"] == brake.equity


def _recorder(monkeypatch: pytest.MonkeyPatch) -> _Recorder:
    """tests/engine/test_withdrawals.py's harness, keeping what the engine wrote, the
    units a settlement redeemed (`processor.control`) included."""
    from tests.engine import test_withdrawals as tw

    h = _Recorder(tw._limits(), cash=D("10000"))
    h.quote(D("29999"), D("30001"))
    settle = tw._transfer

    def transfer(harness: Harness, payload: EventPayload) -> None:
        before = len(harness.inputs)
        settle(harness, payload)
        assert isinstance(harness, _Recorder)
        harness.written += harness.inputs[before + 1 :]  # what it answered: UnitsChanged

    monkeypatch.setattr(tw, "_transfer", transfer)
    return h


def _brake(out: list[Any]) -> KillSwitchEngaged:
    (brake,) = [e.payload for e in out if isinstance(e.payload, KillSwitchEngaged)]
    return brake


def _release(h: _Recorder, state: State, at: int) -> int:
    """Release A1's kill switch and fold it: the projection's peak is the engine's."""
    h.admin(KillSwitchReleased(scope="A1", released_by="admin", reason="recapitalized"))
    at = _folded(h, state, at)
    r = _row(state)
    assert r["peak_nav"] == h.state.account("A1").peak_nav
    assert r["lost_in_full"] is False and h.state.lost_in_full("A1", r["equity"]) is False
    return at


def test_a_withdrawal_of_more_than_the_account_was_worth_shows_the_whole_peak_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DRAWDOWN_BRAKE v7 (tests/engine/test_withdrawals.py): a settlement of 8,000 from an
    account worth ~5,991 redeems every unit and leaves its equity at ~-2,009; the engine
    counts its whole peak lost and its brake says drawdown 1. Fold version 2 showed no
    units and no drawdown (NULL), which did not explain the brake; now the row is lost in
    full, drawdown 1, and at the brake its drawdown, peak and equity are the
    `KillSwitchEngaged`'s. A release resets the peak as the engine does."""
    from schemas.events import Side
    from tests.engine import test_withdrawals as tw

    h = _recorder(monkeypatch)
    tw._underwater(h)
    state = State()
    at = _folded(h, state, 0)
    r = _row(state)
    assert (r["units"], r["peak_nav"], r["lost_in_full"], r["drawdown"]) == (0, 1, True, 1)
    assert r["equity"] < 0 and r["nav"] is None
    unit_rows = [
        row for row in state.inserts["drawdown_events"].values() if row[2] == "UnitsChanged"
    ]
    assert (unit_rows[-1][5], unit_rows[-1][12], unit_rows[-1][14]) == (0, 1, True)

    out = h.order(Side.BUY, D("0.1"), D("0.2"), instrument="ETH/BTC")
    assert decision(out).reason_codes == ("DRAWDOWN_BRAKE",)
    brake = _brake(out)
    at = _folded(h, state, at)
    r = _row(state)
    assert brake.drawdown == 1 and r["drawdown"] == brake.drawdown
    assert (r["peak_equity"], r["equity"]) == (brake.peak_equity, brake.equity)
    assert r["brake_result"] == "DRAWDOWN_BRAKE" and "below zero with no units" in r["brake_detail"]
    _release(h, state, at)


def test_a_deposit_into_an_account_whose_capital_was_gone_shows_the_whole_peak_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DRAWDOWN_BRAKE v8: a margin call's deposit into an account 108% down finds its
    capital gone (`UnitsChanged.nav` null, units kept): the whole peak is lost until a
    release. Fold version 2 measured E1 / units, NAV per unit ~1.92 over a peak of 1:
    drawdown 0 beside a brake of 1. Now lost in full (drawdown 1, the brake's, to the
    digit, with its peak and equity) until the release, after which the peak and the
    drawdown are the engine's again."""
    from schemas.events import Side
    from tests.engine import test_withdrawals as tw

    h = _recorder(monkeypatch)
    tw._wiped(h)
    state = State()
    at = _folded(h, state, 0)
    r = _row(state)
    assert (r["lost_in_full"], r["drawdown"], r["peak_nav"]) == (True, 1, 1)
    assert r["nav"] > 1 and r["wiped_at"] is not None  # v6's figure: a new "peak"

    out = h.order(Side.BUY, D("0.01"), D("18001"))
    assert decision(out).reason_codes == ("DRAWDOWN_BRAKE",)
    brake = _brake(out)
    at = _folded(h, state, at)
    r = _row(state)
    assert r["drawdown"] == brake.drawdown == 1
    assert (r["peak_equity"], r["equity"]) == (brake.peak_equity, brake.equity)
    assert r["brake_result"] == "DRAWDOWN_BRAKE" and "capital was gone" in r["brake_detail"]

    at = _release(h, state, at)
    again = decision(h.order(Side.BUY, D("0.01"), D("18001")))
    assert again.outcome == "APPROVED"
    _folded(h, state, at)
    r = _row(state)
    acc = h.state.account("A1")
    nav = h.state.nav("A1", again.equity)  # as the decision valued it
    assert nav is not None and (r["peak_nav"], r["nav"]) == (acc.peak_nav, nav)
    assert r["drawdown"] == _measure(acc.peak_nav, nav) and not r["lost_in_full"]
    assert r["brake_result"] == "PASSED"


def test_flows_the_engine_could_not_value_show_as_its_no_mark(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A deposit of ETH before any ETH price cannot be valued, nor turned into units (it
    stays pending, a fact of accounts/transfers this projection does not read): the
    engine answers NO_MARK. The decision's DRAWDOWN_BRAKE result says so in the engine's
    words: `brake_result` NO_MARK, its detail, and the decision's id (fold version 3 had
    no such column, only a NULL drawdown)."""
    from schemas.events import Side

    h = _recorder(monkeypatch)
    h.admin_deposit("ETH", D("1"))
    out = h.order(Side.BUY, D("0.01"), D("30001"))
    assert "NO_MARK" in decision(out).reason_codes
    state = State()
    _folded(h, state, 0)
    r = _row(state)
    assert r["brake_result"] == "NO_MARK" and "cannot value the account" in r["brake_detail"]
    assert (r["equity"], r["drawdown"]) == (None, None)
    (made,) = [e for e in out if isinstance(e.payload, RiskDecision)]
    assert r["brake_event_id"] == str(made.event_id) and r["valued_event_id"] == r["brake_event_id"]


# ------------------------------------------------------------- any batch split == a rebuild

ACCOUNTS = ("ACC001", "ACC002", "ACC003")
AMOUNT = st.integers(0, 10**6).map(lambda c: D(c) / 1000)
SIGNED = st.integers(-(10**5), 10**6).map(lambda c: D(c) / 1000)
STEP = st.one_of(
    st.tuples(
        st.just("units"),
        st.sampled_from(ACCOUNTS),
        AMOUNT,  # 0 with equity below zero: none left (v7)
        st.one_of(st.none(), AMOUNT),  # none with units: the capital was gone (v8)
        SIGNED,
        st.one_of(st.none(), AMOUNT),
    ),
    st.tuples(st.just("peak"), st.sampled_from(ACCOUNTS), AMOUNT, AMOUNT),
    st.tuples(
        st.just("decision"),
        st.sampled_from(ACCOUNTS),
        st.one_of(st.none(), AMOUNT),
        st.one_of(st.none(), AMOUNT),
    ),
    # On risk.config: an account's release resets its peak; a global one resets none.
    st.tuples(st.just("release"), st.sampled_from((*ACCOUNTS, "*"))),
)


def _events(steps: list[tuple[Any, ...]], times: list[int]) -> list[Any]:
    out = []
    for n, s in enumerate(steps):
        kind, account = s[0], s[1]
        payload: EventPayload
        if kind == "units":
            payload = UnitsChanged(account=account, flows=(f"deposit:d{n}",), units=s[2],
                                   nav=s[3], equity=s[4], peak_nav=s[5])  # fmt: skip
        elif kind == "release":
            payload = KillSwitchReleased(scope=account, released_by="admin", reason="r")
        elif kind == "peak":
            payload = PeakEquityRaised(account=account, instrument="BTC/USDC", peak_equity=s[2],
                                       peak_nav=s[3])  # fmt: skip
        else:
            payload = _decision(account, None if s[2] is None else str(s[2]),
                                None if s[3] is None else str(s[3]), n)  # fmt: skip
        # Event time need not follow the log (intents arrive out of order).
        at = T0 + timedelta(milliseconds=times[n % len(times)] if times else n)
        out.append(new_event(payload, producer="engine", occurred_at=at,
                             event_id=uuid.UUID(int=n + 1)))  # fmt: skip
    return out


@pytest.mark.integration
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(STEP, min_size=1, max_size=40),
    times=st.lists(st.integers(0, 50), max_size=10),
    cuts=st.lists(st.integers(0, 1000), max_size=8),
    picks=st.lists(st.integers(0, 1000), max_size=20),
    dup_from=st.integers(0, 1000),
    dup_len=st.integers(0, 15),
)
def test_any_batch_split_and_duplicates_equal_a_rebuild(
    env: Settings,
    steps: list[tuple[Any, ...]],
    times: list[int],
    cuts: list[int],
    picks: list[int],
    dup_from: int,
    dup_len: int,
) -> None:
    """Live batches cut anywhere, partitions and the two topics interleaved (a release
    read before or after the decisions around it) and a re-delivered slice give the rows
    of one rebuild batch and of the bulk rebuild: byte-identical checksums."""
    records = as_records(env, _events(steps, times))
    last = max(r.offset for r in records) + 1
    start = dup_from % (len(records) + 1)
    again = [
        RawRecord(r.topic, r.partition, r.offset + last, r.value, r.headers)
        for r in records[start : start + dup_len]
    ]
    stream = _interleave(records, picks) + again
    with psycopg.connect(env.dsn) as conn:
        for schema in ("d_rebuild", "d_live", "d_bulk"):
            create_schema(conn, P, schema)
        with conn.transaction():
            res = apply_records(conn, P, "d_rebuild", records)
        assert res.quarantined == 0
        reference = checksum(conn, P, "d_rebuild")
        valued = {s[1] for s in steps if s[0] in ("units", "peak")}
        assert reference[1]["drawdowns"] == len(
            valued | {s[1] for s in steps if s[0] == "decision" and s[3] is not None}
        )
        assert reference[1]["releases"] == len({s[1] for s in steps if s[0] == "release"} - {"*"})
        for batch in _split(stream, cuts):
            with conn.transaction():
                apply_records(conn, P, "d_live", batch)
        assert checksum(conn, P, "d_live") == reference
        topics = [frozenset({env.topic(Topic.DECISIONS), env.topic(Topic.RISK_CONFIG)})]
        with BulkBuild(env.dsn, [(P, "d_bulk")]) as build:
            for batch in _split(stream, cuts):
                build.apply(prepare(batch, [P], None, topics))
            build.finish([])
        assert checksum(conn, P, "d_bulk") == reference


# ------------------------------------------------------------- broker, rebuild and query


@pytest.mark.integration
def test_live_equals_rebuild_and_the_analyst_queries_explain_a_brake(env: Settings) -> None:
    """Through the real broker: the live projector's rows are the rebuild's, and the
    read-only `drawdown` / `drawdown_history` queries show the account's drawdown, its
    units and peak moves, and the brake (from `risk_config`) with its figures."""

    def at(seconds: int) -> datetime:
        return T0 + timedelta(seconds=seconds)

    def ev(payload: EventPayload, seconds: int, n: int) -> Any:
        return new_event(payload, producer="engine", occurred_at=at(seconds),
                         event_id=uuid.UUID(int=n))  # fmt: skip

    events = [
        ev(_units("ACC001", ("deposit:d1",), "100", "1", "100", "1"), 1, 1),
        ev(_decision("ACC001", "92", "1", 1), 2, 2),
        ev(_units("ACC001", ("deposit:d2",), "150", "0.92", "138"), 3, 3),
        ev(_units("ACC002", ("deposit:d3",), "50", "1", "50", "1"), 3, 4),
        ev(KillSwitchEngaged(scope="ACC001", engaged_by="drawdown-brake", reason="brake",
                             drawdown=D("0.1"), peak_equity=D(150), equity=D(135)), 4, 5),
        ev(_decision("ACC001", "135", "1", 2), 4, 6),
    ]  # fmt: skip
    produce(env, events)
    for name in ("drawdown", "risk_config"):
        with Projector(env, PROJECTIONS[name]) as proj:
            proj.catch_up()
    with psycopg.connect(env.dsn) as conn:
        live = checksum(conn, P)
    assert live[1] == {"drawdown_events": 3, "drawdowns": 2, "releases": 0}
    rebuilt = rebuild(env, P)
    assert (rebuilt.checksum, rebuilt.counts) == live

    now = query.frame("drawdown", env, account="ACC001")
    assert now.height == 1
    r = now.row(0, named=True)
    assert (r["drawdown"], r["nav"], r["peak_nav"], r["units"]) == (D("0.1"), D("0.9"), 1, 150)
    assert (r["kill_switch"], r["kill_switch_by"]) == (True, "drawdown-brake")
    assert (r["lost_in_full"], r["peak_reset_at"]) == (False, None)
    assert query.frame("drawdown", env).height == 2

    hist = query.frame("drawdown_history", env, account="ACC001")
    assert hist["change"].to_list() == ["UNITS", "UNITS", "KILL_SWITCH_ENGAGED"]
    brake = hist.row(2, named=True)
    assert (brake["drawdown"], brake["peak_equity"], brake["equity"]) == (D("0.1"), 150, 135)
    assert brake["actor"] == "drawdown-brake"
    assert hist.row(1, named=True)["flows"] == '["deposit:d2"]'

    # The release resets the peak at once (fold version 2 showed it at the next
    # decision): none was recorded since, so 0, and the last valuation is no drawdown.
    produce(env, [ev(KillSwitchReleased(scope="ACC001", released_by="admin", reason="ok"), 5, 7)])
    with Projector(env, P) as proj:
        proj.catch_up()
    r = query.frame("drawdown", env, account="ACC001").row(0, named=True)
    assert (r["drawdown"], r["peak_nav"], r["peak_reset_at"]) == (0, 0, at(5))
    with psycopg.connect(env.dsn) as conn:
        live = checksum(conn, P)
    assert live[1] == {"drawdown_events": 3, "drawdowns": 2, "releases": 1}
    rebuilt = rebuild(env, P)
    assert (rebuilt.checksum, rebuilt.counts) == live
