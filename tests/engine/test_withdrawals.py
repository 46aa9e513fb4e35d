"""Withdrawals in the engine's view: a requested withdrawal holds its amount at once, a
rejected one frees it, a settled one is debited, by the balances book's rules.

The transfer service's `TransferRequested` / `TransferChecked` / `TransferReleased` /
`TransferSettled` on `transfers.events` were passed by the engine's intake and ignored by
its fold until session 18, while the balances book debited a settled withdrawal: money
requested out, or already gone, stayed free to trade (the BALANCE rule passed an order
only that money could pay for), and the engine's balance and the books' disagreed.
Broker-free: the worker's path for a control fact (`processor.control`) and the book's
pure fold (`tests.projections.folding`)."""

from __future__ import annotations

import copy
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, localcontext
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.processor import catch_up, control, redo_known
from engine.snapshot import canonical_state
from engine.state import (
    NOT_HOLDING,
    STEPS_KEPT,
    TRANSFER_RANK,
    TRANSFER_STEP,
    VALUATION,
    EngineState,
)
from projections import core
from projections.framework import Located
from projections.store import RawRecord, decode_one
from schemas import EventPayload, encode, new_event
from schemas.drawdown import DRAWDOWN_DIFFERENCE
from schemas.events import (
    DepositReceived,
    Fill,
    KillSwitchEngaged,
    KillSwitchReleased,
    RiskLimits,
    RiskLimitsChanged,
    Side,
    TransferSettled,
)
from schemas.events.orders import Liquidity
from schemas.events.transfers import TransferCheckOutcome
from schemas.registry import COMPONENT_WRITTEN, ENGINE_PRODUCER
from tests.engine.pure import Harness, decision, transfer_fact, types
from tests.projections.folding import fold

D = Decimal
AT = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
FEE = 1 + D("0.001")


def _limits() -> RiskLimits:
    return RiskLimits(
        max_order_notional=D("1e9"),
        max_position=D("1e6"),
        max_open_orders=1000,
        max_orders_per_window=1000,
        rate_window_seconds=1,
        price_collar_pct=D("0.5"),
    )


def _transfer(h: Harness, payload: EventPayload) -> None:
    """A transfer service's fact, read from transfers.events as a worker reads it."""
    event = new_event(payload, producer="transfers", occurred_at=h.tick())
    out = control(h.state, event, h.ctx)
    # A fact that raised a hold gets its pass's record, cancelling or not; a settlement
    # redeems units (DRAWDOWN_BRAKE v6); nothing else answers these here.
    checked = [e for e in out if e.event_type == "RestingOrdersChecked"]
    assert len(checked) == (h.state.hold_causes.get(payload.account) is event)  # type: ignore[attr-defined]
    assert all(e.payload.fact_event_id == event.event_id for e in checked)
    assert [e.event_type for e in out if e.event_type != "RestingOrdersChecked"] == (
        ["UnitsChanged"] if isinstance(payload, TransferSettled) and len(out) > len(checked) else []
    )
    h.inputs.append(event)
    h.inputs += out


def _buy(h: Harness, qty: str, limit: str = "30000") -> Any:
    return decision(h.order(Side.BUY, D(qty), D(limit)))


def _harness() -> Harness:
    h = Harness(_limits(), cash=D("10000"))
    h.quote(D("29999"), D("30001"))
    return h


def _requests_lost(h: Harness, *requests: tuple[str, str]) -> tuple[EngineState, list[Any]]:
    """Each (transfer id, amount) requested live, and a copy of the state from before
    that folds them all without their outputs (the batch's transaction lost): what
    `catch_up` starts from, and what live wrote."""
    lost = copy.deepcopy(h.state)
    live: list[Any] = []
    for tid, amount in requests:
        event = new_event(transfer_fact(tid, "request", amount=amount), producer="transfers",
                          occurred_at=h.tick())  # fmt: skip
        live += control(h.state, event, h.ctx)
        lost.apply(event)
    return lost, live


def test_a_requested_withdrawal_is_not_free_to_trade_until_it_is_rejected() -> None:
    h = _harness()
    first = _buy(h, "0.2")  # 6,000 USDC of 10,000: rests at 30,000
    assert first.outcome == "APPROVED"
    h.cancel(first.client_order_id)
    _transfer(h, transfer_fact("w1", "request", amount="5000"))
    refused = _buy(h, "0.2")  # only the 5,000 requested out would pay for it
    assert refused.outcome == "REJECTED" and refused.reason_codes == ("INSUFFICIENT_BALANCE",)
    (balance,) = [r for r in refused.rule_results if r.rule_id == "BALANCE"]
    assert balance.rule_version == 5 and "free 5000" in balance.detail
    smaller = _buy(h, "0.15")  # 4,500 + fee: within what is left
    assert smaller.outcome == "APPROVED"
    h.cancel(smaller.client_order_id)
    _transfer(h, transfer_fact("w1", "check", outcome="REJECT"))
    assert h.state.account("A1").held == {}
    assert _buy(h, "0.2").outcome == "APPROVED"  # freed again


def test_a_settled_withdrawal_is_debited_once_and_a_late_step_changes_nothing() -> None:
    h = _harness()
    acc = h.state.account("A1")
    for step in ("request", "check", "release"):
        _transfer(h, transfer_fact("w1", step, amount="4000"))
        assert acc.held == {"USDC": D(4000)} and acc.balances["USDC"] == D(10000), step
    _transfer(h, transfer_fact("w1", "settle"))
    assert acc.held == {} and acc.balances["USDC"] == D(6000)
    for late in ("settle", "check", "release", "request"):  # a second settlement, ...
        _transfer(h, transfer_fact("w1", late, amount="1"))
    assert acc.held == {} and acc.balances["USDC"] == D(6000)
    assert acc.withdrawals["w1"].status == "SETTLED"
    assert _buy(h, "0.2").reason_codes == ("INSUFFICIENT_BALANCE",)  # 6,000 + fee > 6,000


def test_a_withdrawal_of_more_than_is_free_refuses_whatever_it_would_pay() -> None:
    """The engine does not decide withdrawals: a request beyond the free balance still
    holds its whole amount, the free balance goes below zero, and every order paid in
    that asset is refused (without credit), a sell of it too. (With orders resting, the
    hold cancels them first: `test_a_hold_cancels_the_newest_resting_orders_...`.)"""
    h = _harness()
    _transfer(h, transfer_fact("w1", "request", amount="12000"))
    acc = h.state.account("A1")
    assert h.state.free(acc, "USDC", FEE) < 0
    assert _buy(h, "0.00000001").reason_codes == ("INSUFFICIENT_BALANCE",)
    _transfer(h, transfer_fact("w2", "request", asset="BTC", amount="1"))
    sold = decision(h.order(Side.SELL, D("0.00000001"), D("30000")))
    assert "INSUFFICIENT_BALANCE" in sold.reason_codes


def test_steps_of_another_accounts_or_an_unknown_withdrawal_change_nothing() -> None:
    h = Harness(_limits(), cash=D("10000"), accounts=("A1", "A2"))
    _transfer(h, transfer_fact("w1", "request", "A1", amount="100"))
    for step in ("check", "release", "settle"):
        _transfer(h, transfer_fact("w1", step, "A2", outcome="REJECT"))
        _transfer(h, transfer_fact("w9", step, "A1"))
    a1, a2 = h.state.account("A1"), h.state.account("A2")
    assert a1.held == {"USDC": D(100)} and a1.balances["USDC"] == D(10000)
    assert a2.held == {} and a2.balances["USDC"] == D(10000) and not a2.withdrawals


def test_an_id_reused_by_another_account_is_held_for_both() -> None:
    """Withdrawals are per account in the engine (a worker's view of an account depends on
    that account's events only), and in the books since balances fold version 3 (keyed by
    id alone, they quarantined the second account's request): both are held."""
    h = Harness(_limits(), cash=D("10000"), accounts=("A1", "A2"))
    _transfer(h, transfer_fact("w1", "request", "A1", amount="100"))
    _transfer(h, transfer_fact("w1", "request", "A2", amount="300"))
    assert h.state.account("A1").held == {"USDC": D(100)}
    assert h.state.account("A2").held == {"USDC": D(300)}


def test_the_status_rules_are_the_books() -> None:
    assert TRANSFER_STEP == core._TRANSFER_STEP
    assert TRANSFER_RANK == core._TRANSFER_RANK
    assert set(core._TRANSFER_STATUS.values()) <= set(TRANSFER_RANK)
    assert NOT_HOLDING == {"CHECKED_REJECT", "SETTLED"}


# ---- the engine's balance is the book's -------------------------------------------------

OWNER = {"t1": "A1", "t2": "A1", "t3": "A2"}
"""The account that requests each id, unless the step names the other (then an id two
accounts request: each one's, in the engine and the books alike)."""
STEP = st.one_of(
    st.tuples(
        st.just("transfer"),
        st.sampled_from(sorted(OWNER)),
        st.sampled_from(["request", "check", "release", "settle"]),
        st.sampled_from([o.value for o in TransferCheckOutcome]),
        st.sampled_from(["own", "own", "own", "other"]),  # the account a later step names
        st.sampled_from(["USDC", "BTC"]),
        st.sampled_from(["0.5", "1000", "250000.12345678"]),
    ),
    st.tuples(st.just("deposit"), st.sampled_from(["A1", "A2"]), st.sampled_from(["USDC", "BTC"])),
    st.tuples(st.just("fill"), st.sampled_from(["A1", "A2"]), st.booleans()),
)


def _payload(a: tuple[Any, ...], n: int) -> EventPayload:
    if a[0] == "deposit":
        return DepositReceived(deposit_id=f"d{n}", account=a[1], asset=a[2], amount=D("700.5"))
    if a[0] == "fill":
        return Fill(
            fill_id=f"f{n}", order_id=f"o{n}", account=a[1], instrument="BTC/USDC",
            side=Side.BUY if a[2] else Side.SELL, quantity=D("0.25"), price=D("30000.5"),
            fee=D("7.5"), fee_asset="USDC", liquidity=Liquidity.TAKER, venue="paper",
            venue_trade_id=f"t{n}", uti=f"U{n}", traded_at=AT, leaves_quantity=D(0),
        )  # fmt: skip
    _, tid, step, outcome, named, asset, amount = a
    account = OWNER[tid]
    if named == "other":
        account = "A2" if account == "A1" else "A1"
    return transfer_fact(tid, step, account, asset=asset, amount=amount, outcome=outcome)


def _t(tid: str, step: str, outcome: str = "PASS", named: str = "own") -> tuple[Any, ...]:
    return ("transfer", tid, step, outcome, named, "USDC", "1000")


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=40))
# Late steps after the settlement, a second settlement, a release after a rejection.
@example([_t("t1", "request"), _t("t1", "settle"), _t("t1", "check"), _t("t1", "settle")])
@example([_t("t1", "request"), _t("t1", "check", "REJECT"), _t("t1", "release")])
@example([_t("t3", "request"), _t("t3", "settle", named="other"), _t("t3", "check", "REJECT")])
def test_the_engines_balances_and_holds_are_the_books(actions: list[tuple[Any, ...]]) -> None:
    """The same events folded by the engine and by the balances book: every balance
    agrees, what the engine holds is what the book's transfers not rejected or settled
    amount to, and the free balance the BALANCE rule sees is the book's balance less that."""
    state = EngineState()
    items = []
    for n, a in enumerate(actions, 1):  # as the engine's: its deposits and fills must be
        payload = _payload(a, n)  # the travel rule's checks written by it
        e = new_event(
            payload, producer=COMPONENT_WRITTEN.get(payload.EVENT_TYPE, ENGINE_PRODUCER),
            occurred_at=AT + timedelta(seconds=n),
            event_id=uuid.UUID(int=n),
        )  # fmt: skip
        state.apply(e)
        _k, v, h = encode(e)
        item = decode_one(RawRecord(str(e.topic), 0, n, v, h))
        assert isinstance(item, Located), item
        items.append(item)
    book, _quarantined = fold("balances", items)
    balances = {k: D(row[2]) for k, row in book.dirty.get("balances", {}).items()}
    held: dict[tuple[str, str], Decimal] = {}
    for row in book.dirty.get("transfers", {}).values():
        if row[4] not in ("CHECKED_REJECT", "SETTLED"):
            held[(row[1], row[2])] = held.get((row[1], row[2]), D(0)) + D(row[3])
    for name in ("A1", "A2"):
        acc = state.account(name)
        for asset in ("USDC", "BTC"):
            key = (name, asset)
            assert acc.balances.get(asset, D(0)) == balances.get(key, D(0)), key
            assert acc.held.get(asset, D(0)) == held.get(key, D(0)), key
            assert state.free(acc, asset, FEE) == balances.get(key, D(0)) - held.get(key, D(0))


