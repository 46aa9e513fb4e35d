"""A seeded synthetic market: a geometric random walk with a quoted spread and trades.

The same seed gives the same stream, so demos and tests are reproducible.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal

from schemas.events import MarketTrade, QuoteUpdated, Side

START_PRICES = {"BTC": Decimal("60000"), "ETH": Decimal("3000"), "SOL": Decimal("150")}
PRICE_PRECISION = Decimal("0.00000001")
SIZE_STEP = Decimal("0.00001")


def _size(draw: float) -> Decimal:  # a random draw, not money
    """A random size drawn as a float, converted once to a Decimal on the size grid."""
    return Decimal(repr(draw)).quantize(SIZE_STEP)


def simulate(
    instrument: str,
    minutes: float,  # minutes, not money
    seed: int,
    start: datetime,
    *,
    events_per_second: float = 5.0,  # a rate, not money
    annual_vol: float = 0.6,  # annualised volatility, not money
) -> Iterator[MarketTrade | QuoteUpdated]:
    rng = random.Random(seed)
    base = instrument.split("/")[0]
    # Prices stay Decimal throughout; floats appear only as dimensionless random draws
    # (a return factor, a spread fraction), each converted once before touching a price.
    price = START_PRICES.get(base, Decimal("100"))
    tick = Decimal("0.01") if price >= 100 else Decimal("0.0001")
    dt = 1.0 / events_per_second  # seconds, not money
    sigma = annual_vol * math.sqrt(dt / (365 * 24 * 3600))
    n = int(minutes * 60 * events_per_second)
    trade_id = rng.randrange(10**9)
    update_id = rng.randrange(10**9)
    for i in range(n):
        at = start + timedelta(seconds=i * dt)
        factor = math.exp(sigma * rng.gauss(0, 1) * 30)  # fatter moves: a lively demo
        price = (price * Decimal(repr(factor))).quantize(PRICE_PRECISION)
        half = max(tick, price * Decimal(repr(rng.uniform(0.00001, 0.00008))))
        bid = (price - half).quantize(tick)
        ask = (price + half).quantize(tick)
        if ask <= bid:
            ask = bid + tick
        update_id += 1
        yield QuoteUpdated(
            venue="sim",
            instrument=instrument,
            bid_price=bid,
            bid_quantity=_size(rng.uniform(0.05, 5)),
            ask_price=ask,
            ask_quantity=_size(rng.uniform(0.05, 5)),
            update_id=update_id,
            exchange_ts=at,
        )
        if rng.random() < 0.6:
            trade_id += 1
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            yield MarketTrade(
                venue="sim",
                instrument=instrument,
                trade_id=str(trade_id),
                price=ask if side is Side.BUY else bid,
                quantity=max(_size(rng.expovariate(20)), SIZE_STEP),
                aggressor_side=side,
                exchange_ts=at,
            )
