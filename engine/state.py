"""The engine's state: a pure fold over the events it reads and writes.

Nothing here talks to Kafka. The worker feeds it the reference topics (accounts,
transfers, risk config, market data) for every partition and its own outputs
(decisions, orders, fills) for the partitions it owns; the same fold rebuilds it after
a crash, so the log stays the only truth. Applying a reference event twice is harmless:
they are de-duplicated by event id.
"""

from __future__ import annotations

import logging
from bisect import bisect_right, insort
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import datetime, timedelta
from decimal import (
    ROUND_CEILING,
    ROUND_FLOOR,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    getcontext,
    setcontext,
)
from functools import wraps
from heapq import heappop, heappush
from typing import Any, NamedTuple, ParamSpec, TypeVar
from uuid import UUID

from engine.auth import ProducerEntry
from engine.ended import MAX_CAUSE, Ended, EndedOrders
from engine.idempotency import IdempotencyRecord, Recorded
from schemas import Envelope, encode
from schemas.drawdown import EQUITY_QUANTUM as EQUITY_QUANTUM  # re-exported: one source
from schemas.drawdown import NAV_ROUNDING, nav_per_unit, peak_in_money
from schemas.drawdown import VALUATION as VALUATION  # re-exported: one source
from schemas.drawdown import add_peak as add_suffix_peak
from schemas.drawdown import lost_in_full as peak_lost
from schemas.drawdown import peak_since as suffix_peak_since
from schemas.events import (
    AccountOpened,
    AdminCommandRejected,
    AmlFlagCleared,
    AmlFlagRaised,
    DepositReceived,
    Fill,
    IntentRejected,
    KillSwitchEngaged,
    KillSwitchReleased,
    KycVerified,
    Liquidity,
    MarketTrade,
    OrderCanceled,
    OrderExpired,
    OrderRejected,
    OrderSubmitted,
    OrderTriggered,
    OrderType,
    PeakEquityRaised,
    ProducerKeyRotated,
    ProducerRegistered,
    ProducerRevoked,
    QuoteUpdated,
    RestingOrdersChecked,
    RiskDecision,
    RiskLimits,
    RiskLimitsChanged,
    Side,
    TimeInForce,
    TransferChecked,
    TransferReleased,
    TransferRequested,
    TransferSettled,
    UnitsChanged,
)
from schemas.events.orders import IntentRejectReason
from schemas.events.risk import GLOBAL_SCOPE, DecisionOutcome
from schemas.events.transfers import TransferCheckOutcome
from schemas.registry import ENGINE_PRODUCER

log = logging.getLogger("tradetape.engine")

_new_object = object.__new__
_set_attr = object.__setattr__
_DECISION_TYPES = (RiskDecision, IntentRejected)
WITHDRAWAL_HELD = "WITHDRAWAL_HELD"
"""The reason of a cancel `processor._unhold` makes: a withdrawal holds what the order
committed (`AccountState.unheld` keeps the facts whose such cancels are on the log)."""
CREDIT_LIMIT = "CREDIT_LIMIT"
"""The reason of a cancel `processor._limits_changed` makes when the credit in force no
longer covers the order; `MAX_POSITION` when the position limit no longer does, and the
allow-list rule's code (`ASSET_NOT_PERMITTED`, `STABLECOIN_NOT_PERMITTED`) when an asset
of its pair is no longer permitted."""
_COMMITTING_REASONS = frozenset(
    {
        WITHDRAWAL_HELD,
        CREDIT_LIMIT,
        "MAX_POSITION",
        "ASSET_NOT_PERMITTED",
        "STABLECOIN_NOT_PERMITTED",
    }
)
"""The reasons of the cancels only a fact's fail-closed pass makes (a hold-raising
transfer fact's, a limits change's): such a cancel on the log shows the fact's
transaction committed (`AccountState.unheld`)."""
_ORDER_END_TYPES = (OrderCanceled, OrderExpired, OrderRejected)
"""`isinstance` with a tuple: half the cost of a `X | Y` union (the same answer)."""
_END_STATE: dict[type, str] = {
    OrderCanceled: "CANCELED",
    OrderExpired: "EXPIRED",
    OrderRejected: "REJECTED",
}
"""The final state an order's end event gives it (`EngineState.ended`)."""
if tuple(f.name for f in dataclass_fields(Recorded)) != (
    "event_id",
    "event_type",
    "topic",
    "ranked_at",
    "key",
    "value",
    "headers",
):
    raise TypeError("Recorded's fields changed: update `EngineState._apply_decision`")

STABLECOINS: frozenset[str] = frozenset(
    {
        "USDT",
        "USDC",
        "EURC",
        "DAI",
        "BUSD",
        "TUSD",
        "FDUSD",
        "PYUSD",
        "USDP",
        "USDE",
        "EURT",
        "GUSD",
        "USDD",
        "RLUSD",
        "EURS",
    }
)
"""Known payment stablecoins; only those on the limits' allow-list may be traded."""

ZERO = Decimal(0)
TRIGGERED_BUY = Decimal("Infinity")
"""What a triggered stop/take buy child counts as in `EngineState.own_best`: above every
limit (a market order at each print)."""
ONE = Decimal(1)
_TWO = Decimal(2)
_VALUE_ADJUSTED_MAX = VALUATION.prec + EQUITY_QUANTUM.adjusted() - 1
"""The largest adjusted exponent of a holding's value that `VALUATION` holds to
`EQUITY_QUANTUM` (47: below 1E+48); a larger one cannot be valued (`EngineState._value`)."""
_UP = VALUATION.copy()
_UP.rounding = ROUND_CEILING
VALUATION_UP = _UP
"""`VALUATION` rounding up (ceiling): an amount held against a limit is never rounded
under it (MAX_ORDER_NOTIONAL v4 values an order's notional in it)."""
_DOWN_FLOOR = VALUATION.copy()
_DOWN_FLOOR.rounding = ROUND_FLOOR
_DOWN = NAV_ROUNDING
_STABLE_QUOTES: tuple[str, ...] = tuple(sorted(STABLECOINS))
FEE_QUANTUM = Decimal("0.00000001")
"""Fees are charged rounded (half-even) to this; a parent's fill at most its notional x
the taker rate rounded down (`fee_rounded_down`, `PaperVenue._fill`)."""
_FEE_ADJUSTED_MAX = VALUATION.prec + FEE_QUANTUM.adjusted() - 1
"""The largest adjusted exponent of a fee `VALUATION` holds to the fee quantum (51)."""
QUANTUM_EXPONENT = -8
QUANTUM = Decimal("0.00000001")
"""The finest step of an order's quantity and prices (`exact_enough`); the paper venue
rounds capped children's quantities down to it."""
EXACT_DIGITS = 28
"""Significant digits the engine's sums hold exactly (the default decimal context's
precision, in which fills, leaves and balances are added up)."""


_P = ParamSpec("_P")
_R = TypeVar("_R")
EXACT = Context(
    prec=EXACT_DIGITS,
    rounding=ROUND_HALF_EVEN,
    Emin=-999999,
    Emax=999999,
    traps=[InvalidOperation, DivisionByZero, Overflow],
)
"""The engine's own decimal context: the default context's settings, fixed here. Every
amount the fold, the rules and the venue compute with the operators (`+`, `*`, `/`) is
computed in it, not in the thread's ambient context, which a caller (or another library
on its thread) may have changed: `in_exact_context` runs the engine's entry points
(`EngineState.apply`, `processor.process`, `control`, `catch_up`) under it, and the
reference mid and BALANCE use it by name. Before session 22 a caller that had lowered
its precision got other decisions (`test_decisions_do_not_depend_on_the_ambient_decimal_context`)."""


