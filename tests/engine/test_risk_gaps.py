"""Risk gaps found in session 22 (helper-120): each test failed before its fix."""

from __future__ import annotations

from decimal import Decimal, getcontext, localcontext
from typing import Any

from schemas.events import RiskLimits, RiskLimitsChanged, Side
from tests.engine.pure import INSTRUMENT, Harness, decision

D = Decimal


def _print(h: Harness, price: str, qty: str = "100") -> list[Any]:
    h.tick()
    return h.trade(D(price), D(qty))


def test_a_stop_loss_child_and_a_resting_sell_stay_within_max_position() -> None:
    """Long 10 (the limit) with a stop-loss for the 10, and BTC deposited besides: a sell
    of 20 counted the position as there to sell, but the stop sells it first when it
    triggers, and the sell then took the pair short 20, twice the limit (MAX_POSITION v3
    counts the account's open stop/take children on the order's side as filled first)."""
    limits = RiskLimits(max_position=D("10"), max_order_notional=D("1e9"))
    h = Harness(limits, cash=D("1000000"))
    h.admin_deposit("BTC", D("20"))
    h.quote(D("99"), D("101"))
    bought = decision(h.order(Side.BUY, D("10"), D("101"), stop_loss=D("96")))
    assert bought.outcome == "APPROVED"
    assert h.state.account("A1").positions[INSTRUMENT] == 10
    d = decision(h.order(Side.SELL, D("20"), D("104")))
    _print(h, "95")  # the stop triggers and sells the 10
    _print(h, "104")  # the resting sell fills
    position = h.state.account("A1").positions[INSTRUMENT]
    assert abs(position) <= limits.max_position, (d.outcome, position)
    assert d.outcome == "REJECTED" and "MAX_POSITION" in d.reason_codes


def test_without_the_child_the_same_sell_passes() -> None:
    """The same sell with no stop-loss armed: the position is there to net against."""
    limits = RiskLimits(max_position=D("10"), max_order_notional=D("1e9"))
    h = Harness(limits, cash=D("1000000"))
    h.admin_deposit("BTC", D("20"))
    h.quote(D("99"), D("101"))
    assert decision(h.order(Side.BUY, D("10"), D("101"))).outcome == "APPROVED"
    assert decision(h.order(Side.SELL, D("20"), D("104"))).outcome == "APPROVED"
    _print(h, "104")
    assert h.state.account("A1").positions[INSTRUMENT] == -10


def test_a_lowered_position_limit_counts_the_children_too() -> None:
    """The limits change's pass measures as MAX_POSITION v3: long 10 with a stop for the
    10 and a sell of 20 resting (worst case -20 once the stop sold), a limit lowered to
    15 cancels the sell; the pass measured -10 before and left it."""
    limits = RiskLimits(max_position=D("30"), max_order_notional=D("1e9"))
    h = Harness(limits, cash=D("1000000"))
    h.admin_deposit("BTC", D("20"))
    h.quote(D("99"), D("101"))
    h.order(Side.BUY, D("10"), D("101"), stop_loss=D("96"))
    sell = h.order(Side.SELL, D("20"), D("104"))
    assert decision(sell).outcome == "APPROVED"
    lower = limits.model_copy(update={"max_position": D("15")})
    out = h.admin(RiskLimitsChanged(scope="*", config_version=2, limits=lower, changed_by="a"))
    ended = [e.payload for e in out if e.event_type == "OrderCanceled"]
    assert [c.reason for c in ended] == ["MAX_POSITION"]
    _print(h, "95")
    _print(h, "104")
    assert h.state.account("A1").positions[INSTRUMENT] == 0


def _fills(out: list[Any]) -> list[tuple[Side, Decimal, Decimal]]:
    return [
        (e.payload.side, e.payload.quantity, e.payload.price) for e in out if e.event_type == "Fill"
    ]


def test_a_triggered_stop_loss_and_the_accounts_own_resting_bid_do_not_trade_one_print() -> None:
    """Long 10 with a stop-loss sell at 96, then a bid of 5 at 95 resting (scaling in:
    SELF_TRADE passes it, an armed stop-loss does not count). A print at 94 filled both
    before: the account bought 5 at 95 and sold at 94 on the same print, a trade with
    itself through the tape. Now the venue cancels the account's resting orders a print
    would fill on the other side of a stop/take child that trades at it (`SELF_TRADE`):
    the stop sells, the bid is gone."""
    limits = RiskLimits(max_position=D("100"), max_order_notional=D("1e9"))
    h = Harness(limits, cash=D("1000000"))
    h.quote(D("99"), D("101"))
    assert decision(h.order(Side.BUY, D("10"), D("101"), stop_loss=D("96"))).outcome == "APPROVED"
    bid = decision(h.order(Side.BUY, D("5"), D("95")))
    assert bid.outcome == "APPROVED"
    out = _print(h, "94")
    assert _fills(out) == [(Side.SELL, D("10"), D("94"))]
    ended = [e.payload for e in out if e.event_type == "OrderCanceled"]
    assert [c.reason for c in ended] == ["SELF_TRADE"]
    assert h.state.account("A1").positions[INSTRUMENT] == 0


