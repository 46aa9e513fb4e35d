"""Fold events in memory (no broker, no database): decoded exactly as a projector does."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from projections.core import PROJECTIONS
from projections.framework import Located, Quarantined, State
from projections.store import RawRecord, decode_one
from schemas import EventPayload, encode, new_event
from schemas.events import Fill, MarketTrade, QuoteUpdated
from schemas.events.orders import Liquidity, Side
from schemas.registry import COMPONENT_WRITTEN, ENGINE_PRODUCER

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class Tape:
    """Numbers events 1, 2, ...: event ids, offsets and times follow from the order."""

    def __init__(self) -> None:
        self.n = 0
        self.records: list[RawRecord] = []

    def ev(self, payload: EventPayload, at: datetime | None = None) -> Located:
        """`payload` as the next event; stamped `at` if given, else `self.n` seconds on."""
        self.n += 1
        e = new_event(
            payload,
            # the engine's facts (the travel rule's checks): the projections fold no one else's
            producer=COMPONENT_WRITTEN.get(payload.EVENT_TYPE, ENGINE_PRODUCER),
            occurred_at=at or T0 + timedelta(seconds=self.n),
            event_id=uuid.UUID(int=self.n),
        )
        _k, v, h = encode(e)
        record = RawRecord(str(e.topic), 0, self.n, v, h)
        self.records.append(record)
        d = decode_one(record)
        assert isinstance(d, Located), d
        return d

    def fill(
        self,
        side: str,
        qty: str,
        price: str,
        *,
        fee: str = "0",
        fee_asset: str = "USDT",
        inst: str = "BTC/USDT",
        leaves: str = "0",
        oid: str = "o1",
        acct: str = "ACC001",
    ) -> Located:
        n = self.n + 1
        return self.ev(
            Fill(
                fill_id=f"f{n}", order_id=oid, account=acct, instrument=inst, side=Side(side),
                quantity=Decimal(qty), price=Decimal(price), fee=Decimal(fee),
                fee_asset=fee_asset, liquidity=Liquidity.TAKER, venue="paper",
                venue_trade_id=f"t{n}", uti=f"U{n}", traded_at=T0,
                leaves_quantity=Decimal(leaves),
            )
        )  # fmt: skip

    def quote(self, inst: str, bid: str, ask: str, at: datetime | None = None) -> Located:
        fields: dict[str, Any] = {
            "instrument": inst, "venue": "paper", "bid_price": Decimal(bid),
            "bid_quantity": Decimal(1), "ask_price": Decimal(ask), "ask_quantity": Decimal(1),
            "update_id": self.n, "exchange_ts": T0,
        }  # fmt: skip
        return self.ev(QuoteUpdated(**fields), at)

    def trade(self, inst: str, price: str, at: datetime | None = None) -> Located:
        fields: dict[str, Any] = {
            "venue": "paper", "instrument": inst, "trade_id": f"m{self.n + 1}",
            "price": Decimal(price), "quantity": Decimal(1), "aggressor_side": Side.BUY,
            "exchange_ts": T0,
        }  # fmt: skip
        return self.ev(MarketTrade(**fields), at)


def fold(
    name: str, items: list[Located], state: State | None = None
) -> tuple[State, list[Quarantined]]:
    st = state or State()
    bad = PROJECTIONS[name].fold(st, items)
    return st, bad
