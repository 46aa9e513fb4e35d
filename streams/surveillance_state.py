"""The pure state surveillance keeps, and the engine that folds events into alerts.

Nothing here reads the wall clock, a random source or depends on dict iteration order:
time is the event's `occurred_at`, and every collection is walked in a sorted or
insertion (= log) order. State lives in plain `MutableMapping`s so the same code runs
over dicts in tests and over faust tables (with changelogs) in the app.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import (
    ROUND_HALF_EVEN,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from decimal import Context as DecimalContext
from typing import Any, ClassVar, Protocol
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from schemas import Envelope, new_event
from schemas.events import (
    AccountOpened,
    DetectorConfigChanged,
    Fill,
    OrderCanceled,
    OrderExpired,
    OrderRejected,
    OrderSubmitted,
    QuoteUpdated,
    SurveillanceAlert,
)
from schemas.ids import derived_uuid7
from schemas.types import format_timestamp

PRODUCER = "surveillance"
SIZE_HISTORY = 50
"""Order sizes kept per account for the median (the last N submissions)."""
HORIZON = timedelta(minutes=90)
"""Closed orders and fills older than this (event time) are pruned from owner state."""
ALERTED_KEEP = 2000
QUOTE_HISTORY = timedelta(seconds=60)
QUOTE_HISTORY_MAX = 600
"""Older quotes kept per instrument (span and count), for orders folded in after newer
quotes: engine events can reach surveillance seconds behind the market data."""
ARITHMETIC = DecimalContext(
    prec=600,
    rounding=ROUND_HALF_EVEN,
    Emin=-999_999,
    Emax=999_999,
    traps=[InvalidOperation, DivisionByZero, Overflow],
)
"""The decimal context every fold runs in, whatever the caller's: results never depend on
the ambient context (review 52: spoofing divided and quantized in it, so the same events
gave other bytes under another precision), and 600 digits hold any ratio of two
schema-valid decimals (|adjusted exponent| <= 200, <= 256 characters) quantized to 4
places, so `quantize` cannot raise `InvalidOperation` (it did for 1e12 against a 1e-18 bid
at the default 28 digits: the cancel was dead-lettered, the spoof missed)."""
SCORE_MAX = Decimal(10) ** 18
"""An alert's `score` is capped here so it stays a schema-valid decimal (|exponent| <= 200);
the evidence keeps the exact ratio."""
SWEEP_EVERY = timedelta(minutes=10)
"""How often (global prune clock) the books of quiet owners are looked at."""
CLOCK_KEY = "__clock__"
"""Where `configs` holds the global prune clock (never a detector's name)."""
CONFIGS_REMEMBERED = 32
"""Ids of the last N config changes applied per detector, so a redelivered one is a no-op."""
CLOCK_SAMPLE = 7
"""An owner's prune clock is the lower median of the times of their last N events (and
never goes back): one event stamped hours ahead (the engine stamps its outputs with the
intent's time, which a strategy chooses) cannot move it, so it cannot prune evidence."""


class InvalidDetectorConfig(ValueError):
    """A `DetectorConfigChanged` that is not applied: unknown detector or key, a value of
    the wrong type or range, or a `config_version` not higher than the one in force. The
    config in force stays; the app dead-letters the event with this message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrderRec(_Model):
    """One of an owner's orders as surveillance sees it, with the context at submission."""

    order_id: str
    account: str
    instrument: str
    side: str
    quantity: Decimal
    price: Decimal | None
    aggressive: bool = False
    submitted_at: datetime
    submit_event_id: UUID
    visible_qty_at_submit: Decimal | None = None
    median_size_at_submit: Decimal | None = None
    history_at_submit: int | None = None
    """How many of the account's sizes (this order's included, at most SIZE_HISTORY) were
    known at submission: spoofing's `min_history` is judged on this, not on the count when
    the order is judged (orders submitted after it must not change the verdict)."""
    filled_qty: Decimal = Decimal(0)
    """The sum of the order's fills folded so far."""
    reported_filled: Decimal | None = None
    """What the order's cancel or expiry says was filled: its fills may be folded after it."""
    status: str = "OPEN"
    ended_at: datetime | None = None
    end_event_id: UUID | None = None

    @property
    def traded(self) -> bool:
        """Any part filled, by a fill folded so far or by the order's own end event."""
        return self.filled_qty > 0 or bool(self.reported_filled)


class PendingEnd(_Model):
    """An order's end (cancel, expiry, venue rejection) folded before the order itself: the
    engine stamps both with their intents' times, which the producer chooses, so a cancel
    can be stamped before the order it follows on the log and be released first. Kept
    until the order's `OrderSubmitted` is folded (then applied to it), or the horizon."""

    status: str
    at: datetime
    event_id: UUID
    reported_filled: Decimal | None = None


class EarlyFills(_Model):
    """The fills of an order folded before the order itself (see `OwnerBook.early_fills`):
    what they filled, and the fill that left nothing (`leaves_quantity` 0), if one did."""

    filled: Decimal = Decimal(0)
    last_at: datetime
    """The newest of them (for pruning with the horizon)."""
    closed_at: datetime | None = None
    closed_by: UUID | None = None
    parts: dict[str, Decimal] = {}
    """Per fill id: its quantity, so two books' entries for one order merge without
    counting a fill both hold twice (`merge_books`). Empty in entries stored before it:
    their `filled` is counted as it stands."""


def merge_early(a: EarlyFills, b: EarlyFills) -> EarlyFills:
    """One order's early fills from two books: each fill once (by fill id, as the fold
    skips a fill id it holds), the newest time, the closing fill by `(at, event id)`.
    The same whichever book comes first."""
    parts = {**a.parts, **b.parts}
    unitemized = a.filled - sum(a.parts.values()) + b.filled - sum(b.parts.values())
    out = EarlyFills(
        filled=unitemized + sum(parts[k] for k in sorted(parts)),
        last_at=max(a.last_at, b.last_at),
        parts=dict(sorted(parts.items())),
    )
    for e in (a, b):
        if e.closed_at is not None and (
            out.closed_at is None
            or (e.closed_at, str(e.closed_by)) > (out.closed_at, str(out.closed_by))
        ):
            out.closed_at, out.closed_by = e.closed_at, e.closed_by
    return out


class FillRec(_Model):
    fill_id: str
    event_id: UUID
    order_id: str
    account: str
    instrument: str
    side: str
    quantity: Decimal
    price: Decimal
    taker: bool
    at: datetime
    """When surveillance saw the fill happen: the event's time, on the same clock as the
    order's submission and cancel. The venue's `traded_at` may come from another clock
    (the paper venue stamps the quote the fill priced off), so windows never use it."""
    traded_at: datetime | None = None

    def evidence(self) -> dict[str, str | None]:
        """How an alert's evidence names a fill (the same keys in every detector)."""
        return {
            "fill_id": self.fill_id,
            "order_id": self.order_id,
            "account": self.account,
            "side": self.side,
            "quantity": dec(self.quantity),
            "price": dec(self.price),
            "at": ts(self.at),
        }


class QuotePoint(_Model):
    bid_price: Decimal
    bid_quantity: Decimal
    ask_price: Decimal
    ask_quantity: Decimal
    at: datetime


class QuoteRec(QuotePoint):
    """The newest quote, and the recent ones: an order is judged against the quote in
    force when it was submitted, even if a newer quote was folded in first."""

    history: list[QuotePoint] = []
    recent_times: list[datetime] = []
    """Times of the instrument's last CLOCK_SAMPLE quotes, log order."""
    clock: datetime | None = None
    """The history's prune clock (see CLOCK_SAMPLE): one quote stamped an hour ahead (a
    feed's clock glitch) must not prune every correct quote after it from the history."""

    def at_time(self, when: datetime) -> QuotePoint | None:
        """The latest quote at or before `when`; None if all known quotes are later."""
        best: QuotePoint | None = None
        for q in [*self.history, self]:
            if q.at <= when and (best is None or q.at >= best.at):
                best = q
        return best


class OwnerBook(_Model):
    """Everything about one beneficial owner's recent activity (all their accounts)."""

    owner: str
    orders: dict[str, OrderRec] = {}
    fills: list[FillRec] = []
    sizes: dict[str, list[Decimal]] = {}
    counters: dict[str, list[tuple[datetime, str]]] = {}
    """Per `account|instrument`: (time, kind) for kind in SUBMIT/CANCEL/FILL, log order."""
    used: dict[str, list[str]] = {}
    """Per detector: order or fill ids already explained by an alert."""
    last_alert: dict[str, datetime] = {}
    alerted: list[str] = []
    pending_ends: dict[str, PendingEnd] = {}
    """Per order id: ends folded before their order (see `PendingEnd`), log order."""
    early_fills: dict[str, EarlyFills] = {}
    """Per order id: fills folded before their order (stamped before its submission, so
    released first), applied to it when its `OrderSubmitted` is folded, or pruned with
    the horizon (a stop/take child's fills: children are not in `orders`)."""
    recent_times: list[datetime] = []
    """Times of the owner's last CLOCK_SAMPLE events, log order (for the prune clock)."""
    clock: datetime | None = None
    """The prune clock: see CLOCK_SAMPLE."""


class StateStore(Protocol):
    """The four mappings the engine reads and writes; dicts or faust tables."""

    owners: MutableMapping[str, str]
    quotes: MutableMapping[str, QuoteRec]
    configs: MutableMapping[str, dict[str, str]]
    books: MutableMapping[str, OwnerBook]


@dataclass
class MemoryStore:
    owners: MutableMapping[str, str] = field(default_factory=dict)
    quotes: MutableMapping[str, QuoteRec] = field(default_factory=dict)
    configs: MutableMapping[str, dict[str, str]] = field(default_factory=dict)
    books: MutableMapping[str, OwnerBook] = field(default_factory=dict)


@dataclass(frozen=True)
class AlertDraft:
    """What a detector found; the engine turns it into a `SurveillanceAlert` event."""

    detector: str
    version: int
    pattern: str
    account: str
    instrument: str
    score: Decimal
    window_start: datetime
    window_end: datetime
    triggering_event_ids: tuple[UUID, ...]
    evidence: dict[str, Any]
    summary: str
    related_accounts: tuple[str, ...] = ()
    used_ids: tuple[str, ...] = ()
    suppress_key: str | None = None
    """Where the engine records the alert's `window_end` in `OwnerBook.last_alert`;
    default `detector|account|instrument`."""
    id_parts: tuple[str, ...] = ()
    """What else tells this alert from another on the same triggers and window end (the
    close a marking-the-close alert is for: the same fills can mark two closes)."""


@dataclass
class Context:
    """What a detector sees for one event: the owner's book after the event, quotes, params."""

    event: Envelope[Any]
    owner: str
    book: OwnerBook
    quotes: MutableMapping[str, QuoteRec]
    params: dict[str, str]
    config_version: int

    def visible_at_submit(self, order: OrderRec) -> Decimal | None:
        """Same-side quantity in the quote in force when `order` was submitted, looked up
        when a detector judges the order rather than when it was folded in: market data
        and the engine's events come from different partitions, and the quote the order
        met may be folded in after the order. Falls back to what was seen at the fold."""
        quote = self.quotes.get(order.instrument)
        q = quote.at_time(order.submitted_at) if quote is not None else None
        if q is None:
            return order.visible_qty_at_submit
        return q.bid_quantity if order.side == "BUY" else q.ask_quantity

    @property
    def now(self) -> datetime:
        return self.event.occurred_at


class Detector(Protocol):
    NAME: ClassVar[str]
    VERSION: ClassVar[int]
    PATTERN: ClassVar[str]
    DEFAULTS: ClassVar[dict[str, str]]

    def validate(self, params: dict[str, str]) -> None:
        """Raise `InvalidDetectorConfig` unless `params` (defaults merged in) are usable."""
        ...

    def on_event(self, ctx: Context) -> list[AlertDraft]: ...


def alert_id(
    detector: str,
    version: int,
    triggering: Iterable[UUID],
    at: datetime,
    parts: tuple[str, ...] = (),
) -> UUID:
    """Deterministic: detector, its version, the sorted triggering event ids and the
    draft's `id_parts` (none for most detectors: their ids are as before)."""
    ids = sorted(str(i) for i in triggering)
    return derived_uuid7(at, "alert", detector, str(version), *parts, *ids)


def ts(value: datetime) -> str:
    return format_timestamp(value)


def dec(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def median(values: list[Decimal]) -> Decimal | None:
    return statistics.median(sorted(values)) if values else None


def params_for(
    det: Detector, configs: MutableMapping[str, dict[str, str]]
) -> tuple[dict[str, str], int]:
    stored = configs.get(det.NAME)
    merged = dict(det.DEFAULTS)
    version = 0
    if stored:
        version = int(stored.get("__version__", "0"))
        merged.update({k: v for k, v in stored.items() if k in det.DEFAULTS})
    return merged, version


class Surveillance:
    """Folds events, one at a time in log order, into state and alerts."""

    def __init__(self, detectors: list[Detector], store: StateStore | None = None) -> None:
        self.detectors = sorted(detectors, key=lambda d: d.NAME)
        self.store: StateStore = store if store is not None else MemoryStore()

    def owner_of(self, account: str) -> str:
        return self.store.owners.get(account) or f"account:{account}"

    def process_batch(self, events: Iterable[Envelope[Any]]) -> list[Envelope[SurveillanceAlert]]:
        return [alert for event in events for alert in self.process(event)]

    def process(self, event: Envelope[Any]) -> list[Envelope[SurveillanceAlert]]:
        """Fold one event; its alerts. Raises `InvalidDetectorConfig` for a refused config
        change, and whatever a detector raises (the event is then not folded at all)."""
        with localcontext(ARITHMETIC):
            return self._process(event)

    def _process(self, event: Envelope[Any]) -> list[Envelope[SurveillanceAlert]]:
        p = event.payload
        st = self.store
        if isinstance(p, AccountOpened):
            owner = p.beneficial_owner.owner_id
            st.owners[p.account] = owner
            fallback = f"account:{p.account}"
            if owner != fallback and fallback in st.books:
                target = st.books.get(owner)
                st.books[owner] = merge_books(st.books[fallback], target, owner)
                del st.books[fallback]
            return []
        if isinstance(p, DetectorConfigChanged):
            self._apply_config(event)
            return []
        if isinstance(p, QuoteUpdated):
            point = QuotePoint(
                bid_price=p.bid_price,
                bid_quantity=p.bid_quantity,
                ask_price=p.ask_price,
                ask_quantity=p.ask_quantity,
                at=event.occurred_at,
            )
            prev = st.quotes.get(p.instrument)
            points = [] if prev is None else [*prev.history, QuotePoint(**prev.model_dump(
                exclude={"history", "recent_times", "clock"}))]  # fmt: skip
            points = sorted([*points, point], key=lambda q: q.at)
            newest = points[-1]
            recent = [*(prev.recent_times if prev is not None else []), point.at][-CLOCK_SAMPLE:]
            clock = sorted(recent)[(len(recent) - 1) // 2]
            if prev is not None and prev.clock is not None and prev.clock > clock:
                clock = prev.clock
            keep = [q for q in points[:-1] if q.at >= clock - QUOTE_HISTORY]
            st.quotes[p.instrument] = QuoteRec(
                **newest.model_dump(),
                history=keep[-QUOTE_HISTORY_MAX:],
                recent_times=recent,
                clock=clock,
            )
            return []
        account = getattr(p, "account", None)
        if not isinstance(
            p, OrderSubmitted | OrderCanceled | OrderExpired | OrderRejected | Fill
        ) or not isinstance(account, str):
            return []
        owner = self.owner_of(account)
        stored = st.books.get(owner)
        book = stored if stored is not None else OwnerBook(owner=owner)
        undo = self._apply(book, event)
        if undo is None:
            return []
        # All detectors run before anything of theirs is recorded, and an exception from
        # any of them undoes the event's change to the book: an event is folded whole or
        # not at all (dead-lettered), so the state in memory never differs from what the
        # changelog holds and a restart cannot change the alerts.
        found: list[tuple[AlertDraft, Envelope[SurveillanceAlert]]] = []
        try:
            for det in self.detectors:
                params, version = params_for(det, st.configs)
                ctx = Context(event, owner, book, st.quotes, params, version)
                found.extend((d, self._emit(d, owner)) for d in det.on_event(ctx))
        except BaseException:
            undo()
            raise
        alerts: list[Envelope[SurveillanceAlert]] = []
        for draft, env in found:
            aid = str(env.payload.alert_id)
            if aid in book.alerted:
                continue
            book.alerted.append(aid)
            book.used.setdefault(draft.detector, []).extend(draft.used_ids)
            key = draft.suppress_key or f"{draft.detector}|{draft.account}|{draft.instrument}"
            book.last_alert[key] = draft.window_end
            alerts.append(env)
        self._prune(book, self._advance_clock(book, event.occurred_at))
        st.books[owner] = book
        self._sweep(event.occurred_at)
        return alerts

    def _apply_config(self, event: Envelope[Any]) -> None:
        """Store a detector's new params, or raise `InvalidDetectorConfig` and keep the old.

        A change names only the keys it changes: they are merged over the params in force
        (the previous change's, else the defaults). The version must be higher than the
        one in force; the same event delivered again (at-least-once) is a no-op."""
        p: DetectorConfigChanged = event.payload
        det = next((d for d in self.detectors if d.NAME == p.detector), None)
        if det is None:
            raise InvalidDetectorConfig(f"unknown detector {p.detector!r}")
        current = self.store.configs.get(p.detector) or {}
        applied = current.get("__applied__", "").split()
        if str(event.event_id) in applied:
            return  # redelivered (at-least-once), also after newer changes
        in_force = int(current.get("__version__", "0"))
        if p.config_version <= in_force:
            raise InvalidDetectorConfig(
                f"{p.detector}: config_version {p.config_version} is not higher than "
                f"{in_force}, the version in force"
            )
        unknown = sorted(set(p.params) - set(det.DEFAULTS))
        if unknown:
            raise InvalidDetectorConfig(f"{p.detector}: unknown parameter(s) {', '.join(unknown)}")
        previous, _ = params_for(det, self.store.configs)
        merged = {**previous, **p.params}
        det.validate(merged)
        self.store.configs[p.detector] = {
            **merged,
            "__version__": str(p.config_version),
            "__applied__": " ".join([*applied, str(event.event_id)][-CONFIGS_REMEMBERED:]),
        }

    @staticmethod
    def _advance_clock(book: OwnerBook, at: datetime) -> datetime:
        """The owner's prune clock after an event at `at` (see CLOCK_SAMPLE)."""
        book.recent_times.append(at)
        del book.recent_times[:-CLOCK_SAMPLE]
        times = sorted(book.recent_times)
        lower_median = times[(len(times) - 1) // 2]
        if book.clock is None or lower_median > book.clock:
            book.clock = lower_median
        return book.clock

    def _apply(self, book: OwnerBook, event: Envelope[Any]) -> Callable[[], None] | None:
        """Update the owner's book; None if the event changes nothing detectors care about,
        else a function that takes the change back (see `process`)."""
        p = event.payload
        at = event.occurred_at
        if isinstance(p, OrderSubmitted):
            if p.order_id in book.orders or p.parent_order_id is not None:
                return None
            quote = self.store.quotes.get(p.instrument)
            q = quote.at_time(at) if quote is not None else None
            visible = None
            if q is not None:
                visible = q.bid_quantity if p.side == "BUY" else q.ask_quantity
            aggressive = p.order_type == "MARKET"
            if q is not None and p.limit_price is not None:
                aggressive = (p.side == "BUY" and p.limit_price >= q.ask_price) or (
                    p.side == "SELL" and p.limit_price <= q.bid_price
                )
            had_sizes = book.sizes.get(p.account)
            sizes = [] if had_sizes is None else list(had_sizes)
            history = min(len(sizes) + 1, SIZE_HISTORY)
            book.orders[p.order_id] = OrderRec(
                order_id=p.order_id,
                account=p.account,
                instrument=p.instrument,
                side=str(p.side),
                quantity=p.quantity,
                price=p.limit_price,
                aggressive=aggressive,
                submitted_at=at,
                submit_event_id=event.event_id,
                visible_qty_at_submit=visible,
                median_size_at_submit=median(sizes),
                history_at_submit=history,
            )
            sizes.append(p.quantity)
            book.sizes[p.account] = sizes[-SIZE_HISTORY:]
            undo_count = self._count(book, f"{p.account}|{p.instrument}", at, "SUBMIT")
            early = book.early_fills.pop(p.order_id, None)
            if early is not None:  # its fills were folded first: the order has them now
                new = book.orders[p.order_id]
                new.filled_qty = early.filled
                if early.closed_at is not None:
                    new.status, new.end_event_id = "FILLED", early.closed_by
                    new.ended_at = max(early.closed_at, at)
            pending = book.pending_ends.pop(p.order_id, None)
            undo_end = None
            if pending is not None and book.orders[p.order_id].status == "OPEN":
                # its end was folded first: the order ends now
                undo_end = self._end(
                    book, book.orders[p.order_id], pending.status, pending.at,
                    pending.event_id, pending.reported_filled,
                )  # fmt: skip

            def undo_submit() -> None:
                if undo_end is not None:
                    undo_end()
                if pending is not None:
                    book.pending_ends[p.order_id] = pending
                if early is not None:
                    book.early_fills[p.order_id] = early
                del book.orders[p.order_id]
                if had_sizes is None:
                    del book.sizes[p.account]
                else:
                    book.sizes[p.account] = had_sizes
                undo_count()

            return undo_submit
        if isinstance(p, Fill):
            if any(f.fill_id == p.fill_id for f in book.fills):
                return None
            rec = book.orders.get(p.order_id)
            before = None if rec is None else rec.model_copy()
            early = book.early_fills.get(p.order_id)
            if rec is not None:
                rec.filled_qty += p.quantity
                if p.leaves_quantity == 0:  # not before it began (see `_end`)
                    rec.status, rec.end_event_id = "FILLED", event.event_id
                    rec.ended_at = max(at, rec.submitted_at)
            else:  # its order is not folded yet (stamped later, released later)
                book.early_fills[p.order_id] = self._early_fill(early, at, event.event_id, p)
            book.fills.append(
                FillRec(
                    fill_id=p.fill_id,
                    event_id=event.event_id,
                    order_id=p.order_id,
                    account=p.account,
                    instrument=p.instrument,
                    side=str(p.side),
                    quantity=p.quantity,
                    price=p.price,
                    taker=p.liquidity == "TAKER",
                    at=at,
                    traded_at=p.traded_at,
                )
            )
            undo_count = self._count(book, f"{p.account}|{p.instrument}", at, "FILL")

            def undo_fill() -> None:
                book.fills.pop()
                if before is not None:
                    book.orders[p.order_id] = before
                elif early is not None:
                    book.early_fills[p.order_id] = early
                else:
                    del book.early_fills[p.order_id]
                undo_count()

            return undo_fill
        status = (
            "CANCELED"
            if isinstance(p, OrderCanceled)
            else "EXPIRED"
            if isinstance(p, OrderExpired)
            else "REJECTED"
        )
        reported = p.filled_quantity if isinstance(p, OrderCanceled | OrderExpired) else None
        rec = book.orders.get(p.order_id)
        if rec is None:
            if p.order_id in book.pending_ends:
                return None  # delivered again
            # Its order is not folded yet (stamped later, released later), or never will
            # be (a stop/take child, an order pruned while open): kept until it is.
            book.pending_ends[p.order_id] = PendingEnd(
                status=status, at=at, event_id=event.event_id, reported_filled=reported
            )

            def undo_pending() -> None:
                del book.pending_ends[p.order_id]

            return undo_pending
        if rec.status != "OPEN":
            return None
        return self._end(book, rec, status, at, event.event_id, reported)

    @staticmethod
    def _early_fill(early: EarlyFills | None, at: datetime, event_id: UUID, p: Fill) -> EarlyFills:
        """`early` with one more fill of the order: the same whatever order its fills come
        in (a sum, the newest time, the closing fill by `(at, event id)`)."""
        out = EarlyFills(last_at=at) if early is None else early.model_copy()
        out.filled += p.quantity
        out.parts = {**out.parts, p.fill_id: p.quantity}
        out.last_at = max(out.last_at, at)
        if p.leaves_quantity == 0 and (
            out.closed_at is None or (at, str(event_id)) > (out.closed_at, str(out.closed_by))
        ):
            out.closed_at, out.closed_by = at, event_id
        return out

    def _end(
        self,
        book: OwnerBook,
        rec: OrderRec,
        status: str,
        at: datetime,
        event_id: UUID,
        reported: Decimal | None,
    ) -> Callable[[], None]:
        """End an open order; returns the undo. An end stamped before the order's own
        submission is taken at the submission: it follows the order on the log (the same
        account's partition), so it cannot have come first, and a negative lifetime passed
        spoofing's "cancelled within" and closed its window for opposite fills before the
        order existed."""
        before = rec.model_copy()
        rec.ended_at, rec.end_event_id = max(at, rec.submitted_at), event_id
        rec.status, rec.reported_filled = status, reported
        undo_cancel: Callable[[], None] | None = None
        if status == "CANCELED":
            undo_cancel = self._count(
                book, f"{rec.account}|{rec.instrument}", rec.ended_at, "CANCEL"
            )

        def undo_end() -> None:
            book.orders[rec.order_id] = before
            if undo_cancel is not None:
                undo_cancel()

        return undo_end

    @staticmethod
    def _count(book: OwnerBook, key: str, at: datetime, kind: str) -> Callable[[], None]:
        """Append to `book.counters[key]`; returns the undo."""
        items = book.counters.get(key)
        if items is None:
            book.counters[key] = [(at, kind)]

            def undo_new() -> None:
                del book.counters[key]

            return undo_new
        items.append((at, kind))

        def undo_append() -> None:
            items.pop()

        return undo_append

    @staticmethod
    def _emit(d: AlertDraft, owner: str) -> Envelope[SurveillanceAlert]:
        """The alert event, every byte of it from the alert itself: its id from the alert
        id, its time the window's end, its cause the newest of its trigger events (uuid7
        ids sort by time; the alert lists all of them). Not from the event that completed
        the pattern in this fold: a late fill completes what a cancel completes in order,
        and the same alert then went out as another record (review 52). It starts a
        correlation of its own: the case a compliance officer works."""
        aid = alert_id(d.detector, d.version, d.triggering_event_ids, d.window_end, d.id_parts)
        payload = SurveillanceAlert(
            alert_id=aid,
            detector=d.detector,
            detector_version=d.version,
            pattern=d.pattern,
            account=d.account,
            related_accounts=d.related_accounts,
            beneficial_owner=None if owner.startswith("account:") else owner,
            instrument=d.instrument,
            score=d.score,
            window_start=d.window_start,
            window_end=d.window_end,
            triggering_event_ids=tuple(sorted(d.triggering_event_ids, key=str)),
            evidence=d.evidence,
            summary=d.summary,
        )
        return new_event(
            payload,
            producer=PRODUCER,
            occurred_at=d.window_end,
            event_id=derived_uuid7(d.window_end, PRODUCER, str(aid)),
            causation_id=max(payload.triggering_event_ids, key=str, default=None),
        )

    @staticmethod
    def _prune(book: OwnerBook, now: datetime) -> None:
        """Drop what is older than the horizon before `now` (an owner's prune clock, or the
        global one for a quiet owner): closed orders, orders submitted before it even if
        still open (an end never folded must not keep one for ever), fills, counters (and
        their emptied keys), suppression times, the sizes of accounts with nothing left."""
        cutoff = now - HORIZON
        stale = [
            o
            for o, r in book.orders.items()
            if (r.ended_at and r.ended_at < cutoff) or r.submitted_at < cutoff
        ]
        for oid in stale:
            del book.orders[oid]
        for oid in [o for o, e in book.pending_ends.items() if e.at < cutoff]:
            del book.pending_ends[oid]
        for oid in [o for o, f in book.early_fills.items() if f.last_at < cutoff]:
            del book.early_fills[oid]
        book.fills = [f for f in book.fills if f.at >= cutoff]
        for key in list(book.counters):
            items = book.counters[key]
            if items and items[0][0] < cutoff:
                items = book.counters[key] = [i for i in items if i[0] >= cutoff]
            if not items:
                del book.counters[key]
        for key in [k for k, at in book.last_alert.items() if at < cutoff]:
            del book.last_alert[key]
        active = {r.account for r in book.orders.values()} | {f.account for f in book.fills}
        for acc in [a for a in book.sizes if a not in active]:
            del book.sizes[acc]
        live = set(book.orders) | {f.fill_id for f in book.fills}
        for det, ids in book.used.items():
            book.used[det] = [i for i in ids if i in live]
        del book.alerted[:-ALERTED_KEEP]

    def _sweep(self, at: datetime) -> None:
        """Advance the global prune clock (the lower median of the last CLOCK_SAMPLE
        order events' times, never back) and, every SWEEP_EVERY of it, delete the books of
        owners with nothing left inside the horizon: an owner's own events prune their
        book, so a quiet owner's book (every `account:<id>` book of a one-off account
        among them) was kept for ever. The clock is stored in `configs` under CLOCK_KEY,
        so a restart from the changelogs carries on exactly."""
        st = self.store
        stored = st.configs.get(CLOCK_KEY) or {}
        recent = [datetime.fromisoformat(t) for t in stored.get("recent", "").split()]
        recent = [*recent, at][-CLOCK_SAMPLE:]
        clock = sorted(recent)[(len(recent) - 1) // 2]
        if stored.get("clock"):
            clock = max(clock, datetime.fromisoformat(stored["clock"]))
        swept = datetime.fromisoformat(stored["swept"]) if stored.get("swept") else clock
        if clock - swept >= SWEEP_EVERY:
            swept = clock
            cutoff = clock - HORIZON
            for owner in sorted(st.books):
                book = st.books[owner]
                if book.recent_times and max(book.recent_times) >= cutoff:
                    continue  # active: its own events prune it
                self._prune(book, clock)
                if not (
                    book.orders
                    or book.fills
                    or book.counters
                    or book.last_alert
                    or book.pending_ends
                    or book.early_fills
                ):
                    del st.books[owner]
        st.configs[CLOCK_KEY] = {
            "recent": " ".join(t.isoformat() for t in recent),
            "clock": clock.isoformat(),
            "swept": swept.isoformat(),
        }


def merge_books(moved: OwnerBook, into: OwnerBook | None, owner: str) -> OwnerBook:
    """`moved` (an account's own book, kept while its owner was unknown) taken into the
    owner's book: the account's orders, fills, sizes, counters and alert bookkeeping go on
    with the owner's, so an order submitted before its `AccountOpened` is judged (and
    pruned) with the owner's other accounts. `moved`'s items come first: all of its events
    were folded before the account's `AccountOpened`. Deterministic: no iteration order
    but the books' own (log) order."""
    if into is None:
        into = OwnerBook(owner=owner)
    out = into.model_copy(deep=False)
    out.orders = {**moved.orders, **into.orders}
    # one order's ends in both: the first folded (moved's) is kept, as the fold keeps it
    out.pending_ends = dict(moved.pending_ends)
    for oid, end in into.pending_ends.items():
        out.pending_ends.setdefault(oid, end)
    out.early_fills = dict(moved.early_fills)
    for oid, early in into.early_fills.items():
        had = out.early_fills.get(oid)
        out.early_fills[oid] = early if had is None else merge_early(had, early)
    seen = {f.fill_id for f in into.fills}
    out.fills = [*(f for f in moved.fills if f.fill_id not in seen), *into.fills]
    out.sizes = dict(into.sizes)
    for acc, sizes in moved.sizes.items():
        out.sizes[acc] = [*sizes, *into.sizes.get(acc, [])][-SIZE_HISTORY:]
    out.counters = dict(into.counters)
    for key, items in moved.counters.items():
        out.counters[key] = [*items, *into.counters.get(key, [])]
    out.used = dict(into.used)
    for det, ids in moved.used.items():
        known = set(ids)
        out.used[det] = [*ids, *(i for i in into.used.get(det, []) if i not in known)]
    out.last_alert = dict(into.last_alert)
    for key, at in moved.last_alert.items():
        # per-owner keys (marking the close) name the owner: the account's own id before
        key = key.replace(f"|{moved.owner}|", f"|{owner}|")
        out.last_alert[key] = max(at, out.last_alert.get(key, at))
    before = set(moved.alerted)
    out.alerted = [*moved.alerted, *(a for a in into.alerted if a not in before)][-ALERTED_KEEP:]
    out.recent_times = [*moved.recent_times, *into.recent_times][-CLOCK_SAMPLE:]
    clocks = [c for c in (moved.clock, into.clock) if c is not None]
    out.clock = max(clocks) if clocks else None
    return out


def fills_of(
    book: OwnerBook, instrument: str, side: str, start: datetime, end: datetime
) -> list[FillRec]:
    """The owner's fills on one side of an instrument in [start, end], in event time
    (`(at, event_id)`): not in fold order, so an alert raised from the same fills folded in
    another order is the same record (its evidence's list, its window's start)."""
    return sorted(
        (
            f
            for f in book.fills
            if f.instrument == instrument and f.side == side and start <= f.at <= end
        ),
        key=lambda f: (f.at, str(f.event_id)),
    )


def seconds(value: str) -> timedelta:
    return timedelta(microseconds=int(Decimal(value) * 1_000_000))


def duration_s(delta: timedelta) -> str:
    """A duration in seconds with six decimals, exact (never through a binary float):
    the one way every detector renders durations in evidence and summaries."""
    micros = Decimal(delta // timedelta(microseconds=1))
    return format(micros.scaleb(-6).quantize(Decimal("0.000001")), "f")


def reference_times(value: str) -> list[time]:
    """`marking_close`'s `reference_times`: comma-separated UTC times of day."""
    return [time.fromisoformat(t.strip()) for t in value.split(",") if t.strip()]


# --- config validation -------------------------------------------------------------------

Check = Callable[[str], None]


PARAM_TEXT_MAX = 64
"""Longest parameter value accepted: the values are parsed again on every event."""
HORIZON_S = Decimal(HORIZON // timedelta(seconds=1))
"""Longest duration a parameter may name (seconds): evidence older than the horizon is
pruned, so a longer window could see nothing more, and a huge one made every event raise
(`OverflowError` from the date arithmetic, review 52)."""
COUNT_MAX = 1_000_000
"""Largest count a parameter may name (far above anything a window of the horizon holds;
a count beyond Python's 4,300-digit int limit passed validation and then made `int()`
raise on every event)."""


def _decimal(value: str) -> Decimal:
    if len(value) > PARAM_TEXT_MAX:
        raise ValueError(f"{value[:20]!r}... is longer than {PARAM_TEXT_MAX} characters")
    try:
        d = Decimal(value)
    except ArithmeticError:
        raise ValueError(f"{value!r} is not a decimal number") from None
    if not d.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return d


def number(
    *, gt: Decimal | None = None, ge: Decimal | None = None, le: Decimal | None = None
) -> Check:
    """A decimal number (no unit) in range."""

    def check(value: str) -> None:
        d = _decimal(value)
        if gt is not None and not d > gt:
            raise ValueError(f"{value!r} must be > {gt}")
        if ge is not None and not d >= ge:
            raise ValueError(f"{value!r} must be >= {ge}")
        if le is not None and not d <= le:
            raise ValueError(f"{value!r} must be <= {le}")

    return check


def integer(*, ge: int, le: int = COUNT_MAX) -> Check:
    def check(value: str) -> None:
        d = _decimal(value)
        if d != d.to_integral_value() or "." in value or "e" in value.lower():
            raise ValueError(f"{value!r} is not a whole number")
        if d < ge:
            raise ValueError(f"{value!r} must be >= {ge}")
        if d > le:
            raise ValueError(f"{value!r} must be <= {le}")

    return check


def duration(*, allow_zero: bool = False) -> Check:
    """Seconds, > 0 (or >= 0), at most the horizon, a whole number of microseconds (as
    `seconds` reads it)."""

    def check(value: str) -> None:
        d = _decimal(value)
        if d < 0 or (d == 0 and not allow_zero):
            raise ValueError(f"{value!r} must be {'>=' if allow_zero else '>'} 0 seconds")
        if d > HORIZON_S:
            raise ValueError(
                f"{value!r} must be <= {HORIZON_S} seconds (the state horizon: older "
                "evidence is pruned)"
            )
        if d.scaleb(6) != d.scaleb(6).to_integral_value():
            raise ValueError(f"{value!r} is finer than a microsecond")

    return check


def boolean() -> Check:
    def check(value: str) -> None:
        if value.lower() not in ("true", "false"):
            raise ValueError(f"{value!r} is not true or false")

    return check


def times_of_day() -> Check:
    def check(value: str) -> None:
        try:
            times = reference_times(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a list of HH:MM[:SS] times") from None
        if not times:
            raise ValueError("no reference time")
        if any(t.tzinfo is not None for t in times):
            raise ValueError(f"{value!r}: times are UTC, without an offset")

    return check


def check_params(name: str, params: dict[str, str], checks: dict[str, Check]) -> None:
    """Known keys only, each value passing its check; raises `InvalidDetectorConfig`."""
    unknown = sorted(set(params) - set(checks))
    if unknown:
        raise InvalidDetectorConfig(f"{name}: unknown parameter(s) {', '.join(unknown)}")
    for key, check in checks.items():
        if key not in params:
            raise InvalidDetectorConfig(f"{name}: missing parameter {key}")
        value = params[key]
        if not isinstance(value, str):
            raise InvalidDetectorConfig(f"{name}.{key}: {value!r} is not a string")
        try:
            check(value)
        except ValueError as exc:
            raise InvalidDetectorConfig(f"{name}.{key}: {exc}") from None
