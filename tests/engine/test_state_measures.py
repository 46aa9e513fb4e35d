"""The engine state's measures the rules read, at their edges: credit headroom, NAV per
unit, the loss in full, marks and the rate allowance (`engine.state`).

From a mutation audit (session 21): each assertion here failed on a mutant of
`engine/state.py` that the pure engine tests (test_rules, test_risk_soundness,
test_valuation, test_withdrawals, test_venue_auth, test_state_fast) let pass.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from engine.state import EngineState
from schemas.events import DepositReceived, RiskLimits
from tests.engine.pure import Harness

D = Decimal
FEE = D("1.001")
CREDIT = D("1000")


def _account(**balances: str) -> tuple[EngineState, Harness]:
    """A1 (valuation currency USDC) with exactly `balances`, BTC/USDC quoted 29999/30001."""
    h = Harness(RiskLimits(credit_limit=CREDIT))
    h.quote(D("29999"), D("30001"), instrument="BTC/USDC")
    acc = h.state.account("A1")
    acc.balances = {asset: D(amount) for asset, amount in balances.items()}
    return h.state, h


def _headroom(state: EngineState, asset: str = "USDC") -> Decimal:
    return state.credit_headroom(state.account("A1"), asset, FEE, CREDIT)


def test_credit_is_used_up_by_what_other_assets_are_short() -> None:
    state, _ = _account(USDC="0", BTC="-0.01")  # 300 USDC short, at the mid 30000
    assert _headroom(state) == D("700")
    # Its own shortfall aside (the balance rule counts it): 1000 / 30000 BTC, rounded down.
    assert D("0.0333333333") < _headroom(state, "BTC") < D("0.0333333334")


def test_credit_used_up_lends_nothing_never_less() -> None:
    state, _ = _account(USDC="0", BTC="-0.05")  # 1500 short of 1000 of credit
    assert _headroom(state) == 0


def test_a_short_asset_without_a_mark_leaves_no_credit() -> None:
    state, _ = _account(USDC="0", SOL="-1")  # no SOL price: its shortfall is unknown
    assert _headroom(state) == 0


def test_an_unpriced_asset_with_nothing_short_does_not_stop_credit() -> None:
    state, _ = _account(USDC="0", SOL="0")  # nothing of it free, nothing short
    assert _headroom(state) == CREDIT


def test_flows_pending_are_never_a_loss_in_full() -> None:
    """Until its flows are turned into units the account is not measured (NO_MARK), even
    with no units left below zero (`EngineState.lost_in_full`)."""
    state, _ = _account(USDC="-5")
    acc = state.account("A1")
    acc.units = D("0")
    assert acc.peak_nav > 0
    assert state.lost_in_full("A1", D("-5"))
    acc.pending.add("d-late")
    assert not state.lost_in_full("A1", D("-5"))


def test_no_units_and_nothing_of_value_issues_no_units() -> None:
    """An account with balances but no units (all redeemed) worth exactly 0: nothing to
    turn into units, so no `UnitsChanged` (one of 0 units at every measurement else)."""
    state, h = _account(USDC="0")
    state.account("A1").units = D("0")
    assert state.units_due("A1")
    assert state.unitization("A1", h.now) is None


def test_a_deposit_onto_exactly_nothing_finds_the_capital_gone() -> None:
    """Equity exactly 0 before a deposit, units outstanding: no NAV to issue units at
    (E0 <= 0), so the units are kept and the flow is no performance (DRAWDOWN_BRAKE v8),
    never a division by 0."""
    state, h = _account(USDC="0")
    units = state.account("A1").units
    assert units > 0
    out = h.admin(DepositReceived(deposit_id="d-top", account="A1", asset="USDC", amount=D("100")))
    (changed,) = [e.payload for e in out if e.event_type == "UnitsChanged"]
    assert (changed.nav, changed.units, changed.peak_nav) == (None, units, None)


def _deposit(h: Harness, amount: str) -> Any:
    out = h.admin(
        DepositReceived(deposit_id=f"d{h.n}", account="A1", asset="USDC", amount=D(amount))
    )
    h.n += 1
    (changed,) = [e.payload for e in out if e.event_type == "UnitsChanged"]
    return changed


def test_units_issued_without_units_outstanding_are_rounded_up() -> None:
    """At the last flows' NAV (3), 10 buys 10 / 3 units rounded up: NAV per unit after
    the flow is never more than before."""
    state, h = _account(USDC="0")
    acc = state.account("A1")
    acc.units, acc.unit_nav = D("0"), D("3")
    changed = _deposit(h, "10")
    assert changed.units == D("3." + "3" * 58 + "4")
    assert changed.nav == 3


def test_a_flow_stamped_before_a_release_raises_no_peak_one_at_it_does() -> None:
    state, h = _account(USDC="0")
    acc = state.account("A1")
    acc.units, acc.unit_nav, acc.peak_nav = D("0"), D("2"), D("0")
    acc.peak_reset_at = h.now + timedelta(hours=1)
    assert _deposit(h, "10").peak_nav is None  # before the release: no new peak
    acc.units, acc.peak_nav = D("0"), D("0")
    acc.balances["USDC"] = D("0")
    acc.peak_reset_at = h.now + timedelta(seconds=0.01)  # the next event's time
    assert _deposit(h, "10").peak_nav == 2


def test_a_pending_flow_not_named_again_since_a_release_is_not_priced() -> None:
    """A flow pending whose amount the account no longer holds a record of (named before
    a release, not yet again) cannot be priced: no units, and no KeyError."""
    state, h = _account(USDC="100")
    acc = state.account("A1")
    acc.pending.add("d-before-release")
    assert "d-before-release" not in acc.flows
    assert state.unitization("A1", h.now) is None
