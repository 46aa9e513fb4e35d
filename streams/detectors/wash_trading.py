"""Wash trading: one beneficial owner on both sides, matching size and price within seconds."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from schemas.events import Fill
from streams.surveillance_state import (
    AlertDraft,
    Context,
    FillRec,
    boolean,
    check_params,
    dec,
    duration,
    duration_s,
    number,
    seconds,
    ts,
)


class WashTradingDetector:
    NAME: ClassVar[str] = "wash_trading"
    VERSION: ClassVar[int] = 4
    """4 (session 24): the price difference is taken in basis points of the two prices'
    mid, the same whichever leg is the buy and whichever came (or was folded) first; 3 took
    it of the later-folded fill's price, so 100.00 then 100.05002 was a wash trade at
    5 bps and the same two prints the other way round (5.002 bps) were not.
    3 (review 52): an account's fills before its `AccountOpened` pair with the owner's
    other accounts' (they stayed in the account's own book); the match is the earliest in
    event time, not the first folded."""
    PATTERN: ClassVar[str] = "WASH_TRADING"
    DEFAULTS: ClassVar[dict[str, str]] = {
        "window_s": "5",
        "size_tolerance": "0.01",
        "price_tolerance_bps": "5",
        "same_account": "false",
    }

    def validate(self, params: dict[str, str]) -> None:
        check_params(
            self.NAME,
            params,
            {
                "window_s": duration(),
                "size_tolerance": number(ge=Decimal(0), le=Decimal(1)),
                "price_tolerance_bps": number(ge=Decimal(0)),
                "same_account": boolean(),
            },
        )

    def on_event(self, ctx: Context) -> list[AlertDraft]:
        """Pairs the new fill with the earliest unexplained matching opposite fill, in
        event time (`(at, event_id)`), whatever order the candidates were folded in (3:
        the first in fold order, so two candidates folded the other way round paired
        differently)."""
        p = ctx.event.payload
        if not isinstance(p, Fill):
            return []
        prm = ctx.params
        used = set(ctx.book.used.get(self.NAME, []))
        if p.fill_id in used:
            return []
        window = seconds(prm["window_s"])
        size_tol = Decimal(prm["size_tolerance"])
        px_tol = Decimal(prm["price_tolerance_bps"])
        allow_same = prm["same_account"].lower() == "true"
        match: tuple[FillRec, Decimal, Decimal] | None = None
        for f in ctx.book.fills:
            if match is not None and (f.at, str(f.event_id)) >= (
                match[0].at,
                str(match[0].event_id),
            ):
                continue
            if (
                f.fill_id == p.fill_id
                or f.fill_id in used
                or f.instrument != p.instrument
                or f.side == str(p.side)
                or (f.account == p.account and not allow_same)
                or abs(ctx.now - f.at) > window
            ):
                continue
            size_diff = abs(f.quantity - p.quantity) / max(f.quantity, p.quantity)
            price_bps = price_diff_bps(f.price, p.price)
            if size_diff > size_tol or price_bps > px_tol:
                continue
            match = (f, size_diff, price_bps)
        if match is not None:
            f, size_diff, price_bps = match
            gap = abs(ctx.now - f.at)
            evidence = {
                "legs": [
                    {
                        "fill_id": x_id,
                        "order_id": x_order,
                        "account": x_acc,
                        "side": x_side,
                        "quantity": dec(x_q),
                        "price": dec(x_p),
                        "at": ts(x_at),
                    }
                    for (x_id, x_order, x_acc, x_side, x_q, x_p, x_at) in (
                        (f.fill_id, f.order_id, f.account, f.side, f.quantity, f.price, f.at),
                        (
                            p.fill_id,
                            p.order_id,
                            p.account,
                            str(p.side),
                            p.quantity,
                            p.price,
                            ctx.now,
                        ),
                    )
                ],
                "size_diff_ratio": dec(size_diff.quantize(Decimal("0.000001"))),
                "price_diff_bps": dec(price_bps.quantize(Decimal("0.01"))),
                "time_gap_s": duration_s(gap),
                "net_quantity": dec(
                    (p.quantity if str(p.side) == "BUY" else -p.quantity)
                    + (f.quantity if f.side == "BUY" else -f.quantity)
                ),
                "params": prm,
                "config_version": ctx.config_version,
            }
            return [
                AlertDraft(
                    detector=self.NAME,
                    version=self.VERSION,
                    pattern=self.PATTERN,
                    account=p.account,
                    instrument=p.instrument,
                    score=(Decimal(1) - size_diff).quantize(Decimal("0.0001")),
                    window_start=min(f.at, ctx.now),
                    window_end=max(f.at, ctx.now),
                    triggering_event_ids=(f.event_id, ctx.event.event_id),
                    related_accounts=tuple(sorted({f.account} - {p.account})),
                    evidence=evidence,
                    summary=(
                        f"owner {ctx.owner}: {f.account} {f.side} {dec(f.quantity)} @ {dec(f.price)}"
                        f" and {p.account} {p.side} {dec(p.quantity)} @ {dec(p.price)} "
                        f"{evidence['time_gap_s']}s apart"
                    ),
                    used_ids=(f.fill_id, p.fill_id),
                )
            ]
        return []


def price_diff_bps(a: Decimal, b: Decimal) -> Decimal:
    """|a - b| in basis points of their mid: symmetric, so neither which leg is the buy
    nor which was folded first changes a verdict."""
    return abs(a - b) / ((a + b) / 2) * Decimal(10000)
