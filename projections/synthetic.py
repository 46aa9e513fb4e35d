"""Valid, deterministic event streams for property tests, the crash test and benchmarks.

`generate(seed, n)` returns events in a global order that keeps every account's flow
causal (decision, submit, accept, fills, cancel), interleaved with deposits, transfers,
market data, risk-config changes and dead letters, and the engine's drawdown bookkeeping
(`UnitsChanged` after each deposit and settled withdrawal, `PeakEquityRaised` at a
BTC/USDT print that values a holder above its peak). Same seed, same events, same ids.
"""

from __future__ import annotations

import base64
import hashlib
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any

from schemas import Envelope, EventPayload, new_event
from schemas.events import (
    AccountOpened,
    AmlFlagCleared,
    AmlFlagRaised,
    BeneficialOwner,
    DeadLetter,
    DepositReceived,
    Fill,
    IntentRejected,
    KillSwitchEngaged,
    KillSwitchReleased,
    KycVerified,
    MarketTrade,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderRejected,
    OrderSubmitted,
    PeakEquityRaised,
    ProducerRegistered,
    QuoteUpdated,
    RiskDecision,
    RiskLimitsChanged,
    TransferChecked,
    TransferRequested,
    TransferSettled,
)
from schemas.events.accounts import OwnerKind
from schemas.events.orders import IntentRejectReason, Liquidity, OrderType, Side
from schemas.events.risk import DecisionOutcome, RiskLimits, RuleResult, UnitsChanged
from schemas.events.transfers import TransferCheckOutcome
from schemas.registry import COMPONENT_WRITTEN, ENGINE_PRODUCER