# ---- a withdrawal is not a drawdown (DRAWDOWN v4; per unit since v6) --------------------


def _withdraw(h: Harness, tid: str, amount: str, asset: str = "USDC") -> None:
    for step in ("request", "check", "release", "settle"):
        _transfer(h, transfer_fact(tid, step, asset=asset, amount=amount))


def _drawdown(d: Any) -> Any:
    (r,) = [r for r in d.rule_results if r.rule_id == "DRAWDOWN_BRAKE"]
    return r


def test_a_withdrawal_does_not_engage_the_drawdown_brake() -> None:
    """Deposit 10,000, trade, withdraw 2,000: v3 kept the peak at 10,000, so the next
    order was DRAWDOWN_BRAKE (20% down) and the kill switch engaged, and at the next print
    the venue's own brake cancelled what rested. Money taken out is not a trading loss."""
    h = _harness()
    first = _buy(h, "0.01")  # the decision records the peak: 10,000
    assert first.outcome == "APPROVED" and first.peak_equity == D(10000)
    h.cancel(first.client_order_id)
    _withdraw(h, "w1", "2000")
    assert h.state.account("A1").balances["USDC"] == D(8000)
    after = _buy(h, "0.01")
    assert after.outcome == "APPROVED", after.reason_codes
    assert _drawdown(after).rule_version >= 4 and _drawdown(after).detail == "drawdown 0.0000"
    out = h.trade(D("30000"), D("0.001"))  # the venue values the account at the print
    assert "KillSwitchEngaged" not in types(out) and "A1" not in h.state.kill_switches
    assert any(e.event_type == "Fill" for e in out)


def test_a_loss_after_a_withdrawal_counts_against_what_is_left() -> None:
    """The peak less what was withdrawn: 10,000 - 2,000 = 8,000; a loss of ~853 is 10.7%
    of that (the brake's 10% passed), though only 8.5% of the 10,000 before."""
    h = _harness()
    h.cancel(_buy(h, "0.01").client_order_id)
    _withdraw(h, "w1", "2000")
    bought = _buy(h, "0.1", "30001")  # takes the ask: 0.1 BTC for 3,000.1 + fee
    assert bought.outcome == "APPROVED"
    assert h.state.account("A1").positions["BTC/USDC"] == D("0.1")
    h.quote(D("21499"), D("21501"))
    braked = _buy(h, "0.001", "21500")
    assert braked.reason_codes == ("DRAWDOWN_BRAKE",), _drawdown(braked).detail
    assert _drawdown(braked).detail.startswith("drawdown 0.1066 >= 0.10")
    assert "A1" in h.state.kill_switches


def test_a_withdrawal_of_another_asset_is_not_a_loss() -> None:
    """0.2 BTC held beside 10,000 USDC, 0.1 BTC withdrawn: worth 3,000 at the mark, its
    units are redeemed at the NAV per unit then; v3 saw a 18.75% drawdown."""
    h = _harness()
    h.admin_deposit("BTC", D("0.2"))
    h.cancel(_buy(h, "0.01").client_order_id)
    acc = h.state.account("A1")
    assert acc.peak_nav == 1 and acc.units == D(16000)
    _withdraw(h, "w1", "0.1", asset="BTC")
    assert acc.units == D(13000) and h.state.nav("A1", h.state.equity("A1")) == 1
    after = _buy(h, "0.01")
    assert after.outcome == "APPROVED", after.reason_codes
    assert _drawdown(after).detail == "drawdown 0.0000"


def _underwater(h: Harness, resting: bool = False) -> str | None:
    """A1 buys 0.3 BTC (~9,009 of its 10,000 USDC) beside 1 ETH, BTC falls to 10,000 (NAV
    per unit ~0.50: 50% down, braked at the next decision), then a withdrawal of 8,000
    requested before the fall settles: more than the ~5,991 the account is worth, so the
    settlement redeems every unit and leaves its equity at ~-2,009. `resting`: a buy of
    0.1 ETH at 0.15 BTC placed before the fall rests (its order id returned)."""
    h.admin_deposit("ETH", D("1"))
    h.quote(D("1999"), D("2001"), instrument="ETH/USDC")
    h.quote(D("0.199"), D("0.201"), instrument="ETH/BTC")
    assert _buy(h, "0.3", "30001").outcome == "APPROVED"
    rest = None
    if resting:
        rest = decision(h.order(Side.BUY, D("0.1"), D("0.15"), instrument="ETH/BTC"))
        assert rest.outcome == "APPROVED", rest.reason_codes
    for step in ("request", "check", "release"):
        _transfer(h, transfer_fact("w1", step, amount="8000"))
    h.quote(D("9999"), D("10001"))
    _transfer(h, transfer_fact("w1", "settle", amount="8000"))
    acc = h.state.account("A1")
    assert acc.units == 0 and acc.peak_nav == 1
    equity = h.state.equity("A1")
    assert equity is not None and equity < 0
    return None if rest is None else str(rest.order_id)


def test_a_withdrawal_of_more_than_the_account_is_worth_does_not_forgive_the_drawdown() -> None:
    """A settlement that took more than the account was worth left no units, and v6
    measured nothing then ('no units yet'): the 50% drawdown of the moment before was
    forgotten, the account passed the brake with its equity below zero and bought ETH
    with its BTC (v5 braked it). Since v7 equity below zero with no units left against a
    recorded peak is the whole peak lost: DRAWDOWN_BRAKE and the kill switch, while an
    order reducing risk still passes."""
    h = _harness()
    _underwater(h)
    out = h.order(Side.BUY, D("0.1"), D("0.2"), instrument="ETH/BTC")
    braked = decision(out)
    assert braked.reason_codes == ("DRAWDOWN_BRAKE",), _drawdown(braked).detail
    assert _drawdown(braked).rule_version >= 7
    assert "KillSwitchEngaged" in types(out) and "A1" in h.state.kill_switches


def test_a_print_brakes_an_account_a_withdrawal_left_below_zero() -> None:
    """The venue's own brake at a print (`PaperVenue._brake`): a resting ETH/BTC buy
    placed before the fall is cancelled by the kill switch, not filled, once the
    settlement left the account below zero with no units."""
    h = _harness()
    rest = _underwater(h, resting=True)
    assert rest in h.state.account("A1").open_orders
    trade = h.market_trade(D("0.15"), D("1")).model_copy(update={"instrument": "ETH/BTC"})
    out = h.feed(trade, "md")
    assert "KillSwitchEngaged" in types(out) and "Fill" not in types(out), types(out)
    assert rest not in h.state.account("A1").open_orders


def _wiped(h: Harness) -> None:
    """A1 buys 0.9 BTC at ~30,000 on a 20,000 credit (10,000 of its own), and BTC falls
    to 18,000 while nothing of it rests and no intent comes (nothing measures it): equity
    ~-828, NAV per unit ~-0.08 against a peak of 1. Then a margin call's deposit of
    20,000 finds the capital gone (E0 <= 0: no NAV to issue units at, units kept)."""
    limits = _limits().model_copy(update={"credit_limit": D("20000")})
    h.admin(RiskLimitsChanged(scope="*", config_version=2, limits=limits, changed_by="admin"))
    assert _buy(h, "0.9", "30001").outcome == "APPROVED"
    h.quote(D("17999"), D("18001"))
    nav = h.state.nav("A1", h.state.equity("A1"))
    assert nav is not None and nav < 0
    out = _usdc_deposit(h, "20000")
    assert types(out) == ["DepositReceived", "UnitsChanged"]
    assert out[1].payload.nav is None and out[1].payload.peak_nav is None


def test_a_deposit_into_an_account_whose_capital_is_gone_does_not_forgive_the_loss() -> None:
    """v6 kept the units and measured E1 / u: the deposit lifted NAV per unit from -0.08
    to 1.92, recorded it as a new peak, and the next order passed with 'drawdown 0.0000'
    after a loss of 108% (the top-up v6 was to stop forgiving). Since v8 a flow that
    finds the capital gone marks the whole peak lost until a release of the account's
    kill switch: DRAWDOWN_BRAKE with the kill switch; a release measures afresh."""
    h = _harness()
    _wiped(h)
    acc = h.state.account("A1")
    assert acc.peak_nav == 1
    out = h.order(Side.BUY, D("0.01"), D("18001"))
    braked = decision(out)
    assert braked.reason_codes == ("DRAWDOWN_BRAKE",), _drawdown(braked).detail
    assert _drawdown(braked).rule_version == 9
    assert "KillSwitchEngaged" in types(out)
    (ks,) = [e.payload for e in out if e.event_type == "KillSwitchEngaged"]
    assert ks.drawdown == 1
    sold = decision(h.order(Side.SELL, D("0.1"), D("17999")))  # reduces risk: passes
    assert sold.outcome == "APPROVED", sold.reason_codes
    h.admin(KillSwitchReleased(scope="A1", released_by="admin", reason="recapitalized"))
    again = decision(h.order(Side.BUY, D("0.01"), D("18001")))
    assert again.outcome == "APPROVED", _drawdown(again).detail


# ---- DRAWDOWN_BRAKE v6: flows are measured per unit ----------------------------------


def _usdc_deposit(h: Harness, amount: str) -> list[Any]:
    h.n += 1
    return h.admin(
        DepositReceived(deposit_id=f"dd{h.n}", account="A1", asset="USDC", amount=D(amount))
    )


def _dd(h: Harness) -> Decimal:
    """The drawdown the rule measures now: 1 - NAV per unit / peak."""
    acc = h.state.account("A1")
    nav = h.state.nav("A1", h.state.equity("A1"))
    assert nav is not None
    return 1 - nav / max(acc.peak_nav, nav)


def test_a_deposit_during_a_drawdown_does_not_reduce_it() -> None:
    """v5's defect: peak 100, equity 92 (8% down), a deposit of 10 -> 102, a new "peak",
    the 8% loss forgiven; a top-up just before the threshold kept a losing strategy
    trading. Here 10,000 (6,000 of it put in BTC at 30,000) falls 8% (BTC to 26,000) and
    1,000 USDC is deposited: the drawdown is still 8%, and the next fall (BTC to 24,000)
    brakes as it would have without the deposit (11.7%; v5 counted the deposit as a gain
    and measured 2.1%: approved)."""
    h = _harness()
    bought = _buy(h, "0.2", "30001")  # 6,000 of the 10,000 in BTC
    assert bought.outcome == "APPROVED"
    h.quote(D("25999"), D("26001"))  # BTC at 26,000: ~800 lost of ~10,000
    before = _dd(h)
    assert D("0.079") < before < D("0.081")
    out = _usdc_deposit(h, "1000")
    assert types(out) == ["DepositReceived", "UnitsChanged"]
    assert out[1].payload.nav is not None and out[1].payload.nav < 1
    assert _dd(h) == before  # v5: equity + 1,000 above the peak: 0%
    h.quote(D("23999"), D("24001"))
    assert D("0.116") < _dd(h) < D("0.118")
    braked = _buy(h, "0.001", "24000")
    assert braked.reason_codes == ("DRAWDOWN_BRAKE",), _drawdown(braked).detail


def test_the_drawdown_does_not_depend_on_the_threads_decimal_context() -> None:
    """(peak - NAV) / peak: the difference was taken in the thread's ambient context (28
    digits by default, whatever a caller set otherwise), the quotient in 60; the recorded
    drawdown now has the difference in a fixed 28 digits (`DRAWDOWN_DIFFERENCE`), as the
    default context gave it, so nothing recorded before changes."""
    h = _harness()
    _buy(h, "0.2", "30001")
    h.quote(D("25999"), D("26001"))
    _usdc_deposit(h, "1000")  # NAV per unit now a 60-digit quotient
    h.quote(D("23999"), D("24001"))
    with localcontext(Context(prec=45)):
        out = h.order(Side.BUY, D("0.001"), D("24000"))
    (engaged,) = [e.payload for e in out if e.event_type == "KillSwitchEngaged"]
    acc = h.state.account("A1")
    nav = h.state.nav("A1", h.state.equity("A1"))
    assert nav is not None and len(nav.as_tuple().digits) > 28
    peak = acc.peak_nav
    assert engaged.drawdown == VALUATION.divide(DRAWDOWN_DIFFERENCE.subtract(peak, nav), peak)
    assert engaged.drawdown == VALUATION.divide(Context(prec=28).subtract(peak, nav), peak)


