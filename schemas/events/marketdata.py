"""Public market data: trades and top of book, keyed by instrument."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from schemas.envelope import EventPayload
from schemas.events.orders import Side
from schemas.topics import Topic
from schemas.types import Instrument, NonNegativeDec, PositiveDec, UtcTimestamp


class MarketTrade(EventPayload):
    EVENT_TYPE: ClassVar[str] = "MarketTrade"
    TOPIC: ClassVar[str] = Topic.MARKETDATA

    venue: str
    instrument: Instrument
    trade_id: str
    price: PositiveDec
    quantity: PositiveDec
    aggressor_side: Side
    exchange_ts: UtcTimestamp

    def partition_key(self) -> str:
        return self.instrument


class QuoteUpdated(EventPayload):
    EVENT_TYPE: ClassVar[str] = "QuoteUpdated"
    TOPIC: ClassVar[str] = Topic.MARKETDATA

    venue: str
    instrument: Instrument
    bid_price: PositiveDec
    bid_quantity: NonNegativeDec
    ask_price: PositiveDec
    ask_quantity: NonNegativeDec
    update_id: int = Field(ge=0)
    exchange_ts: UtcTimestamp

    @model_validator(mode="after")
    def _not_crossed(self) -> QuoteUpdated:
        if self.bid_price >= self.ask_price:
            raise ValueError(f"crossed book: bid {self.bid_price} >= ask {self.ask_price}")
        return self

    def partition_key(self) -> str:
        return self.instrument
