"""The paper venue: deterministic matching against the market-data topic.

- MARKET orders take the displayed quantity at the touch; the remainder expires (a FOK
  one executes only if the displayed quantity covers the whole order). What the account's
  own orders took of a quote's displayed quantity is not displayed to its next orders
  against that quote (`AccountState.taken`, folded from the fills' `quote_id`, for the
  last quotes it took from); a newer
  quote displays its quantity afresh. Other accounts' orders are not counted, as with
  prints (below).
- LIMIT orders take liquidity if marketable (taker), then rest (GTC) or expire (IOC/FOK;
  FOK executes only if the displayed quantity covers the whole order). Resting orders fill
  as makers at their limit when a public trade prints at or through it, up to the trade's
  quantity, in price-time priority, and only against trades newer than the order. Each
  account's resting orders fill against the print on their own, as if that account alone
  traded against the public tape: shared out among every account a worker holds, which
  orders filled would depend on which partitions the worker owns (accounts are spread over
  partitions and workers), and two workers would together fill more than the print.
- Engaging the kill switch (the account's, the global one, or the drawdown brake's)
  cancels at once the resting orders it covers that are not risk-reducing (`KILL_SWITCH`);
  raising an AML flag, every resting order of the account (`AML_FLAG_OPEN`, as
  ACCOUNT_STATE refuses its new orders): `halt`. Armed stop/take children, which only
  close, stay. As a backstop, under the switch a resting order a print reaches executes
  only if it closes the position without flipping it (what the risk rules call
  risk-reducing), and under a flag it is canceled. A print reaching an account's resting
  orders first engages the brake if the account is down from its peak by the threshold
  (`_brake`).
- Attached stop-loss/take-profit become child orders (one-cancels-other) from the parent's
  first fill on, for its filled quantity, re-armed for the new total at each later fill
  (`_arm`); a trade through the trigger fills a child at the trade price (taker), up to
  what the account then has free (`_child_quantity`) and up to the trade's quantity (what
  the account's resting orders on that side left of it), OCO. A child the trade did not
  fill in full stays triggered and fills at each later trade newer than its last fill,
  whatever its price (a stop is a market order once triggered), up to its quantity; one
  the trade left nothing is recorded as triggered (`OrderTriggered`, `_trigger`) and
  fills likewise from the next trade on. A re-arm replaces a triggered child by one of
  its kind alone, triggered too.
- Self-trade prevention: a print that meets a stop/take child of an account cancels the
  account's resting orders it reaches on the other side (`SELF_TRADE`) rather than fill
  both (the account trading with itself through the tape).
Fill ids, venue trade ids and UTIs are hashes of the order and the market event that
filled it, so reprocessing a market event can never fill an order twice.

Which prints an order meets is a function of the log and the kept prints, not of which
worker read them when: a worker fills only the partitions it owns; the next owner of
partitions matches their resting orders against the kept prints the log does not show as
matched (`catch_up`); and an order decided after prints newer than itself were read meets
them at once (`_meet_kept_prints`). "Not shown as matched" is: newer than the account's
newest maker fill on the instrument and side (`AccountState.maker_fill_at`).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from itertools import islice
from typing import Any, ClassVar

from engine.state import (
    FEE_QUANTUM,
    ONE,
    QUANTUM,
    ZERO,
    EngineState,
    Marks,
    OrderState,
    fee_at_most,
    fee_rounded_down,
    fill_fee,
    maker_key,
    peak_money,
    print_id,
    split_instrument,
)
from engine.trusted import builder
from engine.venue.base import Emit
from schemas import Envelope
from schemas.drawdown import VALUATION, peak_in_money
from schemas.drawdown import drawdown as measured_drawdown
from schemas.events import (
    CancelRequested,
    Fill,
    KillSwitchEngaged,
    Liquidity,
    MarketTrade,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderSubmitted,
    OrderTriggered,
    OrderType,
    PeakEquityRaised,
    Side,
    TimeInForce,
)

QTY_QUANTUM = QUANTUM
"""A child capped by the cash or credit free is rounded down to this (never more than is
free, and no quantity finer than an intent may carry)."""
_accepted = builder(OrderAccepted)
"""The acknowledgement of an order the engine just built: nothing to re-validate."""
UTI_PREFIX = "TTPAPER"


SELF_TRADE = "SELF_TRADE"
"""The reason of a cancel a print makes of an account's resting order when a stop/take
child of the same account trades at that print on the other side (`_match_print`)."""


def _child_meets(o: OrderState, price: Decimal, at: datetime) -> bool | None:
    """Whether a print at `price` (exchange time `at`) meets the stop/take child `o`: True
    if it hits its trigger now, False if `o` was triggered before (filled in part, or
    `OrderTriggered`: a market order now, meeting only prints newer than its last fill or
    its trigger, so a catch-up, which has those in the log, never meets an older print
    again), None if it does not meet it."""
    after = o.fills_after
    if after is not None or o.filled > 0:
        if after is not None and at <= after:
            return None
        return False
    t = o.trigger_price
    if t is None:
        return None
    sell = o.side is Side.SELL
    if o.order_type is OrderType.STOP_LOSS:
        hit = price <= t if sell else price >= t
    else:
        hit = price >= t if sell else price <= t
    return True if hit else None


def priority(order: OrderState) -> tuple[Decimal, datetime, str]:
    """Price-time priority among an account's orders on one side: the better limit first
    (a buy's higher, a sell's lower), then the older, then by id. Which resting orders a
    print fills first (`PaperVenue._match_print`) and which the kill switch keeps
    (`PaperVenue.halt`)."""
    limit = order.limit_price or ZERO
    return (-limit if order.side is Side.BUY else limit, order.submitted_at, order.order_id)


def _h(*parts: str, n: int = 24) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:n]


def uti_for(venue: str, venue_trade_id: str) -> str:
    """Deterministic unique transaction identifier from the venue and its trade id."""
    return UTI_PREFIX + _h(venue, venue_trade_id, n=32).upper()


@dataclass(frozen=True, slots=True)
class _OrdersByLimit:
    """The owned open orders of one instrument, indexed by limit so that a print meets only
    those it can fill: buys by descending limit, sells by ascending limit, and the armed
    stop/take children (few; `_match_print` checks their triggers). Taken for one
    `catch_up`: `EngineState.may_cross` only says whether any open order crosses a print;
    this says which owned ones do."""

    buys: list[OrderState]
    buy_keys: list[Decimal]
    """Negated limits of `buys`, ascending (for bisect)."""
    sells: list[OrderState]
    sell_keys: list[Decimal]
    children: list[OrderState]

    @classmethod
    def of(cls, state: EngineState, instrument: str, owns: Callable[[str], bool]) -> _OrdersByLimit:
        orders = [
            o
            for o in (state.orders[i] for i in state.open_by_instrument.get(instrument, ()))
            if owns(o.account) and not o.done
        ]
        limits = [o for o in orders if o.parent_order_id is None and o.limit_price is not None]
        buys = sorted(
            (o for o in limits if o.side is Side.BUY),
            key=lambda o: (-(o.limit_price or ZERO), o.order_id),
        )
        sells = sorted(
            (o for o in limits if o.side is Side.SELL),
            key=lambda o: (o.limit_price or ZERO, o.order_id),
        )
        children = sorted(
            (o for o in orders if o.parent_order_id is not None), key=lambda o: o.order_id
        )
        return cls(
            buys,
            [-(o.limit_price or ZERO) for o in buys],
            sells,
            [o.limit_price or ZERO for o in sells],
            children,
        )

    def __bool__(self) -> bool:
        return bool(self.buys or self.sells or self.children)

    def crossing(self, price: Decimal) -> list[OrderState]:
        """Buys limited at or above `price`, sells at or below it, and every child."""
        return (
            self.buys[: bisect_right(self.buy_keys, -price)]
            + self.sells[: bisect_right(self.sell_keys, price)]
            + self.children
        )


def _unitize(
    state: EngineState,
    account: str,
    at: datetime,
    emit: Emit,
    marks: Marks | None = None,
    *,
    caught_up: bool = False,
) -> None:
    """The account's pending flows (or equity without units) turned into units at a
    print's valuation (`EngineState.unitization`, `UnitsChanged` caused by the print),
    before it is measured: what its owner could not do when it folded them (no mark).
    Caught up (`catch_up`, at the newest kept print), its id names the units, as a
    caught-up peak's names its value: never the id of a live event at that print."""
    change = state.unitization(account, at, marks)
    if change is not None:
        emit(change, f"units:{account}:{change.units}" if caught_up else f"units:{account}")


