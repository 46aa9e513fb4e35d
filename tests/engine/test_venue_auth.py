"""The paper venue's matching and the producer authentication, without a broker."""

from __future__ import annotations

import stat
from decimal import Decimal
from pathlib import Path

from engine import auth
from engine.processor import process
from engine.risk.rules import UNKNOWN_LAG
from engine.state import EngineState
from schemas import new_event
from schemas.events import CancelIntent, OrderIntent, OrderType, Side, TimeInForce
from tests.engine.pure import INSTRUMENT, Harness, decision, types

D = Decimal


def _h() -> Harness:
    h = Harness()
    h.quote(D("100"), D("101"), qty=D("2"))
    return h


def test_market_order_partial_fill_against_displayed_quantity() -> None:
    h = _h()
    out = h.order(Side.BUY, D("3"))
    assert types(out) == ["RiskDecision", "OrderSubmitted", "OrderAccepted", "Fill", "OrderExpired"]
    fill = out[3].payload
    assert (fill.quantity, fill.price, fill.liquidity) == (D("2"), D("101"), "TAKER")
    assert fill.fee == D("0.202") and fill.fee_asset == "USDC" and fill.leaves_quantity == 1
    assert fill.uti.startswith("TTPAPER") and len(fill.uti) <= 52


def test_a_fill_on_submission_is_not_dated_before_its_order() -> None:
    h = _h()  # the quote is older than the order that takes it
    h.tick(2.0)
    out = h.order(Side.BUY, D("1"))
    submitted = next(e for e in out if e.event_type == "OrderSubmitted")
    fill = next(e for e in out if e.event_type == "Fill")
    assert fill.payload.traded_at == submitted.occurred_at


def test_an_order_meets_the_book_of_its_own_time_not_a_newer_one() -> None:
    """Market data read ahead of a backlog of intents does not reprice the backlog."""
    h = _h()  # 100 / 101
    at = h.tick(1.0)  # the order's time
    h.tick(1.0)
    h.quote(D("98"), D("99"), qty=D("5"))  # a newer book, read before the engine got to the order
    intent = OrderIntent(
        producer_id="p1", strategy_id="s", account="A1", client_order_id="late",
        instrument=INSTRUMENT, side=Side.BUY, order_type=OrderType.MARKET, quantity=D("1"),
    )  # fmt: skip
    out = process(h.state, new_event(auth.sign(intent, h.key), producer="p1", occurred_at=at),
                  h.ctx)  # fmt: skip
    fill = next(e for e in out if e.event_type == "Fill")
    assert (fill.payload.price, fill.payload.traded_at, fill.occurred_at) == (D("101"), at, at)
    # an order stamped after the newest quote meets that one
    assert h.order(Side.BUY, D("1"))[3].payload.price == D("99")


def test_fok_ioc_and_resting_maker_fill() -> None:
    h = _h()
    assert types(h.order(Side.BUY, D("3"), D("101"), tif=TimeInForce.FOK))[-1] == "OrderExpired"
    ioc = h.order(Side.BUY, D("3"), D("101"), tif=TimeInForce.IOC)
    assert types(ioc)[-2:] == ["Fill", "OrderExpired"]
    rest = h.order(Side.BUY, D("1"), D("99.5"))
    assert types(rest)[-1] == "OrderAccepted"
    assert h.trade(D("99.6")) == []
    fills = [e.payload for e in h.trade(D("99.5"), qty=D("0.4"))]
    assert fills[0].liquidity == "MAKER" and fills[0].quantity == D("0.4")
    assert fills[0].price == D("99.5")


def test_cancel_and_unknown_cancel() -> None:
    h = _h()
    h.order(Side.BUY, D("1"), D("99"))
    coid = f"c{h.n}"
    out = h.feed(
        auth.sign(
            CancelIntent(
                producer_id="p1",
                strategy_id="s",
                account="A1",
                client_order_id="cx",
                target_client_order_id=coid,
            ),
            h.key,
        ),
        producer="p1",
    )
    assert types(out) == ["RiskDecision", "CancelRequested", "OrderCanceled"]
    again = h.feed(
        auth.sign(
            CancelIntent(
                producer_id="p1",
                strategy_id="s",
                account="A1",
                client_order_id="cy",
                target_client_order_id=coid,
            ),
            h.key,
        ),
        producer="p1",
    )
    assert decision(again).reason == "TOO_LATE_TO_CANCEL"  # canceled: done


def test_attached_stop_loss_and_take_profit_are_oco() -> None:
    h = _h()
    out = h.order(Side.BUY, D("1"), stop_loss=D("95"), take_profit=D("110"))
    children = [e.payload for e in out if e.event_type == "OrderSubmitted"][1:]
    assert [c.order_type for c in children] == [OrderType.STOP_LOSS, OrderType.TAKE_PROFIT]
    assert all(c.side is Side.SELL and c.quantity == 1 for c in children)
    hit = h.trade(D("94"))
    assert types(hit) == ["Fill", "CancelRequested", "OrderCanceled"]
    assert hit[0].payload.price == D("94") and hit[2].payload.reason == "OCO"
    assert h.state.account("A1").positions[INSTRUMENT] == 0
    assert h.trade(D("120")) == []


