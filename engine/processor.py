"""The pure core: (state, input event) -> output events.

Every output is a `derive_event` of its input, so a replay of the same input yields the
same ids, and it is folded into the state the moment it is emitted, exactly as a rebuild
from the log would fold it. No Kafka, no clock, no randomness.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from engine.auth import intent_digest, signing_bytes_fast, verify_admin, verify_hex_signature
from engine.idempotency import Recorded
from engine.risk.evaluator import evaluate
from engine.risk.rules import UNKNOWN_LAG, asset_refusal
from engine.sigverify import verify_many
from engine.state import (
    CREDIT_LIMIT,
    EXACT_DIGITS,
    ONE,
    QUANTUM,
    STABLECOINS,
    WITHDRAWAL_HELD,
    ZERO,
    AccountState,
    EngineState,
    LimitStep,
    OrderState,
    TransferStep,
    after_children,
    exact_enough,
    in_exact_context,
    peak_money,
    split_instrument,
)
from engine.trusted import builder, builder_from_fields
from engine.venue.base import Venue
from engine.venue.paper import PaperVenue
from schemas import Envelope
from schemas.drawdown import drawdown
from schemas.envelope import EventPayload, derived_fields, envelope_class
from schemas.events import (
    AccountOpened,
    AdminCommandRejected,
    AmlFlagCleared,
    AmlFlagRaised,
    CancelIntent,
    DepositReceived,
    DetectorConfigChanged,
    IntentRejected,
    KillSwitchEngaged,
    KillSwitchReleased,
    KycVerified,
    MarketTrade,
    OrderIntent,
    OrderSubmitted,
    ProducerKeyRotated,
    ProducerRegistered,
    ProducerRevoked,
    QuoteUpdated,
    RestingOrdersChecked,
    RiskDecision,
    RiskLimitsChanged,
    Side,
    TransferChecked,
    TransferReleased,
    TransferRequested,
    TransferSettled,
)
from schemas.events.admin import ADMIN_COMMAND_TYPES
from schemas.events.orders import IntentRejectReason
from schemas.events.risk import GLOBAL_SCOPE, DecisionOutcome
from schemas.ids import derived_uuid7, uuid_text
from schemas.registry import ENGINE_PRODUCER as ENGINE_PRODUCER  # re-exported: one source
from schemas.topics import Topic

ADMIN_ACCEPTED = "admin-accepted"
"""Discriminator of an accepted admin fact: its id is derived from the command's."""
DEFAULT_ADMINS: frozenset[str] = frozenset({"admin"})
_INTENT_TYPES = (OrderIntent, CancelIntent)
_ORDERS = Topic.ORDERS
_MARKET_TYPES = (MarketTrade, QuoteUpdated)
"""`isinstance` with a tuple: half the cost of a `X | Y` union (the same answer)."""


@dataclass
class Context:
    """What the processor knows that is not in the state: the worker's lag and config."""

    consumer_lag: int = 0
    admins: frozenset[str] = DEFAULT_ADMINS
    venues: dict[str, Venue] = field(default_factory=lambda: {"paper": PaperVenue()})
    preverified: dict[int, tuple[EventPayload, str, bool, bytes]] = field(default_factory=dict)
    """Signature verdicts computed ahead for a batch (`preverify`): id(payload) ->
    (payload, public key, verdict, signed bytes). Used only for that very payload and key;
    the signed bytes also make the intent's digest (`intent_digest`), not rendered twice."""
    owns: Callable[[str], bool] | None = None
    """Whether the worker owns an account's partition now (None: every account). Prints
    fill only owned orders; see `PaperVenue.on_market`."""
    event_time_is_arrival: bool = False
    """Without a broker (the pure harness, tools): take an intent's `occurred_at` as its
    broker append time when `process` is given none. Off by default, so an intent without
    a broker time fails FRESHNESS (CLOCK_SKEW); the worker never sets it."""


def preverify(state: EngineState, events: list[Envelope[Any]], ctx: Context) -> None:
    """Check the signatures of a batch's intents in one batched call, ahead of `process`.

    The verdict is a pure function of (payload, public key), so using it later is the same
    as checking then; `process` uses it only if the producer's key is still the one
    checked against, else checks again. Intents of unknown producers or with a malformed
    signature are left to `process` (it rejects them the same way as before).
    """
    todo: list[tuple[EventPayload, str]] = []
    items: list[tuple[bytes, bytes, bytes]] = []
    for event in events:
        p = event.payload
        if not isinstance(p, _INTENT_TYPES) or not isinstance(p.signature, str):
            continue
        entry = state.producers.get(p.producer_id)
        if entry is None:
            continue
        try:
            sig = bytes.fromhex(p.signature)
            key = bytes.fromhex(entry.public_key)
        except ValueError:
            continue
        todo.append((p, entry.public_key))
        items.append((key, signing_bytes_fast(p), sig))
    if not items:
        return
    for (p, key_hex), item, ok in zip(todo, items, verify_many(items), strict=True):
        ctx.preverified[id(p)] = (p, key_hex, ok, item[1])


def _signed_bytes(p: OrderIntent | CancelIntent, public_key: str, ctx: Context) -> bytes | None:
    """The bytes `p`'s signature covers if it verifies with `public_key`, else None."""
    known = ctx.preverified.pop(id(p), None)
    if known is not None and known[0] is p and known[1] == public_key:
        return known[3] if known[2] else None
    signed = signing_bytes_fast(p)
    ok = isinstance(p.signature, str) and verify_hex_signature(signed, p.signature, public_key)
    return signed if ok else None


_DEFAULT_TAKER_FEE = Decimal("0.001")
_decision = builder(RiskDecision)
_submitted = builder(OrderSubmitted)
"""Built from the validated intent and the engine's own figures (`engine.trusted`)."""

Output = Envelope[Any]
"""What `process` returns. A replayed decision is the original event; the worker publishes
the bytes the state recorded for it (same event id), so it goes out unchanged."""


_ENVELOPES: dict[type[EventPayload], Any] = {}


def _envelope_builder(payload_cls: type[EventPayload]) -> Any:
    found = _ENVELOPES.get(payload_cls)
    if found is None:
        found = _ENVELOPES[payload_cls] = builder_from_fields(envelope_class(payload_cls))
    return found


class _Emitter:
    """Derives, folds in and collects the outputs of one input.

    The envelope is `derive_event`'s (`schemas.envelope.derived_fields`), built without
    validating again what is valid already: the cause was validated at intake and the
    payload by its constructor (or built from validated fields, `engine.trusted`).
    """

    def __init__(self, state: EngineState, cause: Envelope[Any]) -> None:
        self.state, self.cause = state, cause
        self.cause_id = uuid_text(cause.event_id)  # `str` of it, cheaper
        self.out: list[Output] = []
        self.record: tuple[int, int] | None = None
        """For an intent: its record's (partition, offset) on the intents topic, which its
        rejections name (a client tells its own record's refusal from a copy's)."""
        self.received_at: datetime | None = None
        """For an intent: its record's broker append time (None: not known), which its
        rejections record as its decisions do (the idempotency record ranks both by it)."""
        self.at: datetime | None = None
        """For an intent: when its order events (those on orders.lifecycle) happen
        (`order_events_at`: its append time, or its stamp if allowed ahead of it); None:
        the cause's `occurred_at`, as for every other output."""

    def __call__(self, payload: EventPayload, discriminator: str) -> None:
        fields = derived_fields(
            payload,
            producer=ENGINE_PRODUCER,
            causation=self.cause,
            discriminator=discriminator,
            # An order's events happen when the broker has its intent, not at the
            # producer's stamp (surveillance judges them in event time). The decision
            # keeps the intent's `occurred_at` (and records `received_at` beside it).
            occurred_at=self.at if self.at is not None and payload.TOPIC == _ORDERS else None,
            cause_id=self.cause_id,
        )
        key = fields["key"]
        if not isinstance(key, str) or not 0 < len(key) <= 128:
            # What the envelope's validation would refuse: take the validating path.
            event: Envelope[Any] = envelope_class(type(payload))(**fields)
        else:
            event = _envelope_builder(type(payload))(fields)
        self.state.fold(event)  # in `EXACT`: every entry point that emits runs in it
        self.out.append(event)


