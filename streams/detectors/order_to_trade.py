"""Order-to-trade and cancel ratios per account and instrument over a sliding window."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from schemas.events import Fill, OrderCanceled, OrderSubmitted
from streams.surveillance_state import (
    AlertDraft,
    Context,
    check_params,
    dec,
    duration,
    integer,
    number,
    seconds,
    ts,
)


class OrderToTradeDetector:
    NAME: ClassVar[str] = "order_to_trade"
    VERSION: ClassVar[int] = 6
    """6 (session 24): a cancel stamped before its order's submission (an order stamped
    ahead of its intent's append time where `order_events_ahead_ms` allows, the cancel on
    time) is judged in the window ending
    where it is counted, at the submission: 5 judged it at its own stamp, a window ending
    before both its order and itself, so in log order three orders all cancelled could
    raise nothing (in event-time order they did).
    5 (session 24): a fill is judged by its own account and instrument, also when its
    order is not folded yet (stamped later, released later: 4 looked them up through the
    order and skipped the fill, so the fold order decided whether it was judged) or never
    will be (a stop/take child's: counted as a trade before too, now judged at as well).
    4 (review helper-134): a cancel released before its own order (stamped earlier) is
    counted when the order is folded, at the order's time (it was dropped).
    3 (review 52): an account's events before its `AccountOpened` count with the
    owner's (they stayed in the account's own book).
    2: counts only events in [now - window_s, now] (1 also counted events folded
    earlier with a later time)."""
    PATTERN: ClassVar[str] = "ORDER_TO_TRADE"
    DEFAULTS: ClassVar[dict[str, str]] = {
        "window_s": "300",
        "min_orders": "200",
        "max_order_to_trade": "1000",
        "max_cancel_ratio": "0.995",
    }

    def validate(self, params: dict[str, str]) -> None:
        check_params(
            self.NAME,
            params,
            {
                "window_s": duration(),
                "min_orders": integer(ge=1),
                "max_order_to_trade": number(ge=Decimal(0)),
                "max_cancel_ratio": number(ge=Decimal(0), le=Decimal(1)),
            },
        )

    def on_event(self, ctx: Context) -> list[AlertDraft]:
        """At most one alert per account and instrument per window, raised on the crossing event."""
        p = ctx.event.payload
        if not isinstance(p, OrderSubmitted | OrderCanceled | Fill):
            return []
        now = ctx.now
        if isinstance(p, Fill | OrderSubmitted):
            account, instrument = p.account, p.instrument
        else:  # a cancel names no instrument: its order does (or it is counted later)
            order = ctx.book.orders.get(p.order_id)
            if order is None:
                return []
            account, instrument = order.account, order.instrument
            # judged when it was counted: never before its order's submission (6)
            now = max(now, order.submitted_at)
        key = f"{account}|{instrument}"
        prm = ctx.params
        window = seconds(prm["window_s"])
        start = now - window
        last = ctx.book.last_alert.get(f"{self.NAME}|{key}")
        if last is not None and last > start:
            return []
        items = [i for i in ctx.book.counters.get(key, []) if start <= i[0] <= now]
        orders = sum(1 for i in items if i[1] == "SUBMIT")
        cancels = sum(1 for i in items if i[1] == "CANCEL")
        trades = sum(1 for i in items if i[1] == "FILL")
        if orders < int(prm["min_orders"]) or orders == 0:
            return []
        otr = Decimal(orders) / Decimal(max(trades, 1))
        cancel_ratio = Decimal(cancels) / Decimal(orders)
        breaches = []
        if otr > Decimal(prm["max_order_to_trade"]):
            breaches.append("order_to_trade")
        if cancel_ratio > Decimal(prm["max_cancel_ratio"]):
            breaches.append("cancel_ratio")
        if not breaches:
            return []
        return [
            AlertDraft(
                detector=self.NAME,
                version=self.VERSION,
                pattern=self.PATTERN,
                account=account,
                instrument=instrument,
                score=otr.quantize(Decimal("0.01")),
                window_start=start,
                window_end=now,
                triggering_event_ids=(ctx.event.event_id,),
                evidence={
                    "window_start": ts(start),
                    "window_end": ts(now),
                    "orders": orders,
                    "cancels": cancels,
                    "trades": trades,
                    "order_to_trade": dec(otr.quantize(Decimal("0.01"))),
                    "cancel_ratio": dec(cancel_ratio.quantize(Decimal("0.0001"))),
                    "breaches": breaches,
                    "params": prm,
                    "config_version": ctx.config_version,
                },
                summary=(
                    f"{account} {instrument}: {orders} orders, {cancels} cancels, "
                    f"{trades} trades in {prm['window_s']}s ({', '.join(breaches)} above limit)"
                ),
            )
        ]