def in_exact_context(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run `fn` with `EXACT` as the ambient decimal context (the caller's restored after).

    `EXACT` itself becomes the thread's context, not a copy (`localcontext` copies it:
    twice the cost, per input event), and a call already under it (nested) sets nothing.
    Shared that way, only its flags change, which decide nothing: a trap fires on what
    the operation itself signalled. Nothing in the engine sets a context's fields."""

    @wraps(fn)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        prev = getcontext()
        if prev is EXACT:
            return fn(*args, **kwargs)
        setcontext(EXACT)
        try:
            return fn(*args, **kwargs)
        finally:
            setcontext(prev)

    return run


def exact_enough(value: Decimal) -> bool:
    """Whether `value` is a multiple of `QUANTUM` with at most `EXACT_DIGITS` significant
    digits: an order quantity finer than that can never be filled up (its `filled` rounds
    back short of it, leaving dust for ever), and quantities and prices on that grid keep
    the fold's sums exact. Read from the digits, so nothing is rounded to decide it."""
    if (
        value.adjusted() < EXACT_DIGITS + QUANTUM_EXPONENT
        and value.is_finite()
        and not VALUATION.remainder(value, QUANTUM)
    ):
        # The usual case without `as_tuple` (a third of the cost): a multiple of the
        # quantum below 10**20 has at most 28 digits once its trailing zeros are gone.
        return True
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite: the schema refuses anything else
    if exponent >= QUANTUM_EXPONENT and len(digits) <= EXACT_DIGITS:
        return True  # the usual case: on the grid and short, trailing zeros or not
    zeros = 0
    for d in reversed(digits):
        if d:
            break
        zeros += 1
    if zeros == len(digits):
        return True  # zero
    return exponent + zeros >= QUANTUM_EXPONENT and len(digits) - zeros <= EXACT_DIGITS


def fill_fee(quantity: Decimal, price: Decimal, rate: Decimal) -> Decimal:
    """The fee a fill is charged: quantity x price x rate, rounded half-even to the fee
    quantum once. Computed in `VALUATION`, not the thread's ambient context: at its 28
    digits a large notional was rounded before the fee was, and a fee past 28 digits made
    `quantize` raise, so a fee could depend on (or fail in) context nobody set here."""
    exact = VALUATION.multiply(VALUATION.multiply(quantity, price), rate)
    if exact.adjusted() > _FEE_ADJUSTED_MAX:
        # Beyond `VALUATION`'s digits at the fee quantum (a child filled at a print at
        # 1E+200): a multiple of the quantum already, and quantize would raise.
        return exact
    return exact.quantize(FEE_QUANTUM, context=VALUATION)


def fee_rounded_down(notional: Decimal, rate: Decimal) -> Decimal:
    """notional x rate rounded down to the fee quantum (in `VALUATION`, as `fill_fee`):
    the most a parent order's fill is charged at the taker rate (`PaperVenue._fill`), so
    its fees never exceed what its reservation and the balance rule counted."""
    exact = VALUATION.multiply(notional, rate)
    if exact.adjusted() > _FEE_ADJUSTED_MAX:
        return _DOWN_FLOOR.plus(exact)
    return exact.quantize(FEE_QUANTUM, ROUND_FLOOR, VALUATION)


def fee_at_most(notional: Decimal, rate: Decimal) -> Decimal:
    """The most fee a fill of `notional` at `rate` can be charged: rounded up to the fee
    quantum, so a cash check never falls short of the half-even rounded fee charged
    (`fill_fee`; in the same explicit context, for the same reason)."""
    exact = VALUATION.multiply(notional, rate)
    if exact.adjusted() > _FEE_ADJUSTED_MAX:
        return _UP.plus(exact)  # as `fill_fee`: past the quantum's digits, rounded up
    return exact.quantize(FEE_QUANTUM, ROUND_CEILING, VALUATION)


def after_children(position: Decimal, side: Side, children: Decimal) -> Decimal:
    """The pair's `position` once the account's open stop/take children on `side` (what
    they may fill, `EngineState.children_closing`) filled: a child only closes the
    position, never past zero (`PaperVenue._child_quantity`), so a sell child takes a long
    toward zero and leaves a short alone. What MAX_POSITION v3 (and the limits change's
    pass) starts the worst case of that side from: a child may fill before the resting
    orders of its side, which then meet no position to net against."""
    if side is Side.BUY:
        return position + min(children, -position) if position < 0 else position
    return position - min(children, position) if position > 0 else position


def print_id(trade: MarketTrade) -> str:
    """A public trade's identity: the venue's own trade id (what fill ids are made of)."""
    return f"trade:{trade.venue}:{trade.trade_id}"


def maker_key(instrument: str, side: Side) -> str:
    """The key of `AccountState.maker_fill_at`: a print's size is taken per account and
    side (`PaperVenue._match_print`), so the cut-off is kept per side too."""
    # `_value_`: the member's value as `.value` gives it, without the Python-level
    # property `.value` is on Python 3.11 (about 2k instructions, per order submitted).
    return f"{instrument} {side._value_}"


def split_instrument(instrument: str) -> tuple[str, str]:
    base, quote = instrument.split("/", 1)
    return base, quote


@dataclass
class OrderState:
    order_id: str
    account: str
    producer_id: str
    strategy_id: str
    client_order_id: str
    instrument: str
    side: Side
    order_type: OrderType
    quantity: Decimal
    limit_price: Decimal | None
    trigger_price: Decimal | None
    time_in_force: TimeInForce
    venue: str
    parent_order_id: str | None
    stop_loss: Decimal | None
    take_profit: Decimal | None
    submitted_at: datetime
    filled: Decimal = ZERO
    done: bool = False
    children: list[str] = field(default_factory=list)
    fill_ids: set[str] = field(default_factory=set)
    protected: Decimal = ZERO
    """Of a parent with stop/take triggers: its filled quantity when its children were
    last armed (folded from the children's `OrderSubmitted`), so `filled - protected` is
    what its next children must cover too."""
    last_fill_at: datetime | None = None
    """The newest `traded_at` of its fills: a stop/take child that filled in part (it was
    triggered) fills its rest only at prints newer than this (`PaperVenue._match_print`)."""
    triggered_at: datetime | None = None
    """Of a stop/take child triggered with nothing filled at its trigger (`OrderTriggered`:
    the account's resting orders on its side took that print, or it replaced a triggered
    child): the print's exchange time, after which it fills whatever the price."""
    producer_key: str | None = None
    """The key the producer's intent verified with (`OrderSubmitted.producer_key`; None
    for a child or an order written before session 19): which revocation cancels the
    order (`EngineState.revocation_of`)."""

    @property
    def fills_after(self) -> datetime | None:
        """Of a triggered stop/take child (a market order now): the print time after which
        it fills, its last fill's or its trigger's, the newer; None if not triggered."""
        a, b = self.triggered_at, self.last_fill_at
        if a is None:
            return b
        return a if b is None or a > b else b

    @property
    def leaves(self) -> Decimal:
        return self.quantity - self.filled


TRANSFER_STEP: dict[str, int] = {
    "TransferRequested": 0, "TransferChecked": 1, "TransferReleased": 2, "TransferSettled": 3
}  # fmt: skip
"""The order of a withdrawal's steps: its status only moves forward through them (the
balances book's `_TRANSFER_STEP`, which a test holds equal)."""
TRANSFER_RANK: dict[str, int] = {
    "REQUESTED": 0,
    **{f"CHECKED_{o}": 1 for o in TransferCheckOutcome},
    "RELEASED": 2,
    "SETTLED": 3,
}
"""The step each withdrawal status stands at (the balances book's `_TRANSFER_RANK`)."""
NOT_HOLDING: frozenset[str] = frozenset({f"CHECKED_{TransferCheckOutcome.REJECT}", "SETTLED"})
"""The statuses in which a withdrawal holds nothing: rejected (the money stays) or settled
(it has left: debited). Any other status holds the requested amount, a re-check or a
release after a rejection too (fail closed: the books would settle it)."""
EARLY_CHECKS_KEPT = 100_000
"""The most `TransferChecked`s `EngineState.early_checks` keeps at once (read before
their requests): a check is read ahead of its request only as far as the reading of two
topics interleaves (a fetch's worth; the travel rule writes it after the request is
committed), far below this. One beyond it is dropped with a WARNING: its withdrawal
stays held as requested (fail closed; a `REJECT` dropped frees nothing)."""


@dataclass(slots=True)
class Withdrawal:
    """A requested withdrawal as the engine folds it (reference topic `transfers.events`)."""

    asset: str
    amount: Decimal
    status: str
    """One of `TRANSFER_RANK`'s, as the balances book's `transfers.status`."""
    facts: list[UUID] | None = None
    """The ids of the facts of this withdrawal folded (`EngineState.seen_reference`) while
    it was not settled; None once it is: the settlement drops them there (issue #3)."""


@dataclass(slots=True)
class TransferStep:
    """A transfer fact that changed what an account's withdrawals hold or took off its
    balance (`EngineState._apply_transfer`), with what it left (reference state):
    `processor.catch_up` redoes each lost pass in the order the owner ran them, each on
    the holds and debits of its moment (`EngineState.transfer_steps`)."""

    fact: Envelope[Any] = field(repr=False)
    passes: bool
    """It raised a hold (or settled a withdrawal that held nothing): the owner ran a pass
    over the account's resting orders for it (`processor.control`)."""
    held: dict[str, Decimal]
    """`AccountState.held` right after it."""
    settled: dict[str, Decimal]
    """Per asset, what the account's settled withdrawals had debited right after it."""
    flow: str | None = None
    """The flow a settlement folded (`withdrawal:<transfer id>`), turned into units in
    the fact's transaction (`processor.control`)."""


@dataclass(slots=True)
class LimitStep:
    """A `RiskLimitsChanged` that came in force for its scope, with the limits it
    replaced there (None: none): `processor.catch_up` redoes each lost pass on the
    limits of its moment (`EngineState.limit_steps`)."""

    fact: Envelope[Any] = field(repr=False)
    before: tuple[int, RiskLimits] | None


STEPS_KEPT = 8
"""Entries a worker keeps of what it cannot see committed (issue #3, memory flat): of an
account it does not own, its newest transfer steps and pending flows' entries
(`EngineState.bound_unowned`); of every scope's limits changes and of the global switches,
the newest (`bound_limits`, `bound_switches`). What was cut is marked, and a hand-over
whose records do not show a kept entry committed (the cut ones may be lost passes) is
refused for a full rebuild from the log (`processor.redo_known`): never a guess."""


TAKEN_QUOTES = 16
"""Quotes per instrument and side whose displayed size an account's orders took, kept
(`AccountState.taken`): an order stamped before the account took from this many newer
quotes, and meeting an older one it took from, finds that one's size whole again."""


NOT_OPEN_CURRENCY = "(account not open)"
"""`AccountState.base_currency` until an `AccountOpened` names one: no asset code (those
match `^[A-Z0-9]+$`), so nothing is ever marked in it, and a rejected intent's rule
details say what it is. Until session 23 it was "USDT" (v1's default), and an intent on
an account never opened read "no mark values USDC in USDT, the limit's currency"."""


@dataclass
class AccountState:
    account: str
    opened: bool = False
    base_currency: str = NOT_OPEN_CURRENCY
    kyc: bool = False
    aml_flags: set[str] = field(default_factory=set)
    balances: dict[str, Decimal] = field(default_factory=dict)
    """Deposits less settled withdrawals plus what the fills moved (see `deposited` for
    the reference part)."""
    deposited: dict[str, Decimal] = field(default_factory=dict)
    """The reference topics' part of `balances`: deposits less settled withdrawals.
    `balances - deposited` is what fills moved, which is what a snapshot slice carries."""
    positions: dict[str, Decimal] = field(default_factory=dict)
    deposits: set[str] = field(default_factory=set)
    withdrawals: dict[str, Withdrawal] = field(default_factory=dict)
    """transfer id -> the withdrawal this account requested (`TransferRequested`) and its
    status, as the balances book keeps it (`EngineState._apply_transfer`)."""
    held: dict[str, Decimal] = field(default_factory=dict)
    """per asset: what the withdrawals not rejected or settled yet hold (any status but
    `NOT_HOLDING`'s): not free to trade (`EngineState.reserved`)."""
    unheld: set[UUID] = field(default_factory=set)
    """Own-topic state: the facts whose pass over this account's resting orders the log
    shows committed: since format 18 each `RestingOrdersChecked`'s `fact_event_id` (the
    owner writes one for every hold-raising transfer fact and limits change whose pass it
    ran, cancelling or not), and on older logs the facts whose `WITHDRAWAL_HELD` or
    (since format 17) limits cancels (`CREDIT_LIMIT`, `MAX_POSITION`, an allow-list code:
    `_COMMITTING_REASONS`) of this account's orders are on the log (each such
    `OrderCanceled`'s causation id: a hold-raising transfer fact, a `RiskLimitsChanged`):
    their transaction committed, so `processor.catch_up` does not run their pass again on
    a later state, where it could cancel what no live worker did (orders approved with
    the hold or the limits in effect, a credit valued higher since). One id per fact,
    kept like `withdrawals` (withdrawals and limits changes are rare); in snapshot slices
    since format 15."""
    decided_under: int = 0
    """Own-topic state: the highest `risk_config_version` of the account's approved
    `RiskDecision`s folded (the version of the limits, its own or the global ones, it was
    decided under): a decision under the limits in force proves their change's
    transaction committed (`processor._limits_committed`). In snapshot slices since
    format 17."""
    open_orders: set[str] = field(default_factory=set)
    units: Decimal = ZERO
    """The account's units (DRAWDOWN_BRAKE v6): NAV per unit = equity / units is what the
    drawdown is measured on. Folded from the engine's own `UnitsChanged` (the worker
    owning the account issues units for a deposit and redeems them for a settled
    withdrawal at the NAV per unit just before it, `EngineState.unitization`), never
    re-computed in a fold: own-topic state, in snapshot slices."""
    unit_nav: Decimal | None = None
    """The NAV per unit the last flows were turned into units at (`UnitsChanged.nav`):
    what units are issued at again once they went to zero (1 before any)."""
    flows: dict[str, tuple[str, Decimal, Envelope[Any]]] = field(default_factory=dict, repr=False)
    """Reference state of the flows no `UnitsChanged` named yet: flow id (`deposit:<id>`,
    `withdrawal:<transfer id>`) -> (asset, what it added to the balance: a deposit's
    amount, a settled withdrawal's negated, the fact). Every worker folds them; the
    owner turns them into units. A named flow's entry is dropped (issue #3: every flow's
    event was kept forever): nothing reads it again, and which flows were folded at all
    is `folded_flows` (the `deposits` and settled `withdrawals` the reference fold keeps
    anyway, which also refuse a deposit id twice). A worker not owning the account names
    none: it keeps the newest `STEPS_KEPT` (`EngineState.bound_unowned`, session 24)."""
    early: set[str] = field(default_factory=set)
    """Own-topic state: the flows a `UnitsChanged` named before the reference fold
    folded them (a worker reading the reference topics behind its partition, a slice
    naming a flow not folded here yet): as many as are in flight. A named flow that was
    folded is kept nowhere: it is a folded flow not `pending` (`unitized`)."""
    pending: set[str] = field(default_factory=set)
    """Folded flows no `UnitsChanged` named yet: while any is, NAV per unit is not
    known. Each has its entry in `flows`, except, after `snapshot.release_partitions`,
    the ones named before: that worker no longer owns the account, and a slice or the
    log names them again before it owns it anew."""
    peak_nav: Decimal = ZERO
    """The highest NAV per unit recorded since the last release (decisions', fills',
    `PeakEquityRaised`'s and `UnitsChanged`'s `peak_nav`): the drawdown brake's peak
    (DRAWDOWN_BRAKE v6; before, a peak of equity plus what withdrawals took out, which a
    deposit raised and a withdrawn asset's later price moved)."""
    peak_reset_at: datetime | None = None
    """When a release last reset the peak: older decisions' peaks no longer count."""
    wiped_at: datetime | None = None
    """The event time of the newest flow that found the account's capital gone (units
    left but equity at or below zero just before it: `UnitsChanged.nav` None) since its
    last release: the whole peak is lost until a release (`EngineState.lost_in_full`,
    DRAWDOWN_BRAKE v8; v6 measured the deposit as performance). Own-topic state, kept
    like a peak (`raise_peak`): a flow stamped before the release does not count."""
    fills: int = 0
    exposure: Exposure = field(default_factory=lambda: Exposure())
    maker_fill_at: dict[str, datetime] = field(default_factory=dict)
    """`maker_key(instrument, side)` -> the newest `traded_at` of this account's maker fills
    on that side, i.e. the newest public print its resting orders there took. Folded from
    the fills alone, so it is what the log says was matched: after a hand-over or restart
    the owner matches the account's resting orders only against prints newer than this
    (`PaperVenue.catch_up`), so no print's size is taken twice."""
    taken: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    """`maker_key(instrument, side)` -> {quote id: quantity}: how much of each quote's
    displayed size on that side this account's orders took on submission, for the last
    `TAKEN_QUOTES` quotes it took from (in the order first taken). The account's next
    order against one of them finds only the rest (`PaperVenue.submit`); a newer quote
    shows its size afresh. Per account, as prints are (see the paper venue): folded from
    its own fills (`Fill.quote_id`), in the order of its partition, so it does not depend
    on which worker holds which accounts. Until session 19 only the quote taken from last
    was kept, so an order stamped earlier (intents need not arrive in event-time order)
    that met an older quote made the newer one show its whole size again."""
    peaks: list[tuple[datetime, Decimal]] = field(default_factory=list)
    """The drawdown peaks the decisions and fills recorded, as suffix maxima: sorted by
    event time, peaks strictly
    decreasing, so `peak_since(t)` = max peak of decisions at or after `t`. This is what
    lets a snapshot slice (own topics) be combined with a later `KillSwitchReleased`
    (reference topic) exactly as a full replay would."""

    def displayed_left(self, instrument: str, side: Side, quote_id: str, shown: Decimal) -> Decimal:
        """What is left for this account of `shown`, the size quote `quote_id` displays on
        the side its `side` orders take (`taken`)."""
        had = self.taken.get(maker_key(instrument, side))
        got = had.get(quote_id) if had is not None else None
        return shown if got is None else shown - got

    def take(self, instrument: str, side: Side, quote_id: str, quantity: Decimal) -> None:
        """Record a fill of `quantity` taken from quote `quote_id` (`taken`): the oldest
        of more than `TAKEN_QUOTES` quotes is forgotten."""
        key = maker_key(instrument, side)
        had = self.taken.get(key)
        if had is None:
            had = self.taken[key] = {}
        got = had.get(quote_id)
        had[quote_id] = quantity if got is None else quantity + got
        if len(had) > TAKEN_QUOTES:
            del had[next(iter(had))]

    def raise_peak(self, at: datetime, nav: Decimal) -> None:
        """Raise the drawdown peak to `nav` seen by a decision at `at`, unless a release
        reset the peak after `at`. The one path for the live decision and the fold, so a
        rebuilt peak is the live one (an intent stamped before a release but decided after
        it used to raise the live peak only)."""
        reset = self.peak_reset_at
        if (reset is None or at >= reset) and nav > self.peak_nav:
            self.peak_nav = nav

    def record_peak(self, at: datetime, peak: Decimal) -> None:
        """Fold a peak recorded at `at` (a decision's or a fill's `peak_nav`): the live
        peak (`raise_peak`) and the suffix maxima a snapshot slice carries (`add_peak`)."""
        self.raise_peak(at, peak)
        self.add_peak(at, peak)

    def add_peak(self, at: datetime, peak: Decimal) -> None:
        """`peaks` += a peak recorded at `at` (`schemas.drawdown.add_peak`, which the
        drawdown projection folds with too)."""
        add_suffix_peak(self.peaks, at, peak)

    def peak_since(self, at: datetime | None) -> Decimal:
        """The highest peak recorded at or after `at` (`schemas.drawdown.peak_since`)."""
        return suffix_peak_since(self.peaks, at)

    def folded_flows(self) -> set[str]:
        """The ids of every flow the reference fold folded (`EngineState._flow`): the
        deposits, and the withdrawals settled."""
        return {f"deposit:{d}" for d in self.deposits} | {
            f"withdrawal:{t}" for t, w in self.withdrawals.items() if w.status == "SETTLED"
        }

    def folded(self, fid: str) -> bool:
        """Whether the flow `fid` is among `folded_flows`."""
        kind, _, key = fid.partition(":")
        if kind == "deposit":
            return key in self.deposits
        w = self.withdrawals.get(key) if kind == "withdrawal" else None
        return w is not None and w.status == "SETTLED"

    @property
    def unitized(self) -> set[str]:
        """The flows a `UnitsChanged` named (derived, O(flows): for slices and
        comparisons, never on the decision path): the folded ones not `pending`, and
        `early`. Until session 20 a set of every named flow's id, kept forever (issue
        #3); every folded flow is pending until named, and only a name takes it off."""
        return (self.folded_flows() - self.pending) | self.early


@dataclass
class Exposure:
    """What an account's open parent orders commit, kept up to date by the fold.

    The risk context reads these instead of walking the open orders (O(1) per intent).
    Attached stop/take children are left out: they are not decided, and take when they
    trigger only what is then free of these commitments (`PaperVenue._child_quantity`),
    so nothing an approved order counted on is taken from under it.
    """

    open_parents: int = 0
    buy_leaves: dict[str, Decimal] = field(default_factory=dict)
    """per instrument: unfilled quantity of open buys"""
    sell_leaves: dict[str, Decimal] = field(default_factory=dict)
    """per instrument: unfilled quantity of open sells"""
    buy_limit_notional: dict[str, Decimal] = field(default_factory=dict)
    """per quote asset: sum of leaves x limit price of open limit buys"""
    buy_market_leaves: dict[str, Decimal] = field(default_factory=dict)
    """per instrument: unfilled quantity of open buys without a limit (valued at reference)"""
    sell_leaves_by_base: dict[str, Decimal] = field(default_factory=dict)
    """per base asset: unfilled quantity of open sells"""

    def committed(
        self, asset: str, fee: Decimal, market_price: Callable[[str], Decimal]
    ) -> Decimal:
        """What the open orders commit of `asset`, whatever the pair: buys commit their
        notional plus fee in the quote asset, sells their leaves in the base asset. One
        amount per asset, so cash committed on one pair is not free on another (the same
        USDC bought BTC with and sold for EURC). `market_price(instrument)` values buys
        without a limit (there are none for long: the paper venue ends a market order's
        remainder at once); it raises when there is no price (fail closed)."""
        quote_side = self.buy_limit_notional.get(asset, ZERO)
        for instrument, leaves in self.buy_market_leaves.items():
            if split_instrument(instrument)[1] == asset:
                quote_side += leaves * market_price(instrument)
        if quote_side:
            quote_side *= fee
        return quote_side + self.sell_leaves_by_base.get(asset, ZERO)

    def add(self, order: OrderState, sign: int) -> None:
        """Add (`sign`=1) or remove (-1) an open parent order's current contribution."""
        self.open_parents += sign
        leaves = order.leaves if sign > 0 else -order.leaves
        base, quote = split_instrument(order.instrument)
        if order.side is Side.BUY:
            _bump(self.buy_leaves, order.instrument, leaves)
            if order.limit_price is not None:
                _bump(self.buy_limit_notional, quote, leaves * order.limit_price)
            else:
                _bump(self.buy_market_leaves, order.instrument, leaves)
        else:
            _bump(self.sell_leaves, order.instrument, leaves)
            _bump(self.sell_leaves_by_base, base, leaves)


RATE_HORIZON_SECONDS = 60
"""How far behind a strategy's newest decision on an account its rate window keeps entries,
whatever the limits: the longest `rate_window_seconds` counted exactly (ORDER_RATE v3).
Limits-independent so that a limits change cannot make the live state and a fold of the log
disagree about what was pruned; a longer window is enforced over this one (`rate_allowance`)."""
RATE_HORIZON = timedelta(seconds=RATE_HORIZON_SECONDS)


def rate_allowance(limits: RiskLimits) -> tuple[int, int]:
    """(seconds counted back, orders allowed in them) for these limits' order rate.

    A window up to `RATE_HORIZON_SECONDS` is counted as it is. A longer one (`W`, `N`
    allowed) is counted over the horizon, allowing `N // ceil(W / horizon)`: any span of `W`
    is covered by `ceil(W / horizon)` spans of the horizon, each holding at most that many,
    so never more than `N` pass in any `W` (stricter than the limit, never looser).
    """
    window, allowed = limits.rate_window_seconds, limits.max_orders_per_window
    if window <= RATE_HORIZON_SECONDS:
        return window, allowed
    spans = -(-window // RATE_HORIZON_SECONDS)
    return RATE_HORIZON_SECONDS, allowed // spans


class RateWindow:
    """Times of one strategy's order decisions on one partition, sorted: the broker's
    append time of each intent (`RiskDecision.received_at`), which the producer does not
    control; the decision's event time for decisions that predate it.

    Kept per partition so a snapshot slice carries its partition's entries; counted
    without being changed (bisect), and pruned only as entries are added, to the fixed
    `RATE_HORIZON` behind the newest entry: so the window is a function of the decisions
    folded alone, not of the limits in force when each was folded (a full replay folds
    every limits change before any decision, a live worker each at its turn) nor of which
    intents were checked when.
    """

    __slots__ = ("head", "times")

    def __init__(self, times: list[datetime] | None = None) -> None:
        self.times: list[datetime] = times if times is not None else []
        self.head = 0

    def __len__(self) -> int:
        return len(self.times) - self.head

    def live(self) -> list[datetime]:
        return self.times[self.head :]

    def count_after(self, cutoff: datetime) -> int:
        return len(self.times) - bisect_right(self.times, cutoff, self.head)

    def add(self, at: datetime, horizon: timedelta) -> None:
        times = self.times
        if not times or at >= times[-1]:
            times.append(at)
        else:
            insort(times, at, self.head)
        self.prune(horizon)

    def prune(self, horizon: timedelta) -> None:
        times = self.times
        if not times:
            return
        head = bisect_right(times, times[-1] - horizon, self.head)
        if head > 64 and head * 2 > len(times):
            del times[:head]
            head = 0
        self.head = head


def _holds(acc: AccountState, asset: str) -> bool:
    """Whether a mark of `asset` moves the account's drawdown measure (`EngineState.holding`)."""
    return asset != acc.base_currency and bool(acc.balances.get(asset))


Marks = dict[tuple[str, str], Decimal | None]
"""(asset, valuation currency) -> its mark, at one moment (`EngineState._marked`)."""


class Valued(NamedTuple):
    """An account's drawdown measure and its inputs (`EngineState.valuation`)."""

    currency: str
    balances: dict[str, Decimal]
    units: Decimal
    marks: tuple[tuple[str, Decimal | None], ...]
    measure: Decimal | None
    """NAV per unit (None: not measurable, `EngineState.nav`)."""

    def holds(self, state: EngineState, acc: AccountState, marks: Marks) -> bool:
        """Whether `acc` has the same inputs now (numerically equal), hence the same
        measure. `marks`: for the prices now."""
        if (
            acc.base_currency != self.currency
            or acc.balances != self.balances
            or acc.units != self.units
            or acc.pending
        ):
            return False
        marked = state._marked
        for asset, m in self.marks:
            if marked(asset, acc, marks) != m:
                return False
        return True


def peak_money(acc: AccountState) -> Decimal:
    """The drawdown peak in the account's money now: peak NAV per unit times its units
    (what decisions' and the brake's `peak_equity` say since DRAWDOWN_BRAKE v6; not folded)."""
    return peak_in_money(acc.peak_nav, acc.units)


def single_partition(_account: str) -> int:
    return 0


def _bump(d: dict[str, Decimal], k: str, delta: Decimal) -> None:
    """Kept without trailing zeros: a sum reached by another path (orders added and taken
    away as a replay folds them, or summed afresh from a slice's orders) has other digits
    (`1.0` against `1`), and the risk rules write these amounts into decision details, so
    a worker started from slices would word its next decisions differently from one that
    replayed the log (found by the snapshot property test)."""
    v = d.get(k, ZERO) + delta
    if v:
        n = v.normalize()
        d[k] = n if n.as_tuple().exponent <= 0 else n.quantize(ONE)  # type: ignore[operator]
    else:
        d.pop(k, None)


QUOTE_HISTORY = 1024
"""Quotes kept per instrument for event-time matching (seconds of a busy feed)."""
PRINT_HISTORY = 1024
"""Public prints kept per instrument, in the order read: what a new owner of partitions
matches their resting orders against after a hand-over, restart or rebalance (prints read
while nobody owned the partitions, or by a worker that died before committing its fills)."""


@dataclass(frozen=True, slots=True)
class Quote:
    """One top of book, as an order arriving at `at` or later met it."""

    at: datetime
    bid: Decimal
    ask: Decimal
    bid_qty: Decimal
    ask_qty: Decimal
    quote_id: str


@dataclass(frozen=True, slots=True)
class PrintScan:
    """For each kept print i: the earliest `occurred_at` and the lowest and highest price
    of prints i.. (the newest last). So an order finds at once where the prints newer than
    itself begin (`first_after`) and whether any of them can cross its limit."""

    version: int
    min_at: list[datetime]
    """Non-decreasing in i."""
    min_price: list[Decimal]
    max_price: list[Decimal]

    @classmethod
    def of(cls, prints: deque[Envelope[Any]], version: int) -> PrintScan:
        min_at: list[datetime] = []
        lo: list[Decimal] = []
        hi: list[Decimal] = []
        for event in reversed(prints):  # built newest first, then turned round
            at, price = event.occurred_at, event.payload.price
            if min_at:
                at, low, high = min(at, min_at[-1]), min(price, lo[-1]), max(price, hi[-1])
            else:
                low = high = price
            min_at.append(at)
            lo.append(low)
            hi.append(high)
        min_at.reverse()
        lo.reverse()
        hi.reverse()
        return cls(version, min_at, lo, hi)

    def first_after(self, at: datetime) -> int:
        """The start of the longest run of newest prints all read with `occurred_at` > `at`."""
        return bisect_right(self.min_at, at)


@dataclass
class PriceState:
    last_trade: Decimal | None = None
    last_trade_at: datetime | None = None
    bid: Decimal | None = None
    ask: Decimal | None = None
    bid_qty: Decimal = ZERO
    ask_qty: Decimal = ZERO
    quote_at: datetime | None = None
    quote_id: str = ""
    history: deque[Quote] = field(default_factory=lambda: deque(maxlen=QUOTE_HISTORY))
    """The latest quotes in event-time order, the newest (the current one) last."""
    prints: deque[Envelope[Any]] = field(default_factory=lambda: deque(maxlen=PRINT_HISTORY))
    """The latest `MarketTrade` events in the order read (see `PRINT_HISTORY`)."""
    prints_read: int = 0
    """Prints appended so far (names the version of `prints` a `PrintScan` was made of)."""
    print_ids: set[str] = field(default_factory=set)
    """`print_id` of each kept print."""
    _scan: PrintScan | None = field(default=None, repr=False)
    _book: Quote | None = field(default=None, repr=False, compare=False)
    """The current book as a `Quote` (`book_at`'s fallback), while its fields are these."""

    def has_print(self, trade: MarketTrade) -> bool:
        """Whether this very trade (venue and trade id) is among the kept prints: a copy
        (a capture loaded twice, a producer's retry) must not fill anything again."""
        return print_id(trade) in self.print_ids

    def keep_print(self, event: Envelope[Any]) -> None:
        key = print_id(event.payload)
        if key in self.print_ids:
            return
        prints = self.prints
        if len(prints) == prints.maxlen:
            self.print_ids.discard(print_id(prints[0].payload))
        prints.append(event)
        self.print_ids.add(key)
        self.prints_read += 1

    def print_scan(self) -> PrintScan:
        """Suffix bounds over the kept prints, made once per version of them: in a backlog
        every order of a batch asks, and the batch's prints were all read before."""
        scan = self._scan
        if scan is None or scan.version != self.prints_read:
            scan = self._scan = PrintScan.of(self.prints, self.prints_read)
        return scan

    def quote_in_force(self, when: datetime) -> Quote | None:
        """The newest quote at or before `when`; None if `when` predates the history.

        The engine reads market data on its own consumer, which runs ahead of a backlog of
        intents; an order stamped `when` met the book of `when`, not the book the engine
        happens to hold when it gets to the order. Matching in event time makes the paper
        venue's fills independent of that lag.
        """
        for q in reversed(self.history):
            if q.at <= when:
                return q
        return None

    def book_at(self, when: datetime) -> Quote | None:
        """The book an order stamped `when` meets: the quote in force then, or the current
        one if `when` predates the history; None without any quote. The one choice both
        the paper venue (what it fills at) and the risk rules (what they value the order
        at) make, so an order is checked against the prices it will trade at."""
        met = self.quote_in_force(when)
        if met is not None:
            return met
        bid, ask, at = self.bid, self.ask, self.quote_at
        if bid is None or ask is None or at is None:
            return None
        # One immutable Quote per current book, not one per call (every order after a
        # quote it predates asks twice: its risk context and its venue).
        book = self._book
        if (
            book is None
            or book.at is not at
            or book.bid is not bid
            or book.ask is not ask
            or book.bid_qty is not self.bid_qty
            or book.ask_qty is not self.ask_qty
            or book.quote_id is not self.quote_id
        ):
            book = self._book = Quote(at, bid, ask, self.bid_qty, self.ask_qty, self.quote_id)
        return book

    def reference(self) -> tuple[Decimal, datetime] | None:
        """The newer of the last trade and the mid, with its event time (the trade on a
        tie)."""
        trade, trade_at = self.last_trade, self.last_trade_at
        bid, ask, quote_at = self.bid, self.ask, self.quote_at
        if bid is None or ask is None or quote_at is None:
            if trade is not None and trade_at is not None:
                return trade, trade_at
            return None
        if trade is not None and trade_at is not None and trade_at >= quote_at:
            return trade, trade_at
        return EXACT.divide(EXACT.add(bid, ask), _TWO), quote_at  # not the ambient context


@dataclass
class RestingLimits:
    """One instrument's resting limit prices as lazy heaps, so that a print crossing none
    of them (the usual case) is known at once instead of by a walk over every open order.

    An entry of an order since done or forgotten is dropped when it reaches the top; an
    instrument's heaps are rebuilt when an order comes to rest and such entries outnumber
    the open orders, so they stay within twice the open orders (plus 64).
    """

    buys: list[tuple[Decimal, str]] = field(default_factory=list)
    """(-limit, order id): the highest bid on top."""
    sells: list[tuple[Decimal, str]] = field(default_factory=list)
    """(limit, order id): the lowest offer on top."""
    children: list[str] = field(default_factory=list)
    """Armed stop-loss/take-profit orders: any print may trigger one."""


@dataclass
class EngineState:
    """Everything the engine decides from. Mutable, but only `apply` changes it."""

    producers: dict[str, ProducerEntry] = field(default_factory=dict)
    """The producers whose keys are in force (a revoked one is in `revoked` instead)."""
    revoked: dict[str, ProducerEntry] = field(default_factory=dict)
    """Revoked producers (`ProducerRevoked`), with the key and accounts they had: their
    intents are rejected `PRODUCER_REVOKED`; a `ProducerKeyRotated` naming that key brings
    one back with a new key."""
    producer_keys: dict[str, list[str]] = field(default_factory=dict)
    """Producer -> every key it has had, in the order they came into force
    (`ProducerRegistered`, `ProducerKeyRotated`; from its one partition of
    `accounts.events`, so every worker folds the same list)."""
    revocations: dict[tuple[str, str | None], Envelope[Any]] = field(
        default_factory=dict, repr=False
    )
    """(producer, key) -> the `ProducerRevoked` that revoked that key: the first one folded
    when the key was the producer's, or an earlier one (a revocation revokes every key the
    producer had until then); (producer, None) -> its first revocation (for orders that
    record no key). Never taken back by a rotation: an order placed with a revoked key is
    canceled, caused by this fact, however many rotations follow
    (`revocation_of`, `processor.catch_up`)."""
    accounts: dict[str, AccountState] = field(default_factory=dict)
    limits: dict[str, tuple[int, RiskLimits]] = field(default_factory=dict)
    kill_switches: set[str] = field(default_factory=set)
    prices: dict[str, PriceState] = field(default_factory=dict)
    orders: dict[str, OrderState] = field(default_factory=dict)
    """Open orders, plus done ones that still have an open child or one to arm (`protected`)."""
    client_orders: dict[tuple[str, str, str], str] = field(default_factory=dict)
    ended: EndedOrders = field(default_factory=EndedOrders)
    """Every parent order that ended, by (producer, account, client_order_id), after it is
    evicted from `orders` too: a cancel naming one is `TOO_LATE_TO_CANCEL`, not
    `UNKNOWN_ORDER` (`engine.ended`)."""
    decisions: IdempotencyRecord = field(default_factory=IdempotencyRecord)
    rate: dict[tuple[str, str], dict[str, RateWindow]] = field(default_factory=dict)
    """`rate_key(producer)` -> account -> the window of its order decisions there."""
    """(producer, strategy) -> account -> order decision times."""
    rate_horizon: timedelta = RATE_HORIZON
    """How far back rate windows keep entries (`RATE_HORIZON`; not changed by limits)."""
    rate_pruned_min: timedelta | None = None
    """The shortest horizon rate windows were ever pruned with (a snapshot slice written by
    an engine that pruned to the limits in force, shorter, lacks entries: not usable)."""
    partition_of: Callable[[str], int] = field(default=single_partition, repr=False)
    """Account -> partition of the engine's topics (the worker sets Kafka's murmur2)."""
    orphan_fill_ids: dict[str, str] = field(default_factory=dict)
    """Fills for orders this state never saw (not expected; kept so they apply once):
    fill id -> account."""
    early_checks: dict[tuple[str, str], list[Envelope[Any]]] = field(
        default_factory=dict, repr=False
    )
    """(account, transfer id) -> the `TransferChecked`s read before their withdrawal's
    request, in the order read (one partition of transfers.checks): the checks and the
    requests are on two topics (session 27), with no order between them, so a check can
    be read first. Each is folded right after its request, as if read then
    (`_apply_reference`): the state comes out the same whatever the interleaving (before,
    such a check was dropped, and a `REJECT` read early freed nothing). Not in
    `seen_reference` until folded; at most `EARLY_CHECKS_KEPT` in all (`early_count`)."""
    early_count: int = 0
    """How many checks `early_checks` holds."""
    seen_reference: set[UUID] = field(default_factory=set)
    """The ids of the reference facts folded: one read again (a redelivery, a topic read
    again) is not folded twice (a `REJECT` check read again after a re-check would take the
    hold back). Not those of a settled withdrawal's facts (`EngineState._apply_transfer`,
    session 24): its status ignores every later step of it, so one read again changes
    nothing without its id; they were ~4 of the ~970 B its owner kept per withdrawal,
    forever (issue #3)."""
    executed_commands: set[UUID] = field(default_factory=set)
    """The event ids of the admin commands whose facts the engine accepted (each accepted
    fact's `causation_id`): a command is executed at most once, whatever else of its
    envelope (`occurred_at`, correlation id) a replay changes, since its signature binds
    only its event id and payload."""
    rejected_commands: dict[UUID, str] = field(default_factory=dict)
    """The event ids of the admin commands the engine rejected (`AdminCommandRejected`,
    own-topic state on the command key's partition), with that key: a rejected command's
    envelope replayed once the state would allow it is refused, not executed (a release
    rejected while no switch was engaged would release one engaged since)."""
    halt_causes: dict[tuple[str, str], Envelope[Any]] = field(default_factory=dict, repr=False)
    _aml_raised: dict[str, dict[str, Envelope[Any]]] = field(default_factory=dict, repr=False)
    """The facts in force that stop resting orders: ("kill", scope) -> its
    `KillSwitchEngaged`, ("aml", account) -> the open `AmlFlagRaised` of the least flag
    id, ("producer", producer id) -> the `ProducerRevoked` of a revoked producer (its
    reason is the `PRODUCER_REVOKED` rejection's). What `processor.catch_up` cancels the
    orders the first two stop as caused by (the ids a worker reading the fact live gives
    them), when a lost transaction left them open; a revocation's orders are found by
    their key instead (`revocations`: a rotation drops this entry, not those)."""
    hold_causes: dict[str, Envelope[Any]] = field(default_factory=dict, repr=False)
    """account -> the newest transfer fact that raised a withdrawal hold on it (or settled
    a rejected withdrawal, debiting what no hold covered): what
    `processor.catch_up` cancels the resting orders the holds overdraw as caused by (the
    ids the worker that read the fact live gave them, `processor.control`), when a lost
    transaction left them open (not when the log shows it committed: `AccountState.unheld`,
    `EngineState.fact_committed`)."""
    debit_causes: dict[str, dict[str, Envelope[Any]]] = field(default_factory=dict, repr=False)
    """account -> asset -> the newest `TransferSettled` of a withdrawal that held nothing
    (rejected before it settled), which debited that asset without a hold: `catch_up`
    checks each such asset again as caused by it, since a newer hold-raising fact in
    another asset replaces it in `hold_causes` and checks the held assets only (reference
    state, bounded by the account's assets)."""
    limit_causes: dict[str, Envelope[Any]] = field(default_factory=dict, repr=False)
    """scope -> the `RiskLimitsChanged` in force there (reference state): what
    `processor.catch_up` cancels the resting orders a lowered credit limit no longer covers
    as caused by (`limit_cause`; the ids the worker that read the change live gave them),
    when a lost transaction left them open."""
    transfer_steps: dict[str, list[TransferStep]] = field(default_factory=dict, repr=False)
    """account -> its transfer facts that changed what is held or debited, in the order
    folded (one partition of transfers.events: the order the owner read them), reference
    state, from the newest one the log shows committed on (`trim_transfer_steps`: the
    owner keeps O(1) per account once its passes commit; a worker not owning the account
    the newest `STEPS_KEPT`, `bound_unowned`, until a hand-over folds its records). `processor.catch_up` redoes every pass
    after the newest one the log shows committed, each in its turn and on the holds and
    debits it left (`held`, `settled`), so several passes of one lost transaction are
    redone as their owner ran them, each with its record and the ids it gave its cancels
    (before session 23 only the newest hold's pass was, on every hold at once)."""
    limit_steps: dict[str, list[LimitStep]] = field(default_factory=dict, repr=False)
    """scope -> the `RiskLimitsChanged` that came in force there, in the order folded
    (one partition of risk.config), with the limits it replaced: as `transfer_steps`, for
    the lost limits passes (before session 23 only the change in force was redone). The
    newest `STEPS_KEPT` once `catch_up` ran (`bound_limits`; every one before session 24)."""
    switch_steps: list[Envelope[Any]] = field(default_factory=list, repr=False)
    """The global `KillSwitchEngaged`s that engaged the switch (not one folded while it
    was engaged already), in the order folded (one partition of risk.config), released
    since or not: reference state, as `limit_steps` (the newest `STEPS_KEPT` once
    `catch_up` ran, `bound_switches`). `processor.catch_up` redoes a lost
    halt of one released since too (engaged and released in one lost transaction: the
    halt live ran cancelled what a restart found resting under no switch)."""
    steps_cut: set[str] = field(default_factory=set)
    """The accounts whose `transfer_steps` a worker not owning them cut to `STEPS_KEPT`
    (`bound_unowned`) and whose records have not shown a kept one committed since: which
    of the cut steps' passes committed is not known here (`processor.redo_known`)."""
    flows_cut: set[str] = field(default_factory=set)
    """The accounts whose `AccountState.flows` entries a worker not owning them cut to
    `STEPS_KEPT` (`bound_unowned`): a flow pending at a hand-over may lack its entry."""
    limits_cut: set[str] = field(default_factory=set)
    """The scopes whose `limit_steps` were cut to `STEPS_KEPT` (`bound_limits`)."""
    switches_cut_at: datetime | None = None
    """The newest event time of the `switch_steps` cut (`bound_switches`), None if none
    was: an open order from before it may still need a halt that is no longer kept."""
    open_by_instrument: dict[str, set[str]] = field(default_factory=dict)
    resting: dict[str, RestingLimits] | None = field(default=None, repr=False)
    """Instrument -> its resting limits (`may_cross`); None: to be built from `orders` when
    a print first asks (a state that never meets a print, like the snapshotter's, never
    holds them; merging slices or releasing partitions drops them)."""
    holders: dict[str, set[str]] | None = field(default=None, repr=False)
    """Asset -> accounts that may hold it (`holding`): every account whose balance of it a
    fill or a deposit made non-zero, pruned of those no longer holding it when asked.
    None: to be built from the balances when first asked (after slices are merged or
    partitions released)."""
    valued_prints: dict[str, Decimal | None] = field(
        default_factory=dict, repr=False, compare=False
    )
    """Instrument -> its reference price after its last print's `raise_peaks`: a print
    leaving it unchanged (the usual one) looks for unchanged valuations (`valued`)."""
    valued: dict[str, Valued] = field(default_factory=dict, repr=False, compare=False)
    """Account -> its drawdown measure at the last print that valued it, with what that
    measure was computed from (`Valued`): a print finding those unchanged skips the
    valuation (`PaperVenue.raise_peaks`). A cache of a pure function of the state: never
    read for anything else, dropped with `holders`."""
    applied: int = 0
    fills_applied: int = 0
    orders_evicted: int = 0

    # ---- queries -------------------------------------------------------------------

    def account(self, account: str) -> AccountState:
        acc = self.accounts.get(account)
        if acc is None:
            acc = self.accounts[account] = AccountState(account)
        return acc

    def limits_for(self, account: str) -> tuple[int, RiskLimits]:
        """Account limits if set, else global, else the schema defaults at version 0."""
        return self.limits.get(account) or self.limits.get(GLOBAL_SCOPE) or (0, RiskLimits())

    def own_best(self, acc: AccountState, instrument: str, side: Side) -> Decimal | None:
        """The best price at which the account's open orders on `instrument` and `side`
        trade at a print (a buy's highest, a sell's lowest), None without any (SELF_TRADE).

        A parent limit trades at prints through its limit. A stop/take child (v2) too: an
        armed take-profit at prints through its trigger (a sell at or above it, a buy at or
        below), so its trigger counts as a limit; a triggered one (`OrderTriggered` or a
        part filled) at every later print, whatever its price, so it counts as crossing
        anything (0 for a sell, `TRIGGERED_BUY` for a buy). An armed stop-loss does not
        count: it trades at prints on the other side of its trigger, below a sell's, and
        every resting buy meets it there (refusing them all would refuse scaling in under
        a stop); the paper venue prevents that wash at the print (`SELF_TRADE` cancels)."""
        best: Decimal | None = None
        for oid in acc.open_orders:
            o = self.orders.get(oid)
            if o is None or o.done or o.instrument != instrument or o.side is not side:
                continue
            if o.parent_order_id is None:
                if o.limit_price is None:
                    continue
                price = o.limit_price
            elif o.triggered_at is not None or o.filled > 0:
                price = ZERO if side is Side.SELL else TRIGGERED_BUY
            elif o.order_type is OrderType.TAKE_PROFIT and o.trigger_price is not None:
                price = o.trigger_price
            else:
                continue
            if best is None or (price > best if side is Side.BUY else price < best):
                best = price
        return best

    def children_closing(self, acc: AccountState, instrument: str, side: Side) -> Decimal:
        """What the account's open stop/take children on `instrument` and `side` may still
        fill, one parent's pair counted once (one-cancels-other: its larger leaves), before
        capping (MAX_POSITION v3). A child only closes the pair's position
        (`PaperVenue._child_quantity`), but it may do so before the account's resting
        orders on its side fill, which then count on a position already gone. Walks the
        open orders only when the account has children (orders beyond its parents)."""
        if len(acc.open_orders) <= acc.exposure.open_parents:
            return ZERO
        per_parent: dict[str, Decimal] = {}
        for oid in acc.open_orders:
            o = self.orders.get(oid)
            if (
                o is None
                or o.done
                or o.parent_order_id is None
                or o.instrument != instrument
                or o.side is not side
            ):
                continue
            had = per_parent.get(o.parent_order_id)
            if had is None or o.leaves > had:
                per_parent[o.parent_order_id] = o.leaves
        return sum(per_parent.values(), ZERO)

    def kill_engaged(self, account: str) -> bool:
        return GLOBAL_SCOPE in self.kill_switches or account in self.kill_switches

    def price(self, instrument: str) -> PriceState:
        ps = self.prices.get(instrument)
        if ps is None:
            ps = self.prices[instrument] = PriceState()
        return ps

    def market_buy_price(self, instrument: str) -> Decimal:
        """What an open buy without a limit is valued at: the worse of reference and ask.
        Raises without a price (fail closed: a rule context that cannot be built rejects)."""
        ps = self.prices.get(instrument)
        ref = ps.reference() if ps is not None else None
        if ps is None or ref is None:
            raise ValueError(f"no price to value the open market buys on {instrument}")
        return max(ref[0], ps.ask) if ps.ask is not None else ref[0]

    def reserved(self, acc: AccountState, asset: str, fee: Decimal) -> Decimal:
        """What the account may not spend of its balance of `asset`: what the open orders
        commit of it on any pair (`Exposure.committed`, buys at `fee` = 1 + fee rate) plus
        what its pending withdrawals hold (`AccountState.held`)."""
        committed = acc.exposure.committed(asset, fee, self.market_buy_price)
        held = acc.held.get(asset)
        return committed if held is None else committed + held

    def free(self, acc: AccountState, asset: str, fee: Decimal) -> Decimal:
        """The balance of `asset` less what is `reserved` of it (open orders, withdrawals);
        the credit limit not added. Below zero when a withdrawal was requested of more than
        was free: then nothing paid in `asset` passes the balance rule but on credit."""
        return acc.balances.get(asset, ZERO) - self.reserved(acc, asset, fee)

    def assets_of(self, acc: AccountState) -> set[str]:
        """The assets the account has a balance of, holds or commits on an open order:
        those that can be short (`free` below zero)."""
        x = acc.exposure
        assets = set(acc.balances)
        assets.update(acc.held)
        assets.update(x.buy_limit_notional, x.sell_leaves_by_base)
        assets.update(split_instrument(i)[1] for i in x.buy_market_leaves)
        return assets

    def credit_headroom(
        self, acc: AccountState, asset: str, fee: Decimal, credit_limit: Decimal
    ) -> Decimal:
        """Units of `asset` the account's credit still lends beyond its free balance.

        The credit limit is one amount in the account's valuation currency, for the whole
        account: what the other assets are already short (free below zero, valued at
        their marks) uses it up, and the rest is worth rest / mark(`asset`) units. Zero
        without credit, or if `asset` or a short asset has no mark (fail closed). Rounded
        against the account (shortfalls up, the headroom down).
        """
        if credit_limit <= 0:
            return ZERO
        left = credit_limit
        for other in sorted(self.assets_of(acc)):
            if other == asset:
                continue
            try:
                short = self.free(acc, other, fee)
            except ValueError:  # an open market buy without a price: cannot be valued
                return ZERO
            if short >= 0:
                continue
            m = self.mark(other, acc)
            if m is None:
                return ZERO
            left = _UP.subtract(left, _UP.multiply(-short, m))
        if left <= 0:
            return ZERO
        m = self.mark(asset, acc)
        if m is None or m <= 0:
            return ZERO
        return _DOWN.divide(left, m)

    def mark(self, asset: str, account: AccountState) -> Decimal | None:
        """Value of one unit of `asset` in the account's valuation currency; None if unknown
        (the drawdown brake then rejects: NO_MARK).

        Only the valuation currency itself is worth 1. Any other asset, a stablecoin too,
        is valued from a price: asset/currency, else the inverse of currency/asset, else
        asset/q x the value of q so found, for a stablecoin q (first in sorted order). A
        stablecoin marked at 1 would hide a depeg or an FX move (EURC is not worth one
        USDC) from the brake. Nothing is chained through a crypto asset: ETH quoted only on
        ETH/BTC is None though BTC/USDC is quoted (NO_MARK, fail closed; docs/engine.md).
        """
        ccy = account.base_currency
        if asset == ccy:
            return ONE
        direct = self._rate(asset, ccy)
        if direct is not None:
            return direct
        for quote in _STABLE_QUOTES:
            if quote == asset or quote == ccy:
                continue
            via = self._reference(f"{asset}/{quote}")
            if via is None:
                continue
            quote_mark = self._rate(quote, ccy)
            if quote_mark is not None:
                return VALUATION.multiply(via, quote_mark)
        return None

    def _reference(self, instrument: str) -> Decimal | None:
        ps = self.prices.get(instrument)
        ref = ps.reference() if ps is not None else None
        return ref[0] if ref is not None else None

    def _rate(self, asset: str, ccy: str) -> Decimal | None:
        """Units of `ccy` one `asset` is worth from a pair of the two, either way round."""
        direct = self._reference(f"{asset}/{ccy}")
        if direct is not None:
            return direct
        inverse = self._reference(f"{ccy}/{asset}")
        if inverse is not None and inverse > 0:
            return VALUATION.divide(ONE, inverse)
        return None

    def equity(self, account: str, marks: Marks | None = None) -> Decimal | None:
        """The account's value in its valuation currency; None if a held asset has no mark.

        Summed in asset order, each term rounded to `EQUITY_QUANTUM` in `VALUATION`: the
        live state, a fold and a merged snapshot hold the balances in different orders, and
        the result is recorded in decisions, so it must not depend on that order.
        """
        acc = self.account(account)
        return self._value(acc, acc.balances, marks)

    def _value(
        self, acc: AccountState, balances: dict[str, Decimal], marks: Marks | None
    ) -> Decimal | None:
        total = ZERO
        multiply, add = VALUATION.multiply, VALUATION.add
        for asset in sorted(balances):
            amount = balances[asset]
            if amount == 0:
                continue
            m = self.mark(asset, acc) if marks is None else self._marked(asset, acc, marks)
            if m is None:
                return None
            value = multiply(amount, m)
            if value.adjusted() > _VALUE_ADJUSTED_MAX:
                # Not held to `EQUITY_QUANTUM` in `VALUATION`'s digits (quantize would raise
                # InvalidOperation: a print at 1E+50 made every holder's valuation raise,
                # and the engine with it): cannot be valued, as without a mark (fail closed).
                return None
            total = add(total, value.quantize(EQUITY_QUANTUM, context=VALUATION))
        return total

    def nav(self, account: str, equity: Decimal | None) -> Decimal | None:
        """NAV per unit (DRAWDOWN_BRAKE v6): `equity` / units, rounded down in `VALUATION`
        (60 digits: exact enough that a flow, which redeems or issues units rounded up,
        never shows as more than a last-digit loss). None if it cannot be measured: no
        equity (a held asset without a mark), flows not yet turned into units
        (`pending`), or no units."""
        acc = self.account(account)
        if equity is None or acc.pending or acc.units <= 0:
            return None
        return nav_per_unit(equity, acc.units)

    def lost_in_full(self, account: str, equity: Decimal | None) -> bool:
        """Whether the account, with `equity` (valued now), has lost its whole peak (one
        recorded since its last release): a flow found its capital gone (`wiped_at`:
        NAV per unit at or below zero just before a deposit, which v6 then measured as
        performance, DRAWDOWN_BRAKE v8), or it has no units left while its equity is
        below zero (a settled withdrawal took more than it was worth and `unitization`
        redeemed every unit; v6 measured nothing, v7). The drawdown brake engages until
        a release resets the peak."""
        acc = self.account(account)
        if acc.pending:
            return False
        return peak_lost(acc.peak_nav, acc.units, equity, acc.wiped_at is not None)

    def units_due(self, account: str) -> bool:
        """Whether the account has flows to turn into units, or equity but no units
        (an account funded before DRAWDOWN_BRAKE v6 has only pending flows): the owner
        then emits the `unitization` before it measures the account."""
        acc = self.accounts.get(account)
        return acc is not None and bool(acc.pending or (not acc.units and acc.balances))

    def unitization(
        self, account: str, at: datetime, marks: Marks | None = None
    ) -> UnitsChanged | None:
        """The `UnitsChanged` turning the account's pending flows into units at the marks
        now (None if there is nothing to do, or it cannot be valued: the flows stay
        pending and the account unmeasured, NO_MARK, until a valuation can).

        E0 = equity without the pending flows (the balances less what they added), E1 =
        equity now, u = units. With u > 0 and E0 > 0, NAV n = E0 / u and the units become
        E1 / n = E1 * u / E0, rounded up (never more NAV per unit after a flow than
        before); with u = 0 (the first deposit, units gone to zero, an account funded
        before v6) they are E1 / n at the last flows' NAV `unit_nav`, 1 before any; E1 <=
        0 leaves no units. With u > 0 and E0 <= 0 the account's capital is gone: units
        cannot be priced and are kept (the brake measures E1 / u). `at`: the event time
        of the valuation, for a new peak (`peak_nav`), as `raise_peak` counts it."""
        acc = self.account(account)
        if not self.units_due(account):
            return None
        e1 = self._value(acc, acc.balances, marks)
        if e1 is None or (not acc.pending and e1 <= 0):
            return None
        flows = sorted(acc.pending)
        if not acc.flows.keys() >= acc.pending:
            return None  # a flow named before a release, not yet again: nothing to price
        before = dict(acc.balances)
        for fid in flows:
            asset, amount, _fact = acc.flows[fid]
            before[asset] = before.get(asset, ZERO) - amount
        e0 = self._value(acc, before, marks)
        if e0 is None:
            return None
        u = acc.units
        nav: Decimal | None
        if u > 0:
            if e0 > 0:
                nav = nav_per_unit(e0, u)
                units = _UP.divide(_UP.multiply(e1, u), e0) if e1 > 0 else ZERO
            else:
                nav, units = None, u
        else:
            nav = acc.unit_nav if acc.unit_nav is not None else ONE
            units = _UP.divide(e1, nav) if e1 > 0 else ZERO
        # With the capital gone (nav None) the flow is no performance: no new peak.
        after = nav_per_unit(e1, units) if units > 0 and nav is not None else None
        reset = acc.peak_reset_at
        high = (
            after
            if after is not None and (reset is None or at >= reset) and after > acc.peak_nav
            else None
        )
        return UnitsChanged(
            account=account, flows=tuple(flows), units=units, nav=nav, equity=e1, peak_nav=high
        )

    def _marked(self, asset: str, acc: AccountState, marks: Marks) -> Decimal | None:
        """`mark`, through `marks`: a function of the asset, the valuation currency and the
        prices alone, so while the prices stand one per pair serves every account."""
        ccy = acc.base_currency
        if asset == ccy:
            return ONE
        key = (asset, ccy)
        try:
            return marks[key]
        except KeyError:
            m = marks[key] = self.mark(asset, acc)
            return m

    def valuation(self, account: str, marks: Marks) -> Valued:
        """The account's drawdown measure (`nav`; None without a mark for a held asset,
        with pending flows or without units) with what it is a function of: the
        valuation currency, the balances, the units and the marks of the assets. While
        those are numerically equal (`Valued.holds`), so is the measure. `marks`: for one
        moment's prices (`_marked`)."""
        acc = self.account(account)
        measure = self.nav(account, self.equity(account, marks))
        balances = acc.balances
        marked = self._marked
        read = tuple((a, marked(a, acc, marks)) for a in balances)
        return Valued(acc.base_currency, dict(balances), acc.units, read, measure)

    def holding(self, asset: str) -> set[str]:
        """The accounts holding `asset` (a non-zero balance) other than as their valuation
        currency, whose equity a print on a pair of `asset` can move (a withdrawn asset no
        longer counts, DRAWDOWN_BRAKE v6): what a print values
        (`PaperVenue.raise_peaks`), so its cost grows with the holders of its two assets,
        not with every account. A set of account ids; iterate it sorted."""
        if self.holders is None:
            self.holders = {}
            for name, a in self.accounts.items():
                for held in a.balances:
                    if _holds(a, held):
                        self.holders.setdefault(held, set()).add(name)
        found = self.holders.get(asset)
        if not found:
            return set()
        accounts = self.accounts
        for name in [n for n in found if not _holds(accounts[n], asset)]:
            found.discard(name)
        return found

    def _may_hold(self, account: str, asset: str) -> None:
        if self.holders is not None:
            self.holders.setdefault(asset, set()).add(account)

    def may_cross(self, instrument: str, price: Decimal) -> bool:
        """Whether a print at `price` can fill or trigger an open order of `instrument`
        (False is exact; True only says a walk over the orders is needed)."""
        if self.resting is None:
            self.resting = {}
            for o in self.orders.values():
                if not o.done:
                    self._rest(o)
        r = self.resting.get(instrument)
        if r is None:
            return False
        orders = self.orders

        def live(order_id: str) -> bool:
            o = orders.get(order_id)
            return o is not None and not o.done

        buys, sells = r.buys, r.sells
        while buys and not live(buys[0][1]):
            heappop(buys)
        while sells and not live(sells[0][1]):
            heappop(sells)
        if r.children:
            r.children = [c for c in r.children if live(c)]
            if r.children:
                return True
        return bool((buys and price <= -buys[0][0]) or (sells and price >= sells[0][0]))

    def _rest(self, order: OrderState) -> None:
        if self.resting is None:
            return  # rebuilt from `orders` when next asked
        r = self.resting.get(order.instrument)
        if r is None:
            r = self.resting[order.instrument] = RestingLimits()
        elif (
            len(r.buys) + len(r.sells) + len(r.children)
            > 2 * len(self.open_by_instrument.get(order.instrument, ())) + 64
        ):
            # Entries of orders since done outnumber the open ones (orders come and go on
            # an instrument no print reaches): start its heaps again from the open orders.
            r = self.resting[order.instrument] = RestingLimits()
            for oid in sorted(self.open_by_instrument.get(order.instrument, ())):
                o = self.orders.get(oid)
                if o is not None and not o.done and o is not order:
                    self._rest(o)
        if order.parent_order_id is not None:
            r.children.append(order.order_id)
        elif order.limit_price is not None:
            if order.side is Side.BUY:
                heappush(r.buys, (-order.limit_price, order.order_id))
            else:
                heappush(r.sells, (order.limit_price, order.order_id))

    def open_orders_of(self, account: str) -> list[OrderState]:
        acc = self.accounts.get(account)
        if acc is None:
            return []
        return [self.orders[o] for o in sorted(acc.open_orders)]

    def positions(self) -> dict[tuple[str, str], Decimal]:
        return {
            (a, i): q
            for a, acc in self.accounts.items()
            for i, q in acc.positions.items()
            if q != 0
        }

    # ---- the fold ------------------------------------------------------------------

    @in_exact_context
    def apply(self, event: Envelope[Any], raw: tuple[Any, Any, Any] | None = None) -> None:
        """Fold one event in, in the engine's decimal context (`EXACT`, whatever the
        caller's): `fold`."""
        self.fold(event, raw)

    def fold(self, event: Envelope[Any], raw: tuple[Any, Any, Any] | None = None) -> None:
        """Fold one event in. Unknown types are ignored: the fold only reads what it needs.

        `raw` is the event's bytes as read from the log, kept for decisions (idempotency);
        without it a decision is encoded here, once. In the ambient decimal context: for
        callers already in `EXACT` (the processor's entry points, which fold each output
        they emit); anyone else calls `apply`.
        """
        p = event.payload
        self.applied += 1
        if isinstance(p, MarketTrade):
            ps = self.price(p.instrument)
            if ps.last_trade_at is None or event.occurred_at >= ps.last_trade_at:
                ps.last_trade, ps.last_trade_at = p.price, event.occurred_at
            ps.keep_print(event)
            return
        if isinstance(p, QuoteUpdated):
            ps = self.price(p.instrument)
            if ps.quote_at is None or event.occurred_at >= ps.quote_at:
                ps.bid, ps.ask, ps.bid_qty, ps.ask_qty = (
                    p.bid_price,
                    p.ask_price,
                    p.bid_quantity,
                    p.ask_quantity,
                )
                ps.quote_at, ps.quote_id = event.occurred_at, str(event.event_id)
                ps.history.append(
                    Quote(event.occurred_at, p.bid_price, p.ask_price, p.bid_quantity,
                          p.ask_quantity, ps.quote_id)
                )  # fmt: skip
            return
        if isinstance(p, _DECISION_TYPES):
            self._apply_decision(event, raw)
            return
        if isinstance(p, AdminCommandRejected):
            self.rejected_commands[p.command_event_id] = p.key
            return
        if isinstance(p, PeakEquityRaised):
            # A high the venue's valuation at a print found (`PaperVenue.raise_peaks`).
            if p.peak_nav is not None:  # not before DRAWDOWN_BRAKE v6: another measure
                self.account(p.account).record_peak(event.occurred_at, p.peak_nav)
            return
        if isinstance(p, UnitsChanged):
            self._apply_units(event.occurred_at, p)
            return
        if isinstance(p, OrderSubmitted):
            self._apply_submitted(event.occurred_at, p)
            return
        if isinstance(p, Fill):
            self._apply_fill(p, event.occurred_at)
            return
        if isinstance(p, OrderTriggered):
            order = self.orders.get(p.order_id)
            if order is not None and order.triggered_at is None:
                order.triggered_at = p.triggered_at
            return
        if isinstance(p, _ORDER_END_TYPES):
            if p.reason in _COMMITTING_REASONS and event.causation_id is not None:
                self._unheld(p.account, event.causation_id)
            order = self.orders.get(p.order_id)
            if order is not None:
                self._close(order, event.occurred_at, _END_STATE[type(p)], p.reason)
            return
        if isinstance(p, RestingOrdersChecked):
            # The owner ran the fact's pass for the account and that transaction committed.
            self._unheld(p.account, p.fact_event_id)
            return
        self._apply_reference(event)

    def _unheld(self, account: str, fact_id: UUID) -> None:
        """The log shows the pass of `fact_id` committed for the account: kept
        (`AccountState.unheld`), and the transfer steps before it dropped."""
        self.account(account).unheld.add(fact_id)
        if account in self.transfer_steps:
            self.trim_transfer_steps(
                account, lambda s: s.fact.event_id == fact_id and (s.passes or s.flow is not None)
            )

    def _apply_reference(self, event: Envelope[Any]) -> None:
        p = event.payload
        if not isinstance(p, _REFERENCE_TYPES):
            return  # e.g. the engine's own OrderAccepted: nothing to fold
        if event.event_id in self.seen_reference:
            return
        if isinstance(p, AccountOpened):
            acc = self.account(p.account)
            acc.opened, acc.base_currency = True, p.base_currency
            for held in acc.balances:
                self._may_hold(acc.account, held)  # its old currency may count now
        elif isinstance(p, KycVerified):
            self.account(p.account).kyc = True
        elif isinstance(p, AmlFlagRaised):
            self.account(p.account).aml_flags.add(p.flag_id)
            self._aml_fact(p.account, event)
        elif isinstance(p, AmlFlagCleared):
            self.account(p.account).aml_flags.discard(p.flag_id)
            self._aml_fact(p.account, None)
        elif isinstance(p, ProducerRegistered):
            self.producers[p.producer_id] = ProducerEntry(
                p.producer_id, p.public_key, frozenset(p.accounts)
            )
            self._key_in_force(p.producer_id, p.public_key)
            self._reinstate(p.producer_id)
        elif isinstance(p, ProducerRevoked):
            entry = self.producers.pop(p.producer_id, None)
            if entry is not None or p.producer_id not in self.revoked:
                self.revoked[p.producer_id] = entry or ProducerEntry(p.producer_id, "", frozenset())
            self.halt_causes.setdefault(("producer", p.producer_id), event)
            keys: list[str | None] = [*self.producer_keys.get(p.producer_id, ()), None]
            for key in keys:
                self.revocations.setdefault((p.producer_id, key), event)
        elif isinstance(p, ProducerKeyRotated):
            base = self.producers.get(p.producer_id) or self.revoked.get(p.producer_id)
            accounts = base.accounts if base is not None else frozenset()
            self.producers[p.producer_id] = ProducerEntry(p.producer_id, p.public_key, accounts)
            self._key_in_force(p.producer_id, p.public_key)
            self._reinstate(p.producer_id)
        elif isinstance(p, DepositReceived):
            acc = self.account(p.account)
            if p.deposit_id not in acc.deposits:
                acc.deposits.add(p.deposit_id)
                acc.balances[p.asset] = acc.balances.get(p.asset, ZERO) + p.amount
                acc.deposited[p.asset] = acc.deposited.get(p.asset, ZERO) + p.amount
                self._may_hold(acc.account, p.asset)
                self._flow(acc, f"deposit:{p.deposit_id}", p.asset, p.amount, event)
        elif isinstance(p, _TRANSFER_TYPES):
            if isinstance(p, TransferChecked) and self._early(p, event):
                return  # kept until its request is folded (`early_checks`)
            if self._apply_transfer(p, event):
                self.hold_causes[p.account] = event
                if isinstance(p, TransferSettled):  # of a withdrawal that held nothing
                    asset = self.accounts[p.account].withdrawals[p.transfer_id].asset
                    self.debit_causes.setdefault(p.account, {})[asset] = event
            if not self._fact_kept(p, event):
                return
        elif isinstance(p, RiskLimitsChanged):
            current = self.limits.get(p.scope)
            if current is None or p.config_version > current[0]:
                self.limits[p.scope] = (p.config_version, p.limits)
                self.limit_causes[p.scope] = event
                self.limit_steps.setdefault(p.scope, []).append(LimitStep(event, current))
        elif isinstance(p, KillSwitchEngaged):
            if p.scope == GLOBAL_SCOPE and p.scope not in self.kill_switches:
                self.switch_steps.append(event)
            self.kill_switches.add(p.scope)
            self.halt_causes.setdefault(("kill", p.scope), event)
        elif isinstance(p, KillSwitchReleased):
            self.kill_switches.discard(p.scope)
            self.halt_causes.pop(("kill", p.scope), None)
            if p.scope != GLOBAL_SCOPE:
                # A released brake starts measuring drawdown afresh: only decisions stamped
                # at or after the release count, including ones already folded (an intent
                # stamped ahead of the release but decided before it), as a fold that reads
                # the release first counts them.
                acc = self.account(p.scope)
                acc.peak_reset_at = event.occurred_at
                acc.peak_nav = acc.peak_since(event.occurred_at)
                if acc.wiped_at is not None and acc.wiped_at < event.occurred_at:
                    acc.wiped_at = None
        else:
            return
        self.seen_reference.add(event.event_id)
        if event.causation_id is not None and event.producer == ENGINE_PRODUCER:
            self.executed_commands.add(event.causation_id)
        if isinstance(p, TransferRequested) and self.early_checks:
            kept = self.early_checks.pop((p.account, p.transfer_id), None)
            if kept is not None:
                self.early_count -= len(kept)
                for check in kept:
                    self._apply_reference(check)

    def _early(self, p: TransferChecked, event: Envelope[Any]) -> bool:
        """Whether the check `p` was read before its withdrawal's request: then it is kept
        (`early_checks`; once, if read again) to be folded right after the request, or
        dropped past `EARLY_CHECKS_KEPT` (fail closed: the withdrawal stays held)."""
        acc = self.accounts.get(p.account)
        if acc is not None and p.transfer_id in acc.withdrawals:
            return False
        kept = self.early_checks.setdefault((p.account, p.transfer_id), [])
        if any(e.event_id == event.event_id for e in kept):
            return True
        if self.early_count >= EARLY_CHECKS_KEPT:
            log.warning(
                "dropped the travel rule's check %s of transfer %s of %s, read before its "
                "request: %d checks wait for theirs already (EARLY_CHECKS_KEPT); its "
                "withdrawal stays held",
                event.event_id, p.transfer_id, p.account, self.early_count,
            )  # fmt: skip
            if not kept:
                del self.early_checks[(p.account, p.transfer_id)]
            return True
        kept.append(event)
        self.early_count += 1
        return True

    def _fact_kept(
        self,
        p: TransferRequested | TransferChecked | TransferReleased | TransferSettled,
        event: Envelope[Any],
    ) -> bool:
        """Whether the id of the transfer fact `p`, just folded, goes to `seen_reference`.
        Not when its withdrawal is settled (now or before): a settled withdrawal ignores
        every step of it (`_apply_transfer`: a late step, a second settlement, a second
        request of its id), so the ids of its facts are dropped at the settlement
        (`Withdrawal.facts`) and a fact of it read after is not kept. Every other fact's
        is (of a withdrawal not settled: a `REJECT` check read again would take the hold
        back; of a withdrawal never requested, which nothing ties to a settlement). The
        same ids whatever the fold order of the other topics: only transfers.events'
        facts, read in the order of their partition, decide it."""
        acc = self.accounts.get(p.account)
        w = acc.withdrawals.get(p.transfer_id) if acc is not None else None
        if w is None:
            return True
        if w.status != "SETTLED":
            if w.facts is None:
                w.facts = []
            w.facts.append(event.event_id)
            return True
        if w.facts is not None:
            self.seen_reference.difference_update(w.facts)
            w.facts = None
        return False

    @staticmethod
    def _flow(
        acc: AccountState, fid: str, asset: str, amount: Decimal, event: Envelope[Any]
    ) -> None:
        """A deposit or settled withdrawal folded into the balances: pending until a
        `UnitsChanged` names it (in a rebuild, folded before the own topics, it is)."""
        if fid in acc.early:
            acc.early.discard(fid)  # named already: folded and not pending, `unitized`
        else:
            acc.flows[fid] = (asset, amount, event)
            acc.pending.add(fid)

    def _apply_units(self, at: datetime, p: UnitsChanged) -> None:
        """The owner's `UnitsChanged`: the units it recorded, taken as they are."""
        acc = self.account(p.account)
        acc.units = p.units
        if p.nav is not None:
            acc.unit_nav = p.nav
        named = set()
        for fid in p.flows:
            if fid in acc.pending:
                acc.pending.discard(fid)
                acc.flows.pop(fid, None)  # named: never read again (issue #3)
                named.add(fid)
            elif not acc.folded(fid):
                acc.early.add(fid)  # named before the reference fold folded it
        if named and p.account in self.transfer_steps:
            # A settlement's flow named: its transaction committed (`step_committed`).
            self.trim_transfer_steps(p.account, lambda s: s.flow in named)
        if p.peak_nav is not None:
            acc.record_peak(at, p.peak_nav)
        if p.nav is None and p.units > 0:
            # The capital was gone (DRAWDOWN v8): the peak is lost until a release, which
            # a flow stamped before it does not outlive (as `raise_peak`).
            reset = acc.peak_reset_at
            if (reset is None or at >= reset) and (acc.wiped_at is None or at > acc.wiped_at):
                acc.wiped_at = at

    def pending_cause(self, account: str) -> Envelope[Any] | None:
        """The fact of the account's pending flow of the least flow id (not the oldest:
        deposits and settlements come on two topics, which a live worker and a rebuild
        interleave differently): what `processor.catch_up` turns its pending flows into
        units as caused by (the id the owner that folded a lone settlement live gave it,
        when its transaction was lost)."""
        acc = self.accounts.get(account)
        if acc is None or not acc.pending:
            return None
        found = acc.flows.get(min(acc.pending))
        return None if found is None else found[2]

    def _apply_transfer(
        self,
        p: TransferRequested | TransferChecked | TransferReleased | TransferSettled,
        event: Envelope[Any] | None = None,
    ) -> bool:
        """A withdrawal's step, folded by the balances book's rules (`projections.core`
        `BalancesProjection.handle`), so the engine and the books agree on the balance:
        a request holds its amount at once (`held`) until it is rejected (a `REJECT`
        check) or settled (then debited); the status only moves forward, a step the
        withdrawal is past changes nothing. What the books quarantine changes nothing
        here either: a second request of the same id, a step of a withdrawal never
        requested (or requested by another account: ids are per account here, see
        docs/engine.md), a second settlement. The engine does not decide withdrawals: a
        request of more than is free still holds it all (the free balance goes below
        zero, `free`). Whether it raised a hold, or settled a withdrawal that held
        nothing (rejected: its money was free to commit, and now it is gone): what may
        overdraw resting orders (`processor.control` cancels them)."""
        if isinstance(p, TransferRequested):
            acc = self.account(p.account)
            if p.transfer_id not in acc.withdrawals:
                acc.withdrawals[p.transfer_id] = Withdrawal(p.asset, p.amount, "REQUESTED")
                _bump(acc.held, p.asset, p.amount)
                self._transfer_step(acc, event, True, None)
                return True
            return False
        found = self.accounts.get(p.account)
        w = found.withdrawals.get(p.transfer_id) if found is not None else None
        if found is None or w is None:
            return False
        settled = isinstance(p, TransferSettled)
        if settled and w.status == "SETTLED":
            return False  # it would debit twice
        if TRANSFER_STEP[p.EVENT_TYPE] < TRANSFER_RANK[w.status]:
            return False  # a late step: the withdrawal is past it
        if isinstance(p, TransferChecked):
            status = f"CHECKED_{p.outcome}"
        else:
            status = "SETTLED" if settled else "RELEASED"
        was, now = w.status not in NOT_HOLDING, status not in NOT_HOLDING
        w.status = status
        if was != now:
            _bump(found.held, w.asset, -w.amount if was else w.amount)
        flow = None
        if settled:
            found.balances[w.asset] = found.balances.get(w.asset, ZERO) - w.amount
            self._may_hold(found.account, w.asset)
            found.deposited[w.asset] = found.deposited.get(w.asset, ZERO) - w.amount
            flow = f"withdrawal:{p.transfer_id}"
            if event is not None:
                self._flow(found, flow, w.asset, -w.amount, event)
        passes = not was and (now or settled)
        if was != now or settled:
            self._transfer_step(
                found, event, passes, flow, (w.asset, w.amount) if settled else None
            )
        return passes

    def _transfer_step(
        self,
        acc: AccountState,
        event: Envelope[Any] | None,
        passes: bool,
        flow: str | None,
        debit: tuple[str, Decimal] | None = None,
    ) -> None:
        """Keep what a transfer fact left held and debited (`transfer_steps`)."""
        if event is None:
            return
        steps = self.transfer_steps.setdefault(acc.account, [])
        settled = steps[-1].settled if steps else {}
        if debit is not None:
            settled = dict(settled)
            settled[debit[0]] = settled.get(debit[0], ZERO) + debit[1]
        step = TransferStep(event, passes, dict(acc.held), settled, flow)
        steps.append(step)
        if self.step_committed(step):
            # Its record (or the units naming its flow) was folded first (a hand-over
            # whose own-topic tail came before its transfers.events reader got here).
            del steps[:-1]
            self.steps_cut.discard(acc.account)

    def step_committed(self, step: TransferStep) -> bool:
        """Whether the log shows that the transaction in which the owner ran `step`'s
        pass or turned its settlement into units committed (`fact_committed`)."""
        return (step.passes or step.flow is not None) and self.fact_committed(step.fact)

    def fact_committed(self, cause: Envelope[Any]) -> bool:
        """Whether the log shows that the transaction of the worker that read the
        hold-raising fact `cause` live committed: its pass's `RestingOrdersChecked` or a
        `WITHDRAWAL_HELD` cancel caused by it was folded (`AccountState.unheld`), or, for a
        settlement, a `UnitsChanged` named its flow (in its transaction, or a later one of
        that worker's: they commit in order). Otherwise (a lost transaction, or on a log
        from before the record a pass that cancelled nothing and named no flow)
        `processor.catch_up` redoes it, on today's state (fail closed)."""
        p = cause.payload
        acc = self.accounts.get(p.account)
        if acc is None:
            return False
        if cause.event_id in acc.unheld:
            return True
        if isinstance(p, TransferSettled):
            fid = f"withdrawal:{p.transfer_id}"
            return acc.folded(fid) and fid not in acc.pending
        return False

    def trim_transfer_steps(self, account: str, committed: Callable[[TransferStep], bool]) -> None:
        """Drop the account's transfer steps before the newest one that `committed` (a
        step the log shows committed: `step_committed`) picks: `processor._redo_passes`
        redoes only the passes after the newest committed one, on the holds and debits
        it left (kept, as the first step), so nothing before it is read again. What
        keeps `transfer_steps` at O(1) entries per owned account once its passes
        commit (issue #3: ~4.9 KB kept per withdrawal, forever, before). Steps of
        accounts the worker does not own are trimmed here when it folds their records,
        at a hand-over, and cut to the newest until then (`bound_unowned`); a committed
        step found clears the cut (docs/engine.md)."""
        steps = self.transfer_steps.get(account)
        if not steps:
            return
        for j in range(len(steps) - 1, -1, -1):
            if committed(steps[j]):
                del steps[:j]
                self.steps_cut.discard(account)  # the kept steps start committed again
                return

    def bound_unowned(self, account: str) -> None:
        """Keep the newest `STEPS_KEPT` of the transfer steps and pending flows' entries of
        an account this worker does not own, marking what was cut (`steps_cut`,
        `flows_cut`). It reads the account's transfer facts but not its records (another
        partition of the own topics), so it cannot trim by the committed test
        (`trim_transfer_steps`); before session 24 it kept ~3.1 KB of steps and ~2.9 KB of
        flows per withdrawal of every such account, forever. The newest step stays (the
        next one's debits add to its `settled`). Only a hand-over reads them again:
        `processor.redo_known` tells whether what is kept redoes the lost passes exactly,
        and the worker rebuilds from the log when not."""
        steps = self.transfer_steps.get(account)
        if steps is not None and len(steps) > STEPS_KEPT:
            del steps[:-STEPS_KEPT]
            self.steps_cut.add(account)
        acc = self.accounts.get(account)
        if acc is not None and len(acc.flows) > STEPS_KEPT:
            flows = acc.flows
            for fid in list(flows)[:-STEPS_KEPT]:  # the oldest folded first (insertion)
                del flows[fid]
            self.flows_cut.add(account)

    def bound_limits(self, scope: str) -> None:
        """Keep the newest `STEPS_KEPT` of the scope's `limit_steps` (`limits_cut`): the
        global scope's are every account's, on every partition, so no worker can tell
        which of their passes committed everywhere; a scope's own likewise for a worker
        not owning the account. Before session 24 every change was kept (~2 KB each)."""
        changes = self.limit_steps.get(scope)
        if changes is not None and len(changes) > STEPS_KEPT:
            del changes[:-STEPS_KEPT]
            self.limits_cut.add(scope)

    def bound_switches(self) -> None:
        """Keep the newest `STEPS_KEPT` of `switch_steps` (`switches_cut_at`: the newest
        event time of those cut). The one in force is the newest: always kept."""
        switches = self.switch_steps
        if len(switches) > STEPS_KEPT:
            cut = max(s.occurred_at for s in switches[:-STEPS_KEPT])
            if self.switches_cut_at is None or cut > self.switches_cut_at:
                self.switches_cut_at = cut
            del switches[:-STEPS_KEPT]

    def _key_in_force(self, producer: str, key: str) -> None:
        keys = self.producer_keys.setdefault(producer, [])
        if key not in keys:
            keys.append(key)

    def revocation_of(self, order: OrderState) -> Envelope[Any] | None:
        """The `ProducerRevoked` that cancels `order` (a parent placed with a key since
        revoked; one that records no key: its producer's first revocation), or None. Decided
        by the key, not by a time: the revocation is on `accounts.events` (keyed by
        producer) and the order on `orders.lifecycle` (keyed by account), which no clock
        orders exactly, while the key the intent verified with is on the order and which
        keys a revocation revoked is on the producer's one partition."""
        if not self.revocations:
            return None
        return self.revocations.get((order.producer_id, order.producer_key))

    def _reinstate(self, producer: str) -> None:
        """A producer with a key in force again: no longer revoked."""
        self.revoked.pop(producer, None)
        self.halt_causes.pop(("producer", producer), None)

    def _aml_fact(self, account: str, raised: Envelope[Any] | None) -> None:
        """Keep ("aml", account) in `halt_causes` the raising fact of its least open flag."""
        key = ("aml", account)
        facts = self._aml_raised.setdefault(account, {})
        if raised is not None:
            facts[raised.payload.flag_id] = raised
        flags = self.account(account).aml_flags
        for flag in [f for f in facts if f not in flags]:
            del facts[flag]
        if facts:
            self.halt_causes[key] = facts[min(facts)]
        else:
            self.halt_causes.pop(key, None)
            del self._aml_raised[account]

    def open_children(self, order: OrderState) -> list[OrderState]:
        """`order`'s stop/take children still working (armed), in arming order."""
        found = (self.orders.get(i) for i in order.children)
        return [c for c in found if c is not None and not c.done]

    def limit_cause(self, account: str) -> Envelope[Any] | None:
        """The `RiskLimitsChanged` whose limits the account is under (`limits_for`: its
        own scope first, then the global one), or None (the schema defaults)."""
        if account in self.limits:
            return self.limit_causes.get(account)
        return self.limit_causes.get(GLOBAL_SCOPE)

    def halt_cause(self, account: str) -> Envelope[Any] | None:
        """The fact that stops the account's resting orders now (an open AML flag first,
        then its own kill switch, then the global one), or None."""
        causes = self.halt_causes
        return (
            causes.get(("aml", account))
            or causes.get(("kill", account))
            or causes.get(("kill", GLOBAL_SCOPE))
        )

    def _apply_decision(self, event: Envelope[Any], raw: tuple[Any, Any, Any] | None) -> None:
        p = event.payload
        coid = p.client_order_id
        if coid is None:
            return
        if isinstance(p, IntentRejected) and p.reason in UNAUTHENTICATED:
            return  # anyone can send these: they must not take the producer's key
        if isinstance(p, RiskDecision) and p.outcome == DecisionOutcome.APPROVED:
            # Approved: the account is open (a fold of any order has it), so a live
            # worker and a rebuild keep the same.
            acc = self.account(p.account)
            if p.risk_config_version > acc.decided_under:
                acc.decided_under = p.risk_config_version
        key = (p.producer_id, p.account, coid)
        if key in self.decisions:
            return
        k, v, h = raw if raw is not None else encode(event)
        received = p.received_at
        # `Recorded(...)` without the frozen dataclass's per-field setattr (one per intent).
        recorded: Recorded = _new_object(Recorded)
        _set_attr(
            recorded,
            "__dict__",
            {
                "event_id": event.event_id,
                "event_type": event.event_type,
                "topic": event.topic,
                # Ranked in the recent tier by the broker's time, not the producer's.
                "ranked_at": event.occurred_at if received is None else received,
                "key": k,
                "value": v,
                "headers": h,
            },
        )
        self.decisions.record_new(key, recorded)  # not in it: asked above
        if isinstance(p, RiskDecision) and p.peak_nav is not None:
            # The drawdown peak survives restarts: every decision records the one it used
            # (`peak_equity` of a decision before DRAWDOWN_BRAKE v6 is another measure).
            self.account(p.account).record_peak(event.occurred_at, p.peak_nav)
        if isinstance(p, RiskDecision) and p.intent_kind == "ORDER":
            # The producer's window on the account, whatever strategy id the intent
            # carried (ORDER_RATE v4: `rate_key`).
            windows = self.rate.get(rate_key(p.producer_id))
            if windows is None:
                windows = self.rate[rate_key(p.producer_id)] = {}
            window = windows.get(p.account)
            if window is None:
                window = windows[p.account] = RateWindow()
            horizon = self.rate_horizon
            # The broker's append time the decision counted in (older decisions: event time).
            at = p.received_at if p.received_at is not None else event.occurred_at
            window.add(at, horizon)
            if self.rate_pruned_min is None or horizon < self.rate_pruned_min:
                self.rate_pruned_min = horizon

    def _apply_submitted(self, at: datetime, p: OrderSubmitted) -> None:
        if p.order_id in self.orders:
            return
        order = OrderState(
            order_id=p.order_id,
            account=p.account,
            producer_id=p.producer_id,
            strategy_id=p.strategy_id,
            client_order_id=p.client_order_id,
            instrument=p.instrument,
            side=p.side,
            order_type=p.order_type,
            quantity=p.quantity,
            limit_price=p.limit_price,
            trigger_price=p.trigger_price,
            time_in_force=p.time_in_force,
            venue=p.venue,
            parent_order_id=p.parent_order_id,
            stop_loss=p.stop_loss,
            take_profit=p.take_profit,
            submitted_at=at,
            producer_key=p.producer_key,
        )
        self.orders[p.order_id] = order
        if p.parent_order_id is None:
            self.client_orders[(p.producer_id, p.account, p.client_order_id)] = p.order_id
        else:
            parent = self.orders.get(p.parent_order_id)
            if parent is not None:
                parent.children.append(p.order_id)
                parent.protected = parent.filled
        acc = self.account(p.account)
        acc.open_orders.add(p.order_id)
        if p.parent_order_id is None:
            acc.exposure.add(order, 1)
        self.open_by_instrument.setdefault(p.instrument, set()).add(p.order_id)
        self._rest(order)

    def _close(self, order: OrderState, at: datetime, end: str, cause: str = "") -> None:
        """`order` ended (`end`: FILLED, CANCELED, EXPIRED, REJECTED) at event time `at`."""
        if order.done:
            return
        if order.parent_order_id is None:
            self.ended.record(
                (order.producer_id, order.account, order.client_order_id),
                Ended(at, order.order_id, end, cause[:MAX_CAUSE], order.filled, order.quantity),
            )
        acc = self.account(order.account)
        if order.parent_order_id is None:
            acc.exposure.add(order, -1)
        order.done = True
        acc.open_orders.discard(order.order_id)
        self.open_by_instrument.get(order.instrument, set()).discard(order.order_id)
        self._evict(order)

    def _evict(self, order: OrderState) -> None:
        """Forget a done order once nothing can refer to it any more.

        A parent stays while it may still arm its stop/take children (it has triggers and
        filled more than its children were armed for) or while a child is open: OCO and cancels walk from
        the parent. Its fill ids go with it: a done order is never filled again.
        """
        if order.parent_order_id is not None:
            parent = self.orders.get(order.parent_order_id)
            self.orders.pop(order.order_id, None)
            self.orders_evicted += 1
            if parent is not None and parent.done:
                self._evict(parent)
            return
        pending_children = order.filled > order.protected and (
            order.stop_loss is not None or order.take_profit is not None
        )
        if pending_children:
            return
        if any(c in self.orders and not self.orders[c].done for c in order.children):
            return
        for c in order.children:
            self.orders.pop(c, None)
        self.orders.pop(order.order_id, None)
        self.orders_evicted += 1
        coid = (order.producer_id, order.account, order.client_order_id)
        if self.client_orders.get(coid) == order.order_id:
            del self.client_orders[coid]

    def _apply_fill(self, p: Fill, at: datetime) -> None:
        order = self.orders.get(p.order_id)
        if order is not None:
            if p.fill_id in order.fill_ids:
                return
            order.fill_ids.add(p.fill_id)
            if order.last_fill_at is None or p.traded_at > order.last_fill_at:
                order.last_fill_at = p.traded_at
        else:
            if p.fill_id in self.orphan_fill_ids:
                return
            self.orphan_fill_ids[p.fill_id] = p.account
        self.fills_applied += 1
        acc = self.account(p.account)
        acc.fills += 1
        if p.peak_nav is not None:
            # A peak the venue's valuation at a print raised (`PaperVenue._brake`): folded
            # as a decision's, so a restart keeps it (not a `peak_equity` before v6).
            acc.record_peak(at, p.peak_nav)
        if p.liquidity is Liquidity.MAKER:
            key = maker_key(p.instrument, p.side)
            newest = acc.maker_fill_at.get(key)
            if newest is None or p.traded_at > newest:
                acc.maker_fill_at[key] = p.traded_at
        elif p.quote_id is not None:
            acc.take(p.instrument, p.side, p.quote_id, p.quantity)
        base, quote = split_instrument(p.instrument)
        signed = p.quantity if p.side is Side.BUY else -p.quantity
        acc.positions[p.instrument] = acc.positions.get(p.instrument, ZERO) + signed
        acc.balances[base] = acc.balances.get(base, ZERO) + signed
        cash = -signed * p.price
        acc.balances[quote] = acc.balances.get(quote, ZERO) + cash
        acc.balances[p.fee_asset] = acc.balances.get(p.fee_asset, ZERO) - p.fee
        self._may_hold(p.account, base)
        self._may_hold(p.account, quote)
        if order is not None and not order.done:
            parent = order.parent_order_id is None
            if parent:
                acc.exposure.add(order, -1)
            order.filled += p.quantity
            if parent:
                acc.exposure.add(order, 1)
            if order.leaves <= 0:
                self._close(order, at, "FILLED")
        elif order is not None:
            order.filled += p.quantity


UNAUTHENTICATED: frozenset[IntentRejectReason] = frozenset(
    {
        IntentRejectReason.UNKNOWN_PRODUCER,
        IntentRejectReason.PRODUCER_REVOKED,
        IntentRejectReason.BAD_SIGNATURE,
        IntentRejectReason.WRONG_PARTITION,
    }
)
"""Rejections decided before the intent's signature verified: emitted, but never recorded
under (nor answered from) the idempotency key they name, live or in the fold. A
`WRONG_PARTITION` one is written by a worker that does not own the account, onto the
account's partition of risk.decisions: recorded, the account's worker would fold it at its
next rebuild (not live) and answer the intent sent right with it."""

_REFERENCE_TYPES = (
    AccountOpened,
    KycVerified,
    AmlFlagRaised,
    AmlFlagCleared,
    ProducerRegistered,
    ProducerRevoked,
    ProducerKeyRotated,
    DepositReceived,
    TransferRequested,
    TransferChecked,
    TransferReleased,
    TransferSettled,
    RiskLimitsChanged,
    KillSwitchEngaged,
    KillSwitchReleased,
)
"""What `_apply_reference` folds (and records as seen); anything else it ignores."""
_TRANSFER_TYPES = (TransferRequested, TransferChecked, TransferReleased, TransferSettled)


def rate_key(producer: str) -> tuple[str, str]:
    """The key of `EngineState.rate` a producer's order decisions are counted under:
    (producer, ""), every strategy id of it together (ORDER_RATE v4). The strategy id is
    the producer's own label, not authenticated: counted per strategy (v3), a producer
    stamping each intent with a new one was never limited, and each id kept a window."""
    return (producer, "")


def rate_count(state: EngineState, producer: str, account: str, at: datetime, seconds: int) -> int:
    """Order intents decided for this producer on this account, whatever their strategy
    ids (`rate_key`), in the window ending at `at` (the broker's append time of the intent
    being decided, the time the windows hold).

    Per account, not across the producer's accounts: those can lie on partitions held by
    different workers, and a count over whatever a worker holds would make the decision
    depend on the partition assignment.

    Anything newer than `at` still counts, which can only over-count (fail closed). The
    windows are not changed here (see `RateWindow`).
    """
    windows = state.rate.get(rate_key(producer))
    window = windows.get(account) if windows else None
    if window is None:
        return 0
    span = _SPANS.get(seconds)
    if span is None:
        span = timedelta(seconds=seconds)
        if len(_SPANS) < 4096:
            _SPANS[seconds] = span
    return window.count_after(at - span)


_SPANS: dict[int, timedelta] = {}
"""`timedelta(seconds=n)` by `n` (a rate window's length: a handful of values)."""