@in_exact_context
def catch_up(state: EngineState, ctx: Context, owns: Callable[[str], bool]) -> list[Output]:
    """After a rebuild or a hand-over: fills of the owned resting orders on the kept prints
    the log does not show as matched (`PaperVenue.catch_up`), each caused by its print."""
    emitters: dict[UUID, _Emitter] = {}

    def emit_for(event: Envelope[Any]) -> _Emitter:
        found = emitters.get(event.event_id)
        if found is None:
            found = emitters[event.event_id] = _Emitter(state, event)
        return found

    # First what an AML flag or an account's own kill switch stops, if the log does not
    # show the halt committed (a worker that read the fact may have died before its
    # cancels committed), as caused by that fact: the ids a live worker gives them
    # (`control`). A flag's halt is run again always (every parent order goes, and none
    # can be placed under the flag: nothing new to cancel once it committed); an
    # account's own switch unless the log shows its halt committed (`_switch_committed`:
    # the owner's record, or the drawdown brake's fact, written with the halt), then with
    # its record, as live. A global switch's is one of `_redo_passes`'s.
    switched = {s for kind, s in state.halt_causes if kind == "kill" and s != GLOBAL_SCOPE}
    for account in sorted({a for a, acc in state.accounts.items() if acc.open_orders} | switched):
        if not owns(account):
            continue
        aml = state.halt_causes.get(("aml", account))
        own = state.halt_causes.get(("kill", account))
        if own is not None and _switch_committed(state, own, account):
            own = None
        for cause in (aml, own):
            if cause is None:
                continue
            for name in sorted(ctx.venues):
                ctx.venues[name].halt(state, account, emit_for(cause))
            if cause is own:
                _checked(emit_for(cause), account, cause)
    # Then the open orders placed with a revoked key, each as caused by the revocation of
    # that key (`control`), whatever rotations followed (`EngineState.revocation_of`).
    # One pass over the orders finds each one's revocation (`revocation_of`: by its key),
    # so the cost is the open orders plus the revocations, not their product: every
    # revocation ever folded stays (a rotation does not undo one), and a scan of every
    # order per revocation cost ~0.8 us per pair (100 revocations, 5,000 orders: 0.4 s).
    revocations = {e.event_id: e for e in state.revocations.values()}
    revoked: dict[UUID, list[OrderState]] = {}
    if revocations:
        for o in state.orders.values():
            if not o.done and o.parent_order_id is None:
                found = state.revocation_of(o)
                if found is not None and owns(o.account):
                    revoked.setdefault(found.event_id, []).append(o)
    for revocation in sorted(
        revocations.values(), key=lambda e: (e.payload.producer_id, str(e.event_id))
    ):
        _stop_producer(
            state, ctx, emit_for(revocation), revocation, owns, revoked.get(revocation.event_id, [])
        )
    # Then the passes over resting orders whose transaction the log does not show
    # committed (`_redo_passes`): of the transfer facts that raised a withdrawal hold (or
    # settled a withdrawal that held nothing) and of the limits changes, each caused by
    # its fact, in the order the owner ran them and on the holds, debits and limits of
    # its moment: the live records and cancels, the live ids. A committed one made its
    # cancels on the state of its moment, and its pass run again on today's could cancel
    # what went short later (orders approved with the hold or the limits in effect, a
    # credit valued higher by prints since), which no live worker does.
    for account in sorted(
        set(state.transfer_steps)
        | {a for a, acc in state.accounts.items() if acc.open_orders or a in state.limits}
    ):
        if owns(account):
            _redo_passes(state, ctx, emit_for, account, owns)
    # Then the flows no owner turned into units when they were folded (a lost
    # transaction, a settlement read while the partition had no owner), as caused by the
    # pending flow of the least id (`EngineState.pending_cause`; `control`'s id when a
    # settlement was the only one).
    for account in sorted(a for a, acc in state.accounts.items() if acc.pending):
        cause = state.pending_cause(account) if owns(account) else None
        if cause is not None:
            _unitize(state, owns, account, emit_for(cause))
    for name in sorted(ctx.venues):
        ctx.venues[name].catch_up(state, owns, emit_for)
    # Nothing lost is left to redo: from here on, what the worker cannot see committed
    # is kept to the newest (a rebuild folded every step; `_bound` keeps it so live).
    bound_kept(state, owns)
    return [e for emitter in emitters.values() for e in emitter.out]


def bound_kept(state: EngineState, owns: Callable[[str], bool]) -> None:
    """Keep what this worker cannot see committed to the newest (`STEPS_KEPT`): every
    account it does not own (`EngineState.bound_unowned`), every scope's limits changes
    and the global switches. After `catch_up` (nothing lost left to redo), or after a
    rebuild of no partition; live, `_bound` keeps it so fact by fact."""
    flowing = {a for a, x in state.accounts.items() if x.flows}
    for account in sorted(set(state.transfer_steps) | flowing):
        if not owns(account):
            state.bound_unowned(account)
    for scope in sorted(state.limit_steps):
        state.bound_limits(scope)
    state.bound_switches()


def _bound(state: EngineState, owns: Callable[[str], bool] | None, p: Any) -> None:
    """After folding the fact `p`: keep what this worker cannot see committed to the
    newest (`EngineState.bound_unowned` for an account it does not own, `bound_limits`,
    `bound_switches`; `STEPS_KEPT`)."""
    account = getattr(p, "account", None)
    if isinstance(account, str) and owns is not None and not owns(account):
        state.bound_unowned(account)
    if isinstance(p, RiskLimitsChanged):
        state.bound_limits(p.scope)
    elif isinstance(p, KillSwitchEngaged) and p.scope == GLOBAL_SCOPE:
        state.bound_switches()


def redo_known(state: EngineState, account: str) -> bool:
    """Whether what `state` kept lets `catch_up` redo the account's lost passes exactly
    (`_redo_passes`), once the account's records are folded (a hand-over: the slice and
    its tail). Not when a list was cut (`STEPS_KEPT`) and no kept entry is shown
    committed for the account: the cut ones may be passes its old owner lost. Transfer
    steps cut by a worker not owning the account (`steps_cut`); a pending flow whose
    entry was cut (`flows_cut`); the limits changes of its scope (a global one's only
    matter with open orders), and of the global scope when its first limits of its own
    are lost; a global switch cut (`switches_cut_at`) after its oldest open parent was
    submitted. Then the worker rebuilds from the log, which keeps everything until the
    records are read (fail closed: never a guess)."""
    acc = state.accounts.get(account)
    if acc is None:
        return True
    if account in state.steps_cut and not any(
        state.step_committed(s) for s in state.transfer_steps.get(account, ())
    ):
        return False
    if account in state.flows_cut and not acc.flows.keys() >= acc.pending:
        return False
    scope = account if account in state.limits else GLOBAL_SCOPE
    changes = state.limit_steps.get(scope, [])
    shown = any(_limits_committed(state, c.fact, account) for c in changes)
    if not shown and scope in state.limits_cut and (scope != GLOBAL_SCOPE or acc.open_orders):
        return False
    if not shown and scope != GLOBAL_SCOPE and GLOBAL_SCOPE in state.limits_cut:
        if acc.open_orders:
            own_first = _read_order(changes[0].fact) if changes else None
            before = [
                c
                for c in state.limit_steps.get(GLOBAL_SCOPE, [])
                if own_first is None or _read_order(c.fact) < own_first
            ]
            if not any(_limits_committed(state, c.fact, account) for c in before):
                return False
    cut_at = state.switches_cut_at
    if cut_at is not None and any(o.submitted_at < cut_at for o in _parents(state, acc)):
        return False
    return True