def test_a_bid_under_an_untouched_stop_still_fills() -> None:
    """Scaling in under a stop: a print at the bid and above the stop fills the bid and
    leaves the stop armed (only a child that trades at the print cancels)."""
    limits = RiskLimits(max_position=D("100"), max_order_notional=D("1e9"))
    h = Harness(limits, cash=D("1000000"))
    h.quote(D("99"), D("101"))
    assert decision(h.order(Side.BUY, D("10"), D("101"), stop_loss=D("96"))).outcome == "APPROVED"
    assert decision(h.order(Side.BUY, D("5"), D("97"))).outcome == "APPROVED"
    out = _print(h, "96.5")
    assert _fills(out) == [(Side.BUY, D("5"), D("97"))]
    assert not [e for e in out if e.event_type == "OrderCanceled"]


def test_a_triggered_child_blocks_opposite_limits_until_it_ends() -> None:
    """A stop triggered and filled in part (a print of 1 against a stop for 10) is a market
    order at every later print: a bid would fill at the next print and the stop would sell
    into it, so SELF_TRADE refuses every bid while the stop lives. It does not live for
    ever: with the position sold by hand, the next print cancels it (`CHILD_CAPPED`: it
    may only close) and a bid passes again."""
    limits = RiskLimits(max_position=D("100"), max_order_notional=D("1e9"))
    h = Harness(limits, cash=D("1000000"))
    h.quote(D("99"), D("101"))
    assert decision(h.order(Side.BUY, D("10"), D("101"), stop_loss=D("96"))).outcome == "APPROVED"
    assert _fills(_print(h, "95", "1")) == [(Side.SELL, D("1"), D("95"))]
    h.quote(D("94"), D("96"))
    d = decision(h.order(Side.BUY, D("1"), D("93")))
    assert (d.outcome, d.reason_codes) == ("REJECTED", ("SELF_CROSS",))
    assert decision(h.order(Side.SELL, D("9"))).outcome == "APPROVED"  # sold by hand
    assert h.state.account("A1").positions[INSTRUMENT] == 0
    out = _print(h, "95")
    assert [e.payload.reason for e in out if e.event_type == "OrderCanceled"] == ["CHILD_CAPPED"]
    h.quote(D("94"), D("96"))
    assert decision(h.order(Side.BUY, D("1"), D("93"))).outcome == "APPROVED"


def _decided_under(prec: int | None) -> list[Any]:
    """A session of many-digit prices and quantities, the whole harness (fold, rules,
    venue) run under an ambient decimal context of `prec` digits (None: the default);
    what it decided and filled, without the ids."""

    def play() -> list[Any]:
        limits = RiskLimits(
            max_position=D("12.34567891"),
            max_order_notional=D("370382.71604938"),
            price_collar_pct=D("0.0123456789"),
        )
        h = Harness(limits, cash=D("370382.71604938"))
        h.admin_deposit("BTC", D("1.23456789"))
        seen: list[Any] = []
        h.quote(D("30000.12345678"), D("30000.12345679"))
        for side, qty, limit in [
            (Side.BUY, "1.23456789", "30000.12345679"),
            (Side.BUY, "11.11111111", "30000.12345679"),
            (Side.BUY, "11.11111102", "30000.12345679"),
            (Side.SELL, "2.46913578", "30000.12345678"),
            (Side.BUY, "1.00000001", "30001.98765432"),
            (Side.BUY, "0.99999999", "29700.12345678"),
        ]:
            out = h.order(side, D(qty), D(limit), stop_loss=None)
            d = decision(out)
            seen.append((d.outcome, d.reason_codes, [r.detail for r in d.rule_results]))
            seen += [
                (f.payload.quantity, f.payload.price, f.payload.fee)
                for f in out[1:]
                if f.event_type == "Fill"
            ]
        seen += [_fills(_print(h, "29700.12345677", "1.00000003"))]
        acc = h.state.account("A1")
        seen.append(sorted(acc.balances.items()))
        return seen

    if prec is None:
        return play()
    with localcontext(prec=prec) as caller:
        seen = play()
        assert getcontext() is caller and caller.prec == prec  # the caller's, restored
        return seen


