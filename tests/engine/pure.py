"""A broker-free harness: an engine state driven through the pure processor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engine import auth
from engine.processor import Context, Output, process
from engine.state import EngineState
from schemas import Envelope, decode, encode, new_event
from schemas.envelope import EventPayload
from schemas.events import (
    AccountOpened,
    BeneficialOwner,
    CancelIntent,
    DepositReceived,
    KycVerified,
    MarketTrade,
    OrderIntent,
    OrderType,
    OwnerKind,
    ProducerRegistered,
    QuoteUpdated,
    RiskLimits,
    RiskLimitsChanged,
    Side,
    TimeInForce,
    TransferChecked,
    TransferReleased,
    TransferRequested,
    TransferSettled,
)
from schemas.events.transfers import TransferCheckOutcome
from schemas.ids import derived_uuid7

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
INSTRUMENT = "BTC/USDC"


class Harness:
    def __init__(
        self,
        limits: RiskLimits | None = None,
        cash: Decimal = Decimal("1000000"),
        accounts: tuple[str, ...] = ("A1",),
    ) -> None:
        self.state = EngineState()
        self.ctx = Context(event_time_is_arrival=True)
        """No broker: an intent's stamp stands for its append time (honest clocks)."""
        self.key: Ed25519PrivateKey
        self.key, pub = auth.new_keypair()
        self.now = T0
        self.n = 0
        self.ids_from: str | None = None
        """Set: the events fed from then on get ids derived from it and a count (else
        fresh random ones), so two harnesses fed alike get the same order ids."""
        self.ids_drawn = 0
        self.inputs: list[Any] = []
        """Reference and market events fed, in order (what a rebuild reads besides outputs)."""
        self.intents: dict[str, Envelope[Any]] = {}
        self.last_intent: Envelope[Any] | None = None
        owner = BeneficialOwner(owner_id="o", kind=OwnerKind.NATURAL, name="O", country="DE")
        for acc in accounts:
            self.admin(AccountOpened(account=acc, beneficial_owner=owner, base_currency="USDC"))
            self.admin(KycVerified(account=acc, verified_by="t"))
            self.admin(
                DepositReceived(deposit_id=f"d-{acc}", account=acc, asset="USDC", amount=cash)
            )
        self.admin(
            ProducerRegistered(
                producer_id="p1", public_key=pub, accounts=accounts, registered_by="admin"
            )
        )
        if limits is not None:
            self.admin(
                RiskLimitsChanged(scope="*", config_version=1, limits=limits, changed_by="admin")
            )

    def tick(self, seconds: float = 0.01) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now

    def feed(self, payload: EventPayload, producer: str = "x") -> list[Any]:
        at = self.tick()
        eid = None
        if self.ids_from is not None:
            self.ids_drawn += 1
            eid = derived_uuid7(at, self.ids_from, str(self.ids_drawn))
        event = new_event(payload, producer=producer, occurred_at=at, event_id=eid)
        out: list[Output] = process(self.state, event, self.ctx)
        if isinstance(payload, OrderIntent | CancelIntent):
            self.intents[payload.client_order_id] = event
            self.last_intent = event
        elif producer == "admin":
            self.inputs += out  # the accepted facts, as re-published on their topics
        else:
            self.inputs.append(event)
        return out

    def admin(self, payload: EventPayload) -> list[Any]:
        return self.feed(payload, producer="admin")

    def admin_deposit(self, asset: str, amount: Decimal, account: str = "A1") -> None:
        self.n += 1
        self.admin(
            DepositReceived(deposit_id=f"d{self.n}", account=account, asset=asset, amount=amount)
        )

    def cancel(self, target: str, account: str = "A1") -> list[Any]:
        self.n += 1
        intent = CancelIntent(
            producer_id="p1",
            strategy_id="s",
            account=account,
            client_order_id=f"c{self.n}",
            target_client_order_id=target,
        )
        return self.feed(auth.sign(intent, self.key), producer="p1")

    def resend(self, client_order_id: str) -> list[Any] | None:
        """The same intent again, in a new envelope; None if no such intent was sent."""
        event = self.intents.get(client_order_id)
        if event is None:
            return None
        return process(
            self.state,
            new_event(event.payload, producer="p1", occurred_at=self.tick()),
            self.ctx,
        )

    def quote(
        self, bid: Decimal, ask: Decimal, qty: Decimal = Decimal("10"), instrument: str = INSTRUMENT
    ) -> None:
        self.n += 1
        self.feed(
            QuoteUpdated(
                venue="v",
                instrument=instrument,
                bid_price=bid,
                bid_quantity=qty,
                ask_price=ask,
                ask_quantity=qty,
                update_id=self.n,
                exchange_ts=self.now,
            ),
            "md",
        )

    def market_trade(
        self, price: Decimal, qty: Decimal = Decimal("1"), *, instrument: str = INSTRUMENT
    ) -> MarketTrade:
        """A public trade with a trade id of its own, at the harness's time (not fed)."""
        self.n += 1
        return MarketTrade(
            venue="v",
            instrument=instrument,
            trade_id=f"t{self.n}",
            price=price,
            quantity=qty,
            aggressor_side=Side.BUY,
            exchange_ts=self.now,
        )

    def trade(
        self, price: Decimal, qty: Decimal = Decimal("1"), *, instrument: str = INSTRUMENT
    ) -> list[Envelope[Any]]:
        return self.feed(self.market_trade(price, qty, instrument=instrument), "md")

    def order(
        self,
        side: Side,
        qty: Decimal,
        limit: Decimal | None = None,
        *,
        account: str = "A1",
        tif: TimeInForce = TimeInForce.GTC,
        instrument: str = INSTRUMENT,
        **extra: Any,
    ) -> list[Envelope[Any]]:
        self.n += 1
        intent = OrderIntent(
            producer_id="p1",
            strategy_id="s",
            account=account,
            client_order_id=f"c{self.n}",
            instrument=instrument,
            side=side,
            order_type=OrderType.LIMIT if limit is not None else OrderType.MARKET,
            quantity=qty,
            limit_price=limit,
            time_in_force=tif,
            **extra,
        )
        return self.feed(auth.sign(intent, self.key), producer="p1")