def test_a_withdrawn_assets_later_price_does_not_move_the_measure() -> None:
    """v5 valued a withdrawn BTC at its mark now, as if still held: after 0.1 BTC left, a
    fall of BTC counted as the account's loss (and a rise lifted its peak). Per unit, the
    withdrawal is valued once, when it is settled: 0.1 BTC of 0.2 withdrawn, then BTC
    falls from 30,000 to 20,000 — the account's 0.1 BTC lost 1,000 of its ~13,000 (7.7%),
    where v5 counted the withdrawn 0.1 BTC's 1,000 too (15.4%: braked)."""
    h = _harness()
    h.admin_deposit("BTC", D("0.2"))
    h.cancel(_buy(h, "0.01").client_order_id)  # the peak: NAV 1 (16,000)
    _withdraw(h, "w1", "0.1", asset="BTC")
    h.quote(D("19999"), D("20001"))
    after = _buy(h, "0.001", "20000")
    assert after.outcome == "APPROVED", after.reason_codes
    assert _drawdown(after).detail == "drawdown 0.0769", _drawdown(after).detail
    h.quote(D("39999"), D("40001"))  # up again: nothing withdrawn lifts the peak either
    _buy(h, "0.001", "40000")
    assert h.state.account("A1").peak_nav == VALUATION.divide(D(14000), D(13000))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["deposit", "withdraw", "move"]),
            st.sampled_from(["USDC", "BTC"]),
            st.integers(1, 40),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_flows_alone_never_move_the_measure(steps: list[tuple[str, str, int]]) -> None:
    """Deposits and settled withdrawals of either asset, at any price, between price
    moves: NAV per unit is where it was after each flow (to the 60th digit, never up), so
    a flow alone neither engages the brake nor takes an account out of it; only the price
    moves change the measure."""
    h = _harness()
    h.admin_deposit("BTC", D("0.5"))
    acc = h.state.account("A1")
    price = D(30000)
    for n, (kind, asset, size) in enumerate(steps):
        if kind == "move":
            price = D(1000 * size)
            h.quote(price - 1, price + 1)
            continue
        nav = h.state.nav("A1", h.state.equity("A1"))
        amount = D(size) * (D(100) if asset == "USDC" else D("0.01"))
        if kind == "deposit":
            h.n += 1
            h.admin(DepositReceived(deposit_id=f"x{h.n}", account="A1", asset=asset,
                                    amount=amount))  # fmt: skip
        else:
            if acc.balances.get(asset, D(0)) < amount:
                continue
            _withdraw(h, f"w{n}", str(amount), asset=asset)
        assert not acc.pending
        now = h.state.nav("A1", h.state.equity("A1"))
        assert nav is not None and now is not None
        assert now <= nav and nav - now < D("1e-50"), (nav, now)


# ---- a hold cancels the resting orders it overdraws --------------------------------------


def _control(h: Harness, payload: EventPayload) -> list[Any]:
    event = new_event(payload, producer="transfers", occurred_at=h.tick())
    h.inputs.append(event)
    return control(h.state, event, h.ctx)


def test_a_hold_cancels_the_newest_resting_orders_it_overdraws() -> None:
    """Three resting buys commit 8,708.7 of 10,000; a request of 3,000 leaves -1,708.7
    free. Before, they stayed, filled at the next print, and the settlement took the
    balance below zero. Now the newest is cancelled at once, in the fact's transaction,
    and no more: 1,194.2 is free again."""
    h = _harness()
    ids = []
    for _ in range(3):
        d = _buy(h, "0.1", "29000")
        assert d.outcome == "APPROVED"
        ids.append(d.order_id)
    out = _control(h, transfer_fact("w1", "request", amount="3000"))
    assert types(out) == ["CancelRequested", "OrderCanceled", "RestingOrdersChecked"]
    assert out[1].payload.order_id == ids[2] and out[1].payload.reason == "WITHDRAWAL_HELD"
    assert out[1].causation_id == h.inputs[-1].event_id
    acc = h.state.account("A1")
    assert h.state.free(acc, "USDC", FEE) == D("1194.2")
    assert sorted(acc.open_orders) == sorted(ids[:2])
    h.trade(D("29000"))  # fills the two left
    for step in ("check", "release"):
        assert _control(h, transfer_fact("w1", step)) == []  # no hold raised: nothing to check
    assert types(_control(h, transfer_fact("w1", "settle"))) == ["UnitsChanged"]  # units redeemed
    assert acc.positions["BTC/USDC"] == D("0.2")
    assert acc.balances["USDC"] == D("1195.36")  # 10,000 - 3,000 - 5,800 - 4.64 maker fees


def test_a_hold_on_the_base_asset_cancels_resting_sells() -> None:
    h = _harness()
    h.admin_deposit("BTC", D("1"))
    first = decision(h.order(Side.SELL, D("0.5"), D("31000")))
    second = decision(h.order(Side.SELL, D("0.4"), D("31000")))
    _buy(h, "0.1", "29000")  # pays in USDC: not touched
    out = _control(h, transfer_fact("w1", "request", asset="BTC", amount="0.3"))
    assert [e.payload.order_id for e in out if e.event_type == "OrderCanceled"] == [second.order_id]
    out = _control(h, transfer_fact("w2", "request", asset="BTC", amount="0.3"))
    assert [e.payload.order_id for e in out if e.event_type == "OrderCanceled"] == [first.order_id]
    assert len(h.state.account("A1").open_orders) == 1


def test_a_lost_transaction_is_redone_by_catch_up_with_the_same_ids() -> None:
    """A worker that folded the request but whose transaction (with the cancels) was lost:
    catch_up after the rebuild cancels the same orders as the same events."""
    import copy

    from engine.processor import catch_up

    h = _harness()
    for _ in range(3):
        _buy(h, "0.1", "29000")
    lost = copy.deepcopy(h.state)
    event = new_event(transfer_fact("w1", "request", amount="3000"), producer="transfers",
                      occurred_at=h.tick())  # fmt: skip
    live = control(h.state, event, h.ctx)
    lost.apply(event)  # folded; its cancels never committed
    redone = catch_up(lost, h.ctx, lambda _account: True)
    assert [e.event_id for e in redone] == [e.event_id for e in live] != []
    assert catch_up(h.state, h.ctx, lambda _account: True) == []  # nothing left to redo


def test_two_passes_lost_in_one_transaction_are_redone_as_the_owner_ran_them() -> None:
    """Three resting buys commit 8,708.7 of 10,000 USDC; a request of 2,000 and then one
    of 3,000, read in one batch, their transaction lost. Live, the first request's pass
    cancels the newest buy and records itself, the second's cancels the next one and
    records itself. Before, `catch_up` redid only the newest hold's pass, on both holds at
    once: both cancels named the second request, and the first request's
    `RestingOrdersChecked` was never written. Now each pass is redone in its turn, on the
    holds of its moment: the live events, byte for byte."""
    h = _harness()
    for _ in range(3):
        _buy(h, "0.1", "29000")
    lost, live = _requests_lost(h, ("w1", "2000"), ("w2", "3000"))
    assert types(live) == ["CancelRequested", "OrderCanceled", "RestingOrdersChecked"] * 2
    redone = catch_up(lost, h.ctx, lambda _account: True)
    assert [encode(e) for e in redone] == [encode(e) for e in live]
    assert canonical_state(lost) == canonical_state(h.state)
    assert catch_up(lost, h.ctx, lambda _account: True) == []


def test_a_deposit_finer_than_the_grid_is_rejected() -> None:
    """Deposits are summed into balances like fills: an amount off the 1e-8 grid (or with
    more than 28 significant digits) could round, and differently in a rebuild. The engine
    decides DepositReceived (an admin command): it is refused with the grid named."""
    h = _harness()
    for amount in ("0.000000001", "1234567890123456789012.12345678"):
        out = h.admin(DepositReceived(deposit_id=f"d-{amount}", account="A1", asset="USDC",
                                      amount=D(amount)))  # fmt: skip
        assert types(out) == ["AdminCommandRejected"], amount
        assert "steps of 1E-8" in out[0].payload.reason, out[0].payload.reason
    assert h.state.account("A1").balances["USDC"] == D(10000)
    ok = h.admin(DepositReceived(deposit_id="d-ok", account="A1", asset="USDC",
                                 amount=D("0.12345678")))  # fmt: skip
    assert types(ok) == ["DepositReceived", "UnitsChanged"]  # units issued with it


def test_a_settlement_after_a_rejection_cancels_the_resting_orders_it_overdraws() -> None:
    """A rejected withdrawal holds nothing, so resting buys may commit its money; a
    settlement after the rejection still debits it (as the books do). Before, nothing
    looked at the resting orders then: they kept the commitment, filled at the next print
    and took the balance below zero without credit (money the account never had). Now the
    settlement cancels what it overdraws, newest first, as a hold does, and a catch_up
    after a lost transaction redoes it with the same ids."""
    import copy

    from engine.processor import catch_up

    h = _harness()
    assert types(_control(h, transfer_fact("w1", "request", amount="3000"))) == [
        "RestingOrdersChecked"
    ]
    assert _control(h, transfer_fact("w1", "check", outcome="REJECT")) == []
    ids = [_buy(h, "0.1", "29000").order_id for _ in range(3)]  # 8,708.7 of 10,000
    lost = copy.deepcopy(h.state)
    event = new_event(transfer_fact("w1", "settle"), producer="transfers", occurred_at=h.tick())
    h.inputs.append(event)
    out = control(h.state, event, h.ctx)
    assert types(out) == [
        "CancelRequested",
        "OrderCanceled",
        "RestingOrdersChecked",
        "UnitsChanged",
    ]
    assert out[1].payload.order_id == ids[2] and out[1].payload.reason == "WITHDRAWAL_HELD"
    assert out[1].causation_id == event.event_id == out[2].causation_id
    acc = h.state.account("A1")
    assert h.state.free(acc, "USDC", FEE) == D("1194.2")
    h.trade(D("29000"))  # fills the two left
    assert acc.balances["USDC"] == D("1195.36")  # 10,000 - 3,000 - 5,800 - 4.64 maker fees
    lost.apply(event)  # folded; its cancels never committed
    redone = catch_up(lost, h.ctx, lambda _account: True)
    assert [e.event_id for e in redone] == [e.event_id for e in out]


def test_a_lost_settlements_cancels_are_redone_after_a_newer_hold_on_another_asset() -> None:
    """A settlement of a rejected withdrawal (USDC, held nothing) overdraws resting buys;
    the worker's transaction with the cancels is lost, and a request of BTC raises a hold
    before the next owner rebuilds. `catch_up` redid only the newest hold-raising fact's
    (`hold_causes`: the BTC request, which checks the held assets), so the buys stayed
    open with -1,708.7 USDC free and could fill below zero without credit. Now each asset
    a settlement debited without a hold is checked again, as caused by that settlement:
    the live cancels, with the live ids."""
    h = _harness()
    h.admin_deposit("BTC", D("1"))
    assert types(_control(h, transfer_fact("w1", "request", amount="3000"))) == [
        "RestingOrdersChecked"
    ]
    assert _control(h, transfer_fact("w1", "check", outcome="REJECT")) == []
    ids = [_buy(h, "0.1", "29000").order_id for _ in range(3)]  # 8,708.7 of 10,000
    lost = copy.deepcopy(h.state)
    settle = new_event(transfer_fact("w1", "settle"), producer="transfers", occurred_at=h.tick())
    live = control(h.state, settle, h.ctx)
    assert types(live) == [
        "CancelRequested",
        "OrderCanceled",
        "RestingOrdersChecked",
        "UnitsChanged",
    ]
    assert live[1].payload.order_id == ids[2]
    held = new_event(
        transfer_fact("w2", "request", asset="BTC", amount="0.3"), producer="transfers",
        occurred_at=h.tick(),
    )  # fmt: skip
    live += control(h.state, held, h.ctx)  # nothing rests on BTC: no cancel
    lost.apply(settle)  # folded, its transaction (cancels, units) lost
    lost.apply(held)
    redone = catch_up(lost, h.ctx, lambda _account: True)
    assert sorted(e.event_id for e in redone) == sorted(e.event_id for e in live)
    acc = lost.account("A1")
    assert lost.free(acc, "USDC", FEE) == D("1194.2")
    assert canonical_state(lost) == canonical_state(h.state)
    assert catch_up(lost, h.ctx, lambda _account: True) == []