def test_decisions_do_not_depend_on_the_ambient_decimal_context() -> None:
    """Every money computation of the engine is in an explicit context: the mid
    (`PriceState.reference`) and BALANCE's notional were taken in the thread's ambient one,
    so a caller that had lowered its precision got other decisions (and fills)."""
    assert _decided_under(5) == _decided_under(None)
    assert _decided_under(60) == _decided_under(None)


def _opened_v1(account: str, **fields: Any) -> Any:
    """An AccountOpened of schema version 1 as a writer of before session 22 sent it
    (`fields` besides the account and owner), decoded from its bytes. An event id of its
    own per account and fields: the engine never decides one command id twice (a rejected
    command's envelope replayed is refused, `EngineState.rejected_commands`)."""
    import json
    import uuid

    from schemas import decode

    eid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{account}:{sorted(fields.items())}"))
    body = {
        "event_id": eid,
        "event_type": "AccountOpened",
        "schema_version": 1,
        "occurred_at": "2026-01-05T12:00:00.000000Z",
        "producer": "admin",
        "correlation_id": eid,
        "causation_id": None,
        "key": account,
        "payload": {
            "account": account,
            "beneficial_owner": {"owner_id": "o", "kind": "NATURAL", "name": "O", "country": "DE"},
            **fields,
        },
    }
    return decode(json.dumps(body).encode())


def test_an_account_opened_without_a_currency_is_refused_by_the_schema() -> None:
    """AccountOpened v1 defaulted `base_currency` to USDT, which the allow-list (USDC,
    EURC) does not permit: a writer that left it out had its account valued in it,
    silently. v2 requires it; a v1 event keeps its meaning (USDT) on replay."""
    import pytest
    from pydantic import ValidationError

    from schemas.events import AccountOpened, BeneficialOwner, OwnerKind

    owner = BeneficialOwner(owner_id="o", kind=OwnerKind.NATURAL, name="O", country="DE")
    with pytest.raises(ValidationError):
        AccountOpened(account="A9", beneficial_owner=owner)  # type: ignore[call-arg]
    assert AccountOpened.SCHEMA_VERSION == 2
    old = _opened_v1("A9")
    assert (old.schema_version, old.payload.base_currency) == (1, "USDT")
    h = Harness()
    h.state.apply(old)
    assert h.state.account("A9").base_currency == "USDT"  # replayed as it was folded


def test_the_engine_refuses_a_new_v1_account_opened_without_a_currency() -> None:
    """A v1 command naming no currency is refused (AdminCommandRejected); one naming it
    is accepted with it."""
    from engine.processor import process

    h = Harness()
    out = process(h.state, _opened_v1("A9"), h.ctx)
    assert [e.event_type for e in out] == ["AdminCommandRejected"]
    assert "base_currency" in out[0].payload.reason
    assert not h.state.account("A9").opened
    out = process(h.state, _opened_v1("A8", base_currency="EURC"), h.ctx)
    assert [e.event_type for e in out] == ["AccountOpened"]
    assert h.state.account("A8").base_currency == "EURC"


def test_an_asset_quoted_only_against_a_crypto_asset_has_no_mark() -> None:
    """`EngineState.mark` values an asset from a pair with the valuation currency (either
    way round) or through a stablecoin, not through a crypto asset: ETH quoted only on
    ETH/BTC, BTC on BTC/USDC, is not valued (no chaining), and a USDC account holding ETH
    cannot be measured (DRAWDOWN_BRAKE: NO_MARK, fail closed), as docs/engine.md says.
    Quoting ETH against the currency or a valued stablecoin values it."""
    limits = RiskLimits(max_position=D("100"), max_order_notional=D("1e9"))
    h = Harness(limits, cash=D("1000000"))
    h.quote(D("29999"), D("30001"))  # BTC/USDC
    h.quote(D("0.0499"), D("0.0501"), instrument="ETH/BTC")
    acc = h.state.account("A1")
    assert h.state.mark("BTC", acc) == D("30000")
    assert h.state.mark("ETH", acc) is None
    h.admin_deposit("ETH", D("1"))
    assert h.state.equity("A1") is None
    d = decision(h.order(Side.BUY, D("0.1"), D("30001")))
    assert (d.outcome, d.reason_codes) == ("REJECTED", ("NO_MARK",))
    h.quote(D("1499"), D("1501"), instrument="ETH/USDC")
    assert h.state.mark("ETH", acc) == D("1500")
    assert decision(h.order(Side.BUY, D("0.1"), D("30001"))).outcome == "APPROVED"