def _redo_passes(
    state: EngineState,
    ctx: Context,
    emit_for: Callable[[Envelope[Any]], _Emitter],
    account: str,
    owns: Callable[[str], bool],
) -> None:
    """`catch_up`'s passes over the owned account's resting orders that the log does not
    show committed: those of the transfer facts after the newest whose transaction it
    shows committed (`EngineState.transfer_steps`, `step_committed`) and of the limits
    changes of the account's scope after the newest it shows committed for the account
    (`EngineState.limit_steps`, `_limits_committed`): the owner commits its transactions
    in order, so every older one did. Each is run as the owner ran it (`control`), caused
    by its fact, in the order read (each topic's partition; across the two, by event
    time), on the holds, debits and limits the fact left, pending flows included (a
    settlement's `UnitsChanged` values only what was folded by then): the passes of one
    lost transaction are redone as they were, each with its record and the ids it gave
    its cancels. Before session 23 only the newest hold's and the limits in force were,
    on every hold and debit at once: an older pass's record was never written and its
    cancels named the newer fact. What cannot be put back: the marks and the resting
    orders are today's (a credit is valued at the marks of the catch-up)."""
    acc = state.accounts.get(account)
    if acc is None:
        return
    transfers = state.transfer_steps.get(account, [])
    t0 = 0
    for j in range(len(transfers) - 1, -1, -1):
        s = transfers[j]
        if state.step_committed(s):
            t0 = j + 1
            break
    lost_t = transfers[t0:]
    if not any(s.passes or s.flow is not None for s in lost_t):
        lost_t = []
    scope = account if account in state.limits else GLOBAL_SCOPE
    changes = state.limit_steps.get(scope, [])
    l0 = 0
    for j in range(len(changes) - 1, -1, -1):
        if _limits_committed(state, changes[j].fact, account):
            l0 = j + 1
            break
    lost_l = changes[l0:]
    if scope != GLOBAL_SCOPE and changes and l0 == 0:
        # The account's first limits of its own are lost: so are the global changes read
        # before them that the log does not show committed for it (the account was under
        # the global limits then, and their passes ran first).
        own_first = _read_order(changes[0].fact)
        before = [
            c for c in state.limit_steps.get(GLOBAL_SCOPE, []) if _read_order(c.fact) < own_first
        ]
        for j in range(len(before) - 1, -1, -1):
            if _limits_committed(state, before[j].fact, account):
                before = before[j + 1 :]
                break
        lost_l = [*before, *lost_l]
    # The global switches whose halt for the account the log does not show committed: the
    # one in force if the account has open orders; one released since if the account has
    # an open order from before it (had the halt committed, it was cancelled, or kept as
    # risk-reducing and the record written: engaged and released in one lost transaction).
    switch = state.halt_causes.get(("kill", GLOBAL_SCOPE))
    first = min(
        (o.submitted_at for o in _parents(state, acc)),
        default=None,
    )
    lost_k: list[Envelope[Any]] = [
        s
        for s in state.switch_steps
        if (acc.open_orders if s is switch else first is not None and first < s.occurred_at)
        and not _switch_committed(state, s, account)
    ]
    if not lost_t and not lost_l and not lost_k:
        return
    # Each lane is in read order already; on a tie the earlier lane first (stable).
    lanes: list[list[TransferStep | LimitStep | Envelope[Any]]] = [[*lost_t], [*lost_l], [*lost_k]]
    steps = list(heapq.merge(*lanes, key=lambda s: _read_order(_fact(s))))
    held, balances, deposited = acc.held, acc.balances, acc.deposited
    scopes = (GLOBAL_SCOPE,) if scope == GLOBAL_SCOPE else (GLOBAL_SCOPE, account)
    limits = {k: state.limits.get(k) for k in scopes}
    settled_now = transfers[-1].settled if transfers else {}
    hidden = {s.flow for s in lost_t if s.flow is not None and s.flow in acc.pending}
    acc.pending -= hidden
    moment: TransferStep | None = transfers[t0 - 1] if t0 > 0 else None
    in_force = dict(limits)
    for c in reversed(lost_l):  # what each scope had before its first lost change
        in_force[c.fact.payload.scope] = c.before
    fee = _fee(ctx)
    try:
        for step in steps:
            if isinstance(step, TransferStep):
                moment = step
            elif isinstance(step, LimitStep):
                p = step.fact.payload
                in_force[p.scope] = (p.config_version, p.limits)
            if lost_t:
                acc.held = dict(moment.held) if moment is not None else {}
                then = moment.settled if moment is not None else {}
                acc.balances, acc.deposited = dict(balances), dict(deposited)
                for asset, debited in settled_now.items():
                    back = debited - then.get(asset, ZERO)
                    if back:
                        acc.balances[asset] = acc.balances.get(asset, ZERO) + back
                        acc.deposited[asset] = acc.deposited.get(asset, ZERO) + back
            if lost_l:
                for k, v in in_force.items():
                    if v is None:
                        state.limits.pop(k, None)
                    else:
                        state.limits[k] = v
            emit = emit_for(_fact(step))
            if isinstance(step, TransferStep):
                if step.passes:
                    _unhold(state, ctx, emit, account, owns, _debited(state, step.fact))
                    _checked(emit, account, step.fact)
                if step.flow is not None:
                    if step.flow in hidden:
                        hidden.discard(step.flow)
                        acc.pending.add(step.flow)
                    _unitize(state, owns, account, emit)
            elif isinstance(step, LimitStep):
                if step.fact.payload.scope != GLOBAL_SCOPE or acc.open_orders:
                    # A change of the account's own limits is recorded with nothing
                    # resting too; a global one for the accounts with open orders
                    # (`_limits_changed`).
                    if acc.open_orders:
                        _limits_pass(state, ctx, emit, acc, fee)
                    _checked(emit, account, step.fact)
            elif acc.open_orders:  # the global switch's halt (`_halt`)
                _halt_again(state, ctx, emit, acc, step, released=step is not switch)
    finally:
        acc.held, acc.balances, acc.deposited = held, balances, deposited
        for k, v in limits.items():
            if v is None:
                state.limits.pop(k, None)
            else:
                state.limits[k] = v
        acc.pending |= hidden


def _parents(state: EngineState, acc: AccountState) -> list[OrderState]:
    """The account's open parent orders."""
    return [
        o
        for o in (state.orders.get(i) for i in acc.open_orders)
        if o is not None and not o.done and o.parent_order_id is None
    ]


def _halt_again(
    state: EngineState,
    ctx: Context,
    emit: _Emitter,
    acc: AccountState,
    switch: Envelope[Any],
    *,
    released: bool,
) -> None:
    """`_redo_passes`' redo of a global switch's lost halt for the account, with its
    record. `released`: the switch is no longer in force; it is put back for its halt, over
    the open orders from before it only (those placed since its release never met it)."""
    if not released:
        for name in sorted(ctx.venues):
            ctx.venues[name].halt(state, acc.account, emit)
        _checked(emit, acc.account, switch)
        return
    later = {
        i
        for i in acc.open_orders
        if (o := state.orders.get(i)) is not None and o.submitted_at >= switch.occurred_at
    }
    engaged = GLOBAL_SCOPE in state.kill_switches
    acc.open_orders -= later
    state.kill_switches.add(GLOBAL_SCOPE)
    try:
        for name in sorted(ctx.venues):
            ctx.venues[name].halt(state, acc.account, emit)
    finally:
        if not engaged:
            state.kill_switches.discard(GLOBAL_SCOPE)
        acc.open_orders |= later
    _checked(emit, acc.account, switch)


def _switch_committed(state: EngineState, switch: Envelope[Any], account: str) -> bool:
    """Whether the log shows the halt of `switch` (a `KillSwitchEngaged` in force for
    `account`) committed for the account: the account's `RestingOrdersChecked` naming it
    (for a global switch, the halt of each worker that read it, for each account with
    open orders, or a decision of the account approved under it since; for a switch of
    the account itself, its owner's halt, deciding the command or reading the fact
    another worker decided, with nothing resting too), or, for a switch of the account
    engaged by its drawdown brake, the fact itself (`_braked`: the owner writes it in the
    decision's transaction, with the halt). Otherwise `catch_up` runs the halt again (a
    lost transaction; on a log from before the record, fail closed: once, writing the
    record). Until helper-134's change an account's switch counted as committed whenever
    the engine wrote it: one decided by a worker not owning the account (a tightening
    admin command is decided on any partition) was halted by the owner in another
    transaction, and when that one was lost the orders rested on under the switch."""
    acc = state.accounts.get(account)
    if acc is not None and switch.event_id in acc.unheld:
        return True
    return switch.payload.scope == account and _braked(switch)


def _braked(switch: Envelope[Any]) -> bool:
    """Whether `switch` is the `KillSwitchEngaged` a drawdown brake wrote in the
    transaction of the intent's decision (`_order`): its id is the one derived from its
    cause with the brake's discriminator, which no admin command's accepted fact has."""
    cause = switch.causation_id
    return (
        switch.producer == ENGINE_PRODUCER
        and cause is not None
        and switch.event_id
        == derived_uuid7(
            switch.occurred_at, ENGINE_PRODUCER, str(cause), switch.event_type, "brake"
        )
    )


def _fact(step: TransferStep | LimitStep | Envelope[Any]) -> Envelope[Any]:
    return step.fact if isinstance(step, TransferStep | LimitStep) else step


def _read_order(fact: Envelope[Any]) -> tuple[datetime, str]:
    """Where a transfer fact and a limits change (two topics, which no offset orders)
    stand to each other among the passes `_redo_passes` redoes: by event time, then id."""
    return (fact.occurred_at, str(fact.event_id))


def _unitize(
    state: EngineState,
    owns: Callable[[str], bool] | None,
    account: str,
    emit: _Emitter,
) -> None:
    """Turn the owned account's pending flows into units (`EngineState.unitization`),
    as `UnitsChanged` caused by `emit`'s input: at the flow when it is folded (the
    deposit's decision, the settlement read from transfers.events), else at the owner's
    next decision, or by `catch_up` (as caused by the flow, the ids a live owner gives
    them) for what a lost transaction or a hand-over left pending. Only the owner
    writes them: they go to the account's partition of risk.decisions."""
    if (owns is not None and not owns(account)) or not state.units_due(account):
        return
    change = state.unitization(account, emit.cause.occurred_at)
    if change is not None:
        emit(change, "units")