def _measure(
    state: EngineState, account: str, at: datetime, emit: Emit
) -> tuple[Decimal | None, Decimal | None]:
    """(equity, NAV per unit) of the account at the prices now, after `_unitize`."""
    if state.units_due(account):
        _unitize(state, account, at, emit)
    equity = state.equity(account)
    return equity, state.nav(account, equity)


class PaperVenue:
    name = "paper"

    def __init__(
        self, maker_fee: Decimal = Decimal("0.0008"), taker_fee: Decimal = Decimal("0.001")
    ) -> None:
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee

    # ---- helpers -------------------------------------------------------------------

    def _fill(
        self,
        state: EngineState,
        order: OrderState,
        qty: Decimal,
        price: Decimal,
        liquidity: Liquidity,
        source: str,
        traded_at: Any,
        emit: Emit,
        peak: tuple[Decimal, Decimal] | None = None,
        quote_id: str | None = None,
    ) -> bool:
        fill_id = "f-" + _h(order.order_id, source)
        if fill_id in order.fill_ids or qty <= 0:
            return False
        rate = self.maker_fee if liquidity is Liquidity.MAKER else self.taker_fee
        fee = fill_fee(qty, price, rate)
        if order.parent_order_id is None:
            # Never more than the taker rate rounded down: a resting buy reserves its leaves
            # x limit x (1 + taker rate) and the balance rule counted the taker fee rounded
            # up once, so a fee rounded half-even past it (a maker fill of 7E-6 at 0.08%:
            # 1E-8, where 7E-9 was reserved) took what nothing reserved, and ten such fills
            # an account with exactly the cash asked for below zero. (A stop/take child is
            # sized by what its cash pays with the fee rounded up, `_affordable`.)
            fee = min(fee, fee_rounded_down(VALUATION.multiply(qty, price), self.taker_fee))
        venue_trade_id = "pt-" + _h(self.name, order.order_id, source)
        emit(
            Fill(
                fill_id=fill_id,
                order_id=order.order_id,
                account=order.account,
                instrument=order.instrument,
                side=order.side,
                quantity=qty,
                price=price,
                fee=fee,
                fee_asset=split_instrument(order.instrument)[1],
                liquidity=liquidity,
                venue=self.name,
                venue_trade_id=venue_trade_id,
                uti=uti_for(self.name, venue_trade_id),
                traded_at=traded_at,
                leaves_quantity=order.leaves - qty,
                peak_equity=None if peak is None else peak[0],
                peak_nav=None if peak is None else peak[1],
                quote_id=quote_id,
            ),
            f"fill:{fill_id}",
        )
        self._arm(state, order, emit)
        return True

    def _end(self, order: OrderState, reason: str, emit: Emit, *, cancel: bool) -> None:
        payload_cls = OrderCanceled if cancel else OrderExpired
        emit(
            payload_cls(
                order_id=order.order_id,
                account=order.account,
                filled_quantity=order.filled,
                leaves_quantity=order.leaves,
                reason=reason,
            ),
            f"end:{order.order_id}",
        )

    def _arm(self, state: EngineState, order: OrderState, emit: Emit) -> None:
        """Arm the attached stop-loss/take-profit for what the parent filled, from its first
        fill on (run after each fill of a parent, and when it ends).

        The children protect the filled quantity as it fills: a parent filled in part (a
        GTC bid filled 1 of 5) has children for that 1 while the rest rests. A later fill
        replaces the open children (`REPLACED`) by a pair for their quantity plus the new
        fill; with none open (never armed, or triggered and done) the new pair covers the
        new fill alone. So at most one pair is open and OCO stays one sibling. An open
        child that was triggered (filled in part, or `OrderTriggered`) is alone (its
        sibling was canceled at the trigger) and is replaced by one of its kind alone,
        triggered as of the same print (`OrderTriggered` naming what it `replaces`): a
        re-arm never turns a stop that was hit back into one waiting for its trigger. What a
        pair was armed for is `OrderState.protected` (folded from the children's
        submission). Ids: the parent, the kind and the filled quantity then."""
        if order.parent_order_id is not None or (
            order.stop_loss is None and order.take_profit is None
        ):
            return
        new = order.filled - order.protected
        if new <= 0:
            return
        open_children = state.open_children(order)
        quantity = new + max((c.leaves for c in open_children), default=ZERO)
        # A triggered child (alone: its sibling was canceled at the trigger, OCO) is
        # replaced by one of its kind alone, triggered as of the same print: a re-arm
        # must not turn a stop that was hit back into one waiting for its trigger.
        hit = next((c for c in open_children if c.filled > 0 or c.fills_after is not None), None)
        for c in open_children:
            self._end(c, "REPLACED", emit, cancel=True)
        filled = str(order.filled)
        for kind, trigger in (
            (OrderType.STOP_LOSS, order.stop_loss),
            (OrderType.TAKE_PROFIT, order.take_profit),
        ):
            if trigger is None or (hit is not None and kind is not hit.order_type):
                continue
            child_id = "o-" + _h(order.order_id, kind.value, filled)
            emit(
                OrderSubmitted(
                    order_id=child_id,
                    account=order.account,
                    producer_id=order.producer_id,
                    strategy_id=order.strategy_id,
                    client_order_id=order.client_order_id,
                    instrument=order.instrument,
                    side=order.side.opposite,
                    order_type=kind,
                    quantity=quantity,
                    trigger_price=trigger,
                    time_in_force=TimeInForce.GTC,
                    venue=self.name,
                    parent_order_id=order.order_id,
                ),
                f"child:{child_id}",
            )
            emit(
                OrderAccepted(
                    order_id=child_id,
                    account=order.account,
                    venue=self.name,
                    venue_order_id=child_id,
                ),
                f"accept:{child_id}",
            )
            if hit is not None:
                after = hit.fills_after
                assert after is not None  # a child that filled has its `last_fill_at`
                self._trigger((child_id, order.account, trigger), None, after, hit.order_id, emit)

    def _child_quantity(self, state: EngineState, child: OrderState, price: Decimal) -> Decimal:
        """What a triggered stop/take child may fill at `price`: its leaves, capped at what
        closes the position without flipping it, and at what the account then has free on
        the balance rule's terms (balance less what the open orders commit of the asset on
        any pair, plus what the account's credit lends of it, `EngineState.credit_headroom`;
        a buy's cash paying the notional and the fee rounded up, `_affordable`).

        Children are armed without a decision, so they may neither add risk nor take what
        an approved order counted on. A child only closes: one of a risk-reducing order
        (a sell with a stop-loss that closes a long) would re-open the position, which the
        kill switch and the brake refuse to a plain order. And the parent's fill may have
        been sold since (a plain sell saw it free) or committed to a resting order. Under
        the kill switch, also at what takes the base asset's holding toward zero without
        flipping it (`_holding_room`, KILL_SWITCH v2's measure). What cannot be filled is
        canceled.
        """
        acc = state.account(child.account)
        limits = state.limits_for(child.account)[1]
        base, quote = split_instrument(child.instrument)
        fee = 1 + self.taker_fee
        if child.side is Side.SELL:
            # The credit's units are a quotient (60 digits): rounded down to the quantity
            # quantum, as a buy child's are (`_affordable`). Unrounded, the fill carried 28
            # significant digits into the balances, whose sums then rounded, and differently
            # in a rebuild, which folds the deposits before the fills (live != rebuilt).
            # Taken at most the leaves before it is rounded: a quotient by a tiny mark
            # has more digits than `quantize` holds (it raised InvalidOperation).
            lent = min(state.credit_headroom(acc, base, fee, limits.credit_limit), child.leaves)
            free = state.free(acc, base, fee) + lent.quantize(QTY_QUANTUM, ROUND_DOWN)
        else:
            cash = state.free(acc, quote, fee) + state.credit_headroom(
                acc, quote, fee, limits.credit_limit
            )
            free = self._affordable(cash, price, child.leaves) if cash > 0 else ZERO
        cap = min(child.leaves, self._closes(state, child), free)
        if state.kill_engaged(child.account):
            # Under the switch (or the brake) it may not take the base asset's holding
            # past zero either, as a resting parent may not (`halt`): the credit lends to
            # a child that closes its pair, not to one that goes short the asset.
            cap = min(cap, self._holding_room(state, child))
        return max(ZERO, cap)

    @staticmethod
    def _brake(
        state: EngineState, account: str, at: datetime, emit: Emit
    ) -> tuple[bool, tuple[Decimal, Decimal] | None]:
        """Engage the drawdown brake if the account, valued at the prices now (this print
        included), is down from its peak by the threshold or more; whether it did, and
        (equity, NAV per unit) if it is a new high (above the peak), which the account's
        fills on this print record (`Fill.peak_nav`) so that the fold raises the peak as
        live.

        Run before a print fills the account's resting orders: the brake is automatic, not
        only looked at when an intent arrives (`engine.processor`), so a strategy gone quiet
        does not keep buying into a fall. The peak is the highest NAV per unit the engine
        valued the account at (DRAWDOWN v6): at its decisions, and here
        (`AccountState.raise_peak`). Flows not yet turned into units are first
        (`_measure`). An account that cannot be valued is left to the rules (its next
        intent: NO_MARK); one that lost its whole peak (`EngineState.lost_in_full`: a flow
        found its capital gone, or no units are left below zero) is braked."""
        equity, nav = _measure(state, account, at, emit)
        if equity is None:
            return False, None
        acc = state.account(account)
        drawdown: Decimal
        if state.lost_in_full(account, equity):
            drawdown = ONE  # the whole peak (DRAWDOWN v7, v8)
        elif nav is None:
            return False, None
        else:
            held = acc.peak_nav
            if nav > held:
                return False, (equity, nav)  # a new high: no drawdown
            if held <= 0:
                return False, None
            drawdown = measured_drawdown(held, nav)
            if drawdown < state.limits_for(account)[1].drawdown_brake_pct:
                return False, None
        emit(
            KillSwitchEngaged(
                scope=account,
                engaged_by="drawdown-brake",
                reason="account drawdown from its peak passed the threshold",
                drawdown=drawdown,
                peak_equity=peak_money(acc),
                equity=equity,
            ),
            f"brake:{account}",
        )
        return True, None

    def halt(self, state: EngineState, account: str, emit: Emit) -> None:
        """Cancel at once what the account's open AML flag or the kill switch over it
        stops (run when either is raised, and by `catch_up` for what a lost transaction
        left open): with a flag, every open order of this venue (`AML_FLAG_OPEN`); under
        the kill switch, every one that is not risk-reducing (`KILL_SWITCH`).

        Risk-reducing is judged per instrument and side on the orders together, in
        price-time priority: they are kept while their leaves added up still close the
        position without flipping it, and take the account's holding of the base asset
        toward zero without flipping it (`_holding_room`, shared by the asset's pairs), so
        what stays resting can never, however it fills, enlarge or flip either. Armed stop/take children stay: they only close,
        capped at the position and what is free (`_child_quantity`), as at a print. A
        canceled parent that filled in part keeps its children for what it filled.
        Orders are visited by id, so a replay emits the same events in the same order.
        """
        acc = state.accounts.get(account)
        if acc is None or not acc.open_orders:
            return
        flagged = bool(acc.aml_flags)
        if not flagged and not state.kill_engaged(account):
            return
        open_ = [
            o
            for o in (state.orders.get(i) for i in sorted(acc.open_orders))
            if o is not None and not o.done and o.parent_order_id is None and o.venue == self.name
        ]
        if flagged:
            stopped = open_
        else:
            kept: set[str] = set()
            groups: dict[tuple[str, Side], list[OrderState]] = {}
            for o in open_:
                groups.setdefault((o.instrument, o.side), []).append(o)
            # The base asset's holding is shared by its pairs: what the kept orders of one
            # pair take toward zero is not there for another's.
            holding: dict[tuple[str, Side], Decimal] = {}
            for (instrument, side), orders in sorted(groups.items()):
                room = self._closes(state, orders[0])
                asset = (split_instrument(instrument)[0], side)
                if asset not in holding:
                    holding[asset] = self._holding_room(state, orders[0])
                orders.sort(key=priority)
                for o in orders:
                    if o.leaves <= room and o.leaves <= holding[asset]:
                        room -= o.leaves
                        holding[asset] -= o.leaves
                        kept.add(o.order_id)
            stopped = [o for o in open_ if o.order_id not in kept]
        reason = "AML_FLAG_OPEN" if flagged else "KILL_SWITCH"
        for o in stopped:
            self._end(o, reason, emit, cancel=True)
            self._arm(state, o, emit)

    def revoke(
        self,
        state: EngineState,
        revocation: Envelope[Any],
        owns: Callable[[str], bool] | None,
        emit: Emit,
        among: Iterable[OrderState] | None = None,
    ) -> None:
        """Cancel (`PRODUCER_REVOKED`) every open parent order of this venue that
        `revocation` cancels (`EngineState.revocation_of`: placed with a key it revoked),
        on every account `owns` holds (run when the revocation is decided or read, and by
        `catch_up` for what a lost transaction left open, even after a rotation brought the
        producer back: never the orders of a key rotated in after it). Fail closed: all of
        them, risk-reducing or not (a compromised key may have placed any). Armed stop/take
        children stay, as under a kill switch: they only close what their parent filled,
        capped at the position (`_child_quantity`). Orders are visited by id, so a replay
        emits the same events in the same order. `among`: the orders to look at, if not
        every order (`processor.catch_up` finds each open order's revocation in one pass)."""
        producer, cause = revocation.payload.producer_id, revocation.event_id
        stopped = sorted(
            (
                o
                for o in (state.orders.values() if among is None else among)
                if o.producer_id == producer
                and not o.done
                and o.parent_order_id is None
                and o.venue == self.name
                and (owns is None or owns(o.account))
                and (found := state.revocation_of(o)) is not None
                and found.event_id == cause
            ),
            key=lambda o: o.order_id,
        )
        for o in stopped:
            self._end(o, "PRODUCER_REVOKED", emit, cancel=True)
            self._arm(state, o, emit)

    @staticmethod
    def _closes(state: EngineState, order: OrderState) -> Decimal:
        """How much of `order`'s side closes the account's position on its instrument
        without flipping it (negative or zero if the side adds to it): the risk rules'
        `RiskContext.risk_reducing` measure."""
        position = state.account(order.account).positions.get(order.instrument, ZERO)
        return position if order.side is Side.SELL else -position

    @staticmethod
    def _holding_room(state: EngineState, order: OrderState) -> Decimal:
        """How much of `order`'s side takes the account's holding of the base asset toward
        zero without flipping it (negative or zero if none): a sell at most what it holds
        less what pending withdrawals hold of it, a buy at most what it is short (on
        credit). With `_closes`, what the risk rules call risk-reducing
        (`RiskContext.risk_reducing`, KILL_SWITCH v2): the position is the pair's, and an
        account long BTC/USDC and short BTC/EURC holding no BTC buys BTC, new risk, with
        an order that closes the BTC/EURC short."""
        acc = state.account(order.account)
        base = split_instrument(order.instrument)[0]
        holding = acc.balances.get(base, ZERO)
        if order.side is Side.SELL:
            return holding - acc.held.get(base, ZERO)
        return -holding

    def _affordable(self, cash: Decimal, price: Decimal, most: Decimal) -> Decimal:
        """The most a buy at `price` can fill (a multiple of `QTY_QUANTUM`, at most `most`,
        on that grid) that `cash` pays for, notional plus the fee rounded up as the fill
        may charge it: cash / (price x (1 + fee)) alone overspends by the fee's rounding.
        The quotient is taken at most `most` before it is rounded: by a tiny price (a print
        at 1E-20) it has more digits than `quantize` holds, which raised InvalidOperation."""
        rate = self.taker_fee
        fee = 1 + rate

        def over(qty: Decimal) -> bool:
            notional = qty * price
            return notional + fee_at_most(notional, rate) > cash

        qty = min(cash / (price * fee), most).quantize(QTY_QUANTUM, ROUND_DOWN)
        if qty > 0 and over(qty):
            # The fee's rounding costs at most one fee quantum: leave that much aside.
            qty = min((cash - FEE_QUANTUM) / (price * fee), most).quantize(QTY_QUANTUM, ROUND_DOWN)
            while qty > 0 and over(qty):
                qty -= QTY_QUANTUM
        return max(qty, ZERO)

    # ---- the Venue interface -------------------------------------------------------

    def submit(self, state: EngineState, order: OrderState, emit: Emit) -> None:
        emit(
            _accepted(
                order_id=order.order_id,
                account=order.account,
                venue=self.name,
                venue_order_id=order.order_id,
            ),
            f"accept:{order.order_id}",
        )
        ps = state.price(order.instrument)
        buy = order.side is Side.BUY
        # The order meets the book in force at its submission (event time), whatever the
        # engine has read of the market since; only an order older than the kept history
        # meets the current book. The risk rules valued it at this same book
        # (`PriceState.book_at`). `submitted_at` is its intent's append time (at most
        # `max_intent_ahead_ms` after it: `processor.order_events_at`), not a time the
        # producer picks: at its own stamp (until session 24) a producer stamping up to
        # 5 s back chose the best quote of those 5 s.
        met = ps.book_at(order.submitted_at)
        touch: Decimal | None = None
        touch_qty = ZERO
        source = f"quote:{ps.quote_id}"
        if met is not None:
            touch = met.ask if buy else met.bid
            # What the account's own orders took of this book already is not there again
            # (`AccountState.taken`; other accounts' orders are not counted: each account
            # trades against the public book on its own, as against prints).
            touch_qty = state.account(order.account).displayed_left(
                order.instrument, order.side, met.quote_id, met.ask_qty if buy else met.bid_qty
            )
            source = f"quote:{met.quote_id}"
        # A fill on submission happens when the order arrives, never before it: the
        # quote it executes against may be older than the order.
        at = max(met.at, order.submitted_at) if met is not None else order.submitted_at
        if order.order_type is OrderType.MARKET:
            marketable = touch is not None and touch_qty > 0
        else:
            limit = order.limit_price
            assert limit is not None
            marketable = touch is not None and (touch <= limit if buy else touch >= limit)
        # Fill-or-kill is all or nothing whatever the order type: a MARKET FOK too
        # (before, it took the displayed size and expired the rest, a partial fill).
        if order.time_in_force is TimeInForce.FOK and (
            not marketable or touch_qty < order.quantity
        ):
            self._end(order, "FOK_NOT_FILLABLE", emit, cancel=False)
        else:
            if marketable and touch is not None:
                qty = min(order.leaves, touch_qty)
                assert met is not None
                self._fill(
                    state, order, qty, touch, Liquidity.TAKER, source, at, emit,
                    quote_id=met.quote_id,
                )  # fmt: skip
            if order.done:
                pass
            elif order.order_type is OrderType.MARKET:
                self._end(order, "MARKET_REMAINDER_NO_LIQUIDITY", emit, cancel=False)
            elif order.time_in_force is not TimeInForce.GTC:
                self._end(order, f"{order.time_in_force.value}_REMAINDER", emit, cancel=False)
        if order.done:
            self._arm(state, order, emit)
        self._meet_kept_prints(state, order, emit)

    def _meet_kept_prints(self, state: EngineState, order: OrderState, emit: Emit) -> None:
        """A resting order, or the stop/take children it just armed, meet the kept prints
        newer than the order, as if it had rested when they were read (the market-data
        consumer runs ahead of a backlog of intents).

        Under `catch_up`'s rule (an order, resting or a child, takes only prints newer than
        its account's newest maker fill on its side, as it stood before this call: that
        side of the account took the older ones, its children only what its resting orders
        left), so a hand-over finds nothing of these prints left to match. Until session
        19 children took any newer print: a print the account's resting orders on their
        side had taken in full was taken again by a child.
        """
        ps = state.price(order.instrument)
        prints = ps.prints
        at = order.submitted_at
        if not prints or prints[-1].occurred_at <= at:
            return  # the usual case: nothing newer than the order has been read
        scan = ps.print_scan()
        start = scan.first_after(at)  # a print, since the newest is newer than the order
        limit, buy = order.limit_price, order.side is Side.BUY

        if (
            not order.done
            and (
                limit is None
                or (scan.min_price[start] > limit if buy else scan.max_price[start] < limit)
            )
            and not state.open_children(order)
        ):
            return  # no newer print crosses the order, and it has no children
        made = state.account(order.account).maker_fill_at
        mark = made.get(maker_key(order.instrument, order.side))
        child_mark = made.get(maker_key(order.instrument, order.side.opposite))
        for event in islice(prints, start, None):
            # The order while it rests (only a print that crosses its limit and is newer
            # than the cut-off), and the children its fills armed (newer than theirs).
            children = state.open_children(order)
            if order.done and not children:
                return
            ts = event.payload.exchange_ts
            meets = children if child_mark is None or ts > child_mark else []
            if not order.done:
                price = event.payload.price
                crosses = limit is not None and (price <= limit if buy else price >= limit)
                if crosses and (mark is None or ts > mark):
                    meets.insert(0, order)
            if meets:
                self._match_print(state, event, meets, emit)

    def cancel(self, state: EngineState, order: OrderState, reason: str, emit: Emit) -> None:
        if order.done:
            # Done: what still works for it is its armed stop/take children.
            for child in state.open_children(order):
                emit(
                    CancelRequested(order_id=child.order_id, account=child.account, reason=reason),
                    f"cancelreq:{child.order_id}",
                )
                self._end(child, reason, emit, cancel=True)
            return
        emit(
            CancelRequested(order_id=order.order_id, account=order.account, reason=reason),
            f"cancelreq:{order.order_id}",
        )
        # Its armed children stay: they protect what it filled (a cancel naming the
        # done parent withdraws them, above).
        self._end(order, reason, emit, cancel=True)
        self._arm(state, order, emit)

    def on_market(
        self,
        state: EngineState,
        event: Envelope[Any],
        emit: Emit,
        owns: Callable[[str], bool] | None = None,
    ) -> None:
        trade = event.payload
        if not isinstance(trade, MarketTrade):
            return  # resting orders fill on prints only; quotes just move the touch
        ids = state.open_by_instrument.get(trade.instrument)
        if ids and state.may_cross(trade.instrument, trade.price):
            orders = [state.orders[i] for i in ids]
            if owns is not None:
                # Only the partitions this worker owns now: between a rebalance's
                # revocation and the next assignment it still holds orders whose next
                # owner will match them (`catch_up`), and a fill here too would put a
                # second copy in the log.
                orders = [o for o in orders if owns(o.account)]
            self._match_print(state, event, orders, emit)
        self.raise_peaks(state, event, emit, owns)

    skip_unchanged: ClassVar[bool] = True
    """`raise_peaks` skips an account whose valuation inputs are those of its last one
    (`EngineState.valued`); False values every holder (for the test that both agree)."""

    @staticmethod
    def raise_peaks(
        state: EngineState,
        event: Envelope[Any],
        emit: Emit,
        owns: Callable[[str], bool] | None = None,
        *,
        caught_up: bool = False,
    ) -> None:
        """Raise the drawdown peak of every owned account holding an asset of the printed
        pair (`EngineState.holding`) that the print (already folded: the marks are the
        new ones) values above it: `PeakEquityRaised`, folded like a decision's peak, so
        a restart keeps it. Run after the print's matching, whose fills record the highs
        of the accounts with resting orders there (`_brake`), so those are not recorded
        twice. Without this the peak was raised only at decisions and at prints reaching
        resting orders: a holding that rose and fell back while the account sent nothing
        was measured from the peak before the rise, and the brake engaged late. A holder
        whose last valuation read the same balances and marks (`Valued.holds`)
        and found at most the peak is not valued again: it cannot be a new high.

        Only prints, not quotes, and only the holders of the printed pair's two assets: a
        mark moved through a cross (an asset valued via a stablecoin pair whose own mark
        the print moved) is caught at the account's next valuation. After a hand-over the
        prints read while no worker owned the account, or whose transaction was lost, are
        not valued one by one (their marks are gone): `catch_up` values the holders once,
        at the marks then (`caught_up`), as caused by the newest kept print; its event's
        id names the value too, since the live worker may have raised the peak at that
        print already, to a lower value, under the print's id for the account (before
        session 19 the catch-up reused that id: two events of one id on the log)."""
        trade: MarketTrade = event.payload
        base, quote = split_instrument(trade.instrument)
        accounts = state.holding(base) | state.holding(quote)
        if not accounts:
            return
        at = event.occurred_at
        valued = state.valued
        marks: Marks = {}  # the prices do not move while the holders are valued
        # Whether to look for unchanged valuations (either way the same events): after a
        # print that moved its pair's reference (most holders' marks differ then) every
        # holder is valued as before, without the check or the record (`valued` keeps
        # what it had; a stale entry just fails `holds`).
        ps = state.prices.get(trade.instrument)
        ref = ps.reference() if ps is not None else None
        now = ref[0] if ref is not None else None
        memo = PaperVenue.skip_unchanged and (
            trade.instrument in state.valued_prints and state.valued_prints[trade.instrument] == now
        )
        state.valued_prints[trade.instrument] = now
        for account in sorted(accounts):
            if owns is not None and not owns(account):
                continue
            acc = state.accounts[account]
            if state.units_due(account):
                _unitize(state, account, at, emit, marks, caught_up=caught_up)
            reset = acc.peak_reset_at
            if reset is not None and at < reset:
                continue  # the fold would not raise it (`AccountState.raise_peak`)
            if memo:
                seen = valued.get(account)
                if (
                    seen is not None
                    and (seen.measure is None or seen.measure <= acc.peak_nav)
                    and seen.holds(state, acc, marks)
                ):
                    # Valued from the same balances and marks before, at or
                    # below the peak now: the same measure, no new high (a repeated
                    # price, the usual print). Exact: nothing skipped could be a high.
                    continue
                seen = valued[account] = state.valuation(account, marks)
                nav = seen.measure
            else:
                # The peak is of NAV per unit (DRAWDOWN v6), as `_brake`'s.
                nav = state.nav(account, state.equity(account))
            if nav is not None and nav > acc.peak_nav:
                emit(
                    PeakEquityRaised(
                        account=account,
                        instrument=trade.instrument,
                        peak_equity=peak_in_money(nav, acc.units),
                        peak_nav=nav,
                    ),
                    f"peak:{account}:{nav}" if caught_up else f"peak:{account}",
                )

    def catch_up(
        self,
        state: EngineState,
        owns: Callable[[str], bool],
        emit_for: Callable[[Envelope[Any]], Emit],
    ) -> None:
        """Match the owned resting orders against the kept prints the log does not show
        as matched: a resting order takes only prints newer than its account's newest maker
        fill on that instrument and side (`AccountState.maker_fill_at`, as it stood before
        this call); an armed stop/take child any print newer than itself and than that
        cut-off on its side (session 19: before, one the account's resting orders on that
        side had taken in full live, leaving the child nothing, filled it again), one
        triggered (filled in part, or `OrderTriggered`) only prints newer than its last
        fill or its trigger (`OrderState.fills_after`).

        Run by a worker after it rebuilt or took over partitions. Prints read while no
        worker owned them, or matched by a worker that died before its transaction
        committed, are then matched by the new owner in the order read, as the live path
        matches them (same fill and event ids: `emit_for` stamps each fill as caused by its
        print). A print no newer than the cut-off is never matched again, so no print's
        size is taken twice by one account and side; the price: a print in the same
        millisecond as the cut-off, which the log cannot tell apart from the one that
        filled, and an older print that same account and side did not take (the log does
        not say which prints an account took, only until when) are not matched.
        """
        for instrument in sorted(state.prices):
            prints = state.prices[instrument].prints
            if not prints:
                continue
            resting = _OrdersByLimit.of(state, instrument, owns)
            marks: dict[tuple[str, Side], datetime | None] = {}
            for event in list(prints):
                if not resting:
                    break
                trade: MarketTrade = event.payload
                eligible = []
                for o in resting.crossing(trade.price):
                    if o.done:
                        continue
                    # A child too: at a print no newer than its account's newest maker fill
                    # on its side, the live worker matched that side of the account, the
                    # resting orders first and the children what they left (nothing, if
                    # they took it all; a child that got some has its `last_fill_at`).
                    k = (o.account, o.side)
                    if k not in marks:
                        marks[k] = state.account(o.account).maker_fill_at.get(
                            maker_key(instrument, o.side)
                        )
                    mark = marks[k]
                    if mark is not None and trade.exchange_ts <= mark:
                        continue
                    eligible.append(o)
                if not eligible:
                    continue
                applied = state.applied
                self._match_print(state, event, eligible, emit_for(event))
                if state.applied != applied:
                    # Fills may have armed stop/take children: they meet the next prints.
                    resting = _OrdersByLimit.of(state, instrument, owns)
        # The holders' peaks, valued once at the marks now, as caused by each pair's newest
        # kept print (ids naming the value: live valuation at that print may have raised
        # the peak to less under the print's id): what the gap's prints raised one by one
        # is not known any more (their marks are gone).
        for instrument in sorted(state.prices):
            prints = state.prices[instrument].prints
            if prints:
                self.raise_peaks(state, prints[-1], emit_for(prints[-1]), owns, caught_up=True)

    def _match_print(
        self, state: EngineState, event: Envelope[Any], orders: list[OrderState], emit: Emit
    ) -> None:
        trade = event.payload
        source = print_id(trade)
        price = trade.price
        armed = {o.order_id for o in orders if o.parent_order_id is not None and not o.done}
        # Self-trade prevention: the (account, side) of each stop/take child this print
        # meets (triggers, or fills as triggered before). The account's resting orders on
        # the other side that the print reaches are canceled, not filled: both trading at
        # one print is the account buying from and selling to itself through the tape.
        childs_sides = {
            (o.account, o.side)
            for o in orders
            if o.parent_order_id is not None
            and not o.done
            and o.submitted_at < event.occurred_at
            and _child_meets(o, price, trade.exchange_ts) is not None
        }
        left: dict[tuple[str, Side], Decimal] = {}
        """What the print's size still holds for an account and side (as for makers, each
        account's orders on their own): its resting orders take first, then its children."""
        # Resting limit orders, price-time priority, each side against the print's size:
        # each account's orders on their own (see the module docstring).
        for side in (Side.BUY, Side.SELL):
            by_account: dict[str, list[OrderState]] = {}
            for o in orders:
                if (
                    o.side is side
                    and o.order_type is OrderType.LIMIT
                    and not o.done
                    and o.parent_order_id is None
                    and o.limit_price is not None
                    and o.submitted_at < event.occurred_at
                    and (price <= o.limit_price if side is Side.BUY else price >= o.limit_price)
                ):
                    by_account.setdefault(o.account, []).append(o)
            for account in sorted(by_account):
                crossing = by_account[account]
                killed = state.kill_engaged(account)
                high: tuple[Decimal, Decimal] | None = None
                if not killed:
                    killed, high = self._brake(state, account, event.occurred_at, emit)
                    if killed:
                        self.halt(state, account, emit)  # every resting order, not these only
                flagged = bool(state.account(account).aml_flags)
                crossing.sort(key=priority)
                remaining = trade.quantity
                for o in crossing:
                    if remaining <= 0:
                        break
                    if o.done:
                        continue  # canceled by the brake just engaged (`halt`)
                    assert o.limit_price is not None
                    if flagged:
                        # An open AML flag refuses every new order (ACCOUNT_STATE): the
                        # account's resting ones do not trade either.
                        self._end(o, "AML_FLAG_OPEN", emit, cancel=True)
                        self._arm(state, o, emit)
                        continue
                    if killed and (
                        o.leaves > self._closes(state, o) or o.leaves > self._holding_room(state, o)
                    ):
                        # Under the kill switch (or the brake) only risk-reducing orders
                        # execute: one approved before it was engaged that would add to
                        # the position or the base asset's holding, or flip either, is
                        # canceled when a print reaches it.
                        self._end(o, "KILL_SWITCH", emit, cancel=True)
                        self._arm(state, o, emit)
                        continue
                    if (account, side.opposite) in childs_sides:
                        # A stop/take child of the account trades at this print on the
                        # other side: the child (protection, a market order once hit)
                        # goes, the resting order is canceled (cancel-resting STP).
                        self._end(o, SELF_TRADE, emit, cancel=True)
                        self._arm(state, o, emit)
                        continue
                    qty = min(o.leaves, remaining)
                    if self._fill(
                        state,
                        o,
                        qty,
                        o.limit_price,
                        Liquidity.MAKER,
                        source,
                        trade.exchange_ts,
                        emit,
                        high,
                    ):
                        remaining -= qty
                    if o.done:
                        self._arm(state, o, emit)
                left[(account, side)] = remaining
        # Armed children: a print through the trigger fills them (as far as free, up to
        # the print's size), OCO; a child that filled in part, or that the print left
        # nothing (`OrderTriggered`), stays triggered and fills at each later print,
        # whatever its price. A pair a parent's fill on this print
        # replaced (`_arm`) is met by its replacement, which covers that fill too: the old
        # pair was armed before the print.
        children: dict[str, tuple[OrderState, datetime]] = {}
        for o in orders:
            if o.parent_order_id is None:
                continue
            if not o.done:
                children.setdefault(o.order_id, (o, o.submitted_at))
            elif o.order_id in armed:
                parent = state.orders.get(o.parent_order_id)
                for c in (state.orders.get(i) for i in (parent.children if parent else [])):
                    if c is not None and not c.done and c.order_id not in armed:
                        children[c.order_id] = (c, o.submitted_at)
        for o, since in (children[k] for k in sorted(children)):
            if o.done or o.trigger_price is None:
                continue  # done: its sibling filled on this print (OCO)
            if since >= event.occurred_at:
                continue
            meets = _child_meets(o, price, trade.exchange_ts)
            if meets is None:
                continue
            triggered = meets
            size = left.get((o.account, o.side), trade.quantity)
            if size <= 0:
                # The account's resting orders on that side took the whole print. Hit now,
                # the child stays triggered (a market order from the next print on, as a
                # venue's stop once hit), which the log must say: its state is folded from
                # the engine's outputs, and no fill records this trigger. Before session 19
                # nothing did, and a price back past the trigger left the stop unfilled.
                if triggered:
                    assert o.trigger_price is not None
                    child = (o.order_id, o.account, o.trigger_price)
                    self._trigger(child, price, trade.exchange_ts, None, emit)
                    self._oco(state, o, emit)
                continue
            cap = self._child_quantity(state, o, price)
            qty = min(cap, size)
            if qty > 0:
                if not self._fill(
                    state, o, qty, price, Liquidity.TAKER, source, trade.exchange_ts, emit
                ):
                    continue  # this print filled it already
                left[(o.account, o.side)] = size - qty
                if not o.done and cap <= size:
                    # Capped by what the account has free or holds, not by the print.
                    self._end(o, "CHILD_CAPPED", emit, cancel=True)
            else:
                self._end(o, "CHILD_CAPPED", emit, cancel=True)
            self._oco(state, o, emit)

    def _oco(self, state: EngineState, child: OrderState, emit: Emit) -> None:
        """Cancel the open siblings of a child that was triggered (`OCO`)."""
        parent = state.orders.get(child.parent_order_id or "")
        for sib_id in parent.children if parent else []:
            sib = state.orders.get(sib_id)
            if sib is not None and not sib.done and sib is not child:
                emit(
                    CancelRequested(order_id=sib.order_id, account=sib.account, reason="OCO"),
                    f"cancelreq:{sib.order_id}",
                )
                self._end(sib, "OCO", emit, cancel=True)

    @staticmethod
    def _trigger(
        child: tuple[str, str, Decimal],
        price: Decimal | None,
        at: datetime,
        replaces: str | None,
        emit: Emit,
    ) -> None:
        """Record that the child (order id, account, trigger) is triggered, as of the print
        time `at` (`OrderTriggered`, folded into `OrderState.triggered_at`): from then on it
        fills at each print newer than that, whatever its price. Its id: the child's and
        the cause's (a child is triggered once)."""
        order_id, account, trigger = child
        emit(
            OrderTriggered(
                order_id=order_id,
                account=account,
                trigger_price=trigger,
                price=price,
                triggered_at=at,
                replaces=replaces,
            ),
            f"trigger:{order_id}",
        )
