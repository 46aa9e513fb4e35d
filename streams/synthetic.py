"""A deterministic builder of order-lifecycle tapes, for tests, the scenario and benchmarks.

Event ids derive from a seed and a counter, so the same tape built twice has the same ids.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from schemas import Envelope, new_event
from schemas.events import (
    AccountOpened,
    BeneficialOwner,
    DetectorConfigChanged,
    Fill,
    Liquidity,
    OrderCanceled,
    OrderSubmitted,
    OrderType,
    OwnerKind,
    QuoteUpdated,
    Side,
)
from schemas.ids import derived_uuid7

T0 = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
BTC = "BTC/USDT"
At = float  # seconds after the tape's t0, not money
"""An event's time on a tape, as the builders take it."""


class Tape:
    """Appends events in log order; `at` is seconds after `T0` (or an absolute datetime)."""

    def __init__(self, seed: str = "tape", t0: datetime = T0) -> None:
        self.seed = seed
        self.t0 = t0
        self.events: list[Envelope[Any]] = []
        self.orders: dict[str, OrderSubmitted] = {}
        self.filled: dict[str, Decimal] = {}
        self._n = 0

    def time(self, at: At | datetime) -> datetime:
        if isinstance(at, datetime):
            return at
        return self.t0 + timedelta(microseconds=round(at * 1_000_000))

    def _add(self, payload: Any, at: At | datetime, producer: str = "engine") -> Envelope[Any]:
        when = self.time(at)
        self._n += 1
        env = new_event(
            payload,
            producer=producer,
            occurred_at=when,
            event_id=derived_uuid7(when, self.seed, str(self._n)),
        )
        self.events.append(env)
        return env

    def open_account(self, account: str, owner: str, at: At = 0) -> Envelope[Any]:
        bo = BeneficialOwner(owner_id=owner, kind=OwnerKind.NATURAL, name=owner, country="DE")
        opened = AccountOpened(account=account, beneficial_owner=bo, base_currency="USDT")
        return self._add(opened, at, "admin")

    def config(self, detector: str, version: int, at: At = 0, **params: str) -> Envelope[Any]:
        return self._add(
            DetectorConfigChanged(
                detector=detector, config_version=version, params=params, changed_by="test"
            ),
            at,
            "admin",
        )

    def quote(
        self,
        at: At,
        bid: str,
        ask: str,
        bid_qty: str = "1",
        ask_qty: str = "1",
        instrument: str = BTC,
    ) -> Envelope[Any]:
        return self._add(
            QuoteUpdated(
                venue="paper",
                instrument=instrument,
                bid_price=Decimal(bid),
                bid_quantity=Decimal(bid_qty),
                ask_price=Decimal(ask),
                ask_quantity=Decimal(ask_qty),
                update_id=self._n,
                exchange_ts=self.time(at),
            ),
            at,
            "marketdata",
        )

    def submit(
        self,
        at: At,
        account: str,
        order_id: str,
        side: str,
        qty: str,
        price: str | None,
        instrument: str = BTC,
    ) -> Envelope[Any]:
        p = OrderSubmitted(
            order_id=order_id,
            account=account,
            producer_id="p",
            strategy_id="s",
            client_order_id=order_id,
            instrument=instrument,
            side=Side(side),
            order_type=OrderType.LIMIT if price is not None else OrderType.MARKET,
            quantity=Decimal(qty),
            limit_price=Decimal(price) if price is not None else None,
            venue="paper",
        )
        self.orders[order_id] = p
        self.filled[order_id] = Decimal(0)
        return self._add(p, at)

    def cancel(self, at: At, order_id: str) -> Envelope[Any]:
        o = self.orders[order_id]
        filled = self.filled[order_id]
        return self._add(
            OrderCanceled(
                order_id=order_id,
                account=o.account,
                filled_quantity=filled,
                leaves_quantity=o.quantity - filled,
                reason="CLIENT",
            ),
            at,
        )

    def fill(
        self, at: At, order_id: str, qty: str | None = None, price: str | None = None
    ) -> Envelope[Any]:
        o = self.orders[order_id]
        q = Decimal(qty) if qty is not None else o.quantity - self.filled[order_id]
        self.filled[order_id] += q
        px = Decimal(price) if price is not None else o.limit_price
        assert px is not None, "market fills need a price"
        fid = f"f-{order_id}-{self.filled[order_id]}"
        return self._add(
            Fill(
                fill_id=fid[:64],
                order_id=order_id,
                account=o.account,
                instrument=o.instrument,
                side=o.side,
                quantity=q,
                price=px,
                fee=Decimal(0),
                fee_asset="USDT",
                liquidity=Liquidity.TAKER if o.order_type is OrderType.MARKET else Liquidity.MAKER,
                venue="paper",
                venue_trade_id=fid[:64],
                uti=fid[:52],
                traded_at=self.time(at),
                leaves_quantity=o.quantity - self.filled[order_id],
            ),
            at,
        )