def _unhold(
    state: EngineState,
    ctx: Context,
    emit: Callable[[EventPayload, str], None],
    account: str,
    owns: Callable[[str], bool] | None,
    debited: str | None = None,
) -> None:
    """Fail closed when withdrawal holds leave the account short of an asset it holds
    (free balance plus what its credit lends below zero: a request of more than was free
    while resting orders committed the rest, docs/engine.md *Withdrawals*): cancel at once
    its owned resting parent orders that pay in that asset (buys where it is the quote,
    sells where it is the base), newest first (submission time, then id), until it is no
    longer short or none is left; then, as the credit is one amount for the whole account
    that a short held asset uses up first, the orders borrowing on it (paying in any asset
    short of its balance), newest first across them, until no asset is short. Before,
    they kept their commitment and could fill, and the settlement then took the balance
    below zero. Run in the transaction of the
    transfer fact that raised the hold (`control`), caused by it, and by `catch_up` for
    what a lost transaction left open; assets in sorted order, so a replay emits the same
    events. A balance that cannot be valued (an open market buy without a price, a credit
    without a mark) counts as short. `debited`: the asset a settlement of a rejected
    withdrawal (which held nothing) just took off the balance, looked at as a held one."""
    if owns is not None and not owns(account):
        return
    acc = state.accounts.get(account)
    if acc is None or not (acc.held or debited) or not acc.open_orders:
        return
    fee = _fee(ctx)
    credit = state.limits_for(account)[1].credit_limit
    resting = _resting(state, ctx, acc)
    assets: Iterable[str] = acc.held.keys() | {debited} if debited else acc.held
    for asset in sorted(assets):
        for o in resting:
            if _pays_in(o) != asset or o.done:
                continue
            if not _short(state, acc, asset, fee, credit):
                break
            ctx.venues[o.venue].cancel(state, o, WITHDRAWAL_HELD, emit)
    # Then what borrows on the credit: one amount for the whole account, which a short
    # held asset uses up first, so an order paying in another asset short on credit (a
    # buy on ETH/BTC without BTC) may no longer fit.
    _cancel_borrowing(state, ctx, emit, acc, resting, fee, credit, WITHDRAWAL_HELD)


def _fee(ctx: Context) -> Decimal:
    """1 + the highest taker fee rate of the venues: what open buys commit per notional."""
    rates = [getattr(v, "taker_fee", _DEFAULT_TAKER_FEE) for v in ctx.venues.values()]
    return 1 + max((Decimal(str(r)) for r in rates), default=_DEFAULT_TAKER_FEE)


def _resting(state: EngineState, ctx: Context, acc: AccountState) -> list[OrderState]:
    """The account's open parent orders on the context's venues, newest first (submission
    time, then id): the order `_unhold` and `_limits_changed` cancel in."""
    resting = [
        o
        for o in (state.orders.get(i) for i in acc.open_orders)
        if o is not None and not o.done and o.parent_order_id is None and o.venue in ctx.venues
    ]
    resting.sort(key=lambda o: (o.submitted_at, o.order_id), reverse=True)
    return resting


def _cancel_borrowing(
    state: EngineState,
    ctx: Context,
    emit: Callable[[EventPayload, str], None],
    acc: AccountState,
    resting: list[OrderState],
    fee: Decimal,
    credit: Decimal,
    reason: str,
) -> None:
    """Cancel `resting` orders (newest first) that borrow on the credit, paying in an
    asset short of its balance (cancelling another frees no credit), until no asset is
    short (free balance plus what the credit lends below zero). Without credit this is
    each short asset's own orders."""
    for o in resting:
        if o.done:
            continue
        try:
            borrowing = state.free(acc, _pays_in(o), fee) < 0
        except ValueError:  # an open market buy without a price: cannot be valued
            borrowing = True
        if borrowing:
            if not _any_short(state, acc, fee, credit):
                break
            ctx.venues[o.venue].cancel(state, o, reason, emit)


def _limits_changed(
    state: EngineState,
    ctx: Context,
    emit: Callable[[EventPayload, str], None],
    scope: str,
    owns: Callable[[str], bool] | None,
    fact: Envelope[Any],
) -> None:
    """Fail closed when a limits change (of `scope`, an account or '*') leaves resting
    orders the new limits would refuse: cancel the owned resting parent orders (1) on a
    pair with an asset the allow-lists no longer permit (the rule's code), (2) beyond the
    position limit, per instrument and side newest first, until the worst case (position
    plus every resting order of that side) is within it or only shrinks the position
    (`MAX_POSITION`, the rule's measure), (3) borrowing on a credit the account is now
    over, newest first, until no asset is short (`_cancel_borrowing`, `CREDIT_LIMIT`).
    A global change looks at the accounts without limits of their own. Run in the
    transaction that decides or reads the change, caused by it, and by `catch_up` (as
    caused by the change in force for the account, `EngineState.limit_cause`, unless the
    log shows the change's transaction committed, `_limits_committed`) for what a lost
    transaction left open; accounts in sorted order. Before, such orders stayed and
    filled: beyond the new credit, the new position limit, on a delisted stablecoin.
    Armed stop/take children stay (they only close, capped at the position and what is
    free; the position pass starts from the position once they filled, as MAX_POSITION
    v3 does). Other limits (`max_order_notional`, the rate) are the new orders' to meet.
    Each account's pass ends with its `RestingOrdersChecked` naming `fact` (the change as
    published on risk.config): for every owned account of `scope` when it names one (with
    or without resting orders: a decision under the change's version may not tell, see
    `_limits_committed`), for the owned accounts with open orders of a global change (an
    account without any has its orders decided under the change since). Not for an
    account whose records show its pass ran (`_limits_committed`, `read_now`)."""
    accounts = (
        sorted(a for a, acc in state.accounts.items() if acc.open_orders and a not in state.limits)
        if scope == GLOBAL_SCOPE
        else [scope]
    )
    fee = _fee(ctx)
    for account in accounts:
        if owns is not None and not owns(account):
            continue
        acc = state.accounts.get(account)
        if acc is None or _limits_committed(state, fact, account, read_now=True):
            # Committed for the account already: a worker that took its partition over
            # folded the records of the pass (or a decision under the change) before its
            # reader of risk.config reached the change. Run again on today's state, the
            # pass could cancel what no live worker did, and its record would be written
            # twice (under another id if the engine decided the change).
            continue
        if acc.open_orders:
            _limits_pass(state, ctx, emit, acc, fee)
        _checked(emit, account, fact)


def _limits_pass(
    state: EngineState,
    ctx: Context,
    emit: Callable[[EventPayload, str], None],
    acc: AccountState,
    fee: Decimal,
) -> None:
    """`_limits_changed`'s pass over one account's resting orders."""
    account = acc.account
    limits = state.limits_for(account)[1]
    resting = _resting(state, ctx, acc)
    for o in sorted(resting, key=lambda o: o.order_id):
        refused = asset_refusal(limits, split_instrument(o.instrument), STABLECOINS)
        if refused is not None:
            ctx.venues[o.venue].cancel(state, o, refused[0], emit)
    sides: dict[tuple[str, Side], list[OrderState]] = {}
    for o in resting:  # newest first
        if not o.done:
            sides.setdefault((o.instrument, o.side), []).append(o)
    for (instrument, side), orders in sorted(sides.items()):
        position = acc.positions.get(instrument, ZERO)
        sign = 1 if side is Side.BUY else -1
        start = after_children(position, side, state.children_closing(acc, instrument, side))
        worst = start + sign * sum((o.leaves for o in orders), ZERO)
        for o in orders:
            shrinks = abs(worst) <= abs(position) and (worst >= 0) == (position >= 0)
            if abs(worst) <= limits.max_position or shrinks:
                break
            worst -= sign * o.leaves
            ctx.venues[o.venue].cancel(state, o, "MAX_POSITION", emit)
    _cancel_borrowing(
        state, ctx, emit, acc, _resting(state, ctx, acc), fee, limits.credit_limit, CREDIT_LIMIT
    )


def _checked(emit: Callable[[EventPayload, str], None], account: str, fact: Envelope[Any]) -> None:
    """The owner's record that it ran `fact`'s pass over `account`'s resting orders
    (`RestingOrdersChecked`), in the pass's transaction, cancelling or not: what shows
    `catch_up` that the transaction committed (`_committed`, `_limits_committed`). Its
    id is derived from the input and the account, so `catch_up` redoing a lost pass
    writes the live one."""
    emit(
        RestingOrdersChecked(
            account=account, fact_event_id=fact.event_id, fact_type=fact.event_type
        ),
        f"checked:{account}",
    )


def _pays_in(order: OrderState) -> str:
    """The asset an order pays in: the quote for a buy, the base for a sell."""
    return split_instrument(order.instrument)[1 if order.side is Side.BUY else 0]