def test_a_settlement_no_owner_turned_into_units_is_caught_up_with_the_live_id() -> None:
    """A settlement read while the account's partition had no owner (or whose
    transaction was lost) is folded but not turned into units: the next owner's
    `catch_up` does it, as caused by the settlement, so the `UnitsChanged` is the one the
    live owner would have written (same id, same units) and the account is measured."""
    h = _harness()
    h.admin_deposit("BTC", D("0.2"))
    for step in ("request", "check", "release"):
        _transfer(h, transfer_fact("w1", step, asset="BTC", amount="0.1"))
    settle = new_event(transfer_fact("w1", "settle"), producer="transfers", occurred_at=h.tick())
    orphan = copy.deepcopy(h.state)
    live = control(h.state, settle, h.ctx)
    assert types(live) == ["UnitsChanged"] and live[0].causation_id == settle.event_id
    assert control(orphan, settle, dataclasses.replace(h.ctx, owns=lambda _a: False)) == []
    assert orphan.account("A1").pending == {"withdrawal:w1"}
    assert orphan.nav("A1", orphan.equity("A1")) is None  # unmeasured: NO_MARK meanwhile
    caught = [e for e in catch_up(orphan, h.ctx, lambda _a: True) if e.topic == live[0].topic]
    assert [(e.event_id, e.payload) for e in caught] == [(live[0].event_id, live[0].payload)]
    assert canonical_state(orphan) == canonical_state(h.state)


def test_units_after_a_full_withdrawal_and_for_an_unpriced_deposit() -> None:
    """Edges of `EngineState.unitization`: everything withdrawn leaves no units, and a
    deposit after it issues units at the last NAV per unit (not afresh at 1, which would
    forgive a loss by withdrawing and depositing again); a deposit of an asset without a
    price stays pending, so the account cannot be measured (NO_MARK, fail closed) until a
    price comes and its next decision turns the deposit into units."""
    h = _harness()
    bought = _buy(h, "0.1", "30001")  # ~3,003 of the 10,000 in BTC
    assert bought.outcome == "APPROVED"
    h.quote(D("26999"), D("27001"))  # ~300 lost: NAV ~0.97
    acc = h.state.account("A1")
    nav = h.state.nav("A1", h.state.equity("A1"))
    assert nav is not None and nav < 1
    sold = decision(h.order(Side.SELL, D("0.1"), D("26999")))  # risk-reducing, fills the bid
    assert sold.outcome == "APPROVED" and not acc.positions.get("BTC/USDC")
    after_sale = h.state.nav("A1", h.state.equity("A1"))
    assert after_sale is not None
    _withdraw(h, "all", str(acc.balances["USDC"]))
    assert acc.units == 0 and h.state.nav("A1", h.state.equity("A1")) is None
    out = _usdc_deposit(h, "5000")
    assert out[1].payload.nav == acc.unit_nav == after_sale
    again = h.state.nav("A1", h.state.equity("A1"))  # the loss still counts
    assert again is not None and VALUATION.subtract(after_sale, D("1e-50")) < again <= after_sale
    h.admin_deposit("SOL", D("10"))  # no SOL price: pending
    assert acc.pending and h.state.nav("A1", h.state.equity("A1")) is None
    refused = _buy(h, "0.01", "27000")
    assert refused.reason_codes == ("NO_MARK",), refused.reason_codes
    h.quote(D("99"), D("101"), instrument="SOL/USDC")
    out = h.order(Side.BUY, D("0.01"), D("27000"))
    assert types(out)[:2] == ["UnitsChanged", "RiskDecision"]
    assert not acc.pending and decision(out).outcome == "APPROVED"
    last = h.state.nav("A1", h.state.equity("A1"))
    assert last is not None and last <= after_sale


def test_a_hold_cancels_credit_funded_orders_on_other_assets() -> None:
    """The credit limit is one amount for the whole account (`credit_headroom`): a hold
    that leaves its asset short uses it up first, so what other assets borrow on it no
    longer fits. A buy of ETH on ETH/BTC with no BTC rests on 1,500 USDC of credit (of
    2,000); a request of 10,800 USDC (of 10,000, no USDC order resting) leaves USDC short
    by 800: 2,300 of credit in use. Before, the hold looked at USDC's own orders only (none)
    and the ETH/BTC buy stayed: at the next print it filled, BTC 0.05 short on top of the
    USDC, beyond the credit (a new order on BTC was refused all along). Now it is
    cancelled at once, and catch_up redoes it with the same ids."""
    limits = _limits().model_copy(update={"credit_limit": D("2000")})
    h = Harness(limits, cash=D("10000"))
    h.quote(D("29999"), D("30001"))
    h.quote(D("0.05"), D("0.0501"), instrument="ETH/BTC")
    buy = decision(h.order(Side.BUY, D("1"), D("0.0499"), instrument="ETH/BTC"))
    assert buy.outcome == "APPROVED", buy
    acc = h.state.account("A1")
    lost = copy.deepcopy(h.state)
    event = new_event(transfer_fact("w1", "request", amount="10800"), producer="transfers",
                      occurred_at=h.tick())  # fmt: skip
    h.inputs.append(event)
    out = control(h.state, event, h.ctx)
    assert types(out) == ["CancelRequested", "OrderCanceled", "RestingOrdersChecked"], types(out)
    assert out[1].payload.order_id == buy.order_id and out[1].payload.reason == "WITHDRAWAL_HELD"
    assert out[1].causation_id == event.event_id
    assert not acc.open_orders
    lost.apply(event)  # folded; its cancels never committed
    redone = catch_up(lost, h.ctx, lambda _account: True)
    assert [e.event_id for e in redone] == [e.event_id for e in out]
    assert catch_up(h.state, h.ctx, lambda _account: True) == []


def test_a_hold_leaves_credit_funded_orders_the_credit_still_covers() -> None:
    """The same buy and a request of 10,300: USDC short by 300 and BTC by 1,500 worth fit
    in the 2,000 of credit together; nothing is cancelled."""
    limits = _limits().model_copy(update={"credit_limit": D("2000")})
    h = Harness(limits, cash=D("10000"))
    h.quote(D("29999"), D("30001"))
    h.quote(D("0.05"), D("0.0501"), instrument="ETH/BTC")
    buy = decision(h.order(Side.BUY, D("1"), D("0.0499"), instrument="ETH/BTC"))
    assert buy.outcome == "APPROVED", buy
    assert types(_control(h, transfer_fact("w1", "request", amount="10300"))) == [
        "RestingOrdersChecked"
    ]
    assert list(h.state.account("A1").open_orders) == [buy.order_id]


ORDER = st.tuples(
    st.sampled_from(["BTC/USDC", "ETH/BTC", "ETH/USDC"]),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.integers(1, 40),
)


@settings(max_examples=40, deadline=None)
@given(
    orders=st.lists(ORDER, min_size=1, max_size=8),
    requests=st.lists(
        st.tuples(st.sampled_from(["USDC", "BTC"]), st.integers(1, 14_000)), min_size=1, max_size=3
    ),
    credit=st.sampled_from(["0", "500", "3000"]),
)
def test_after_a_hold_no_order_rests_on_a_short_account_and_catch_up_agrees(
    orders: list[tuple[str, Side, int]], requests: list[tuple[str, int]], credit: str
) -> None:
    """With credit or without, resting orders on three pairs (some borrowing: sells of
    BTC or ETH the account lacks, buys paid in BTC), then withdrawal requests: after each,
    either no asset is short (free plus what the credit lends) or no order paying in an
    asset short of its balance still rests; and a worker that lost the request's cancels
    makes the same ones in `catch_up`."""
    from engine.processor import _any_short

    limits = _limits().model_copy(update={"credit_limit": D(credit)})
    h = Harness(limits, cash=D("10000"))
    h.admin_deposit("BTC", D("0.1"))
    h.quote(D("29999"), D("30001"))
    h.quote(D("0.05"), D("0.0501"), instrument="ETH/BTC")
    h.quote(D("1499"), D("1501"), instrument="ETH/USDC")
    away = {"BTC/USDC": (D("29000"), D("31000")), "ETH/BTC": (D("0.049"), D("0.052")),
            "ETH/USDC": (D("1450"), D("1550"))}  # fmt: skip
    for instrument, side, tenths in orders:
        limit = away[instrument][0 if side is Side.BUY else 1]
        qty = D(tenths) / (100 if instrument == "BTC/USDC" else 10)
        h.order(side, qty, limit, instrument=instrument)
    acc = h.state.account("A1")
    for i, (asset, amount) in enumerate(requests):
        lost = copy.deepcopy(h.state)
        amount_text = str(D(amount) / (10_000 if asset == "BTC" else 1))
        event = new_event(transfer_fact(f"w{i}", "request", asset=asset, amount=amount_text),
                          producer="transfers", occurred_at=h.tick())  # fmt: skip
        out = control(h.state, event, h.ctx)
        assert {e.payload.reason for e in out if e.event_type == "OrderCanceled"} <= {
            "WITHDRAWAL_HELD"
        }
        if _any_short(h.state, acc, FEE, D(credit)):
            for oid in acc.open_orders:
                o = h.state.orders[oid]
                base, quote = o.instrument.split("/")
                pays = quote if o.side is Side.BUY else base
                assert h.state.free(acc, pays, FEE) >= 0, (o.instrument, o.side, pays)
        lost.apply(event)  # folded; its cancels never committed
        redone = catch_up(lost, h.ctx, lambda _account: True)
        assert [e.event_id for e in redone] == [e.event_id for e in out]
        assert canonical_state(lost) == canonical_state(h.state)


# ---- a restart cancels no more than the live worker did ----------------------------------


def _rebuilt(h: Harness, own: list[Any]) -> EngineState:
    """A restarted worker's fold: the reference and market facts, then the own records."""
    s = EngineState()
    for e in h.inputs:
        s.apply(e)
    for e in own:
        s.apply(e)
    return s


def test_a_restart_after_a_committed_hold_cancels_nothing_more() -> None:
    """A request's cancels committed (the live worker cancelled the buy it overdrew); then
    a buy of ETH on ETH/BTC borrowing 0.05 BTC on the credit was approved with the hold in
    effect, and BTC rose until that shortfall is worth more than the 2,000 of credit. No
    live worker cancels anything for that (no hold-raising fact came). Before, a restart's
    `catch_up` ran the request's pass again on today's state and cancelled the ETH/BTC buy:
    the engine's output depended on whether it had crashed. Now the request's cancels on
    the log say its transaction committed, and nothing is redone as caused by it. (The
    credit pass of af58b46, as caused by the limits in force, still cancels the buy
    `CREDIT_LIMIT` at a restart: the same defect, not a hold's.)"""
    limits = _limits().model_copy(update={"credit_limit": D("2000")})
    h = Harness(limits, cash=D("10000"))
    h.quote(D("29999"), D("30001"))
    h.quote(D("0.05"), D("0.0501"), instrument="ETH/BTC")
    own: list[Any] = [e for e in h.inputs if e.event_type == "UnitsChanged"]
    h.inputs = [e for e in h.inputs if e.event_type != "UnitsChanged"]
    first = h.order(Side.BUY, D("0.1"), D("29000"))
    own += first
    out = _control(h, transfer_fact("w1", "request", amount="10000"))
    own += out
    assert types(out) == ["CancelRequested", "OrderCanceled", "RestingOrdersChecked"]
    assert out[1].payload.order_id == decision(first).order_id
    later = h.order(Side.BUY, D("1"), D("0.0499"), instrument="ETH/BTC")
    own += later
    assert decision(later).outcome == "APPROVED"
    h.quote(D("44999"), D("45001"))  # the BTC shortfall is worth 2,247.75 now
    from engine.processor import _any_short

    acc = h.state.account("A1")
    assert _any_short(h.state, acc, FEE, D("2000"))  # short, by the prints alone
    assert acc.open_orders == {decision(later).order_id}
    for state in (_rebuilt(h, own), copy.deepcopy(h.state)):
        assert canonical_state(state) == canonical_state(h.state)
        caught = catch_up(state, h.ctx, lambda _account: True)
        assert [e for e in caught if e.causation_id == out[0].causation_id] == []


