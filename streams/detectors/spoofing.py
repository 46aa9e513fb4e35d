"""Spoofing: a large order cancelled unfilled within T while the owner trades the other side."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from schemas.events import Fill, OrderCanceled, OrderSubmitted
from streams.surveillance_state import (
    SCORE_MAX,
    SIZE_HISTORY,
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


class SpoofingDetector:
    NAME: ClassVar[str] = "spoofing"
    VERSION: ClassVar[int] = 7
    """7 (session 24): the opposite fills in event time (`fills_of`), the window's start
    the earliest's: 6 listed them in fold order and took the first folded, so the same
    alert (same id) folded in another order was another record.
    6 (review helper-134): a cancel stamped before its order's submission is taken at
    the submission (a negative lifetime closed the window for opposite fills before the
    order existed), and one released before its order is applied when the order is
    folded (it was dropped: the order stayed open, never judged).
    5 (review 52): an order whose cancel reports a filled quantity is not "cancelled
    unfilled", even when its fill is folded after the cancel; the quote history survives
    one quote stamped far ahead (it pruned every correct quote after it); arithmetic in
    the fold's own decimal context (`ARITHMETIC`: 4 used the caller's and could raise
    `InvalidOperation` on schema-valid sizes), the score capped at 10^18; an account's
    sizes (for the median) are forgotten after 90 minutes without an order or fill.
    4: a late opposite fill raises every spoof it explains (3 stopped at the first);
    `min_history` counts the account's orders at submission; durations exact."""
    PATTERN: ClassVar[str] = "SPOOFING"
    DEFAULTS: ClassVar[dict[str, str]] = {
        "cancel_within_s": "5",
        "size_vs_book": "3",
        "size_vs_median": "5",
        "min_history": "5",
        "window_s": "10",
    }

    def validate(self, params: dict[str, str]) -> None:
        check_params(
            self.NAME,
            params,
            {
                "cancel_within_s": duration(),
                "size_vs_book": number(gt=Decimal(0)),
                "size_vs_median": number(gt=Decimal(0)),
                "min_history": integer(ge=0, le=SIZE_HISTORY - 1),
                "window_s": duration(),
            },
        )

    def on_event(self, ctx: Context) -> list[AlertDraft]:
        """Triggered by the cancel, the event that completes the pattern, or by an opposite
        fill folded in after the cancel although it happened before it (input partitions
        can deliver the engine's events out of order beyond the sequencer's bound)."""
        p = ctx.event.payload
        if isinstance(p, OrderCanceled | OrderSubmitted):  # a submit: its cancel came first
            order = ctx.book.orders.get(p.order_id)
            return [] if order is None else self._evaluate(ctx, order)
        if isinstance(p, Fill):
            window = seconds(ctx.params["window_s"])
            at = ctx.now
            drafts: list[AlertDraft] = []
            for order in reversed(list(ctx.book.orders.values())):
                if (
                    order.status == "CANCELED"
                    and order.side != str(p.side)
                    and order.instrument == p.instrument
                    and order.ended_at is not None
                    and order.submitted_at - window <= at <= order.ended_at
                ):
                    drafts.extend(self._evaluate(ctx, order))
            return drafts
        return []

    def _evaluate(self, ctx: Context, order: OrderRec) -> list[AlertDraft]:
        if order.traded or order.ended_at is None or order.status != "CANCELED":
            return []
        if order.order_id in ctx.book.used.get(self.NAME, []):
            return []
        prm = ctx.params
        lifetime = order.ended_at - order.submitted_at
        if lifetime > seconds(prm["cancel_within_s"]):
            return []
        visible = ctx.visible_at_submit(order)
        book_ratio = order.quantity / visible if visible else None
        median_ratio = None
        history = order.history_at_submit
        if history is None:  # recorded before v4
            history = len(ctx.book.sizes.get(order.account, []))
        if order.median_size_at_submit and history > int(prm["min_history"]):
            median_ratio = order.quantity / order.median_size_at_submit
        large_book = book_ratio is not None and book_ratio >= Decimal(prm["size_vs_book"])
        large_median = median_ratio is not None and median_ratio >= Decimal(prm["size_vs_median"])
        if not (large_book or large_median):
            return []
        opposite = "SELL" if order.side == "BUY" else "BUY"
        window = seconds(prm["window_s"])
        fills = fills_of(
            ctx.book, order.instrument, opposite, order.submitted_at - window, order.ended_at
        )
        if not fills:
            return []
        executed = sum((f.quantity for f in fills), Decimal(0))
        ratio = max(r for r in (book_ratio, median_ratio) if r is not None)
        evidence = {
            "order_id": order.order_id,
            "account": order.account,
            "side": order.side,
            "quantity": dec(order.quantity),
            "price": dec(order.price),
            "submitted_at": ts(order.submitted_at),
            "canceled_at": ts(order.ended_at),
            "lifetime_s": duration_s(lifetime),
            "visible_qty_at_submit": dec(visible),
            "size_vs_book": dec(book_ratio.quantize(Decimal("0.0001")) if book_ratio else None),
            "median_size_at_submit": dec(order.median_size_at_submit),
            "size_vs_median": dec(
                median_ratio.quantize(Decimal("0.0001")) if median_ratio else None
            ),
            "opposite_fills": [f.evidence() for f in fills],
            "params": prm,
            "config_version": ctx.config_version,
        }
        return [
            AlertDraft(
                detector=self.NAME,
                version=self.VERSION,
                pattern=self.PATTERN,
                account=order.account,
                instrument=order.instrument,
                score=min(ratio, SCORE_MAX).quantize(Decimal("0.01")),
                window_start=min(order.submitted_at, fills[0].at),
                window_end=order.ended_at,
                triggering_event_ids=(
                    order.submit_event_id,
                    *((order.end_event_id,) if order.end_event_id else ()),
                    *(f.event_id for f in fills),
                ),
                related_accounts=tuple(sorted({f.account for f in fills} - {order.account})),
                evidence=evidence,
                summary=(
                    f"{order.side} {dec(order.quantity)} {order.instrument} @ {dec(order.price)} "
                    f"({dec(ratio.quantize(Decimal('0.01')))}x normal size) cancelled unfilled "
                    f"after {duration_s(lifetime)}s while the owner executed "
                    f"{dec(executed)} on the {opposite} side"
                ),
                used_ids=(order.order_id,),
            )
        ]