def _any_short(state: EngineState, acc: AccountState, fee: Decimal, credit: Decimal) -> bool:
    return any(_short(state, acc, a, fee, credit) for a in sorted(state.assets_of(acc)))


def _debited(state: EngineState, cause: Envelope[Any]) -> str | None:
    """The asset a hold cause took off the balance without a hold: a `TransferSettled`
    (`EngineState.hold_causes` keeps one only if its withdrawal held nothing: rejected
    before it settled), else None."""
    p = cause.payload
    if not isinstance(p, TransferSettled):
        return None
    acc = state.accounts.get(p.account)
    w = acc.withdrawals.get(p.transfer_id) if acc is not None else None
    return w.asset if w is not None else None


def _limits_committed(
    state: EngineState, cause: Envelope[Any], account: str, *, read_now: bool = False
) -> bool:
    """Whether the log shows that the transaction in which the account's owner ran the
    pass of `cause` (the `RiskLimitsChanged` in force for `account`, as read or decided,
    or as redone by a `catch_up`) committed: its `RestingOrdersChecked` for the account
    or a cancel it made (`CREDIT_LIMIT`, `MAX_POSITION`, an allow-list code) was folded
    (`AccountState.unheld`; caused by the change, or by the admin command it was decided
    from, its causation), or (a log from before that record) an approved decision of the account was made under its version (`AccountState.decided_under`: the owner had folded the change and
    run its pass, and commits its transactions in order). Decisions record the version,
    not its scope: under the global limits (the account never had limits of its own:
    they are never removed) every decision recorded a global version, and one at least
    the change's was made under it; under the account's own limits a decision's version
    can be a global one from before them, so it proves the change only if above every
    global version. Otherwise (a lost transaction; on an older log nothing decided since,
    nothing cancelled, or that ambiguity): not shown, and `catch_up` redoes the pass on today's state (fail
    closed; docs/engine.md *A limits change and the resting orders*).

    `read_now`: asked by `_limits_changed` for a change just read (a worker that took the
    partition over may have folded the account's records of its pass before its reader
    of risk.config came to it). Then a decision proves a change of the account's own
    limits in no case: the global versions read so far may lag the ones a decision was
    made under (risk.config is partitioned by scope)."""
    acc = state.accounts.get(account)
    if acc is None:
        return False
    if cause.event_id in acc.unheld:
        return True
    if cause.causation_id is not None and cause.causation_id in acc.unheld:
        # Decided here (the accepted fact's causation is the admin command): the deciding
        # worker's cancels are caused by the command, not by the fact `catch_up` finds.
        return True
    p = cause.payload
    version: int = p.config_version
    if acc.decided_under < version:
        return False
    if p.scope == GLOBAL_SCOPE:
        return True
    return not read_now and version > state.limits.get(GLOBAL_SCOPE, (0, None))[0]


def _short(
    state: EngineState, acc: AccountState, asset: str, fee: Decimal, credit: Decimal
) -> bool:
    try:
        return state.free(acc, asset, fee) + state.credit_headroom(acc, asset, fee, credit) < 0
    except ValueError:  # an open market buy without a price: cannot be valued
        return True


def _halt(
    state: EngineState,
    ctx: Context,
    emit: Callable[[EventPayload, str], None],
    scope: str,
    fact: Envelope[Any] | None = None,
) -> None:
    """At once, in the same transaction as the fact: cancel the owned open orders a kill
    switch (of `scope`, an account or '*') or an AML flag raised just now stops
    (`Venue.halt`), accounts and venues in sorted order. A switch (`fact`, as published
    on risk.config) records its pass (`RestingOrdersChecked`, cancelling or not) per
    owned account with open orders when global, for its account (with nothing resting
    too) when it names one, so a restart does not run it again on a later state
    (`catch_up`); an account whose records show it ran (a worker that took the partition
    over folded them before reading the switch) is left alone. The drawdown brake's
    switch (no `fact`) needs no record: the owner writes it in the transaction of the
    pass (`_braked`). A switch of one account decided from an admin command may be
    decided by a worker that does not own the account; its owner halts when it reads it."""
    owns = ctx.owns
    accounts = (
        sorted(a for a, acc in state.accounts.items() if acc.open_orders)
        if scope == GLOBAL_SCOPE
        else [scope]
    )
    for account in accounts:
        if owns is None or owns(account):
            recorded = fact
            if recorded is not None and recorded.event_id in state.account(account).unheld:
                continue
            for name in sorted(ctx.venues):
                ctx.venues[name].halt(state, account, emit)
            if recorded is not None:
                _checked(emit, account, recorded)


def _stop_producer(
    state: EngineState,
    ctx: Context,
    emit: Callable[[EventPayload, str], None],
    revocation: Envelope[Any],
    owns: Callable[[str], bool] | None,
    among: list[OrderState] | None = None,
) -> None:
    """Cancel the open orders on the accounts `owns` holds that `revocation` (a folded
    `ProducerRevoked`) cancels: those placed with a key it revoked
    (`EngineState.revocation_of`; `Venue.revoke`), venues in sorted order: in the
    revocation's transaction, and by `catch_up` for what a lost transaction left open.
    `among`: the orders to look at, if not all (`catch_up` finds each one's first)."""
    for name in sorted(ctx.venues):
        ctx.venues[name].revoke(state, revocation, owns, emit, among)


@in_exact_context
def control(state: EngineState, event: Envelope[Any], ctx: Context) -> list[Output]:
    """A fact read from a control topic (every worker reads them in full): folded in, and
    if it newly engages a kill switch, raises an AML flag or revokes a producer, the
    cancels of the owned open orders it stops, caused by it (the worker that decided the
    command cancelled the ones it owned; a global switch or a revocation stops orders on
    every worker); if it raised a withdrawal hold (or settled a rejected withdrawal), the
    cancels of the owned resting orders that overdraws (`_unhold`)."""
    p = event.payload
    new = (
        isinstance(p, KillSwitchEngaged | AmlFlagRaised | ProducerRevoked | RiskLimitsChanged)
        and event.event_id not in state.seen_reference
    )
    settles = isinstance(p, TransferSettled) and _settles(state, event)
    state.fold(event)
    _bound(state, ctx.owns, p)
    holding = isinstance(p, _HOLDING_TYPES) and state.hold_causes.get(p.account) is event
    if holding or settles:
        emit = _Emitter(state, event)
        if (
            holding
            and (ctx.owns is None or ctx.owns(p.account))
            and event.event_id not in state.account(p.account).unheld
        ):
            # It raised a withdrawal hold just now (or settled a rejected withdrawal,
            # taking what no hold covered): cancel what that overdraws, and record that
            # the pass ran (with nothing resting too: orders placed later are approved
            # with the hold in effect, and no restart may run the pass on them). Not when
            # the log shows it ran already (`AccountState.unheld`): a worker that took the
            # partition over folded its records before its transfers.events reader came
            # to the fact, and the pass on today's state could cancel what no live worker
            # did (orders approved with the hold in effect, prices moved since).
            _unhold(state, ctx, emit, p.account, ctx.owns, _debited(state, event))
            _checked(emit, p.account, event)
        if settles:
            # Units redeemed at the NAV per unit just before the withdrawal (DRAWDOWN v6).
            _unitize(state, ctx.owns, p.account, emit)
        return emit.out
    if not new:
        return []
    emit = _Emitter(state, event)
    if isinstance(p, ProducerRevoked):
        _stop_producer(state, ctx, emit, event, ctx.owns)
    elif isinstance(p, RiskLimitsChanged):
        _limits_changed(state, ctx, emit, p.scope, ctx.owns, event)
    elif isinstance(p, KillSwitchEngaged):
        _halt(state, ctx, emit, p.scope, event)
    else:
        _halt(state, ctx, emit, p.account)
    return emit.out


def _settles(state: EngineState, event: Envelope[Any]) -> bool:
    """Whether folding `event`, a `TransferSettled` not folded yet, settles its withdrawal.
    Not a second settlement, nor one of a withdrawal never requested (or another
    account's): the books quarantine those and the fold changes nothing
    (`EngineState._apply_transfer`), so `control` writes nothing for them. Before session
    21 it turned such a settlement into units at an account with equity and none (a
    `UnitsChanged` naming no flow), which a worker that lost that transaction did not
    write (`catch_up` unitizes pending flows only): the output depended on a crash. The
    first settlement is the fact; the units come at the owner's next valuation."""
    p = event.payload
    if event.event_id in state.seen_reference:
        return False
    acc = state.accounts.get(p.account)
    w = acc.withdrawals.get(p.transfer_id) if acc is not None else None
    return w is not None and w.status != "SETTLED"