def _priced_with_btc(h: Harness) -> list[Any]:
    """BTC at 30,000 and ETH at 0.05 BTC, 0.1 BTC deposited: the credit tests' start. The
    deposit's `UnitsChanged` (an own record) is taken off `h.inputs` and returned, so a
    test hands a restart the own records apart from the facts every worker reads."""
    h.quote(D("29999"), D("30001"))
    h.quote(D("0.05"), D("0.0501"), instrument="ETH/BTC")
    h.admin_deposit("BTC", D("0.1"))
    own: list[Any] = [e for e in h.inputs if e.event_type == "UnitsChanged"]
    h.inputs = [e for e in h.inputs if e.event_type != "UnitsChanged"]
    return own


def test_a_restart_after_a_decision_under_the_limits_cancels_nothing_for_them() -> None:
    """Credit 3,000 from the start (the global limits, version 1), 0.1 BTC: a buy of 3 ETH
    on ETH/BTC borrowing 0.047 BTC on the credit is approved, then BTC rises from 30,000 to
    70,000 (the shortfall is worth ~3,300 now). No live worker cancels anything for that:
    no limits change came. Before, a restart's `catch_up` ran the credit pass of the limits
    in force on today's state and cancelled the buy `CREDIT_LIMIT`. Now a decision of the
    account made under those limits' version says that their change's transaction
    committed (the owner commits in order), and nothing is redone as caused by it."""
    limits = _limits().model_copy(update={"credit_limit": D("3000")})
    h = Harness(limits, cash=D("10000"))
    own = _priced_with_btc(h)
    buy = h.order(Side.BUY, D("3"), D("0.049"), instrument="ETH/BTC")
    own += buy
    assert (decision(buy).outcome, decision(buy).risk_config_version) == ("APPROVED", 1)
    h.quote(D("69999"), D("70001"))
    from engine.processor import _any_short

    acc = h.state.account("A1")
    assert _any_short(h.state, acc, FEE, D("3000"))  # over the credit, by the prints alone
    for state in (_rebuilt(h, own), copy.deepcopy(h.state)):
        assert canonical_state(state) == canonical_state(h.state)
        assert catch_up(state, h.ctx, lambda _account: True) == []


def test_an_accounts_own_limits_are_proved_committed_only_by_a_version_no_global_had() -> None:
    """Decisions record the version of the limits they were made under, not its scope.
    Under the account's own limits (version 2) with the global ones at version 1, a
    decision recording 2 was made under them: their change committed, a restart cancels
    nothing. With the global limits at version 5 before, a decision recording 2 could
    have been made under global version 2, before the account had limits of its own: on
    a log from before `RestingOrdersChecked` nothing proves the change committed, so a
    restart redoes its credit pass (fail closed), on today's state. The owner writes that
    record for an account's own limits with nothing resting too, so on a log with it
    nothing is redone."""

    def run(global_version: int, old_log: bool = False) -> list[Any]:
        limits = _limits().model_copy(update={"credit_limit": D("3000")})
        h = Harness(cash=D("10000"))
        for version in (*range(1, global_version + 1),):
            h.admin(RiskLimitsChanged(scope="*", config_version=version, limits=limits,
                                      changed_by="admin"))  # fmt: skip
        out = h.admin(
            RiskLimitsChanged(scope="A1", config_version=2, limits=limits, changed_by="a")
        )
        assert types(out) == ["RiskLimitsChanged", "RestingOrdersChecked"]  # nothing rests
        assert out[1].payload.fact_event_id == out[0].event_id  # the change on risk.config
        if old_log:
            h.inputs = [e for e in h.inputs if e.event_type != "RestingOrdersChecked"]
        own = _priced_with_btc(h)
        buy = h.order(Side.BUY, D("3"), D("0.049"), instrument="ETH/BTC")
        own += buy
        assert (decision(buy).outcome, decision(buy).risk_config_version) == ("APPROVED", 2)
        h.quote(D("69999"), D("70001"))
        return catch_up(_rebuilt(h, own), h.ctx, lambda _account: True)

    assert run(1) == [] and run(1, old_log=True) == []
    assert run(5) == []
    redone = run(5, old_log=True)
    assert [e.payload.reason for e in redone if e.event_type == "OrderCanceled"] == ["CREDIT_LIMIT"]
    assert types(redone)[-1] == "RestingOrdersChecked"  # and the record, once


def _hold_then_borrow(h: Harness) -> tuple[list[Any], list[Any]]:
    """3,000 of credit, 0.1 BTC, a request of 10,500 of 10,000 USDC with nothing resting
    (its pass cancels nothing), then a buy of 3 ETH on ETH/BTC borrowing 0.047 BTC,
    approved with the hold in effect, then BTC from 30,000 to 60,000: (the request's
    outputs, the own records of the log)."""
    own = _priced_with_btc(h)
    held = _control(h, transfer_fact("w1", "request", amount="10500"))
    assert types(held) == ["RestingOrdersChecked"]
    assert held[0].payload.fact_event_id == held[0].causation_id == h.inputs[-1].event_id
    own += held
    buy = h.order(Side.BUY, D("3"), D("0.049"), instrument="ETH/BTC")
    own += buy
    assert decision(buy).outcome == "APPROVED"
    h.quote(D("59999"), D("60001"))
    return held, own


def test_a_hold_whose_pass_cancelled_nothing_is_not_redone_at_a_restart() -> None:
    """A request whose pass cancelled nothing (nothing rested), then a buy borrowing BTC
    approved with the hold in effect, then BTC up (`_hold_then_borrow`). No live worker
    cancels anything. Before (a strict xfail, session 21), a restart ran the request's
    pass on its state and cancelled the buy `WITHDRAWAL_HELD`: nothing on the log showed
    that the request's transaction committed. Now the pass writes `RestingOrdersChecked`
    in that transaction, and a restart redoes nothing. On a log from before that record
    the pass is redone as it was (fail closed), and writes the record."""
    limits = _limits().model_copy(update={"credit_limit": D("3000")})
    h = Harness(limits, cash=D("10000"))
    held, own = _hold_then_borrow(h)
    assert catch_up(_rebuilt(h, own), h.ctx, lambda _account: True) == []
    old = _rebuilt(h, [e for e in own if e.event_type != "RestingOrdersChecked"])
    redone = catch_up(old, h.ctx, lambda _account: True)
    assert types(redone) == ["CancelRequested", "OrderCanceled", "RestingOrdersChecked"]
    assert redone[1].payload.reason == "WITHDRAWAL_HELD" and redone[2] == held[0]
    assert catch_up(old, h.ctx, lambda _account: True) == []  # once


def test_a_hold_whose_transaction_was_lost_is_redone_with_its_record() -> None:
    """A crash between folding the request and committing its transaction: the record is
    lost with it, so the next owner's `catch_up` runs the request's pass (nothing rests:
    nothing to cancel) and writes the live record, the live id. A restart after that, with
    a buy approved under the hold and BTC up since, redoes nothing."""
    limits = _limits().model_copy(update={"credit_limit": D("3000")})
    h = Harness(limits, cash=D("10000"))
    own = _priced_with_btc(h)
    lost = copy.deepcopy(h.state)
    live = _control(h, transfer_fact("w1", "request", amount="10500"))
    lost.apply(h.inputs[-1])  # folded; its transaction lost
    redone = catch_up(lost, h.ctx, lambda _account: True)
    assert types(redone) == ["RestingOrdersChecked"] and redone == live
    assert canonical_state(lost) == canonical_state(h.state)
    own += redone  # committed by the next owner
    buy = h.order(Side.BUY, D("3"), D("0.049"), instrument="ETH/BTC")
    own += buy
    assert decision(buy).outcome == "APPROVED"
    h.quote(D("59999"), D("60001"))
    assert catch_up(_rebuilt(h, own), h.ctx, lambda _account: True) == []


def test_a_limits_change_that_cancelled_nothing_is_not_redone_at_a_restart() -> None:
    """3,000 of credit (version 1), 0.1 BTC, a buy of 3 ETH on ETH/BTC borrowing 0.047 BTC
    (1,410 at 30,000) resting; the credit lowered to 2,900 (version 2) still covers it:
    the change's pass cancels nothing, and no decision of the account follows. BTC rises
    to 70,000 (3,290). No live worker cancels anything. Before, a restart's `catch_up`
    found no cancel of the change and no decision under version 2 and ran its credit
    pass on that state: the buy cancelled `CREDIT_LIMIT`. Now the pass's
    `RestingOrdersChecked` is on the log and nothing is redone. A crash between folding
    the change and committing its transaction: `catch_up` redoes the pass and writes the
    live record. A log without the record: the pass is redone, as before."""
    limits = _limits().model_copy(update={"credit_limit": D("3000")})
    h = Harness(limits, cash=D("10000"))
    own = _priced_with_btc(h)
    buy = h.order(Side.BUY, D("3"), D("0.049"), instrument="ETH/BTC")
    own += buy
    assert decision(buy).outcome == "APPROVED"
    lower = RiskLimitsChanged(
        scope="*", config_version=2, changed_by="admin",
        limits=limits.model_copy(update={"credit_limit": D("2900")}),
    )  # fmt: skip
    change = new_event(lower, producer="engine", occurred_at=h.tick())  # as on risk.config
    h.inputs.append(change)
    lost = copy.deepcopy(h.state)
    live = control(h.state, change, h.ctx)
    assert types(live) == ["RestingOrdersChecked"]
    assert (live[0].payload.fact_event_id, live[0].payload.fact_type) == (
        change.event_id, "RiskLimitsChanged"
    )  # fmt: skip
    lost.apply(change)  # folded; its transaction lost
    assert catch_up(lost, h.ctx, lambda _account: True) == live
    assert canonical_state(lost) == canonical_state(h.state)
    own += live
    h.quote(D("69999"), D("70001"))
    assert catch_up(_rebuilt(h, own), h.ctx, lambda _account: True) == []
    old = catch_up(
        _rebuilt(h, [e for e in own if e.event_type != "RestingOrdersChecked"]),
        h.ctx,
        lambda _account: True,
    )
    assert types(old) == ["CancelRequested", "OrderCanceled", "RestingOrdersChecked"]
    assert old[1].payload.reason == "CREDIT_LIMIT"


def test_a_second_settlement_writes_nothing_and_a_restart_agrees() -> None:
    """A settlement of a withdrawal settled already is no fact (the books quarantine it,
    the fold changes nothing): the first one debited. 0.3434 BTC requested of 0.1 BTC and
    10,000 USDC (3,000 of credit), settled at BTC 42,000: equity -222.80, no units left.
    At BTC 36,000 a second settlement came. Before, the live worker wrote a
    `UnitsChanged` for it (units for the equity the account has again, `flows` empty),
    which a worker that lost that transaction never wrote (nothing pending): the output
    depended on a crash. Now a settlement the fold ignores (a second one, one of a
    withdrawal never requested) writes nothing, live or caught up; the account gets its
    units at its owner's next valuation, as an account with equity and no units does."""
    limits = _limits().model_copy(update={"credit_limit": D("3000")})
    h = Harness(limits, cash=D("10000"))
    h.quote(D("29999"), D("30001"))
    h.admin_deposit("BTC", D("0.1"))
    assert types(_control(h, transfer_fact("w0", "request", asset="BTC", amount="0.3434"))) == [
        "RestingOrdersChecked"
    ]
    h.quote(D("41999"), D("42001"))
    first = _control(h, transfer_fact("w0", "settle"))
    assert [(e.event_type, e.payload.units) for e in first] == [("UnitsChanged", 0)]
    h.quote(D("35999"), D("36001"))
    for payload in (
        transfer_fact("w0", "settle"),
        transfer_fact("w9", "settle"),
    ):  # never requested: alike
        lost = copy.deepcopy(h.state)
        event = new_event(payload, producer="transfers", occurred_at=h.tick())
        assert control(h.state, event, h.ctx) == []
        lost.apply(event)
        assert catch_up(lost, h.ctx, lambda _account: True) == []
        assert canonical_state(lost) == canonical_state(h.state)
    # The owner's next decision issues the units, as caused by its intent.
    out = h.order(Side.BUY, D("0.001"), D("29000"))
    assert types(out)[:2] == ["UnitsChanged", "RiskDecision"]


