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
)


class WashTradingDetector:
    NAME: ClassVar[str] = "wash_trading"
    VERSION: ClassVar[int] = 5
    """5 (session 24): the alert is the same record whichever leg was folded first: its
    legs in event time (`(at, event_id)`), the alert's account the later leg's (4 named the
    later-folded fill's account and listed the legs in fold order, under the same id).
    4 (session 24): the price difference is taken in basis points of the two prices'
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
            this = next(x for x in reversed(ctx.book.fills) if x.fill_id == p.fill_id)
            # the legs in event time, not fold order: either fold order, the same record (5)
            first, second = sorted((f, this), key=lambda x: (x.at, str(x.event_id)))
            net = sum(
                (x.quantity if x.side == "BUY" else -x.quantity for x in (first, second)),
                Decimal(0),
            )
            evidence = {
                "legs": [leg.evidence() for leg in (first, second)],
                "size_diff_ratio": dec(size_diff.quantize(Decimal("0.000001"))),
                "price_diff_bps": dec(price_bps.quantize(Decimal("0.01"))),
                "time_gap_s": duration_s(second.at - first.at),
                "net_quantity": dec(net),
                "params": prm,
                "config_version": ctx.config_version,
            }
            return [
                AlertDraft(
                    detector=self.NAME,
                    version=self.VERSION,
                    pattern=self.PATTERN,
                    account=second.account,
                    instrument=p.instrument,
                    score=(Decimal(1) - size_diff).quantize(Decimal("0.0001")),
                    window_start=first.at,
                    window_end=second.at,
                    triggering_event_ids=(first.event_id, second.event_id),
                    related_accounts=tuple(sorted({first.account} - {second.account})),
                    evidence=evidence,
                    summary=(
                        f"owner {ctx.owner}: {first.account} {first.side} {dec(first.quantity)} @ "
                        f"{dec(first.price)} and {second.account} {second.side} "
                        f"{dec(second.quantity)} @ {dec(second.price)} "
                        f"{evidence['time_gap_s']}s apart"
                    ),
                    used_ids=(first.fill_id, second.fill_id),
                )
            ]
        return []


def price_diff_bps(a: Decimal, b: Decimal) -> Decimal:
    """|a - b| in basis points of their mid: symmetric, so neither which leg is the buy
    nor which was folded first changes a verdict."""
    return abs(a - b) / ((a + b) / 2) * Decimal(10000)