_HOLDING_TYPES = (TransferRequested, TransferChecked, TransferReleased, TransferSettled)
"""The transfer facts that may raise a withdrawal hold, or (a settlement of a rejected
withdrawal) debit what no hold covered (`EngineState._apply_transfer`)."""


def order_id_for(intent_event: Envelope[Any], event_id_text: str | None = None) -> str:
    """`event_id_text`: `str(intent_event.event_id)` if the caller has it already."""
    text = str(intent_event.event_id) if event_id_text is None else event_id_text
    return "o-" + hashlib.sha256(text.encode()).hexdigest()[:24]


@in_exact_context
def process(
    state: EngineState,
    event: Envelope[Any],
    ctx: Context,
    received_at: datetime | None = None,
    record: tuple[int, int] | None = None,
) -> list[Output]:
    """All outputs for one input. Never raises for a well-formed event of any type.

    `received_at`: for an intent, the broker's append time of its record (LogAppendTime),
    recorded in the decision; None if unknown (see `Context.event_time_is_arrival`).
    `record`: for an intent, its record's (partition, offset), named by a rejection."""
    p = event.payload
    emit = _Emitter(state, event)
    if isinstance(p, _INTENT_TYPES):
        emit.record = record
        if received_at is None and ctx.event_time_is_arrival:
            received_at = event.occurred_at
        emit.received_at = received_at
        emit.at = order_events_at(state, event, received_at)
        _intent(state, event, ctx, emit, received_at)
    elif isinstance(p, _MARKET_TYPES):
        if isinstance(p, MarketTrade) and state.price(p.instrument).has_print(p):
            return emit.out  # a copy of a kept print: matched once already
        state.fold(event)
        for venue in ctx.venues.values():
            venue.on_market(state, event, emit, ctx.owns)
    elif p.EVENT_TYPE in ADMIN_COMMAND_TYPES:
        _admin(state, event, ctx, emit)
    return emit.out


# ---- intents ---------------------------------------------------------------------------


def order_events_at(
    state: EngineState, event: Envelope[Any], received_at: datetime | None
) -> datetime | None:
    """When the order events the engine writes for an intent happen (their `occurred_at`;
    None: the intent's), and whose book its order meets: the broker's append time of the
    intent (`received_at`), or its own stamp if ahead of it by at most the limits'
    `order_events_ahead_ms` (0 unless a simulation allows it; never beyond
    `max_intent_ahead_ms`).

    The intent's `occurred_at` is the producer's word, and surveillance judges these
    events in event time: before session 23 they carried it, so a spoofer who stamped
    its cancels 3 s early (a cancel intent's time was not bounded at all) or its orders
    ahead hid every spoof and ladder of the scenario. In session 23 the producer could
    still move them up to `max_intent_ahead_ms` (1 s) later, FRESHNESS's tolerance of a
    fast clock: a cancel stamped 0.9 s ahead stretched a spoof's lifetime past
    `cancel_within_s`, and an order met a quote read after it was sent. Not always
    `received_at`: a simulation that lets its producers run ahead of the broker's clock
    (`streams.scenario`, a day) keeps its market data and its orders on one clock. Without
    a broker time (no broker, `event_time_is_arrival`: the stamp is the arrival; an
    intents topic not on LogAppendTime) the intent's own time."""
    if received_at is None:
        return None
    at = event.occurred_at
    if at <= received_at:
        return received_at  # the usual case: the limits are looked up only for a stamp ahead
    limits = state.limits_for(event.payload.account)[1]
    ahead = min(limits.order_events_ahead_ms, limits.max_intent_ahead_ms)
    return received_at if ahead == 0 else min(at, received_at + timedelta(milliseconds=ahead))


def _reject(
    emit: _Emitter,
    event: Envelope[Any],
    reason: IntentRejectReason,
    detail: str,
    digest: str | None = None,
) -> None:
    p = event.payload
    emit(
        IntentRejected(
            account=p.account,
            producer_id=p.producer_id,
            client_order_id=p.client_order_id,
            intent_event_id=event.event_id,
            reason=reason,
            detail=detail[:2000],
            intent_digest=digest,
            received_at=emit.received_at,
            intent_partition=None if emit.record is None else emit.record[0],
            intent_offset=None if emit.record is None else emit.record[1],
        ),
        "decision",
    )


def _stale_view(ctx: Context, *, recorded: bool = False) -> str:
    """A note for a refusal judged on a registry that may be behind the log.

    With the control topics not read to their end (or the lag unknown) the producer
    registry may miss a registration or key another worker committed: still refused (fail
    closed), but the reason must not read as a plain fact about the producer. A `recorded`
    refusal is what a resend of the same intent gets back, so its retry needs a new id.
    """
    if ctx.consumer_lag < UNKNOWN_LAG:
        return ""
    retry = "resend with a new client_order_id" if recorded else "resend"
    return (
        " (as far as this worker has read: its view of the log is stale, the control topics "
        f"not read to their end or its lag unknown; {retry})"
    )


def _intent(
    state: EngineState,
    event: Envelope[Any],
    ctx: Context,
    emit: _Emitter,
    received_at: datetime | None,
) -> None:
    p: OrderIntent | CancelIntent = event.payload
    # Authenticate first: a rejection decided before the signature verified is emitted but
    # neither answered from nor recorded in the idempotency record (`UNAUTHENTICATED`), so an
    # unsigned intent can neither block a producer's client order id nor fetch its decision.
    entry = state.producers.get(p.producer_id)
    if entry is None and p.producer_id in state.revoked:
        revocation = state.halt_causes.get(("producer", p.producer_id))
        why = getattr(revocation.payload, "reason", "") if revocation is not None else ""
        _reject(
            emit,
            event,
            IntentRejectReason.PRODUCER_REVOKED,
            f"producer {p.producer_id!r}'s key was revoked"
            + (f" ({why[:500]})" if why else "")
            + f"; it trades again only with a rotated key{_stale_view(ctx)}",
        )
        return
    if entry is None:
        _reject(
            emit,
            event,
            IntentRejectReason.UNKNOWN_PRODUCER,
            f"producer {p.producer_id!r} is not registered{_stale_view(ctx)}",
        )
        return
    signed = _signed_bytes(p, entry.public_key, ctx)
    if signed is None:
        _reject(
            emit,
            event,
            IntentRejectReason.BAD_SIGNATURE,
            f"signature does not verify with {p.producer_id}'s registered key{_stale_view(ctx)}",
        )
        return
    key = (p.producer_id, p.account, p.client_order_id)
    digest = intent_digest(p, signed)
    prior: Recorded | None = state.decisions.get(key)
    if prior is not None:
        original = prior.envelope
        if original.payload.intent_digest == digest:
            # Idempotency: the original decision, byte for byte, and nothing traded again.
            emit.out.append(original)
            return
        # Another intent under a decided id (a cancel reusing its order's id, changed
        # content): never answered with that intent's decision. Not recorded (key known).
        why = (
            "its decision records no intent digest"
            if original.payload.intent_digest is None
            else "that intent had other content"
        )
        _reject(
            emit,
            event,
            IntentRejectReason.CLIENT_ORDER_ID_REUSED,
            f"client_order_id {p.client_order_id!r} was already decided on {p.account} "
            f"({original.event_type} {original.event_id}) and {why}; a resend must repeat "
            "the intent exactly, a new intent needs a new id",
        )
        return
    if key in state.decisions:
        # Decided long ago (only a fingerprint is kept): still never traded twice.
        _reject(
            emit,
            event,
            IntentRejectReason.INVALID_INTENT,
            f"duplicate client_order_id {p.client_order_id!r}: already decided; the original "
            "decision is on the log (beyond the in-memory replay window)",
        )
        return
    if p.account not in entry.accounts:
        _reject(
            emit,
            event,
            IntentRejectReason.NOT_ENTITLED,
            f"producer {p.producer_id} may not act on account {p.account}"
            f"{_stale_view(ctx, recorded=True)}",
            digest,
        )
        return
    if isinstance(p, CancelIntent):
        _cancel(state, event, p, ctx, emit, digest, received_at)
    else:
        _order(state, event, p, ctx, emit, digest, received_at)