def test_processing_is_deterministic() -> None:
    runs = []
    for _ in range(2):
        h = _h()
        intent = new_event(
            auth.sign(
                OrderIntent(
                    producer_id="p1",
                    strategy_id="s",
                    account="A1",
                    client_order_id="same",
                    instrument=INSTRUMENT,
                    side=Side.BUY,
                    order_type=OrderType.MARKET,
                    quantity=D("1"),
                ),
                h.key,
            ),
            producer="p1",
            occurred_at=h.tick(),
        )
        runs.append((h, intent))
    # Same registered key in both runs so the signature verifies identically.
    h2, _ = runs[1]
    h1, intent = runs[0]
    h2.state.producers = h1.state.producers
    h2.state.prices = h1.state.prices
    a = [e.event_id for e in process(h1.state, intent, h1.ctx)]
    b = [e.event_id for e in process(h2.state, intent, h2.ctx)]
    assert a == b and len(a) == 4
    # And a resend gets the very same decision back, with nothing traded again.
    again = process(h1.state, intent, h1.ctx)
    assert [e.event_id for e in again] == [a[0]]


def _market_buy(client_order_id: str) -> OrderIntent:
    """An unsigned market buy of 1 by producer p1 on A1: the authentication tests vary it."""
    return OrderIntent(
        producer_id="p1",
        strategy_id="s",
        account="A1",
        client_order_id=client_order_id,
        instrument=INSTRUMENT,
        side=Side.BUY,
        order_type=OrderType.MARKET,
        quantity=D("1"),
    )


def test_signatures_and_entitlement() -> None:
    h = _h()
    other, _ = auth.new_keypair()
    forged = _market_buy("f")
    out = h.feed(auth.sign(forged, other), producer="p1")
    assert decision(out).reason == "BAD_SIGNATURE"
    tampered = auth.sign(forged.model_copy(update={"client_order_id": "g"}), h.key)
    tampered = tampered.model_copy(update={"quantity": D("100")})
    assert decision(h.feed(tampered, producer="p1")).reason == "BAD_SIGNATURE"
    unsigned = forged.model_copy(update={"client_order_id": "u"})
    assert decision(h.feed(unsigned, producer="p1")).reason == "BAD_SIGNATURE"
    not_mine = auth.sign(forged.model_copy(update={"client_order_id": "n", "account": "B9"}), h.key)
    assert decision(h.feed(not_mine, producer="p1")).reason == "NOT_ENTITLED"
    stranger = auth.sign(
        forged.model_copy(update={"client_order_id": "s", "producer_id": "zz"}), other
    )
    assert decision(h.feed(stranger, producer="zz")).reason == "UNKNOWN_PRODUCER"


def test_private_key_file_is_owner_only(tmp_path: Path) -> None:
    key, pub = auth.new_keypair()
    path = auth.key_path(tmp_path, "p1")
    auth.write_private_key(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert auth.public_hex(auth.read_private_key(path)) == pub


def test_admin_commands_need_an_admin_and_valid_facts() -> None:
    from schemas.events import DepositReceived, KycVerified

    h = _h()
    out = h.feed(KycVerified(account="A1", verified_by="x"), producer="mallory")
    assert types(out) == ["AdminCommandRejected"]
    out = h.admin(DepositReceived(deposit_id="d-A1", account="A1", asset="USDC", amount=D("1")))
    assert types(out) == ["AdminCommandRejected"] and "already" in out[0].payload.reason
    out = h.admin(KycVerified(account="NOPE", verified_by="x"))
    assert types(out) == ["AdminCommandRejected"]
    assert isinstance(h.state, EngineState)


def test_a_refusal_on_a_stale_view_says_the_view_is_stale() -> None:
    """An unknown producer or a missing entitlement judged while the control topics were
    not read to their end may be a registration not yet seen: refused all the same, but the
    detail says so (and, for the recorded NOT_ENTITLED, that a retry needs a new id)."""
    h = _h()
    other, _ = auth.new_keypair()
    base = _market_buy("x")
    stranger = auth.sign(
        base.model_copy(update={"client_order_id": "s", "producer_id": "zz"}), other
    )
    not_mine = auth.sign(base.model_copy(update={"client_order_id": "n", "account": "B9"}), h.key)
    fresh = decision(h.feed(stranger, producer="zz"))
    assert fresh.reason == "UNKNOWN_PRODUCER" and "stale" not in fresh.detail
    h.ctx.consumer_lag = UNKNOWN_LAG
    unknown = decision(h.feed(stranger.model_copy(update={"client_order_id": "s2"}), producer="zz"))
    assert unknown.reason == "UNKNOWN_PRODUCER"
    assert (
        "view of the log is stale" in unknown.detail and "new client_order_id" not in unknown.detail
    )
    refused = decision(h.feed(not_mine, producer="p1"))
    assert refused.reason == "NOT_ENTITLED"
    assert "view of the log is stale" in refused.detail and "new client_order_id" in refused.detail