_OWN_TOPICS = ("risk.decisions", "orders.lifecycle")
STEP = st.one_of(
    st.tuples(st.just("order"), ORDER),
    st.tuples(st.just("request"), st.sampled_from(["USDC", "BTC"]), st.integers(1, 14_000)),
    st.tuples(st.just("reject"), st.integers(0, 3)),
    st.tuples(st.just("settle"), st.integers(0, 3)),
    st.tuples(st.just("btc"), st.integers(20, 60)),  # BTC's price, in thousands
    st.tuples(st.just("credit"), st.sampled_from(["0", "500", "2900", "3000"])),  # limits change
    st.tuples(st.just("crash")),  # the control facts read since the last order or price lost
    st.tuples(st.just("switch"), st.booleans()),  # a global kill switch engaged or released
)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(STEP, min_size=1, max_size=14),
    credit=st.sampled_from(["0", "500", "3000"]),
)
@example(  # the committed request cancels a buy; the ETH/BTC buy after it outgrows the credit
    steps=[("order", ("BTC/USDC", Side.BUY, 10)), ("request", "USDC", 11_000),
           ("order", ("ETH/BTC", Side.BUY, 30)), ("btc", 60), ("reject", 1)],
    credit="3000",
)  # fmt: skip
@example(  # an ETH/BTC buy approved on the credit outgrows it: no limits change came
    steps=[("order", ("ETH/BTC", Side.BUY, 40)), ("btc", 40)], credit="3000"
)
@example(  # a second settlement at an account without units, its capital back since
    steps=[("request", "BTC", 3434), ("btc", 42), ("settle", 0), ("btc", 36), ("settle", 0)],
    credit="3000",
)
@example(  # a lowered credit cancels nothing; a later order is decided under it
    steps=[("order", ("ETH/BTC", Side.BUY, 40)), ("credit", "2900"), ("order",
           ("BTC/USDC", Side.BUY, 1)), ("btc", 40)], credit="3000",
)  # fmt: skip
@example(  # a request with nothing resting; an ETH/BTC buy under the hold outgrows the credit
    steps=[("request", "USDC", 10_500), ("order", ("ETH/BTC", Side.BUY, 30)), ("btc", 60)],
    credit="3000",
)
@example(  # a lowered credit that cancels nothing, no decision since, BTC up
    steps=[("order", ("ETH/BTC", Side.BUY, 40)), ("credit", "2900"), ("btc", 60)],
    credit="3000",
)
@example(  # a request that cancelled nothing, then a sell borrowing BTC outgrows the credit
    steps=[("request", "USDC", 1), ("order", ("BTC/USDC", Side.SELL, 11)), ("btc", 51)],
    credit="500",
)
@example(  # ... and a lost change lowering the credit to 0 after a sell borrowing ETH
    steps=[("request", "USDC", 1), ("credit", "500"), ("order", ("ETH/BTC", Side.SELL, 1)),
           ("credit", "0")],
    credit="0",
)  # fmt: skip
@example(  # two requests in one lost transaction, each pass cancelling a buy
    steps=[("order", ("BTC/USDC", Side.BUY, 10)), ("order", ("BTC/USDC", Side.BUY, 10)),
           ("order", ("BTC/USDC", Side.BUY, 10)), ("request", "USDC", 2000),
           ("request", "USDC", 3000), ("crash",)],
    credit="0",
)  # fmt: skip
@example(  # two lowered credits in one lost transaction, each cancelling an ETH/BTC buy
    steps=[("order", ("ETH/BTC", Side.BUY, 10)), ("order", ("ETH/BTC", Side.BUY, 10)),
           ("order", ("ETH/BTC", Side.BUY, 1)), ("order", ("ETH/BTC", Side.BUY, 10)),
           ("credit", "500"), ("credit", "0"), ("crash",)],
    credit="3000",
)  # fmt: skip
@example(  # a lowered credit, then a request, in one lost transaction: the credit's pass
    # first (before, the request's was redone first and cancelled the credit's order too)
    steps=[("order", ("ETH/BTC", Side.BUY, 10)), ("order", ("ETH/BTC", Side.BUY, 10)),
           ("order", ("ETH/BTC", Side.BUY, 10)), ("order", ("BTC/USDC", Side.BUY, 10)),
           ("credit", "500"), ("request", "USDC", 8000), ("crash",)],
    credit="3000",
)  # fmt: skip
@example(  # two settlements in one lost transaction: a redemption each, as live
    steps=[("request", "USDC", 1000), ("request", "USDC", 2000), ("settle", 0),
           ("settle", 1), ("crash",)],
    credit="0",
)  # fmt: skip
@example(  # a request, then a global switch, in one lost transaction: the request's
    # pass first (before, the switch's halt was redone first and took the request's cancel)
    steps=[("order", ("BTC/USDC", Side.BUY, 10)), ("order", ("BTC/USDC", Side.BUY, 10)),
           ("order", ("BTC/USDC", Side.BUY, 10)), ("request", "USDC", 2000),
           ("switch", True), ("crash",)],
    credit="0",
)  # fmt: skip
@example(  # a global switch engaged and released in one lost transaction: its halt
    # redone with the switch put back (before, nothing: the bid rested on at the restart)
    steps=[("order", ("BTC/USDC", Side.BUY, 1)), ("switch", True), ("switch", False),
           ("crash",)],
    credit="0",
)  # fmt: skip
@example(  # ... after a request's pass, the switch's halt in the order read
    steps=[("order", ("BTC/USDC", Side.BUY, 10)), ("order", ("BTC/USDC", Side.BUY, 10)),
           ("request", "USDC", 9000), ("switch", True), ("switch", False), ("crash",)],
    credit="3000",
)  # fmt: skip
def test_a_restart_at_any_point_redoes_what_was_lost_and_nothing_more(
    steps: list[tuple[Any, ...]], credit: str
) -> None:
    """Random histories: resting orders on three pairs (some borrowing on the credit),
    withdrawal requests, rejections and settlements, limits changes, BTC's price moving.
    At every point, a worker restarted from the log (reference facts, then its own
    records) catches up nothing: every hold's and limits change's pass wrote its
    `RestingOrdersChecked` in its transaction (before session 22 a pass that cancelled
    nothing left no trace and was run again on the state of the restart; before session
    21 every hold's was). And a worker that lost a transfer fact's or a limits change's
    transaction (folded, outputs gone) redoes exactly its live outputs, the same ids, the
    record included, and ends in the live state. And a worker that took the partition
    over, folding the account's records before its reference reader came to the fact,
    writes nothing when it reads it (before helper-124's change it ran the pass again).
    And at a `crash`, the control facts read since the last order or price (one batch,
    one transaction) lost together: a worker that folded them redoes every pass of the
    batch as live ran them, byte for byte (before session 23 only the newest hold's and
    the limits in force, on every hold at once: an older pass's record missing, its
    cancels naming the newer fact)."""
    from engine.processor import _limits_committed

    limits = _limits().model_copy(update={"credit_limit": D(credit)})
    h = Harness(limits, cash=D("10000"))
    h.quote(D("29999"), D("30001"))
    h.quote(D("0.05"), D("0.0501"), instrument="ETH/BTC")
    h.quote(D("1499"), D("1501"), instrument="ETH/USDC")
    h.admin_deposit("BTC", D("0.1"))  # priced: turned into units at once
    assert not h.state.account("A1").pending
    log: list[Any] = list(h.inputs)  # every event, in the order the live worker folded it
    away = {"BTC/USDC": (D("29000"), D("31000")), "ETH/BTC": (D("0.049"), D("0.052")),
            "ETH/USDC": (D("1450"), D("1550"))}  # fmt: skip
    requested: list[str] = []
    everyone = lambda _account: True  # noqa: E731
    version = 1
    run: tuple[EngineState, list[Any], list[Any]] | None = None
    """The control facts read since the last order or price, one batch: its state before
    them, the facts, what live wrote for them."""

    def read(payload: EventPayload, producer: str) -> tuple[Any, list[Any], EngineState]:
        """`payload` read live, and a worker that folded it with its transaction lost
        (before `catch_up`): the event, what live wrote, that worker's state."""
        lost = copy.deepcopy(h.state)
        event = new_event(payload, producer=producer, occurred_at=h.tick())
        out = control(h.state, event, h.ctx)
        log.extend([event, *out])
        if run is not None:
            run[1].append(event)
            run[2].extend(out)
        lost.apply(event)
        return event, out, lost

    def redone_exactly(lost: EngineState, out: list[Any]) -> None:
        """The lost transaction's worker redoes exactly live's outputs, to live's state."""
        redone = catch_up(lost, h.ctx, everyone)
        assert [e.event_id for e in redone] == [e.event_id for e in out]
        assert canonical_state(lost) == canonical_state(h.state)

    for step in steps:
        kind = step[0]
        if kind == "crash":
            # The batch's transaction lost: a worker that folded its facts (a rebuild)
            # redoes every pass of it as live ran them, byte for byte.
            if run is not None:
                before, facts, outs = run
                for e in facts:
                    before.apply(e)
                redone = catch_up(before, h.ctx, everyone)
                assert [encode(e) for e in redone] == [encode(e) for e in outs], step
                assert canonical_state(before) == canonical_state(h.state), step
                run = None
            continue
        if kind in ("order", "btc"):
            run = None
        elif run is None:
            run = (copy.deepcopy(h.state), [], [])
        if kind == "credit":
            # A limits change read from risk.config (its cancels, if any, caused by it);
            # one whose transaction is lost is redone exactly.
            version += 1
            change = RiskLimitsChanged(
                scope="*", config_version=version, changed_by="admin",
                limits=limits.model_copy(update={"credit_limit": D(step[1])}),
            )  # fmt: skip
            event, out, lost = read(change, "admin")
            assert {e.payload.reason for e in out if e.event_type == "OrderCanceled"} <= {
                "CREDIT_LIMIT"
            }
            causes = [lost.hold_causes.get("A1"), *lost.debit_causes.get("A1", {}).values()]
            assert all(lost.fact_committed(c) for c in causes if c is not None)  # recorded
            redone_exactly(lost, out)
        elif kind == "order":
            instrument, side, tenths = step[1]
            limit = away[instrument][0 if side is Side.BUY else 1]
            qty = D(tenths) / (100 if instrument == "BTC/USDC" else 10)
            log += h.order(side, qty, limit, instrument=instrument)
        elif kind == "btc":
            mid = D(step[1] * 1000)
            n = len(h.inputs)
            h.quote(mid - 1, mid + 1)
            log += h.inputs[n:]
        elif kind == "switch":
            # A global kill switch engaged or released by another worker, read from
            # risk.config: its halt records itself for the account if it has open orders
            # (or with the account's next order approved under it), so a restart does not
            # run it again; one whose transaction is lost is redone exactly.
            switch: EventPayload = (
                KillSwitchEngaged(scope="*", engaged_by="admin", reason="t")
                if step[1]
                else KillSwitchReleased(scope="*", released_by="admin", reason="t")
            )
            event, out, lost = read(switch, "engine")
            redone_exactly(lost, out)
        elif kind == "request" or requested:
            if kind == "request":
                tid = f"w{len(requested)}"
                amount = str(D(step[2]) / (10_000 if step[1] == "BTC" else 1))
                payload = transfer_fact(tid, "request", asset=step[1], amount=amount)
                requested.append(tid)
            else:
                tid = requested[step[1] % len(requested)]
                payload = (
                    transfer_fact(tid, "check", outcome="REJECT") if kind == "reject"
                    else transfer_fact(tid, "settle")
                )  # fmt: skip
            event, out, lost = read(payload, "transfers")
            redone_exactly(lost, out)
        if kind in ("credit", "switch") or (kind in ("request", "reject", "settle") and requested):
            # A worker that took the partition over folded the account's records to their
            # end before its reference reader came to the fact: reading it does nothing.
            late = EngineState()
            for e in [e for e in log if e.topic not in _OWN_TOPICS and e is not event]:
                late.apply(e)
            for e in [e for e in log if e.topic in _OWN_TOPICS]:
                late.apply(e)
            assert control(late, event, h.ctx) == [], step
            assert canonical_state(late) == canonical_state(h.state), step
        # A restart here, with everything committed.
        rebuilt = EngineState()
        for e in [e for e in log if e.topic not in _OWN_TOPICS]:
            rebuilt.apply(e)
        for e in [e for e in log if e.topic in _OWN_TOPICS]:
            rebuilt.apply(e)
        assert canonical_state(rebuilt) == canonical_state(h.state)
        # What the log shows committed, before `catch_up` folds its own outputs.
        causes = [h.state.hold_causes.get("A1"), *h.state.debit_causes.get("A1", {}).values()]
        committed = {c.event_id for c in causes if c is not None and rebuilt.fact_committed(c)}
        in_force = h.state.limit_cause("A1")
        assert in_force is not None
        if _limits_committed(rebuilt, in_force, "A1"):
            committed.add(in_force.event_id)
        caught = catch_up(rebuilt, h.ctx, everyone)
        # Every pass recorded itself in its transaction: nothing lost, nothing redone.
        assert caught == [], step
        assert not [e for e in caught if e.causation_id in committed], step
        if version == 1:  # the limits of the start, before any decision: never a cancel
            assert "CREDIT_LIMIT" not in {getattr(e.payload, "reason", None) for e in caught}