def _cancel(
    state: EngineState,
    event: Envelope[Any],
    p: CancelIntent,
    ctx: Context,
    emit: _Emitter,
    digest: str,
    received_at: datetime | None,
) -> None:
    target = (p.producer_id, p.account, p.target_client_order_id)
    order_id = state.client_orders.get(target)
    order = state.orders.get(order_id) if order_id else None
    # A done order with armed stop/take children is still working through them: the
    # cancel withdraws those (else a stop outlives the position it protected and closes
    # a later one the client opened without it).
    if (
        order is None
        or order.account != p.account
        or (order.done and not state.open_children(order))
    ):
        # The key names the account: another account's order is never found here, so
        # nothing of it leaks (UNKNOWN_ORDER, as for an id never used).
        late = target in state.ended or (order is not None and order.account == p.account)
        _reject(
            emit,
            event,
            IntentRejectReason.TOO_LATE_TO_CANCEL if late else IntentRejectReason.UNKNOWN_ORDER,
            _no_open_order(state, p, target, order, late),
            digest,
        )
        return
    venue = ctx.venues.get(order.venue)
    version = state.limits_for(p.account)[0]
    if venue is None:
        _reject(
            emit, event, IntentRejectReason.INVALID_INTENT, f"unknown venue {order.venue}", digest
        )
        return
    emit(
        _decision(
            account=p.account,
            producer_id=p.producer_id,
            strategy_id=p.strategy_id,
            client_order_id=p.client_order_id,
            intent_event_id=event.event_id,
            intent_kind="CANCEL",
            outcome=DecisionOutcome.APPROVED,
            risk_config_version=version,
            order_id=order.order_id,
            intent_digest=digest,
            received_at=received_at,
        ),
        "decision",
    )
    venue.cancel(state, order, "CLIENT", emit)


def _no_open_order(
    state: EngineState,
    p: CancelIntent,
    target: tuple[str, str, str],
    order: OrderState | None,
    late: bool,
) -> str:
    """The detail of a cancel with nothing to cancel: how the order ended (too late), or
    that the id was decided without placing an order. From the state alone (`ended`, the
    idempotency record), so a restarted worker words it the same."""
    head = f"no open order {p.target_client_order_id!r} on {p.account}"
    if late:
        ended = state.ended.get(target)
        if ended is not None:
            return f"{head}: too late to cancel, {ended.describe()}"
        if order is not None:
            return (
                f"{head}: too late to cancel, order {order.order_id} is done, filled "
                f"{order.filled} of {order.quantity}"
            )
        return (
            f"{head}: too late to cancel, the order is done (its final state is on "
            f"orders.lifecycle; the engine keeps the account's last {state.ended.max_recent})"
        )
    if target in state.decisions:
        # Decided, and neither open nor ended: it placed no order. Not worded from the
        # decision itself: beyond the idempotency record's recent tier only a fingerprint
        # is kept, and a tiny tier must decide every intent as an unbounded one does.
        return f"{head}: that id's intent placed no order (it was rejected, or is a cancel)"
    return head


def _order(
    state: EngineState,
    event: Envelope[Any],
    p: OrderIntent,
    ctx: Context,
    emit: _Emitter,
    digest: str,
    received_at: datetime | None,
) -> None:
    venue = ctx.venues.get(p.venue)
    if venue is None:
        _reject(
            emit, event, IntentRejectReason.INVALID_INTENT, f"unknown venue {p.venue!r}", digest
        )
        return
    for name, value in (
        ("quantity", p.quantity),
        ("limit_price", p.limit_price),
        ("stop_loss", p.stop_loss),
        ("take_profit", p.take_profit),
    ):
        if value is not None and not exact_enough(value):
            # Finer than the engine counts: the order could never fill up (dust for ever).
            _reject(
                emit,
                event,
                IntentRejectReason.INVALID_INTENT,
                f"{name} {value} is finer than the engine counts: at most {EXACT_DIGITS} "
                f"significant digits, in steps of {QUANTUM}",
                digest,
            )
            return
    fee = getattr(venue, "taker_fee", _DEFAULT_TAKER_FEE)
    # `Decimal(str(d))` is `d` itself for a Decimal (its text round-trips exactly).
    fee_rate = fee if type(fee) is Decimal else Decimal(str(fee))
    # Flows the account's owner could not turn into units when it folded them (no mark
    # then), or an account with equity but no units: units first, then the measure.
    _unitize(state, ctx.owns, p.account, emit)
    ev = evaluate(
        state,
        p,
        event.occurred_at,
        consumer_lag=ctx.consumer_lag,
        taker_fee_rate=fee_rate,
        received_at=received_at,
        book_at=emit.at,
    )
    acc = state.account(p.account)
    nav = ev.context.nav if ev.context is not None else None
    if nav is not None:
        # The decision's event time is the intent's (`derived_fields`): the fold's guard.
        # The peak is of NAV per unit (DRAWDOWN v6): flows do not move it.
        acc.raise_peak(event.occurred_at, nav)
    if "DRAWDOWN_BRAKE" in ev.reason_codes and p.account not in state.kill_switches:
        # Measured per unit, or the whole peak lost (DRAWDOWN v7, v8: `lost_in_full`).
        peak = acc.peak_nav
        lost = ev.context is not None and ev.context.lost_in_full
        emit(
            KillSwitchEngaged(
                scope=p.account,
                engaged_by="drawdown-brake",
                reason="account drawdown from its peak passed the threshold",
                drawdown=ONE
                if lost
                else drawdown(peak, nav)
                if peak > 0 and nav is not None
                else None,
                peak_equity=peak_money(acc),
                equity=ev.context.equity if ev.context is not None else None,
            ),
            "brake",
        )
        _halt(state, ctx, emit, p.account)
    switch = state.halt_causes.get(("kill", GLOBAL_SCOPE)) if ev.passed else None
    if switch is not None and switch.event_id not in acc.unheld:
        # Approved under a global switch whose pass the account's records do not show
        # (nothing rested when it was read, so none was written): the pass is recorded
        # now, in this transaction (nothing rests that it could stop: every order the
        # account placed since was risk-reducing at entry). Else a restart ran it again
        # on its state and cancelled, under the switch's id, an order live cancels only
        # when a print reaches it (`catch_up`).
        _checked(emit, p.account, switch)
    order_id = order_id_for(event, emit.cause_id) if ev.passed else None
    emit(
        _decision(
            account=p.account,
            producer_id=p.producer_id,
            strategy_id=p.strategy_id,
            client_order_id=p.client_order_id,
            intent_event_id=event.event_id,
            intent_kind="ORDER",
            outcome=DecisionOutcome.APPROVED if ev.passed else DecisionOutcome.REJECTED,
            reason_codes=ev.reason_codes,
            rule_results=ev.results,
            risk_config_version=ev.config_version,
            order_id=order_id,
            equity=ev.context.equity if ev.context is not None else None,
            peak_equity=peak_money(acc) if ev.context is not None else None,
            peak_nav=acc.peak_nav if ev.context is not None else None,
            intent_digest=digest,
            received_at=received_at,
        ),
        "decision",
    )
    if order_id is None:
        return
    decision = emit.out[-1]
    emit(
        _submitted(
            order_id=order_id,
            account=p.account,
            producer_id=p.producer_id,
            strategy_id=p.strategy_id,
            client_order_id=p.client_order_id,
            instrument=p.instrument,
            side=p.side,
            order_type=p.order_type,
            quantity=p.quantity,
            limit_price=p.limit_price,
            time_in_force=p.time_in_force,
            venue=venue.name,
            decision_event_id=decision.event_id,
            stop_loss=p.stop_loss,
            take_profit=p.take_profit,
            producer_key=state.producers[p.producer_id].public_key,
        ),
        "submit",
    )
    # The order meets the book at its submission (`order_events_at`), the one the rules
    # valued it at (`PriceState.book_at`), not at a time its producer stamped.
    venue.submit(state, state.orders[order_id], emit)


# ---- admin commands --------------------------------------------------------------------


