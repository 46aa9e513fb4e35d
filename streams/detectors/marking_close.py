"""Marking the close: one owner's aggressive trading concentrated just before a reference time."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import ClassVar

from schemas.events import Fill
from streams.surveillance_state import (
    HORIZON,
    AlertDraft,
    Context,
    InvalidDetectorConfig,
    check_params,
    dec,
    integer,
    number,
    reference_times,
    times_of_day,
    ts,
)

HORIZON_MINUTES = HORIZON // timedelta(minutes=1)
"""The longest look-back: older fills are pruned from the owner's state."""


def closes_open_at(now: datetime, times: list[time], before: timedelta) -> list[datetime]:
    """Every close (reference time, UTC, daily) whose window `[close - before, close]`
    holds `now`, earliest first: windows may overlap, and each close is judged (6: only
    the first close at or after `now` was). A fill at the close itself belongs to it (5).
    `before` is at most the 90-minute horizon, so today's and tomorrow's are enough."""
    candidates = {
        datetime.combine(now.date() + timedelta(days=d), t, tzinfo=now.tzinfo)
        for d in (0, 1)
        for t in times
    }
    return sorted(c for c in candidates if c - before <= now <= c)


class MarkingCloseDetector:
    NAME: ClassVar[str] = "marking_close"
    VERSION: ClassVar[int] = 7
    """7 (session 24): the evidence's fills in event time, not fold order.
    6 (session 24): every close whose window holds the fill is judged, each with its
    own suppression key and the close in its alert id; a fill was judged only for the
    first close at or after it, and that close's alert suppressed the next close whose
    window overlapped it (16:00 and 16:03, 5 minutes before each: the 16:03 close was
    never judged once 16:00 had raised).
    5 (review helper-134): a fill stamped exactly at a reference time counts for that
    close (the window is [close - minutes_before, close]); it was taken for the next
    day's, so the print most likely to set the closing price counted in no window.
    4 (review 52): an account's fills before its `AccountOpened` count with the
    owner's (they stayed in the account's own book).
    3: one alert per owner, instrument and close (2 raised one per account of the
    owner for the same episode); counts only fills at or before the triggering one."""
    PATTERN: ClassVar[str] = "MARKING_THE_CLOSE"
    DEFAULTS: ClassVar[dict[str, str]] = {
        "reference_times": "16:00",
        "minutes_before": "5",
        "lookback_minutes": "60",
        "min_aggressive_fills": "5",
        "min_share": "0.6",
    }

    def validate(self, params: dict[str, str]) -> None:
        check_params(
            self.NAME,
            params,
            {
                "reference_times": times_of_day(),
                "minutes_before": integer(ge=1, le=HORIZON_MINUTES),
                "lookback_minutes": integer(ge=1, le=HORIZON_MINUTES),
                "min_aggressive_fills": integer(ge=1),
                "min_share": number(ge=Decimal(0), le=Decimal(1)),
            },
        )
        if int(params["lookback_minutes"]) < int(params["minutes_before"]):
            raise InvalidDetectorConfig(f"{self.NAME}: lookback_minutes must be >= minutes_before")

    def on_event(self, ctx: Context) -> list[AlertDraft]:
        p = ctx.event.payload
        if not isinstance(p, Fill) or p.liquidity != "TAKER":
            return []
        prm = ctx.params
        before = timedelta(minutes=int(prm["minutes_before"]))
        closes = closes_open_at(ctx.now, reference_times(prm["reference_times"]), before)
        return [d for ref in closes for d in self._judge(ctx, p, ref, ref - before)]

    def _judge(
        self, ctx: Context, p: Fill, ref: datetime, close_start: datetime
    ) -> list[AlertDraft]:
        """One close: the owner's taker fills in its window up to this one."""
        prm = ctx.params
        # per owner (the fills are the owner's) and per close (windows may overlap)
        key = f"{self.NAME}|{ctx.owner}|{p.instrument}|{ts(ref)}"
        if key in ctx.book.last_alert:
            return []
        look_start = ref - timedelta(minutes=int(prm["lookback_minutes"]))
        taker = [
            f
            for f in ctx.book.fills
            if f.instrument == p.instrument and f.taker and look_start <= f.at <= ctx.now
        ]
        # in event time, not fold order: the same fills give the same record (evidence)
        near = sorted(
            (f for f in taker if f.at >= close_start), key=lambda f: (f.at, str(f.event_id))
        )
        vol_near = sum((f.quantity for f in near), Decimal(0))
        vol_all = sum((f.quantity for f in taker), Decimal(0))
        share = vol_near / vol_all if vol_all else Decimal(0)
        if len(near) < int(prm["min_aggressive_fills"]) or share < Decimal(prm["min_share"]):
            return []
        return [
            AlertDraft(
                detector=self.NAME,
                version=self.VERSION,
                pattern=self.PATTERN,
                account=p.account,
                instrument=p.instrument,
                suppress_key=key,
                id_parts=(ts(ref),),
                score=share.quantize(Decimal("0.0001")),
                window_start=close_start,
                window_end=ctx.now,
                triggering_event_ids=tuple(f.event_id for f in near),
                related_accounts=tuple(sorted({f.account for f in near} - {p.account})),
                evidence={
                    "reference_time": ts(ref),
                    "close_window_start": ts(close_start),
                    "aggressive_fills_in_window": len(near),
                    "volume_in_window": dec(vol_near),
                    "volume_in_lookback": dec(vol_all),
                    "share": dec(share.quantize(Decimal("0.0001"))),
                    "fills": [f.evidence() for f in near],
                    "params": prm,
                    "config_version": ctx.config_version,
                },
                summary=(
                    f"{len(near)} aggressive fills ({dec(share.quantize(Decimal('0.01')))} of the "
                    f"owner's last {prm['lookback_minutes']} min taker volume) in the "
                    f"{prm['minutes_before']} min before {ts(ref)}"
                ),
            )
        ]