def test_an_old_logs_decided_limits_change_is_shown_committed_by_its_cancels() -> None:
    """A credit lowered from 5,000 to 2,000 by an admin command the engine decided: its
    pass cancels the newer of two ETH/BTC buys borrowing BTC, caused by the command (the
    deciding worker's emitter), while `catch_up` finds the accepted fact in force. On a
    log from before `RestingOrdersChecked`, that cancel is the proof the change committed.
    Before, `_limits_committed` looked for a cancel caused by the accepted fact only, found
    none, and with no decision since a restart after BTC rose cancelled the other buy
    `CREDIT_LIMIT` too, which no live worker did."""
    limits = _limits().model_copy(update={"credit_limit": D("5000")})
    h = Harness(limits, cash=D("10000"))
    h.quote(D("29999"), D("30001"))
    h.quote(D("0.05"), D("0.0501"), instrument="ETH/BTC")
    for _ in range(2):
        assert decision(h.order(Side.BUY, D("1"), D("0.0499"), instrument="ETH/BTC")).outcome == (
            "APPROVED"
        )
    out = h.admin(
        RiskLimitsChanged(
            scope="*", config_version=2, changed_by="admin",
            limits=limits.model_copy(update={"credit_limit": D("2000")}),
        )
    )  # fmt: skip
    assert types(out) == [
        "RiskLimitsChanged", "CancelRequested", "OrderCanceled", "RestingOrdersChecked"
    ]  # fmt: skip
    assert out[2].payload.reason == "CREDIT_LIMIT" and out[2].causation_id == out[0].causation_id
    h.state.account("A1").unheld.discard(out[0].event_id)  # an old log: no record folded
    h.quote(D("44999"), D("45001"))  # the buy left borrows 2,245.5 now: over
    assert catch_up(h.state, h.ctx, lambda _account: True) == []


# ---- a hand-over: the new owner reads a fact after the records its pass wrote ------------


def _taken_over(h: Harness, own: list[Any], fact: Any) -> EngineState:
    """The state of a worker that takes the account's partition over incrementally
    (`Worker._take_over`): it folds the account's own records up to their end, while its
    reader of the reference topic is still before `fact`, which it reads next (`control`)."""
    s = EngineState()
    for e in h.inputs:
        if e.event_id != fact.event_id:
            s.apply(e)
    for e in own:
        s.apply(e)
    return s


def test_a_new_owner_reading_a_fact_whose_pass_committed_runs_it_no_more() -> None:
    """The owner read a request (nothing rested: its pass cancelled nothing and recorded
    itself), then approved a buy of 3 ETH on ETH/BTC borrowing 0.047 BTC under the hold;
    BTC rose to 60,000. The partition changes hands; the new owner folds the account's
    records (the request's `RestingOrdersChecked` among them) while its transfers.events
    reader is still before the request, which it reads next. Before, `control` ran the
    request's pass again on that state: the buy cancelled `WITHDRAWAL_HELD`, which no
    live worker did, and the record written twice. The log shows the pass committed for
    the account (`AccountState.unheld`): nothing to do."""
    limits = _limits().model_copy(update={"credit_limit": D("3000")})
    h = Harness(limits, cash=D("10000"))
    held, own = _hold_then_borrow(h)
    request = next(e for e in h.inputs if e.event_id == held[0].causation_id)
    state = _taken_over(h, own, request)
    assert control(state, request, h.ctx) == []
    assert canonical_state(state) == canonical_state(h.state)


def test_a_new_owner_reading_a_limits_change_whose_pass_committed_runs_it_no_more() -> None:
    """A credit lowered 3,000 -> 2,900 still covers a resting ETH/BTC buy borrowing 0.047
    BTC: its pass cancels nothing and records itself; then BTC rises to 70,000. The new
    owner of the account's partition folds its records while its risk.config reader is
    still before the change, and reads the change next. Before, `control` ran the pass on
    that state: the buy cancelled `CREDIT_LIMIT` (no live worker did) and a second record;
    for a change the engine decided, the deciding worker's record is caused by the admin
    command and the second one by the fact: another id, a duplicate no idempotent sink can
    spot. Likewise a global change read when the account had nothing resting (no record),
    an order decided under it since: the decision shows the pass ran (`_limits_committed`).
    And a change of the account's own limits (recorded with nothing resting too)."""
    limits = _limits().model_copy(update={"credit_limit": D("3000")})

    def run(scope: str, decided: bool, resting: bool) -> tuple[EngineState, Harness, Any]:
        lower = RiskLimitsChanged(
            scope=scope, config_version=2, changed_by="admin",
            limits=limits.model_copy(update={"credit_limit": D("2900")}),
        )  # fmt: skip
        h = Harness(limits, cash=D("10000"))
        own = _priced_with_btc(h)
        if resting:
            own += h.order(Side.BUY, D("3"), D("0.049"), instrument="ETH/BTC")
        if decided:
            out = h.admin(lower)  # the accepted fact, then the pass's outputs
            change, live = out[0], out[1:]
        else:
            change = new_event(lower, producer="engine", occurred_at=h.tick())
            h.inputs.append(change)
            live = control(h.state, change, h.ctx)
        # A change of the account's own limits is recorded with nothing resting too.
        assert types(live) == (["RestingOrdersChecked"] if resting or scope != "*" else [])
        own += live
        if not resting:
            buy = h.order(Side.BUY, D("3"), D("0.049"), instrument="ETH/BTC")
            assert (decision(buy).outcome, decision(buy).risk_config_version) == ("APPROVED", 2)
            own += buy
        h.quote(D("69999"), D("70001"))
        return _taken_over(h, own, change), h, change

    for scope in ("*", "A1"):
        for decided in (False, True):
            for resting in (True, False):
                state, h, change = run(scope, decided, resting)
                assert control(state, change, h.ctx) == [], (scope, decided, resting)
                assert canonical_state(state) == canonical_state(h.state)


def test_a_global_change_lost_with_the_accounts_first_own_limits_is_redone_first() -> None:
    """Three resting bids of 1 BTC under a position limit of 10. One lost transaction read
    a global change to 2 (its pass cancels a bid, caused by it, with its record), then
    A1's first limits of its own, 1 (the second bid, caused by that change). Before, a
    restart redid the passes of A1's own scope only: both bids cancelled as caused by the
    own change, the global change's record never written. Now the global changes read
    before the account's first own limits, not shown committed for it, are redone first,
    each on the limits of its moment: the live bytes and state."""
    lim = _limits().model_copy(update={"max_position": D("10")})
    h = Harness(lim, cash=D("10000000"))
    h.quote(D("29999"), D("30001"))
    for _ in range(3):
        assert decision(h.order(Side.BUY, D("1"), D("29000"))).outcome == "APPROVED"
    lost = copy.deepcopy(h.state)
    changes = [
        new_event(
            RiskLimitsChanged(
                scope=scope, config_version=version, changed_by="admin",
                limits=lim.model_copy(update={"max_position": D(position)}),
            ),
            producer="engine",
            occurred_at=h.tick(),
        )
        for scope, version, position in (("*", 2, "2"), ("A1", 3, "1"))
    ]  # fmt: skip
    live = [e for change in changes for e in control(h.state, change, h.ctx)]
    assert [(e.event_type, e.causation_id) for e in live if e.event_type != "CancelRequested"] == [
        ("OrderCanceled", changes[0].event_id),
        ("RestingOrdersChecked", changes[0].event_id),
        ("OrderCanceled", changes[1].event_id),
        ("RestingOrdersChecked", changes[1].event_id),
    ]
    for change in changes:
        lost.apply(change)  # folded; the transaction lost
    redone = catch_up(lost, h.ctx, lambda _account: True)
    assert [encode(e) for e in redone] == [encode(e) for e in live]
    assert canonical_state(lost) == canonical_state(h.state)
    assert lost.limits == h.state.limits


# ---- the steps of passes that committed are not kept (issue #3) --------------------------


def _withdrawals(h: Harness, n: int, start: int = 0) -> None:
    """`n` withdrawals of 1 USDC, each requested, checked, released and settled, every
    pass and settlement committing (its records folded, as the live worker folds them)."""
    for i in range(start, start + n):
        for step in ("request", "check", "release", "settle"):
            _transfer(h, transfer_fact(f"w{i}", step, amount="1"))


def test_the_steps_of_passes_that_committed_are_not_kept() -> None:
    """Each withdrawal leaves two transfer steps (its request's pass, its settlement's
    units), each with its fact and a copy of the holds: ~4.9 KB per withdrawal kept
    forever by every worker before (docs/benchmarks.md, session 23). `catch_up` redoes
    only the passes after the newest one the log shows committed, on the holds and debits
    it left: once a pass committed, the steps before it are never read again, and the
    account keeps O(1) of them, however many withdrawals. A lost batch after that is
    still redone byte for byte, and a rebuild (own records read after the facts, or
    before them: a hand-over) keeps as few."""
    h = _harness()
    _buy(h, "0.1", "29000")
    _withdrawals(h, 40)
    assert len(h.state.transfer_steps["A1"]) <= 2
    assert catch_up(copy.deepcopy(h.state), h.ctx, lambda _account: True) == []
    lost, live = _requests_lost(h, ("x1", "3000"), ("x2", "6000"))
    assert [e.event_type for e in live].count("RestingOrdersChecked") == 2
    redone = catch_up(lost, h.ctx, lambda _account: True)
    assert [encode(e) for e in redone] == [encode(e) for e in live]
    assert canonical_state(lost) == canonical_state(h.state)
    assert len(lost.transfer_steps["A1"]) <= 2 and len(h.state.transfer_steps["A1"]) <= 2
    own = [e for e in h.inputs if e.producer == ENGINE_PRODUCER]
    facts = [e for e in h.inputs if e.producer != ENGINE_PRODUCER]
    for order in ([*facts, *own], [*own, *facts]):
        s = EngineState()
        for e in order:
            s.apply(e)
        assert len(s.transfer_steps["A1"]) <= 2
        assert "RestingOrdersChecked" not in types(catch_up(s, h.ctx, lambda _account: True))


def test_a_hand_over_drops_the_steps_its_slice_shows_committed() -> None:
    """A worker not owning the account keeps every step (it reads the transfer facts, not
    the account's records: it cannot tell which passes committed). Taking the partition
    over, the slice's records show them committed: the steps before the newest are
    dropped, and the takeover's `catch_up` redoes exactly the pass the owner lost."""
    from engine.snapshot import merge_slices, release_partitions, take_slice

    h = _harness()
    _buy(h, "0.1", "29000")
    other = copy.deepcopy(h.state)
    release_partitions(other, {0})  # a worker owning other partitions only
    elsewhere = dataclasses.replace(h.ctx, owns=lambda _a: False)
    n = len(h.inputs)
    _withdrawals(h, 20)
    for e in h.inputs[n:]:
        if e.producer != ENGINE_PRODUCER:
            assert control(other, e, elsewhere) == []
    # Unowned: the newest steps only (40 before session 24), the cut marked.
    assert len(other.transfer_steps["A1"]) <= STEPS_KEPT and "A1" in other.steps_cut
    sl = take_slice(h.state, 0, {"orders.lifecycle": 0})
    event = new_event(transfer_fact("x1", "request", amount="3000"), producer="transfers",
                      occurred_at=h.tick())  # fmt: skip
    live = control(h.state, event, h.ctx)  # the owner's transaction: lost
    assert types(live)[-1] == "RestingOrdersChecked"
    assert control(other, event, elsewhere) == []
    merge_slices(other, [sl])
    assert len(other.transfer_steps["A1"]) <= 2
    assert redo_known(other, "A1") and "A1" not in other.steps_cut
    redone = catch_up(other, h.ctx, lambda _account: True)
    assert [encode(e) for e in redone] == [encode(e) for e in live]
    assert canonical_state(other) == canonical_state(h.state)