def _admin_check(state: EngineState, event: Envelope[Any], ctx: Context) -> str | None:
    """Why the command must be refused, or None. Anything unexpected refuses."""
    p = event.payload
    if event.producer not in ctx.admins:
        return f"producer {event.producer!r} is not an authorised admin"
    # A revoked admin key still counts as registered: revoking it must never reopen the
    # unsigned bootstrap below (revoking an admin is refused anyway).
    keyed = sorted(a for a in ctx.admins if a in state.producers or a in state.revoked)
    if keyed:
        # Once any admin has a registered key, every admin command must be signed by its
        # issuer's key (before that, unsigned commands bootstrap the system).
        entry = state.producers.get(event.producer)
        if entry is None:
            return f"admin keys are registered ({', '.join(keyed)}) but not for {event.producer!r}"
        if not verify_admin(event.event_id, p, entry.public_key):
            return f"signature missing or not by {event.producer}'s registered admin key"
    if event.event_id in state.executed_commands:
        # By the command's id alone (its accepted fact names it as its cause): the
        # signature binds the event id and payload, not `occurred_at`, which the accepted
        # fact's own id is derived from as well.
        return "this command was already executed (replayed envelope)"
    if event.event_id in state.rejected_commands:
        # Rejected once: its envelope replayed later, when the state would allow it, is
        # not a new command (the issuer sends a new one, with a new id and signature).
        return "this command was already decided: rejected (replayed envelope)"
    if isinstance(p, AccountOpened):
        if state.account(p.account).opened:
            return f"account {p.account} is already open"
        if "base_currency" not in p.model_fields_set:
            # Schema version 1 defaulted it to USDT (not on the allow-list): a writer that
            # left it out would have the account valued in it without saying so.
            return (
                f"AccountOpened v{event.schema_version} names no base_currency (version 1 "
                "defaulted it to USDT): send version 2, which requires it"
            )
        version, limits = state.limits_for(p.account)
        refused = asset_refusal(limits, (p.base_currency,), STABLECOINS)
        if refused is not None:
            # Accepted, the account could never be valued or traded in it (every order
            # NO_MARK or refused by ASSET_ALLOW_LIST), and nothing told the operator.
            return (
                f"base_currency {p.base_currency} is not permitted by the limits in force "
                f"(version {version}): {refused[0]}: {refused[1]}; an account is valued in "
                "a permitted stablecoin or a listed crypto asset"
            )
        return None
    if isinstance(p, KycVerified | AmlFlagRaised | DepositReceived):
        if not state.account(p.account).opened:
            return f"account {p.account} is not open"
        if (
            isinstance(p, AmlFlagRaised)
            and p.flag_id in state.account(p.account).aml_flags
            and ctx.consumer_lag < UNKNOWN_LAG
        ):
            # A second raise of an open flag id would be undone by the first one's clear:
            # one AmlFlagCleared cleared both. On a view that may be stale (a clear not read
            # yet) it is raised all the same: it only ever stops more.
            return f"AML flag {p.flag_id} is already open on {p.account}: raise another id"
        if isinstance(p, DepositReceived) and p.deposit_id in state.account(p.account).deposits:
            return f"deposit {p.deposit_id} already recorded"
        if isinstance(p, DepositReceived) and not exact_enough(p.amount):
            # Off the grid, the balance's sums could round (and differently in a rebuild,
            # which folds deposits before fills), as an order quantity's would.
            return (
                f"amount {p.amount} is finer than the engine counts: at most {EXACT_DIGITS} "
                f"significant digits, in steps of {QUANTUM}"
            )
        return None
    if isinstance(p, AmlFlagCleared):
        if p.flag_id not in state.account(p.account).aml_flags:
            return f"no open AML flag {p.flag_id} on {p.account}"
        return None
    if isinstance(p, ProducerRegistered):
        return _registration_check(state, p)
    if isinstance(p, ProducerRevoked):
        if p.producer_id in ctx.admins:
            return (
                f"{p.producer_id} is an admin: an admin's key is not revoked by "
                "ProducerRevoked (rotate it with ProducerKeyRotated)"
            )
        if p.producer_id in state.revoked:
            return f"producer {p.producer_id} is already revoked"
        if p.producer_id not in state.producers:
            return f"producer {p.producer_id} is not registered{_stale_view(ctx)}"
        return None
    if isinstance(p, ProducerKeyRotated):
        return _rotation_check(state, p, ctx)
    if isinstance(p, RiskLimitsChanged):
        current = state.limits.get(p.scope, (0, None))[0]
        if p.config_version <= current:
            return f"config_version {p.config_version} is not above {current} for {p.scope}"
        if p.scope != GLOBAL_SCOPE and not state.account(p.scope).opened:
            return f"scope {p.scope} is neither '*' nor an open account"
        return None
    if isinstance(p, KillSwitchEngaged):
        if p.scope in state.kill_switches:
            return f"kill switch already engaged for {p.scope}"
        known = state.accounts.get(p.scope)
        if p.scope != GLOBAL_SCOPE and (known is None or not known.opened):
            if ctx.consumer_lag < UNKNOWN_LAG:
                # A switch that stops nothing (a mistyped account: ids are case-sensitive)
                # must not answer "engaged" while the account meant trades on. On a view
                # that may be stale it is engaged all the same (it only ever stops more).
                return f"scope {p.scope} is neither '*' nor an open account"
        return None
    if isinstance(p, KillSwitchReleased):
        if p.scope not in state.kill_switches:
            return f"kill switch not engaged for {p.scope}"
        return None
    if isinstance(p, DetectorConfigChanged):
        return None
    return f"{p.EVENT_TYPE} is not an admin command"


def _registration_check(state: EngineState, p: ProducerRegistered) -> str | None:
    """A registration may set a new producer's key, or restate a registered producer's
    (its accounts may change); it never changes a key: that is an explicit
    `ProducerKeyRotated`, which names the key it replaces (before session 18 a
    re-registration silently replaced key and accounts)."""
    if p.producer_id in state.revoked:
        return (
            f"producer {p.producer_id} is revoked: it comes back only with a new key "
            "(ProducerKeyRotated: `tradetape producer rotate`)"
        )
    entry = state.producers.get(p.producer_id)
    if entry is not None and entry.public_key != p.public_key:
        return (
            f"producer {p.producer_id} is registered with another key: a key is changed by "
            "ProducerKeyRotated (`tradetape producer rotate`), which names the key it replaces"
        )
    return None


def _rotation_check(state: EngineState, p: ProducerKeyRotated, ctx: Context) -> str | None:
    entry = state.producers.get(p.producer_id) or state.revoked.get(p.producer_id)
    if entry is None:
        return f"producer {p.producer_id} is not registered{_stale_view(ctx)}"
    if entry.public_key != p.previous_key:
        return (
            f"previous_key is not {p.producer_id}'s current key"
            f"{' (the revoked one)' if p.producer_id in state.revoked else ''}: "
            f"it is {entry.public_key[:16]}...{_stale_view(ctx)}"
        )
    if p.public_key == p.previous_key:
        return "the new key is the previous key"
    if (p.producer_id, p.public_key) in state.revocations:
        # What a revoked key placed is canceled on every recovery (`catch_up`): the key
        # never trades again, so the live engine and a rebuild cannot disagree about it.
        return f"the new key is one of {p.producer_id}'s revoked keys: choose another"
    return None


def _admin(state: EngineState, event: Envelope[Any], ctx: Context, emit: _Emitter) -> None:
    try:
        why = _admin_check(state, event, ctx)
    except Exception as exc:  # fail closed
        why = f"check failed: {type(exc).__name__}: {exc}"
    if why is not None:
        emit(
            AdminCommandRejected(
                command_event_id=event.event_id,
                command_type=event.event_type,
                key=event.key,
                reason=why[:2000],
            ),
            "admin-rejected",
        )
        return
    p = event.payload
    emit(p, ADMIN_ACCEPTED)
    _bound(state, ctx.owns, p)
    if isinstance(p, DepositReceived):
        # Units issued at the NAV per unit just before the deposit (DRAWDOWN_BRAKE v6).
        _unitize(state, ctx.owns, p.account, emit)
    elif isinstance(p, KillSwitchEngaged):
        # Caused by the command; each account's record names the accepted fact, the
        # switch `catch_up` finds in force (`EngineState.halt_causes`).
        _halt(state, ctx, emit, p.scope, emit.out[-1])
    elif isinstance(p, AmlFlagRaised):
        _halt(state, ctx, emit, p.account)
    elif isinstance(p, ProducerRevoked):
        _stop_producer(state, ctx, emit, emit.out[-1], ctx.owns)
    elif isinstance(p, RiskLimitsChanged):
        # Caused by the command; each account's record names the accepted fact, the
        # change `catch_up` finds in force (`EngineState.limit_cause`).
        _limits_changed(state, ctx, emit, p.scope, ctx.owns, emit.out[-1])


@in_exact_context
def reject_admin(state: EngineState, event: Envelope[Any], reason: str) -> list[Output]:
    """`AdminCommandRejected` for a command the worker refuses before deciding it (its
    accepted fact would not fit in a record, see `engine.worker`), folded like any answer."""
    emit = _Emitter(state, event)
    emit(
        AdminCommandRejected(
            command_event_id=event.event_id,
            command_type=event.event_type[:128],
            key=event.key,
            reason=reason[:2000],
        ),
        "admin-rejected",
    )
    return emit.out


@in_exact_context
def reject_misrouted(
    state: EngineState,
    event: Envelope[Any],
    detail: str,
    record: tuple[int, int] | None = None,
) -> list[Output]:
    """`IntentRejected(WRONG_PARTITION)` for an intent on another partition than its
    account's (`engine.worker.EngineWorker._misrouted`): decided before its signature is
    checked, from nothing of the state, and not recorded under its key (`UNAUTHENTICATED`),
    here or in the account's worker, which folds it from risk.decisions at a rebuild.
    Before session 23 such an intent was decided as STALE_STATE and recorded: a copy of a
    signed intent sent elsewhere got the intent sent right answered with that refusal."""
    emit = _Emitter(state, event)
    emit.record = record
    _reject(emit, event, IntentRejectReason.WRONG_PARTITION, detail)
    return emit.out
