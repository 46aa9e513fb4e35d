"""Layering: N+ same-side orders at consecutive levels cancelled together near an opposite fill."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import ClassVar

from schemas.events import Fill, OrderCanceled, OrderSubmitted
from streams.surveillance_state import (
    AlertDraft,
    Context,
    OrderRec,
    check_params,
    dec,
    duration,
    duration_s,
    fills_of,
    integer,
    number,
    seconds,
    ts,
)


class LayeringDetector:
    NAME: ClassVar[str] = "layering"
    VERSION: ClassVar[int] = 7
    """7 (session 24): as spoofing 7, the opposite fills in event time, the window's start
    the earliest's (the same id was another record in another fold order).
    6 (review helper-134): as spoofing 6, a cancel stamped before its order's
    submission is taken at the submission, and one released before its order is applied
    (and the ladder judged) when the order is folded.
    5 (review 52): an order whose cancel reports a filled quantity is not part of a
    ladder, even when its fill is folded after the cancel; `min_levels` counts distinct
    price levels (4 counted orders: three orders at one price raised a 1-level "ladder");
    orders submitted more than the horizon (90 min) ago are pruned even while open.
    4: a ladder is judged as of its completing cancel in event-time order, whenever
    the events are folded (a late fill no longer adds the cancels after that one).
    3: "cancelled together" is two-sided (the whole ladder's cancel spread <=
    `cancel_together_s`); a late opposite fill raises every ladder it explains; the cancel
    spread is printed exactly (2 printed a binary float)."""
    PATTERN: ClassVar[str] = "LAYERING"
    DEFAULTS: ClassVar[dict[str, str]] = {
        "min_levels": "3",
        "level_gap_bps": "10",
        "cancel_together_s": "2",
        "window_s": "10",
    }

    def validate(self, params: dict[str, str]) -> None:
        check_params(
            self.NAME,
            params,
            {
                "min_levels": integer(ge=2),
                "level_gap_bps": number(ge=Decimal(0)),
                "cancel_together_s": duration(allow_zero=True),
                "window_s": duration(),
            },
        )

    def on_event(self, ctx: Context) -> list[AlertDraft]:
        """Triggered by the cancel that completes the ladder, or by an opposite fill folded
        in after the cancels although it happened before them (see spoofing)."""
        p = ctx.event.payload
        if isinstance(p, OrderCanceled | OrderSubmitted):  # a submit: its cancel came first
            rec = ctx.book.orders.get(p.order_id)
            if rec is None or rec.status != "CANCELED":
                return []
            return self._replay(ctx, rec.instrument, rec.side, _key(rec))
        if isinstance(p, Fill):
            side = "SELL" if str(p.side) == "BUY" else "BUY"
            return self._replay(ctx, p.instrument, side, (ctx.now, str(ctx.event.event_id)))
        return []

    def _replay(
        self, ctx: Context, instrument: str, side: str, since: tuple[datetime, str]
    ) -> list[AlertDraft]:
        """Judge every cancel from `since` on in event-time order, each as of its own fold:
        a late cancel or fill then raises the ladders the in-order fold raises, no bigger
        (v4: a late fill judged all the cancels at once, so a ladder whose 3rd of 4 cancels
        completed it in order came out with all 4)."""
        triggers = sorted(
            (
                o
                for o in ctx.book.orders.values()
                if o.status == "CANCELED"
                and o.instrument == instrument
                and o.side == side
                and o.ended_at is not None
                and o.ended_at >= since[0]  # cheap first: str(UUID) costs ~5 us
                and _key(o) >= since
            ),
            key=_key,
        )
        drafts: list[AlertDraft] = []
        taken: set[str] = set()
        for trigger in triggers:
            if trigger.order_id in taken:
                continue
            for draft in self._evaluate(ctx, trigger, taken):
                drafts.append(draft)
                taken.update(draft.used_ids)
        return drafts

    def _evaluate(
        self, ctx: Context, trigger: OrderRec, taken: set[str] | None = None
    ) -> list[AlertDraft]:
        if trigger.ended_at is None or trigger.price is None or trigger.status != "CANCELED":
            return []
        prm = ctx.params
        used = set(ctx.book.used.get(self.NAME, [])) | (taken or set())
        together = seconds(prm["cancel_together_s"])
        trigger_key = _key(trigger)
        group = [
            o
            for o in ctx.book.orders.values()
            if o.status == "CANCELED"
            and o.ended_at is not None
            # the cheap time tests first: a market maker's book holds thousands of orders
            and o.ended_at <= trigger.ended_at
            and trigger.ended_at - o.ended_at <= together
            and o.price is not None
            and not o.traded
            and o.instrument == trigger.instrument
            and o.side == trigger.side
            and o.order_id not in used
            and _key(o) <= trigger_key  # folded before it in event-time order
            # resting at the same time as the trigger: a ladder, not a run of requotes
            and o.submitted_at < trigger.ended_at
            and o.ended_at > trigger.submitted_at
        ]
        ladder = self._consecutive(group, trigger, Decimal(prm["level_gap_bps"]))
        if len({o.price for o in ladder}) < int(prm["min_levels"]):
            return []  # price levels, not orders (5: three orders at one price were a ladder)
        if max(o.submitted_at for o in ladder) >= min(o.ended_at for o in ladder if o.ended_at):
            return []  # never all in the book together
        start = min(o.submitted_at for o in ladder)
        end = max(o.ended_at for o in ladder if o.ended_at is not None)
        first_cancel = min(o.ended_at for o in ladder if o.ended_at is not None)
        if end - first_cancel > together:
            return []  # not cancelled together, whichever cancel completes it
        window = seconds(prm["window_s"])
        opposite = "SELL" if trigger.side == "BUY" else "BUY"
        fills = fills_of(ctx.book, trigger.instrument, opposite, start - window, end)
        if not fills:
            return []
        prices = sorted({o.price for o in ladder if o.price is not None})
        evidence = {
            "side": trigger.side,
            "levels": len(prices),
            "price_levels": [dec(x) for x in prices],
            "orders": [
                {
                    "order_id": o.order_id,
                    "account": o.account,
                    "quantity": dec(o.quantity),
                    "price": dec(o.price),
                    "submitted_at": ts(o.submitted_at),
                    "canceled_at": ts(o.ended_at) if o.ended_at else None,
                }
                for o in ladder
            ],
            "cancel_spread_s": duration_s(end - first_cancel),
            "opposite_fills": [f.evidence() for f in fills],
            "params": prm,
            "config_version": ctx.config_version,
        }
        accounts = sorted({o.account for o in ladder} | {f.account for f in fills})
        return [
            AlertDraft(
                detector=self.NAME,
                version=self.VERSION,
                pattern=self.PATTERN,
                account=trigger.account,
                instrument=trigger.instrument,
                score=Decimal(len(ladder)),
                window_start=min(start, fills[0].at),
                window_end=end,
                triggering_event_ids=(
                    *(o.submit_event_id for o in ladder),
                    *(o.end_event_id for o in ladder if o.end_event_id is not None),
                    *(f.event_id for f in fills),
                ),
                related_accounts=tuple(a for a in accounts if a != trigger.account),
                evidence=evidence,
                summary=(
                    f"{len(ladder)} {trigger.side} orders on {len(prices)} consecutive levels "
                    f"{dec(prices[0])}..{dec(prices[-1])} cancelled within "
                    f"{evidence['cancel_spread_s']}s around {len(fills)} {opposite} fill(s)"
                ),
                used_ids=tuple(o.order_id for o in ladder),
            )
        ]

    @staticmethod
    def _consecutive(group: list[OrderRec], trigger: OrderRec, gap_bps: Decimal) -> list[OrderRec]:
        """Orders whose price levels form an unbroken ladder (gaps <= gap_bps) through the trigger."""
        by_price: dict[Decimal, list[OrderRec]] = {}
        for o in group:
            if o.price is not None:
                by_price.setdefault(o.price, []).append(o)
        for same_level in by_price.values():  # the book's order is the order folded in
            same_level.sort(key=lambda o: (o.submitted_at, str(o.submit_event_id)))
        levels = sorted(by_price)
        if trigger.price not in by_price:
            return []
        i = levels.index(trigger.price)
        lo = hi = i

        def close(a: Decimal, b: Decimal) -> bool:
            return (b - a) / a * Decimal(10000) <= gap_bps

        while lo > 0 and close(levels[lo - 1], levels[lo]):
            lo -= 1
        while hi < len(levels) - 1 and close(levels[hi], levels[hi + 1]):
            hi += 1
        return [o for lvl in levels[lo : hi + 1] for o in by_price[lvl]]


def _key(o: OrderRec) -> tuple[datetime, str]:
    """Where the order's cancel falls in the sequencer's `(occurred_at, event_id)` order."""
    assert o.ended_at is not None
    return (o.ended_at, str(o.end_event_id))