class Recording(Harness):
    """A harness that keeps every input envelope and every output, in order: what a
    replay feeds again, and what a fold of the log reads (`fold`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.fed: list[Any] = []
        self.outs: list[Any] = []
        super().__init__(*args, **kwargs)

    def feed(self, payload: EventPayload, producer: str = "x") -> list[Any]:
        event = new_event(payload, producer=producer, occurred_at=self.tick())
        self.fed.append(event)
        out = process(self.state, event, self.ctx)
        self.outs.extend(out)
        if isinstance(payload, OrderIntent | CancelIntent):
            self.intents[payload.client_order_id] = event
        return out

    def fold(self) -> EngineState:
        """The state a rebuild gets: market data, then the engine's outputs (the admin
        commands' accepted facts among them) as read back from the log."""
        rebuilt = EngineState()
        for ev in self.fed:
            if ev.event_type in ("MarketTrade", "QuoteUpdated"):
                rebuilt.apply(ev)
        for ev in self.outs:
            k, v, hd = encode(ev)
            rebuilt.apply(decode(v, hd), (k, v, hd))
        return rebuilt


def decision(out: list[Envelope[Any]]) -> Any:
    return next(e.payload for e in out if e.event_type in ("RiskDecision", "IntentRejected"))


def types(out: list[Envelope[Any]]) -> list[str]:
    return [e.event_type for e in out]


def transfer_fact(
    tid: str,
    step: str,
    account: str = "A1",
    *,
    asset: str = "USDC",
    amount: str = "5000",
    outcome: str = "PASS",
    settled_at: datetime = T0,
) -> EventPayload:
    """A withdrawal's fact on transfers.events at `step` (request, check, release, settle)."""
    if step == "request":
        return TransferRequested(
            transfer_id=tid, account=account, asset=asset, amount=Decimal(amount),
            destination_address="0xabc",
        )  # fmt: skip
    if step == "check":
        return TransferChecked(
            transfer_id=tid, account=account, outcome=TransferCheckOutcome(outcome),
            jurisdiction="EU",
        )  # fmt: skip
    if step == "release":
        return TransferReleased(transfer_id=tid, account=account)
    return TransferSettled(
        transfer_id=tid, account=account, tx_hash="0x" + tid, settled_at=settled_at
    )