INSTRUMENTS = {
    "BTC/USDT": Decimal("60000"),
    "ETH/USDT": Decimal("3000"),
    "SOL/USDC": Decimal("150"),
}
_DERIVED = uuid.UUID("5b1f3c2e-8f0c-4d3a-9d51-3f1e2a6b7c80")
"""The namespace of the ids of derived events (`_Gen.derive`)."""
_MONEY = Context(prec=40, rounding=ROUND_HALF_EVEN)
_UNIT = Decimal("0.00000001")
BASE_TIME = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class _Gen:
    def __init__(
        self, seed: int, accounts: int, namespace: str = "", start: datetime = BASE_TIME
    ) -> None:
        self.rng = random.Random(seed)
        self.start = start
        self.seed = seed
        self.namespace = namespace
        self.accounts = [f"ACC{i:03d}" for i in range(accounts)]
        self.events: list[Envelope[Any]] = []
        self.tick = 0
        self.seq = 0
        self.open_orders: list[tuple[str, str, str, Side, Decimal, Decimal, Decimal]] = []
        self.pending_transfers: list[tuple[str, str]] = []
        self.config_version = 0
        self.opened: dict[str, bool] = {}
        """Opened accounts -> KYC done."""
        self.aml_open: list[tuple[str, str]] = []
        self.dead_letters = 0
        self.requested: dict[str, Decimal] = {}
        """Transfer id -> amount requested."""
        self.units: dict[str, tuple[Decimal, Decimal]] = {}
        """Account -> (units, peak NAV per unit): the drawdown bookkeeping."""
        self.nav = Decimal(1)
        """Every account's NAV per unit: the last BTC/USDT print over its reference."""
        self.derived = 0

    def emit(self, payload: EventPayload) -> Envelope[Any]:
        self.tick += 1
        ev = new_event(
            payload,
            # as their writers write them (the projections admit no other): the engine,
            # the travel rule's `TransferChecked`
            producer=COMPONENT_WRITTEN.get(payload.EVENT_TYPE, ENGINE_PRODUCER),
            occurred_at=self.start + timedelta(milliseconds=self.tick),
            event_id=uuid.UUID(int=self.rng.getrandbits(128)),
        )
        self.events.append(ev)
        return ev

    def derive(self, payload: EventPayload, name: str) -> None:
        """An engine fact right after the last event, at its time, its id derived from
        `name`: it draws nothing from `rng` and moves no clock, so every other event of
        the stream is what it was without it (and `generate` counts it apart)."""
        self.events.append(
            new_event(
                payload,
                producer="engine",
                occurred_at=self.events[-1].occurred_at,
                event_id=uuid.uuid5(_DERIVED, f"{self.seed}:{self.namespace}:{name}"),
            )
        )
        self.derived += 1

    def unitize(self, account: str, flow: str, amount: Decimal) -> None:
        """Units issued (or redeemed) for `amount` at the NAV per unit now."""
        units, peak = self.units.get(account, (Decimal(0), Decimal(0)))
        nav = self.nav
        units = max(Decimal(0), _MONEY.add(units, _MONEY.divide(amount, nav).quantize(_UNIT)))
        high = nav if units > 0 and nav > peak else None
        self.units[account] = (units, high or peak)
        self.derive(
            UnitsChanged(
                account=account, flows=(flow,), units=units, nav=nav,
                equity=_MONEY.multiply(units, nav).quantize(_UNIT), peak_nav=high,
            ),
            f"units:{flow}",
        )  # fmt: skip

    def ident(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}{self.namespace}{self.seq:08d}"

    def price(self, instrument: str) -> Decimal:
        ref = INSTRUMENTS[instrument]
        bps = self.rng.randint(-200, 200)
        return (ref * (10000 + bps) / 10000).quantize(Decimal("0.01"))

    def qty(self) -> Decimal:
        return Decimal(self.rng.randint(1, 5000)) / Decimal(1000)

    def new_order(self) -> None:
        rng = self.rng
        account = rng.choice(self.accounts)
        instrument = rng.choice(list(INSTRUMENTS))
        side = rng.choice([Side.BUY, Side.SELL])
        qty = self.qty()
        price = self.price(instrument)
        cid = self.ident("c")
        intent_id = uuid.UUID(int=rng.getrandbits(128))
        if rng.random() < 0.1:
            self.emit(
                IntentRejected(
                    account=account, producer_id="strat1", client_order_id=cid,
                    intent_event_id=intent_id, reason=IntentRejectReason.NOT_ENTITLED,
                    detail="producer not entitled",
                )
            )  # fmt: skip
            return
        approved = rng.random() < 0.85
        order_id = self.ident("o") if approved else None
        rules = (
            RuleResult(rule_id="max_order_notional", rule_version=1, passed=True),
            RuleResult(
                rule_id="price_collar", rule_version=1, passed=approved,
                reason_code=None if approved else "PRICE_COLLAR", detail=f"limit {price}",
            ),
        )  # fmt: skip
        decision = self.emit(
            RiskDecision(
                account=account, producer_id="strat1", strategy_id="s1", client_order_id=cid,
                intent_event_id=intent_id, intent_kind="ORDER",
                outcome=DecisionOutcome.APPROVED if approved else DecisionOutcome.REJECTED,
                reason_codes=() if approved else ("PRICE_COLLAR",), rule_results=rules,
                risk_config_version=self.config_version, order_id=order_id,
            )
        )  # fmt: skip
        if order_id is None:
            return
        self.emit(
            OrderSubmitted(
                order_id=order_id, account=account, producer_id="strat1", strategy_id="s1",
                client_order_id=cid, instrument=instrument, side=side,
                order_type=OrderType.LIMIT, quantity=qty, limit_price=price, venue="paper",
                decision_event_id=decision.event_id,
            )
        )  # fmt: skip
        if rng.random() < 0.05:
            self.emit(
                OrderRejected(order_id=order_id, account=account, venue="paper", reason="venue")
            )
            return
        self.emit(
            OrderAccepted(
                order_id=order_id, account=account, venue="paper", venue_order_id="v" + order_id
            )
        )
        self.open_orders.append((order_id, account, instrument, side, qty, price, Decimal(0)))

    def progress_order(self) -> None:
        rng = self.rng
        i = rng.randrange(len(self.open_orders))
        order_id, account, instrument, side, qty, price, filled = self.open_orders[i]
        leaves = qty - filled
        r = rng.random()
        if r < 0.8:
            part = leaves if rng.random() < 0.6 else (leaves / 2).quantize(Decimal("0.0001"))
            if part <= 0:
                part = leaves
            filled += part
            fee = (part * price * Decimal("0.001")).quantize(Decimal("0.00000001"))
            fid = self.ident("f")
            # The fee in the quote asset, the base asset (a second move of the position,
            # core.PositionsProjection) or a third one: one draw, where it always was.
            base, quote = instrument.split("/")
            pick = rng.random()
            fee_asset = quote if pick < 0.8 else base if pick < 0.9 else "BNB"
            if fee_asset == base:
                fee = (part * Decimal("0.001")).quantize(Decimal("0.00000001"))
            self.emit(
                Fill(
                    fill_id=fid, order_id=order_id, account=account, instrument=instrument,
                    side=side, quantity=part, price=price, fee=fee, fee_asset=fee_asset,
                    liquidity=rng.choice([Liquidity.MAKER, Liquidity.TAKER]), venue="paper",
                    venue_trade_id="t" + fid, uti="UTI" + fid,
                    traded_at=self.start + timedelta(milliseconds=self.tick),
                    leaves_quantity=qty - filled,
                )
            )  # fmt: skip
            if filled >= qty:
                self.open_orders.pop(i)
            else:
                self.open_orders[i] = (order_id, account, instrument, side, qty, price, filled)
            return
        self.open_orders.pop(i)
        cls = OrderCanceled if r < 0.95 else OrderExpired
        self.emit(
            cls(
                order_id=order_id,
                account=account,
                filled_quantity=filled,
                leaves_quantity=leaves,
                reason="CLIENT",
            )
        )

    def market(self) -> None:
        rng = self.rng
        instrument = rng.choice(list(INSTRUMENTS))
        p = self.price(instrument)
        if rng.random() < 0.5:
            self.emit(
                MarketTrade(
                    venue="binance", instrument=instrument, trade_id=self.ident("m"), price=p,
                    quantity=self.qty(), aggressor_side=rng.choice([Side.BUY, Side.SELL]),
                    exchange_ts=self.start + timedelta(milliseconds=self.tick),
                )
            )  # fmt: skip
            if instrument == "BTC/USDT":
                self.nav = _MONEY.divide(p, INSTRUMENTS[instrument]).quantize(Decimal("0.000001"))
                for account, (units, peak) in sorted(self.units.items()):
                    if units > 0 and self.nav > peak:
                        self.units[account] = (units, self.nav)
                        self.derive(
                            PeakEquityRaised(
                                account=account, instrument=instrument, peak_nav=self.nav,
                                peak_equity=_MONEY.multiply(units, self.nav).quantize(_UNIT),
                            ),
                            f"peak:{account}:{self.tick}",
                        )  # fmt: skip
        else:
            self.emit(
                QuoteUpdated(
                    venue="binance", instrument=instrument, bid_price=p, bid_quantity=self.qty(),
                    ask_price=p + Decimal("0.01"), ask_quantity=self.qty(), update_id=self.tick,
                    exchange_ts=self.start + timedelta(milliseconds=self.tick),
                )
            )  # fmt: skip

    def money(self) -> None:
        rng = self.rng
        account = rng.choice(self.accounts)
        if self.pending_transfers and rng.random() < 0.5:
            tid, acc = self.pending_transfers.pop(rng.randrange(len(self.pending_transfers)))
            self.emit(
                TransferChecked(
                    transfer_id=tid,
                    account=acc,
                    outcome=TransferCheckOutcome.PASS,
                    jurisdiction="EU",
                )
            )
            self.emit(
                TransferSettled(
                    transfer_id=tid, account=acc, tx_hash="0x" + tid,
                    settled_at=self.start + timedelta(milliseconds=self.tick),
                )
            )  # fmt: skip
            self.unitize(acc, f"withdrawal:{tid}", -self.requested.pop(tid))
        elif rng.random() < 0.7:
            asset = rng.choice(["USDT", "USDC", "BTC"])
            deposit = self.emit(
                DepositReceived(
                    deposit_id=self.ident("d"), account=account, asset=asset,
                    amount=Decimal(rng.randint(1, 100000)) / 10,
                )
            )  # fmt: skip
            self.unitize(account, f"deposit:{deposit.payload.deposit_id}", deposit.payload.amount)
        else:
            tid = self.ident("w")
            request = self.emit(
                TransferRequested(
                    transfer_id=tid, account=account, asset="USDT",
                    amount=Decimal(rng.randint(1, 1000)), destination_address="0xabc",
                )
            )  # fmt: skip
            self.requested[tid] = request.payload.amount
            self.pending_transfers.append((tid, account))

    def config(self) -> None:
        rng = self.rng
        scope = rng.choice([*self.accounts, "*"])
        r = rng.random()
        if r < 0.5:
            self.config_version += 1
            self.emit(
                RiskLimitsChanged(
                    scope=scope, config_version=self.config_version,
                    limits=RiskLimits(max_position=Decimal(rng.randint(1, 100))), changed_by="admin",
                )
            )  # fmt: skip
        elif r < 0.75:
            self.emit(KillSwitchEngaged(scope=scope, engaged_by="admin", reason="test"))
        else:
            self.emit(KillSwitchReleased(scope=scope, released_by="admin", reason="test"))

    def account_admin(self) -> None:
        rng = self.rng
        account = rng.choice(self.accounts)
        if account not in self.opened:
            owner = BeneficialOwner(
                owner_id="own" + account[-2:], kind=OwnerKind.NATURAL,
                name=f"Owner {account}", country="DE",
            )  # fmt: skip
            self.emit(
                AccountOpened(
                    account=account, beneficial_owner=owner, base_currency="USDT", jurisdiction="DE"
                )
            )
            self.opened[account] = False
            return
        r = rng.random()
        if not self.opened[account]:
            self.emit(KycVerified(account=account, verified_by="kyc-desk", reference="r1"))
            self.opened[account] = True
        elif r < 0.4:
            flag = self.ident("aml")
            self.emit(
                AmlFlagRaised(account=account, flag_id=flag, reason="review", raised_by="mlro")
            )
            self.aml_open.append((account, flag))
        elif r < 0.8 and self.aml_open:
            acc, flag = self.aml_open.pop(rng.randrange(len(self.aml_open)))
            self.emit(AmlFlagCleared(account=acc, flag_id=flag, note="ok", cleared_by="mlro"))
        else:
            self.emit(
                ProducerRegistered(
                    producer_id="strat1", public_key=f"{rng.getrandbits(256):064x}",
                    accounts=tuple(sorted(self.opened)), registered_by="admin",
                )
            )  # fmt: skip

    def deadletter(self) -> None:
        # Three kinds in turn (not drawn from `rng`, so the other events do not depend on
        # them): one from before the original's length and digest were kept, one kept
        # whole, and one whose kept bytes are a prefix of the original.
        value = f"not JSON {self.tick}".encode()
        kept: dict[str, Any] = {"original_value_b64": base64.b64encode(value).decode()}
        kind = self.dead_letters % 3
        self.dead_letters += 1
        if kind:
            full = value if kind == 1 else value * 40
            kept.update(
                original_value_bytes=len(full),
                original_value_sha256=hashlib.sha256(full).hexdigest(),
                original_truncated=kind == 2,
            )
        self.emit(
            DeadLetter(
                source_topic="orders.intents", source_partition=0, source_offset=self.tick,
                **kept, error_type="MalformedEventError", error="not JSON", stage="engine",
            )
        )  # fmt: skip


def generate(
    seed: int,
    n: int,
    *,
    accounts: int = 8,
    namespace: str = "",
    start: datetime = BASE_TIME,
) -> list[Envelope[Any]]:
    """At least `n` events (a flow may finish a few past it), deterministic in `seed`,
    one millisecond apart from `start`.

    Streams generated separately (e.g. chunks of a benchmark) need distinct
    `namespace`s, or their order, fill and transfer ids collide, and, to be one log
    whose time runs forward as a real one's does, `start`s far enough apart."""
    g = _Gen(seed, accounts, namespace, start)
    while len(g.events) - g.derived < n:
        r = g.rng.random()
        if r < 0.30:
            g.new_order()
        elif r < 0.65 and g.open_orders:
            g.progress_order()
        elif r < 0.85:
            g.market()
        elif r < 0.95:
            g.money()
        elif r < 0.97:
            g.config()
        elif r < 0.98:
            g.account_admin()
        else:
            g.deadletter()
    return g.events