# ---- what a worker cannot see committed is kept to the newest (issue #3) ------------------


def _unowned(h: Harness) -> tuple[EngineState, Any]:
    """A worker owning other partitions only (it reads the reference topics, not A1's
    records), from the harness's state now, and its context."""
    from engine.snapshot import release_partitions

    other = copy.deepcopy(h.state)
    release_partitions(other, {0})
    return other, dataclasses.replace(h.ctx, owns=lambda _a: False)


def _withdrawals_read_elsewhere(
    h: Harness, other: EngineState, elsewhere: Any, n: int, start: int
) -> None:
    """`_withdrawals` on the owner, and their transfer facts (not its records) read by
    `other`, a worker not owning the account (`_unowned`), which writes nothing."""
    k = len(h.inputs)
    _withdrawals(h, n, start)
    for e in h.inputs[k:]:
        if e.producer != ENGINE_PRODUCER:
            assert control(other, e, elsewhere) == []


def _kept(state: EngineState) -> tuple[int, int, int, int]:
    """Entries kept: A1's transfer steps and flows' entries, global limits changes and
    global switches."""
    return (
        len(state.transfer_steps.get("A1", ())),
        len(state.account("A1").flows),
        len(state.limit_steps.get("*", ())),
        len(state.switch_steps),
    )


def test_a_worker_not_owning_the_account_keeps_a_bounded_number_of_steps_and_flows() -> None:
    """A worker not owning the account reads its transfer facts but not its records, so it
    cannot tell which passes committed: before session 24 it kept every step and every
    settlement's flow (~6 KB per withdrawal, forever; docs/benchmarks.md). Now the newest
    `STEPS_KEPT` of each: as many after 40 withdrawals as after 10 (failed before: 20
    steps and 10 flows, then 80 and 40)."""
    h = _harness()
    _buy(h, "0.1", "29000")
    other, elsewhere = _unowned(h)
    kept = []
    for start, n in ((0, 10), (10, 30)):
        _withdrawals_read_elsewhere(h, other, elsewhere, n, start)
        kept.append(_kept(other)[:2])
    assert kept[0] == kept[1] == (STEPS_KEPT, STEPS_KEPT)
    # The owner keeps O(1) as before, and nothing it writes changed.
    assert len(h.state.transfer_steps["A1"]) <= 2 and not h.state.account("A1").flows


def test_a_hand_over_whose_kept_steps_cannot_tell_what_was_lost_is_refused() -> None:
    """The old owner's transactions of 10 withdrawals were lost (its slice shows none of
    their passes committed) while a worker not owning the account kept only the newest
    steps and flows: which of the cut ones were lost is unknown, so `redo_known` refuses
    (the worker rebuilds from the log, `_take_over`). A rebuild keeps every step until
    the records are read and redoes every lost pass as live ran them, byte for byte."""
    from engine.snapshot import merge_slices, take_slice

    h = _harness()
    committed = [*h.inputs, *h.order(Side.BUY, D("0.1"), D("29000"))]
    other, elsewhere = _unowned(h)
    sl = take_slice(h.state, 0, {"orders.lifecycle": 0})
    live: list[Any] = []
    facts: list[Any] = []
    for i in range(10):
        for step in ("request", "check", "release", "settle"):
            event = new_event(transfer_fact(f"w{i}", step, amount="1"), producer="transfers",
                              occurred_at=h.tick())  # fmt: skip
            live += control(h.state, event, h.ctx)  # the owner's transactions: lost
            facts.append(event)
            assert control(other, event, elsewhere) == []
    assert "A1" in other.steps_cut and "A1" in other.flows_cut
    merge_slices(other, [sl])
    assert not redo_known(other, "A1")
    rebuilt = EngineState()
    for e in [e for e in [*committed, *facts] if e.producer != ENGINE_PRODUCER]:
        rebuilt.apply(e)
    for e in [e for e in committed if e.producer == ENGINE_PRODUCER]:
        rebuilt.apply(e)
    assert redo_known(rebuilt, "A1") and len(rebuilt.transfer_steps["A1"]) == 20
    redone = catch_up(rebuilt, h.ctx, lambda _account: True)
    assert [encode(e) for e in redone] == [encode(e) for e in live]
    assert canonical_state(rebuilt) == canonical_state(h.state)


def _global_change(h: Harness, credit: str, version: int) -> Any:
    change = RiskLimitsChanged(
        scope="*", config_version=version, changed_by="admin",
        limits=_limits().model_copy(update={"credit_limit": D(credit)}),
    )  # fmt: skip
    return new_event(change, producer="admin", occurred_at=h.tick())


def test_limits_changes_and_global_switches_are_kept_to_the_newest() -> None:
    """Every limits change and global switch engagement was kept forever, ~2 KB each
    (failed before: 11, then 31 changes kept). Now the newest `STEPS_KEPT` per scope and of the
    switches, as many after 30 as after 10; the live state, and one restarted from the
    log (every change kept until its `catch_up`), catch nothing up."""
    h = _harness()
    log = [*h.inputs, *h.order(Side.BUY, D("0.1"), D("29000"))]
    kept = []
    for start, n in ((0, 10), (10, 20)):
        for v in range(start, start + n):
            event = _global_change(h, str(v), v + 2)
            log += [event, *control(h.state, event, h.ctx)]
        kept.append(_kept(h.state)[2])
    assert kept == [STEPS_KEPT, STEPS_KEPT]
    assert catch_up(copy.deepcopy(h.state), h.ctx, lambda _account: True) == []
    for engaged in [True, False] * 10:
        switch: EventPayload = (
            KillSwitchEngaged(scope="*", engaged_by="admin", reason="t") if engaged
            else KillSwitchReleased(scope="*", released_by="admin", reason="t")
        )  # fmt: skip
        event = new_event(switch, producer="engine", occurred_at=h.tick())
        log += [event, *control(h.state, event, h.ctx)]
    log += h.order(Side.BUY, D("0.1"), D("29000"))  # after every switch
    assert _kept(h.state)[2:] == (STEPS_KEPT, STEPS_KEPT)
    assert redo_known(h.state, "A1")
    assert catch_up(copy.deepcopy(h.state), h.ctx, lambda _account: True) == []
    rebuilt = EngineState()
    for e in [e for e in log if e.topic not in _OWN_TOPICS]:
        rebuilt.apply(e)
    for e in [e for e in log if e.topic in _OWN_TOPICS]:
        rebuilt.apply(e)
    assert _kept(rebuilt)[2:] == (31, 10)  # the harness's limits and 30 changes
    assert catch_up(rebuilt, h.ctx, lambda _account: True) == []
    assert _kept(rebuilt)[2:] == (STEPS_KEPT, STEPS_KEPT)


def test_a_hand_over_after_cut_limits_changes_or_switches_it_cannot_tell_is_refused() -> None:
    """A worker not owning the account read 10 global limits changes (it keeps the newest
    `STEPS_KEPT`) whose passes over the account's resting order the old owner lost (its
    slice shows none): refused (`redo_known`), a rebuild instead. Likewise an order
    resting from before a global switch no longer kept."""
    from engine.snapshot import merge_slices, take_slice

    h = _harness()
    _buy(h, "0.1", "29000")
    other, elsewhere = _unowned(h)
    switched, _ = _unowned(h)
    sl = take_slice(h.state, 0, {"orders.lifecycle": 0})
    for v in range(10):
        event = _global_change(h, "0", v + 2)
        control(h.state, event, h.ctx)  # the owner's transactions: lost
        assert control(other, event, elsewhere) == []
    assert "*" in other.limits_cut
    merge_slices(other, [sl])
    assert other.account("A1").open_orders and not redo_known(other, "A1")
    # The switches: engaged and released 10 times, read by a worker not owning the account.
    for engaged in [True, False] * 10:
        switch: EventPayload = (
            KillSwitchEngaged(scope="*", engaged_by="admin", reason="t") if engaged
            else KillSwitchReleased(scope="*", released_by="admin", reason="t")
        )  # fmt: skip
        event = new_event(switch, producer="engine", occurred_at=h.tick())
        assert control(switched, event, elsewhere) == []
    assert len(switched.switch_steps) == STEPS_KEPT and switched.switches_cut_at is not None
    merge_slices(switched, [sl])
    assert switched.account("A1").open_orders and not redo_known(switched, "A1")


# ---- a settled withdrawal keeps no ids of its facts (issue #3) ---------------------------


def _facts_of(h: Harness, tid: str) -> list[Any]:
    """The transfer facts of withdrawal `tid` read so far, in the order read."""
    return [
        e for e in h.inputs
        if e.producer == "transfers" and getattr(e.payload, "transfer_id", None) == tid
    ]  # fmt: skip


def test_a_settled_withdrawal_keeps_no_ids_of_its_facts() -> None:
    """`seen_reference` kept the id of every transfer fact, forever (4 per withdrawal, most
    of the ~970 B its owner kept; docs/benchmarks.md, session 24). Once settled, a
    withdrawal's status ignores every later step of it (a late step, a second settlement,
    a second request of its id: `_apply_transfer`), so a fact of it read again changes
    nothing without its id: they go at the settlement, and a fact of it read after is not
    kept. The owner and a worker not owning the account keep as many ids after 40
    withdrawals as after 10 (failed before: 40 and 120 more)."""
    h = _harness()
    _buy(h, "0.1", "29000")
    other, elsewhere = _unowned(h)
    seen = []
    for start, n in ((0, 10), (10, 30)):
        _withdrawals_read_elsewhere(h, other, elsewhere, n, start)
        seen.append((len(h.state.seen_reference), len(other.seen_reference)))
    assert seen[0] == seen[1]
    assert catch_up(copy.deepcopy(h.state), h.ctx, lambda _account: True) == []


def test_a_withdrawals_fact_ids_go_at_its_settlement_and_a_fact_read_again_changes_nothing() -> (
    None
):
    """Until the settlement the ids stay: a `REJECT` check read again after a re-check
    would take the hold back. After it every fact of the withdrawal, read again, changes
    nothing, writes nothing and is not kept; a rebuild from the log (reference facts
    first, or the own records first: a hand-over) ends in the live state."""
    h = _harness()
    _buy(h, "0.1", "29000")
    _transfer(h, transfer_fact("x1", "request", amount="3000"))
    _transfer(h, transfer_fact("x1", "check", outcome="REJECT"))
    _transfer(h, transfer_fact("x1", "check", outcome="PASS"))
    rejected = _facts_of(h, "x1")[1]
    assert control(h.state, rejected, h.ctx) == []  # read again: kept, ignored
    assert h.state.account("A1").held == {"USDC": D("3000")}
    _transfer(h, transfer_fact("x1", "release"))
    facts = _facts_of(h, "x1")
    assert {e.event_id for e in facts} <= h.state.seen_reference
    _transfer(h, transfer_fact("x1", "settle"))
    facts = _facts_of(h, "x1")
    assert not {e.event_id for e in facts} & h.state.seen_reference
    before = canonical_state(h.state)
    late = new_event(transfer_fact("x1", "check", outcome="REJECT"), producer="transfers",
                     occurred_at=h.tick())  # fmt: skip
    again = new_event(transfer_fact("x1", "request", amount="1"), producer="transfers",
                      occurred_at=h.tick())  # fmt: skip
    for e in [*facts, late, again, *facts]:
        assert control(h.state, e, h.ctx) == []
    assert canonical_state(h.state) == before
    assert catch_up(copy.deepcopy(h.state), h.ctx, lambda _account: True) == []
    log = [*h.inputs, late, again]
    own = [e for e in log if e.producer == ENGINE_PRODUCER]
    refs = [e for e in log if e.producer != ENGINE_PRODUCER]
    for order in ([*refs, *own], [*own, *refs]):
        s = EngineState()
        for e in order:
            s.apply(e)
        assert s.seen_reference == h.state.seen_reference
        assert catch_up(s, h.ctx, lambda _account: True) == []
