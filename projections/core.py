"""The core projections: orders, fills, positions and PnL, balances, risk, drawdown, dead
letters, accounts.

Every handler is a pure function of the event and the current rows it reads. Handlers
read the event's validated JSON values (`Located.data`: decimals, timestamps and ids as
canonical strings, see projections/lean.py) and write them through unchanged; only
amounts that take part in arithmetic become `Decimal`. Positions keep an exact cost
basis; the two divisions (the share of it a partial close takes, and the average cost
shown) are rounded in a fixed context (`_RATIO`, projections/money.py) so a rebuild
reproduces them exactly, and the first only moves cost between realized and unrealized
PnL, never loses it. Every other sum, difference and product goes through `_EXACT`
(projections/money.py), never the thread's ambient decimal context (28 digits by
default, and anybody's to change): exact, so the rows cannot depend on that context or
be rounded silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from projections.framework import (
    INT4,
    INT8,
    Key,
    Located,
    Projection,
    SkipEvent,
    State,
    Table,
    WriteMode,
    fits_column,
)
from projections.money import EXACT as _EXACT
from projections.money import RATIO as _RATIO
from schemas.drawdown import (
    add_peak,
    drawdown,
    lost_in_full,
    nav_per_unit,
    peak_in_money,
    peak_since,
)
from schemas.events.risk import GLOBAL_SCOPE
from schemas.events.transfers import TransferCheckOutcome
from schemas.registry import event_types_for
from schemas.serde import canonical_json
from schemas.topics import Topic
from schemas.types import format_decimal

ZERO = Decimal(0)
ONE = Decimal(1)


def _json(data: Any) -> str:
    return canonical_json(data).decode()


def _jsonb(data: Any) -> str:
    """JSON text for a jsonb column: jsonb stores the value, not the text (and the
    checksum renders it with sorted keys), so orjson's text is as good as the canonical
    one at a twentieth of the cost."""
    return orjson.dumps(data).decode()


def _payload_json(item: Located) -> str:
    """The payload as JSON text for `order_events.detail` (json since 0125: stored as this
    text, the same bytes live and rebuilt; the checksum renders its value as jsonb, with
    sorted keys)."""
    return orjson.dumps(item.payload).decode()


def _ts_text(value: Any) -> str:
    """A timestamp as an event carries it (`YYYY-MM-DDThh:mm:ss.ffffffZ`, which orders as
    text): as it is if it came from an event, else (a stored timestamptz) rendered so."""
    if isinstance(value, str):
        return value
    stored: datetime = value
    return stored.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _v1(*types: str) -> frozenset[str]:
    return frozenset(f"{t}/1" for t in types)


def _dec(value: Any) -> Decimal:
    """An amount for arithmetic: a canonical string from an event, or a stored value."""
    return value if isinstance(value, Decimal) else Decimal(value)


# --------------------------------------------------------------------------- orders
ORDER_COLUMNS = (
    "order_id",
    "account",
    "producer_id",
    "strategy_id",
    "client_order_id",
    "instrument",
    "side",
    "order_type",
    "quantity",
    "limit_price",
    "trigger_price",
    "time_in_force",
    "venue",
    "parent_order_id",
    "decision_event_id",
    "status",
    "filled_quantity",
    "filled_notional",
    "leaves_quantity",
    "venue_order_id",
    "reason",
    "event_count",
    "created_at",
    "updated_at",
    "last_event_id",
)
_OI = {c: i for i, c in enumerate(ORDER_COLUMNS)}
_SUBMITTED_COPY = ORDER_COLUMNS[: _OI["status"]]
"""The columns an `OrderSubmitted` sets, each from its payload's field of that name: every
column before `status` (the submitted order as it was asked for)."""
_SUBMITTED_AT = tuple((_OI[c], c) for c in _SUBMITTED_COPY)
_N_ORDER = len(ORDER_COLUMNS)
_STATUS, _FILLED_QTY, _FILLED_NOTIONAL, _LEAVES = (
    _OI["status"], _OI["filled_quantity"], _OI["filled_notional"], _OI["leaves_quantity"]
)  # fmt: skip
_VENUE_ORDER_ID, _REASON, _COUNT = _OI["venue_order_id"], _OI["reason"], _OI["event_count"]
_QUANTITY, _ACCOUNT = _OI["quantity"], _OI["account"]
_CREATED, _UPDATED, _LAST_EVENT = _OI["created_at"], _OI["updated_at"], _OI["last_event_id"]
_TERMINAL = frozenset(("FILLED", "CANCELED", "EXPIRED", "REJECTED", "OVERFILLED"))
"""Order statuses nothing leaves (but an overfill), with leaves_quantity 0: a fill that
raced a cancel (or a cancel confirmation that raced the last fill) arrives after one and
adds to the filled quantity and notional only."""
ORDER_STATUSES = (
    "SUBMITTED", "ACCEPTED", "TRIGGERED", "PARTIALLY_FILLED", "PENDING_CANCEL", *sorted(_TERMINAL)
)  # fmt: skip
"""Every status `OrdersProjection` gives an order (what the `orders` query filters on)."""
OVERFILL_REASON = "OVERFILL: the fills exceed the order's quantity"
"""The reason of an OVERFILLED order: its fills add up to more than it ordered (a venue
overfill). Any fill that does so makes an order OVERFILLED, whatever its status was."""
_ORDER_TYPES = (
    "OrderSubmitted",
    "OrderAccepted",
    "OrderRejected",
    "CancelRequested",
    "OrderCanceled",
    "OrderExpired",
    "OrderTriggered",
    "Fill",
)


class OrdersProjection(Projection):
    """Current state of every order, and its full event history."""

    name = "orders"
    topics = (Topic.ORDERS,)
    orders = Table("orders", ORDER_COLUMNS, ("order_id",), WriteMode.UPSERT, stateful=True)
    history = Table(
        "order_events",
        ("event_id", "order_id", "account", "event_type", "status", "occurred_at", "detail"),
        ("event_id",),
    )
    tables = (orders, history)
    handles = _v1(*_ORDER_TYPES)
    migrations = ("0101_proj_orders.sql", "0125_order_events_detail_json.sql")
    partition_local = True  # an order's events all carry its account, the topic's key
    seen_table = "order_events"  # one row per folded event
    fold_version = 5
    """2: a partial fill keeps PENDING_CANCEL (it made PARTIALLY_FILLED). 3: a canceled or
    expired order's leaves_quantity is 0 (it kept the remainder the end took off).
    4: an order its fills overfill is OVERFILLED (it showed FILLED, or PARTIALLY_FILLED
    with open quantity, beside a filled quantity past the order's). 5: a stop/take child
    triggered with nothing filled (`OrderTriggered`) is TRIGGERED (the type was not
    folded: quarantined)."""

    def state_keys(self, events: Sequence[Located]) -> Mapping[str, set[Key]]:
        keys: set[Key] = {(str(e.payload.get("order_id", "")),) for e in events}
        return {"orders": keys}

    def handle(self, state: State, item: Located) -> None:
        d = item.data
        p = d["payload"]
        t = d["event_type"]
        oid = p["order_id"]
        key = (oid,)
        cur = state.get(self.orders, key)
        if t == "OrderSubmitted":
            if cur is not None:
                raise SkipEvent(f"order {oid} submitted twice")
            row: list[Any] = [None] * _N_ORDER
            for at, col in _SUBMITTED_AT:
                row[at] = p[col]
            row[_STATUS] = "SUBMITTED"
            row[_FILLED_QTY] = ZERO
            row[_FILLED_NOTIONAL] = ZERO
            row[_LEAVES] = p["quantity"]
            row[_COUNT] = 0
            row[_CREATED] = d["occurred_at"]
        else:
            if cur is None or cur[_ACCOUNT] != p["account"]:
                # Another account's event (on another partition) is for an order that
                # account never placed: the same refusal whichever partition came first.
                raise SkipEvent(f"{t} for unknown order {oid}")
            row = list(cur)
            if t == "Fill":
                qty, price = Decimal(p["quantity"]), Decimal(p["price"])
                filled = row[_FILLED_QTY] = _EXACT.add(_dec(row[_FILLED_QTY]), qty)
                row[_FILLED_NOTIONAL] = _EXACT.add(
                    _dec(row[_FILLED_NOTIONAL]), _EXACT.multiply(qty, price)
                )
                if filled > _dec(row[_QUANTITY]):
                    # A venue overfill: stored (filled is the sum of the fills, which the
                    # fills, positions and balances count, as the engine does) and flagged.
                    row[_STATUS] = "OVERFILLED"
                    row[_LEAVES] = ZERO
                    row[_REASON] = OVERFILL_REASON
                elif row[_STATUS] not in _TERMINAL:
                    leaves = p["leaves_quantity"]
                    row[_LEAVES] = leaves
                    if Decimal(leaves) == 0:
                        row[_STATUS] = "FILLED"
                    elif row[_STATUS] != "PENDING_CANCEL":  # a cancel is still outstanding
                        row[_STATUS] = "PARTIALLY_FILLED"
            elif t == "OrderAccepted":
                row[_VENUE_ORDER_ID] = p["venue_order_id"]
                if row[_STATUS] == "SUBMITTED":
                    row[_STATUS] = "ACCEPTED"
            elif row[_STATUS] in _TERMINAL:
                pass  # a late reject, cancel or expiry: recorded in the history only
            elif t == "OrderRejected":
                row[_STATUS] = "REJECTED"
                row[_REASON] = p["reason"]
                row[_LEAVES] = ZERO
            elif t == "OrderTriggered":
                # A stop/take child whose trigger a print crossed, nothing filled yet: a
                # market order now (a fill makes it PARTIALLY_FILLED or FILLED).
                if row[_STATUS] in ("SUBMITTED", "ACCEPTED"):
                    row[_STATUS] = "TRIGGERED"
            elif t == "CancelRequested":
                if row[_STATUS] in ("SUBMITTED", "ACCEPTED", "TRIGGERED", "PARTIALLY_FILLED"):
                    row[_STATUS] = "PENDING_CANCEL"
                row[_REASON] = p["reason"]
            elif t in ("OrderCanceled", "OrderExpired"):
                row[_STATUS] = "CANCELED" if t == "OrderCanceled" else "EXPIRED"
                # Nothing is open for execution any more (FIX LeavesQty); what the end
                # took off (its `leaves_quantity`) stays in the order's history.
                row[_LEAVES] = ZERO
                row[_REASON] = p["reason"]
        row[_COUNT] = int(row[_COUNT]) + 1
        at = d["occurred_at"]
        row[_UPDATED] = at
        row[_LAST_EVENT] = d["event_id"]
        state.put(self.orders, tuple(row), key)
        state.insert(
            self.history,
            (d["event_id"], oid, p["account"], t, row[_STATUS], at, _payload_json(item)),
        )


# --------------------------------------------------------------------------- fills
class FillsProjection(Projection):
    """Every execution, keyed on its event id."""

    name = "fills"
    topics = (Topic.ORDERS,)
    fills = Table(
        "fills",
        (
            "event_id",
            "fill_id",
            "order_id",
            "account",
            "instrument",
            "side",
            "quantity",
            "price",
            "notional",
            "fee",
            "fee_asset",
            "liquidity",
            "venue",
            "venue_trade_id",
            "uti",
            "traded_at",
            "leaves_quantity",
            "occurred_at",
            "quote_id",
        ),
        ("event_id",),
    )
    tables = (fills,)
    handles = _v1("Fill")
    ignores = frozenset(t for t in _ORDER_TYPES if t != "Fill")
    migrations = ("0102_proj_fills.sql", "0118_fills_quote_id.sql")
    fold_version = 2
    """2: the quote a taker fill took (`quote_id`; NULL in every row before)."""
    partition_local = True  # no state: only its event ids, on the partition of their account
    seen_table = "fills"  # one row per folded event

    def handle(self, state: State, item: Located) -> None:
        d = item.data
        p = d["payload"]
        state.insert(
            self.fills,
            (
                d["event_id"], p["fill_id"], p["order_id"], p["account"], p["instrument"],
                p["side"], p["quantity"], p["price"],
                _EXACT.multiply(Decimal(p["quantity"]), Decimal(p["price"])),
                p["fee"], p["fee_asset"], p["liquidity"], p["venue"], p["venue_trade_id"],
                p["uti"], p["traded_at"], p["leaves_quantity"], d["occurred_at"],
                p["quote_id"],
            ),
        )  # fmt: skip


# --------------------------------------------------------------------------- positions
POSITION_COLUMNS = (
    "account",
    "instrument",
    "quantity",
    "avg_cost",
    "realized_pnl",
    "fees_quote",
    "fill_count",
    "last_event_id",
    "updated_at",
    "fees_other",
    "cost_basis",
)


def _add_fee(fees_other: Any, asset: str, fee: Decimal) -> str:
    """`fees_other` (jsonb: asset -> exact decimal text) with `fee` added to `asset`."""
    held = orjson.loads(fees_other) if isinstance(fees_other, str) else dict(fees_other or {})
    held[asset] = format_decimal(_EXACT.add(Decimal(held.get(asset, "0")), fee))
    return orjson.dumps(held, option=orjson.OPT_SORT_KEYS).decode()


def apply_fill(
    quantity: Decimal, cost: Decimal, realized: Decimal, signed_qty: Decimal, price: Decimal
) -> tuple[Decimal, Decimal, Decimal]:
    """Average-cost method on an exact cost basis: (new quantity, new cost basis, new
    realized PnL).

    `cost` is the signed cost of the open position (quantity * average cost: negative
    for a short). Adding to a position (or opening one) adds `signed_qty * price` to it;
    reducing takes the closed units' share of it, `cost * closed / |quantity|` (all of
    it when the position closes, so nothing is left over by rounding), and realizes the
    closing trade's cash flow minus that share; crossing through zero opens the
    remainder at `price`. Cost only moves between the basis and realized PnL, so
    realized + (quantity * mark - cost) is exactly the cash flow + quantity * mark.
    """
    new_qty = _EXACT.add(quantity, signed_qty)
    if quantity == 0 or (quantity > 0) == (signed_qty > 0):
        return new_qty, _EXACT.add(cost, _EXACT.multiply(signed_qty, price)), realized
    closed = min(signed_qty.copy_abs(), quantity.copy_abs())
    share = (
        cost
        if closed == quantity.copy_abs()
        else _RATIO.divide(_EXACT.multiply(cost, closed), quantity.copy_abs())
    )
    # the closing trade: sells `closed` of a long (cash in) or buys back a short (out)
    cash = _EXACT.multiply(closed, price)
    flow = cash if quantity > 0 else _EXACT.minus(cash)
    realized = _EXACT.add(realized, _EXACT.subtract(flow, share))
    cost = _EXACT.subtract(cost, share)
    if new_qty != 0 and (new_qty > 0) != (quantity > 0):  # through zero: the rest opens
        cost = _EXACT.multiply(new_qty, price)
    return new_qty, cost, realized


def average_cost(quantity: Decimal, cost: Decimal) -> Decimal:
    """What the position's units cost on average (shown; never used in the fold): 0 when
    flat, else `cost / quantity` to 28 significant digits."""
    return ZERO if quantity == 0 else _RATIO.divide(cost, quantity)


class PositionsProjection(Projection):
    """Positions with average cost and realized PnL, the last mark, and PnL (a view)."""

    name = "positions"
    topics = (Topic.ORDERS, Topic.MARKETDATA)
    positions = Table(
        "positions", POSITION_COLUMNS, ("account", "instrument"), WriteMode.UPSERT, stateful=True
    )
    marks = Table(
        "marks",
        ("instrument", "price", "source", "venue", "exchange_ts", "event_id", "occurred_at"),
        ("instrument",),
        WriteMode.UPSERT,
        stateful=True,
    )
    tables = (positions, marks)
    handles = _v1("Fill", "MarketTrade", "QuoteUpdated")
    ignores = FillsProjection.ignores
    migrations = (
        "0103_proj_positions.sql",
        "0110_pnl_missing_mark.sql",
        "0111_positions_fees_other.sql",
        "0113_positions_cost_basis.sql",
        "0114_marks_newest.sql",
        "0115_pnl_flat_unrealized.sql",
    )
    fold_version = 3
    """2: an exact cost basis (the average cost was rounded to 18 places). 3: the mark is
    the newer of the last trade and mid by event time, as the engine's reference price (a
    print stamped before the mark replaced it)."""

    def state_keys(self, events: Sequence[Located]) -> Mapping[str, set[Key]]:
        keys: set[Key] = set()
        marks: set[Key] = set()
        for e in events:
            p = e.payload
            # Any record decoded for it may come here, also one of a type it quarantines
            # (a DepositReceived on marketdata.events): this must not fail on it, or the
            # whole live batch fails and is re-read forever.
            inst = p.get("instrument")
            if inst is None:
                continue
            if e.data["event_type"] == "Fill":
                if "account" in p:
                    keys.add((p["account"], inst))
            else:
                marks.add((inst,))
        return {"positions": keys, "marks": marks}

    def _mark(self, state: State, item: Located, price: Any, source: str) -> None:
        """Make (price, source) the instrument's mark unless the mark is newer: the
        engine's reference price (`engine.state.PriceState.reference`) is the newer by
        event time of the last trade and the last mid, the trade on a tie, and a print
        older than the last of its kind is ignored. That is a function of the mark alone:
        a trade replaces it when at least as new, a mid when newer (or as new as a mid)."""
        d = item.data
        p = d["payload"]
        key = (p["instrument"],)
        at = d["occurred_at"]
        cur = state.get(self.marks, key)
        if cur is not None and cur[6] is not None:
            held = _ts_text(cur[6])
            if at < held or (at == held and source == "MID" and cur[2] == "TRADE"):
                return
        state.put(
            self.marks,
            (p["instrument"], price, source, p["venue"], p["exchange_ts"], d["event_id"], at),
            key,
        )

    def handle(self, state: State, item: Located) -> None:
        d = item.data
        p = d["payload"]
        t = d["event_type"]
        if t == "MarketTrade":
            self._mark(state, item, p["price"], "TRADE")
            return
        if t == "QuoteUpdated":
            # Halving always terminates: exact, one digit longer at most.
            mid = _EXACT.divide(_EXACT.add(Decimal(p["bid_price"]), Decimal(p["ask_price"])), 2)
            self._mark(state, item, mid, "MID")
            return
        key = (p["account"], p["instrument"])
        cur = state.get(self.positions, key)
        qty, cost, realized, fees, count, other = (
            (ZERO, ZERO, ZERO, ZERO, 0, "{}")
            if cur is None
            else (cur[2], cur[10], cur[4], cur[5], cur[6], cur[9])
        )
        quantity, price = Decimal(p["quantity"]), Decimal(p["price"])
        signed = quantity if p["side"] == "BUY" else _EXACT.minus(quantity)
        qty, cost, realized = apply_fill(_dec(qty), _dec(cost), _dec(realized), signed, price)
        fees, fee, fee_asset = _dec(fees), Decimal(p["fee"]), p["fee_asset"]
        base, quote = p["instrument"].split("/")
        if fee == 0:
            pass
        elif fee_asset == quote:
            fees = _EXACT.add(fees, fee)
        elif fee_asset == base:
            # Paid out of the position (as balances takes it off the base balance): those
            # units leave at the fill price, realizing against the average cost, and
            # their value at that price is a fee in quote terms.
            qty, cost, realized = apply_fill(qty, cost, realized, _EXACT.minus(fee), price)
            fees = _EXACT.add(fees, _EXACT.multiply(fee, price))
        else:  # no price for it is assumed: kept per asset, beside the PnL
            other = _add_fee(other, fee_asset, fee)
        state.put(
            self.positions,
            (
                p["account"], p["instrument"], qty, average_cost(qty, cost), realized, fees,
                int(count) + 1, d["event_id"], d["occurred_at"], other, cost,
            ),
        )  # fmt: skip


# --------------------------------------------------------------------------- balances
_TRANSFER_STEP = {
    "TransferRequested": 0, "TransferChecked": 1, "TransferReleased": 2, "TransferSettled": 3
}  # fmt: skip
"""The order of a transfer's steps: its status only moves forward through them."""
_TRANSFER_RANK = {
    "REQUESTED": 0,
    **{f"CHECKED_{o}": 1 for o in TransferCheckOutcome},
    "RELEASED": 2,
    "SETTLED": 3,
}
"""The step each transfer status stands at (`_TRANSFER_STEP`)."""
_TRANSFER_STATUS = {"TransferReleased": "RELEASED", "TransferSettled": "SETTLED"}


class BalancesProjection(Projection):
    """Balance per account and asset: deposits, fills (both legs and fee), withdrawals."""

    name = "balances"
    topics = (Topic.ORDERS, Topic.TRANSFERS, Topic.TRANSFER_CHECKS, Topic.ACCOUNTS)
    balances = Table(
        "balances",
        ("account", "asset", "amount", "movement_count"),
        ("account", "asset"),
        WriteMode.UPSERT,
        stateful=True,
    )
    movements = Table(
        "movements",
        ("event_id", "leg", "account", "asset", "amount", "kind", "reference", "occurred_at"),
        ("event_id", "leg"),
    )
    transfers = Table(
        "transfers",
        ("transfer_id", "account", "asset", "amount", "status", "last_event_id", "updated_at"),
        ("account", "transfer_id"),
        WriteMode.UPSERT,
        stateful=True,
    )
    deposits = Table(
        "deposits",
        ("account", "deposit_id", "asset", "amount", "event_id", "occurred_at"),
        ("account", "deposit_id"),
        WriteMode.UPSERT,
        stateful=True,
    )
    checks = Table(
        "transfer_checks",
        ("account", "transfer_id", "outcome", "event_id", "occurred_at"),
        ("account", "transfer_id"),
        WriteMode.UPSERT,
        stateful=True,
    )
    """The newest travel-rule check read of each withdrawal (transfers.checks): the
    checks and the requests are two topics read in no fixed order (session 27), so a
    check read before its request waits here and the request folds it (fold version 7)."""
    tables = (balances, movements, transfers, deposits, checks)
    handles = _v1(
        "Fill",
        "DepositReceived",
        "TransferRequested",
        "TransferChecked",
        "TransferReleased",
        "TransferSettled",
    ) | {"TransferRequested/2"}  # v2 adds `ownership_proof`, which no row holds: rows alike
    ignores = FillsProjection.ignores | (
        frozenset(event_types_for(Topic.ACCOUNTS)) - {"DepositReceived"}
    )
    """What else is on its topics: orders' other facts, accounts' other facts."""
    migrations = (
        "0104_proj_balances.sql",
        "0117_balances_transfers_per_account.sql",
        "0119_balances_deposits.sql",
        "0150_balances_transfer_checks.sql",
    )
    fold_version = 7
    """2: a transfer's status only moves forward (a check after the release set it back
    to CHECKED_*). 3: a transfer is keyed by account and id, as the engine's withdrawals
    (an id a second account requested was quarantined, and that withdrawal never debited).
    4: a deposit id is credited once per account, as the engine's fold (`deposits`; a
    second `DepositReceived` of it is quarantined). 5: deposits are read from
    accounts.events, which only the engine writes (session 22); one on transfers.events,
    where the transfer service could forge it, is quarantined, an old log's too. 6: a
    `TransferChecked` is folded only from the travel rule (producer `travelrule`,
    session 26; `schemas.admission`); another producer's is quarantined, an old log's
    transfer-service checks too. 7: checks are read from transfers.checks, which only the
    travel rule writes (session 27); one on transfers.events, where the transfer service
    could write one claiming the travel rule, is quarantined, an old log's too; a check
    read before its request is kept (`transfer_checks`) and folded by the request, where
    it was quarantined as of an unknown transfer and the withdrawal stayed REQUESTED."""
    partition_local = True  # every table is per account, the key of both its topics

    @staticmethod
    def _legs(item: Located) -> list[tuple[str, str, Decimal, str]]:
        """(leg, asset, signed amount, kind) of one event. Pure."""
        d = item.data
        p = d["payload"]
        t = d["event_type"]
        if t == "DepositReceived":
            return [("deposit", p["asset"], Decimal(p["amount"]), "DEPOSIT")]
        if t == "Fill":
            base, quote = p["instrument"].split("/")
            quantity = Decimal(p["quantity"])
            notional = _EXACT.multiply(quantity, Decimal(p["price"]))
            buy = p["side"] == "BUY"
            legs = [
                ("base", base, quantity if buy else _EXACT.minus(quantity), "TRADE"),
                ("quote", quote, _EXACT.minus(notional) if buy else notional, "TRADE"),
            ]
            fee = Decimal(p["fee"])
            if fee > 0:
                legs.append(("fee", p["fee_asset"], _EXACT.minus(fee), "FEE"))
            return legs
        return []

    def state_keys(self, events: Sequence[Located]) -> Mapping[str, set[Key]]:
        bal: set[Key] = set()
        tr: set[Key] = set()
        dep: set[Key] = set()
        chk: set[Key] = set()
        for e in events:
            p = e.payload
            t = e.data["event_type"]
            if t.startswith("Transfer"):
                # A settlement's asset is known only from its request row; the balance
                # row it moves is then loaded on demand by `State.get`.
                tr.add((p["account"], p["transfer_id"]))
                if t == "TransferRequested" or t == "TransferChecked":
                    chk.add((p["account"], p["transfer_id"]))
            elif t == "DepositReceived":
                dep.add((p["account"], p["deposit_id"]))
            for _leg, asset, _amt, _kind in self._legs(e):
                bal.add((p["account"], asset))
        return {"balances": bal, "transfers": tr, "deposits": dep, "transfer_checks": chk}

    def _move(
        self,
        state: State,
        item: Located,
        leg: str,
        asset: str,
        amount: Decimal,
        kind: str,
        ref: str,
    ) -> None:
        d = item.data
        account = d["payload"]["account"]
        key = (account, asset)
        cur = state.get(self.balances, key)
        bal, count = (ZERO, 0) if cur is None else (_dec(cur[2]), cur[3])
        state.put(self.balances, (account, asset, _EXACT.add(bal, amount), int(count) + 1))
        state.insert(
            self.movements,
            (d["event_id"], leg, account, asset, amount, kind, ref, d["occurred_at"]),
        )

    def handle(self, state: State, item: Located) -> None:
        d = item.data
        p = d["payload"]
        t = d["event_type"]
        if t == "DepositReceived":
            # Once per account and id, as the engine's fold (`EngineState.apply`) credits
            # it: two workers could each accept a command of one id until session 20.
            key = (p["account"], p["deposit_id"])
            first = state.get(self.deposits, key)
            if first is not None:
                raise SkipEvent(f"deposit {key[1]} of {key[0]} already credited (event {first[4]})")
            state.put(
                self.deposits, (*key, p["asset"], p["amount"], d["event_id"], d["occurred_at"])
            )
        if t == "DepositReceived" or t == "Fill":
            ref = p["deposit_id"] if t == "DepositReceived" else p["fill_id"]
            for leg, asset, amount, kind in self._legs(item):
                self._move(state, item, leg, asset, amount, kind, ref)
            return
        tid, account = p["transfer_id"], p["account"]
        # Per account, as the engine keeps withdrawals: a step naming another account than
        # the request's is for a transfer that account never requested.
        cur = state.get(self.transfers, (account, tid))
        if t == "TransferRequested":
            if cur is not None:
                raise SkipEvent(f"transfer {tid} of {account} requested twice")
            row = (tid, account, p["asset"], Decimal(p["amount"]), "REQUESTED")
            check = state.get(self.checks, (account, tid))
            if check is None:
                state.put(self.transfers, (*row, d["event_id"], d["occurred_at"]))
            else:  # read first: folded now, as if read right after the request
                state.put(self.transfers, (*row[:4], f"CHECKED_{check[2]}", check[3], check[4]))
            return
        if t == "TransferChecked":
            state.put(self.checks, (account, tid, p["outcome"], d["event_id"], d["occurred_at"]))
            if cur is None:
                return  # its request is not read yet (another topic): it folds this one
        if cur is None:  # never requested, or by another account (it never asked)
            raise SkipEvent(f"{t} for unknown transfer {tid} of {account}")
        if t == "TransferSettled" and cur[4] == "SETTLED":  # it would debit twice
            raise SkipEvent(f"TransferSettled for already settled transfer {tid}")
        if _TRANSFER_STEP[t] < _TRANSFER_RANK[cur[4]]:
            return  # a late step: the transfer is past it, its status stays
        status = f"CHECKED_{p['outcome']}" if t == "TransferChecked" else _TRANSFER_STATUS[t]
        state.put(self.transfers, (*cur[:4], status, d["event_id"], d["occurred_at"]))
        if t == "TransferSettled":
            asset, amount = cur[2], _dec(cur[3])
            self._move(state, item, "withdrawal", asset, _EXACT.minus(amount), "WITHDRAWAL", tid)


# --------------------------------------------------------------------------- decisions
class DecisionsProjection(Projection):
    """Risk decisions with every rule's result, and intent/admin-command rejections."""

    name = "decisions"
    topics = (Topic.DECISIONS,)
    decisions = Table(
        "decisions",
        (
            "event_id",
            "event_type",
            "account",
            "producer_id",
            "strategy_id",
            "client_order_id",
            "intent_event_id",
            "intent_kind",
            "outcome",
            "reason_codes",
            "risk_config_version",
            "order_id",
            "detail",
            "occurred_at",
        ),
        ("event_id",),
    )
    rules = Table(
        "rule_results",
        ("event_id", "ordinal", "rule_id", "rule_version", "passed", "reason_code", "detail"),
        ("event_id", "ordinal"),
    )
    tables = (decisions, rules)
    handles = _v1("RiskDecision", "IntentRejected", "AdminCommandRejected")
    # The engine's own drawdown bookkeeping, and its record of a fail-closed pass.
    ignores = frozenset({"PeakEquityRaised", "UnitsChanged", "RestingOrdersChecked"})
    migrations = ("0105_proj_decisions.sql",)
    partition_local = True  # no state: only its event ids, on the partition of their account
    seen_table = "decisions"  # one row per folded event

    def handle(self, state: State, item: Located) -> None:
        d = item.data
        p = d["payload"]
        t = d["event_type"]
        eid = d["event_id"]
        if t == "RiskDecision":
            rules = p["rule_results"]
            for r in rules:  # checked before the first insert: a refused event writes nothing
                fits_column(r["rule_version"], "rule_version", INT4)
            fits_column(p["risk_config_version"], "risk_config_version", INT4)
            codes = p["reason_codes"]  # none for most: "[]" without orjson's call
            state.insert(
                self.decisions,
                (
                    eid, t, p["account"], p["producer_id"], p["strategy_id"], p["client_order_id"],
                    p["intent_event_id"], p["intent_kind"], p["outcome"],
                    _jsonb(codes) if codes else "[]", p["risk_config_version"], p["order_id"], "",
                    d["occurred_at"],
                ),
            )  # fmt: skip
            for i, r in enumerate(rules):
                state.insert(
                    self.rules,
                    (
                        eid, i, r["rule_id"], r["rule_version"], r["passed"], r["reason_code"],
                        r["detail"],
                    ),
                )  # fmt: skip
        elif t == "IntentRejected":
            state.insert(
                self.decisions,
                (
                    eid, t, p["account"], p["producer_id"], None, p["client_order_id"],
                    p["intent_event_id"], None, "INTENT_REJECTED", _jsonb([p["reason"]]),
                    None, None, p["detail"], d["occurred_at"],
                ),
            )  # fmt: skip
        else:
            state.insert(
                self.decisions,
                (
                    eid, t, p["key"], None, None, None, p["command_event_id"], p["command_type"],
                    "ADMIN_REJECTED", "[]", None, None, p["reason"], d["occurred_at"],
                ),
            )  # fmt: skip


# --------------------------------------------------------------------------- drawdown
DRAWDOWN_COLUMNS = (
    "account",
    "units",
    "unit_nav",
    "equity",
    "nav",
    "peak_nav",
    "peak_equity",
    "drawdown",
    "valued_at",
    "valued_event_id",
    "valued_by",
    "units_changed_at",
    "units_event_id",
    "peak_changed_at",
    "peak_event_id",
    "event_count",
    "last_event_id",
    "updated_at",
    "lost_in_full",
    "wiped_at",
    "recorded_peak",
    "peaks",
    "brake_result",
    "brake_detail",
    "brake_event_id",
)
_DI = {c: i for i, c in enumerate(DRAWDOWN_COLUMNS)}
_D_UNITS, _D_UNIT_NAV, _D_PEAK = _DI["units"], _DI["unit_nav"], _DI["peak_nav"]
_D_COUNT, _D_WIPED, _D_RECORDED = _DI["event_count"], _DI["wiped_at"], _DI["recorded_peak"]
_D_PEAKS, _D_LOST, _D_NAV, _D_EQUITY = _DI["peaks"], _DI["lost_in_full"], _DI["nav"], _DI["equity"]
_D_DRAWDOWN, _D_PEAK_EQUITY = _DI["drawdown"], _DI["peak_equity"]
_D_BRAKE = _DI["brake_result"]
BRAKE_RULE = "DRAWDOWN_BRAKE"
"""The rule id of the engine's drawdown brake, whose result at a decision says, in the
engine's words, what it measured: `PASSED`, `DRAWDOWN_BRAKE` (past the threshold, or the
whole peak lost) or `NO_MARK` (the account could not be valued: a price missing, or flows
not yet turned into units, which this projection cannot see)."""
DRAWDOWN_EVENT_COLUMNS = (
    "event_id",
    "account",
    "event_type",
    "change",
    "flows",
    "units",
    "unit_nav",
    "equity",
    "nav",
    "peak_before",
    "peak_nav",
    "peak_equity",
    "drawdown",
    "occurred_at",
    "lost_in_full",
)
RELEASE_COLUMNS = ("account", "released_at", "release_event_id", "released_by", "reason")


def drawdown_of(nav: Decimal | None, peak: Decimal | None) -> Decimal | None:
    """The drawdown as the DRAWDOWN_BRAKE rule measures it (`schemas.drawdown.drawdown`),
    from the higher of the peak and NAV. None when it cannot be measured (no NAV: no
    units, or a held asset without a price; no peak above zero)."""
    if nav is None or peak is None:
        return None
    top = max(peak, nav)
    if top <= 0:
        return None
    return drawdown(top, nav)


def peak_money(peak: Decimal | None, units: Decimal) -> Decimal | None:
    """The peak in the account's money (`schemas.drawdown.peak_in_money`, what the
    engine's decisions' and brakes' `peak_equity` say); None without a peak."""
    return None if peak is None else peak_in_money(peak, units)


_PARSED_PEAKS: dict[str, tuple[str, list[tuple[str, Decimal]]]] = {}
"""The last `peaks` text each account's row was given, parsed (`_peaks_of`): a cache of a
pure function (its key is the text itself), so a row folded again in the batch or the
next one skips the parse; bounded by the accounts."""


def _peaks_of(stored: Any, account: str | None = None) -> list[tuple[str, Decimal]]:
    """The suffix maxima of a `drawdowns` row (`peaks`, jsonb [[event time, peak], ...]:
    JSON text as folded, a parsed list as loaded), a new list."""
    if stored is None:
        return []
    if isinstance(stored, str):
        if account is not None:
            hit = _PARSED_PEAKS.get(account)
            if hit is not None and hit[0] == stored:
                return list(hit[1])
        stored = orjson.loads(stored)
    return [(at, Decimal(peak)) for at, peak in stored]


def _peaks_json(peaks: list[tuple[str, Decimal]], account: str) -> str:
    """`peaks` as the row's jsonb text, remembered for `_peaks_of`."""
    text = orjson.dumps([[at, format_decimal(peak)] for at, peak in peaks]).decode()
    _PARSED_PEAKS[account] = (text, list(peaks))
    return text


class DrawdownProjection(Projection):
    """Each account's drawdown state as the engine's brake measures it (DRAWDOWN_BRAKE
    v6-v8, docs/engine.md *What the peak is*): units, NAV per unit, peak, drawdown, and
    whether the whole peak is lost (v7, v8); and the history of its unit changes and peak
    moves.

    Folds the engine's own bookkeeping on risk.decisions, in log order (one account's
    events are on one partition): `UnitsChanged` (the units a deposit or settled
    withdrawal issued or redeemed, and the equity then), `PeakEquityRaised` (a new peak
    found at a print) and every `RiskDecision` that valued the account (`peak_nav` set:
    the peak the decision measured against, its `equity`). A decision without a peak (a
    cancel, an intent refused before it was valued, or written before DRAWDOWN_BRAKE v6)
    changes nothing; the rejections are ignored by their headers, never decoded. And an
    account's `KillSwitchReleased` (risk.config), which resets the peak as the engine's
    fold does (`schemas.drawdown.peak_since`, the recorded peaks kept as suffix maxima):
    the peak, the loss in full and the drawdown are functions of the recorded peaks, the
    wipes and the last release by event time, so they do not depend on how the two topics
    interleave; the history rows and the `peak_changed_at`/`recorded_peak` columns are of
    risk.decisions alone."""

    name = "drawdown"
    topics = (Topic.DECISIONS, Topic.RISK_CONFIG)
    drawdowns = Table("drawdowns", DRAWDOWN_COLUMNS, ("account",), WriteMode.UPSERT, stateful=True)
    history = Table("drawdown_events", DRAWDOWN_EVENT_COLUMNS, ("event_id",))
    releases = Table("releases", RELEASE_COLUMNS, ("account",), WriteMode.UPSERT, stateful=True)
    tables = (drawdowns, history, releases)
    handles = _v1("RiskDecision", "UnitsChanged", "PeakEquityRaised", "KillSwitchReleased")
    ignores = frozenset(
        {
            "IntentRejected",
            "AdminCommandRejected",
            "RiskLimitsChanged",
            "KillSwitchEngaged",
            "RestingOrdersChecked",
        }
    )
    migrations = (
        "0120_proj_drawdown.sql",
        "0121_drawdown_lost_in_full.sql",
        "0122_drawdown_brake_result.sql",
    )
    partition_local = True  # every event it folds is keyed by its account (a release: scope)
    fold_version = 4
    """4: the last decision's DRAWDOWN_BRAKE result (`brake_result`, `brake_detail`,
    `brake_event_id`), the engine's own words for what it measured. 3: the peak after a release (`KillSwitchReleased`, risk.config) and the whole peak
    lost (DRAWDOWN_BRAKE v7, v8: `lost_in_full`, drawdown 1), as the engine measures them;
    2 showed the peak last recorded on risk.decisions and the NAV-based figure of an
    account whose capital was gone. 2: peak - NAV in 28 digits, as the engine's brake
    takes it (`DRAWDOWN_DIFFERENCE`, made explicit meanwhile); 1 took it in 60, and a
    brake's drawdown differed from its `KillSwitchEngaged.drawdown` past the 27th digit."""

    def state_keys(self, events: Sequence[Located]) -> Mapping[str, set[Key]]:
        keys: set[Key] = set()
        for e in events:
            p = e.payload
            account = p.get("account") or p.get("scope")  # a misplaced type may have none
            if account is not None and account != GLOBAL_SCOPE:
                keys.add((account,))
        return {"drawdowns": keys, "releases": keys}

    @staticmethod
    def _measure(
        row: list[Any],
        reset_at: str | None,
        peaks: list[tuple[str, Decimal]],
        units: Decimal,
        equity: Decimal | None,
        nav: Decimal | None,
    ) -> None:
        """The row's engine-side figures from its folded facts (`peaks` parsed, and its
        units, equity and NAV): the peak (the highest recorded at or after the last
        release), the loss in full and the drawdown of its last valuation against that
        peak, and the peak in money."""
        peak = None if not peaks and reset_at is None else peak_since(peaks, reset_at)
        wiped = row[_D_WIPED]
        is_wiped = wiped is not None and (reset_at is None or _ts_text(wiped) >= reset_at)
        lost = peak is not None and lost_in_full(peak, units, equity, is_wiped)
        row[_D_PEAK], row[_D_LOST] = peak, lost
        row[_D_DRAWDOWN] = ONE if lost else drawdown_of(nav, peak)
        row[_D_PEAK_EQUITY] = peak_money(peak, units)

    def handle(self, state: State, item: Located) -> None:
        d = item.data
        p = d["payload"]
        t = d["event_type"]
        if t == "KillSwitchReleased":
            self._release(state, d, p)
            return
        recorded = p["peak_nav"]
        if recorded is None and t != "UnitsChanged":
            # A decision that did not value the account, or a peak of v5's measure
            # (equity; the engine does not fold it either): nothing to measure.
            return
        account = p["account"]
        key = (account,)
        cur = state.get(self.drawdowns, key)
        if cur is None:
            row: list[Any] = [None] * len(DRAWDOWN_COLUMNS)
            row[0], row[_D_UNITS], row[_D_COUNT], row[_D_PEAKS] = account, ZERO, 0, "[]"
        else:
            row = list(cur)
        eid, at = d["event_id"], d["occurred_at"]
        units = _dec(row[_D_UNITS])
        before = None if row[_D_RECORDED] is None else _dec(row[_D_RECORDED])
        peak = before if recorded is None else Decimal(recorded)
        flows = unit_nav = None
        equity: Decimal | None
        nav: Decimal | None
        gone = False  # this event itself found the whole peak lost (v7, v8)
        if t == "UnitsChanged":
            units = row[_D_UNITS] = Decimal(p["units"])
            unit_nav = p["nav"]
            if unit_nav is not None:
                row[_D_UNIT_NAV] = unit_nav
            equity = Decimal(p["equity"])
            nav = nav_per_unit(equity, units) if units > 0 else None
            flows = _jsonb(p["flows"])
            row[_DI["units_changed_at"]], row[_DI["units_event_id"]] = at, eid
            change: str | None = "UNITS"
            if unit_nav is None and units > 0:
                # The capital was gone (DRAWDOWN v8): the newest such flow, kept as the
                # engine keeps `wiped_at` (a release stamped after it clears it).
                wiped = row[_D_WIPED]
                if wiped is None or at > _ts_text(wiped):
                    row[_D_WIPED] = at
                gone = True
            gone = gone or (equity < 0 and units <= 0)  # none left, below zero (v7)
        else:
            if t == "PeakEquityRaised":  # valued at a print: its NAV is the new peak
                equity, nav = Decimal(p["peak_equity"]), peak
            else:  # RiskDecision: NAV per unit at the units last recorded
                equity = None if p["equity"] is None else Decimal(p["equity"])
                nav = nav_per_unit(equity, units) if equity is not None and units > 0 else None
                for r in p["rule_results"]:
                    if r["rule_id"] == BRAKE_RULE:  # the engine's verdict, as it wrote it
                        result = "PASSED" if r["passed"] else r["reason_code"]
                        row[_D_BRAKE : _D_BRAKE + 3] = result, r["detail"], eid
                        break
            change = None
            if t == "PeakEquityRaised" or peak != before:
                lower = before is not None and peak is not None and peak < before
                change = "PEAK_LOWERED" if lower else "PEAK_RAISED"
        peaks = _peaks_of(row[_D_PEAKS], account)
        if recorded is not None and peak is not None:
            add_peak(peaks, at, peak)
            row[_D_PEAKS] = _peaks_json(peaks, account)
        if peak != before or t == "PeakEquityRaised":
            row[_D_RECORDED] = peak
            row[_DI["peak_changed_at"]], row[_DI["peak_event_id"]] = at, eid
        row[_D_EQUITY], row[_D_NAV] = equity, nav
        released = state.get(self.releases, key)
        reset = None if released is None else _ts_text(released[1])
        self._measure(row, reset, peaks, units, equity, nav)
        row[_DI["valued_at"]], row[_DI["valued_event_id"]], row[_DI["valued_by"]] = at, eid, t
        row[_D_COUNT] = int(row[_D_COUNT]) + 1
        row[_DI["last_event_id"]], row[_DI["updated_at"]] = eid, at
        state.put(self.drawdowns, tuple(row), key)
        if change is not None:
            # Of risk.decisions alone: the peak recorded, and the whole peak lost when
            # this unit change itself found it (its figure then is the brake's, 1).
            lost = gone and peak is not None and peak > 0
            dd: Decimal | None
            if lost:
                dd = ONE
            elif peak == row[_D_PEAK] and not row[_D_LOST]:
                dd = row[_D_DRAWDOWN]  # the row's figure, of the same NAV and peak
            else:
                dd = drawdown_of(nav, peak)
            in_money = row[_D_PEAK_EQUITY] if peak == row[_D_PEAK] else peak_money(peak, units)
            state.insert(
                self.history,
                (
                    eid, account, t, change, flows, units, unit_nav, equity, nav, before,
                    peak, in_money, dd, at, lost,
                ),
            )  # fmt: skip

    def _release(self, state: State, d: Mapping[str, Any], p: Mapping[str, Any]) -> None:
        """An account's kill switch released (a global one resets no peak, as in the
        engine): the peak is the highest recorded at or after it, and a wipe before it no
        longer counts. The last release in risk.config's order, as the engine keeps it."""
        account = p["scope"]
        if account == GLOBAL_SCOPE:
            return
        key = (account,)
        at = d["occurred_at"]
        state.put(self.releases, (account, at, d["event_id"], p["released_by"], p["reason"]), key)
        cur = state.get(self.drawdowns, key)
        if cur is not None:
            row = list(cur)
            equity, nav = row[_D_EQUITY], row[_D_NAV]
            self._measure(
                row, at, _peaks_of(row[_D_PEAKS], account), _dec(row[_D_UNITS]),
                None if equity is None else _dec(equity), None if nav is None else _dec(nav),
            )  # fmt: skip
            state.put(self.drawdowns, tuple(row), key)


# --------------------------------------------------------------------------- risk config
class RiskConfigProjection(Projection):
    """Every limits change and kill-switch event, and each scope's kill-switch state."""

    name = "risk_config"
    topics = (Topic.RISK_CONFIG,)
    history = Table(
        "config_events",
        (
            "event_id",
            "event_type",
            "scope",
            "config_version",
            "limits",
            "actor",
            "reason",
            "detail",
            "occurred_at",
        ),
        ("event_id",),
    )
    kill_switches = Table(
        "kill_switches",
        ("scope", "engaged", "actor", "reason", "event_id", "changed_at"),
        ("scope",),
        WriteMode.UPSERT,
    )
    tables = (history, kill_switches)
    handles = _v1("RiskLimitsChanged", "KillSwitchEngaged", "KillSwitchReleased")
    migrations = ("0106_proj_risk_config.sql",)
    seen_table = "config_events"  # one row per folded event

    def handle(self, state: State, item: Located) -> None:
        d = item.data
        p = d["payload"]
        t = d["event_type"]
        eid, at = d["event_id"], d["occurred_at"]
        row: tuple[Any, ...]
        if t == "RiskLimitsChanged":
            row = (
                eid, t, p["scope"], fits_column(p["config_version"], "config_version", INT4),
                _json(p["limits"]), p["changed_by"],
                p["reason"], None, at,
            )  # fmt: skip
        elif t == "KillSwitchEngaged":
            detail = {
                k: v
                for k, v in p.items()
                if k in ("drawdown", "peak_equity", "equity") and v is not None
            }
            row = (
                eid, t, p["scope"], None, None, p["engaged_by"], p["reason"],
                _json(detail) if detail else None, at,
            )  # fmt: skip
            state.put(self.kill_switches, (p["scope"], True, p["engaged_by"], p["reason"], eid, at))
        else:
            row = (eid, t, p["scope"], None, None, p["released_by"], p["reason"], None, at)
            state.put(
                self.kill_switches, (p["scope"], False, p["released_by"], p["reason"], eid, at)
            )
        state.insert(self.history, row)


# --------------------------------------------------------------------------- dead letters
class DeadLettersProjection(Projection):
    """The dead-letter browser: what was refused, where it came from, and why."""

    name = "deadletters"
    topics = (Topic.DEADLETTER,)
    deadletters = Table(
        "deadletters",
        (
            "event_id",
            "source_topic",
            "source_partition",
            "source_offset",
            "error_type",
            "error",
            "stage",
            "producer",
            "original_key_b64",
            "original_value_b64",
            "occurred_at",
            "original_value_bytes",
            "original_value_sha256",
            "original_truncated",
        ),
        ("event_id",),
    )
    tables = (deadletters,)
    handles = _v1("DeadLetter")
    migrations = ("0107_proj_deadletters.sql", "0112_deadletters_original.sql")
    seen_table = "deadletters"  # one row per folded event

    def handle(self, state: State, item: Located) -> None:
        d = item.data
        p = d["payload"]
        state.insert(
            self.deadletters,
            (
                d["event_id"], p["source_topic"],
                fits_column(p["source_partition"], "source_partition", INT4),
                fits_column(p["source_offset"], "source_offset", INT8), p["error_type"], p["error"], p["stage"], d["producer"], p["original_key_b64"],
                p["original_value_b64"], d["occurred_at"],
                fits_column(p["original_value_bytes"], "original_value_bytes", INT8),
                p["original_value_sha256"], p["original_truncated"],
            ),
        )  # fmt: skip


# --------------------------------------------------------------------------- accounts
ACCOUNT_COLUMNS = (
    "account",
    "status",
    "owner_id",
    "owner_kind",
    "owner_name",
    "owner_country",
    "owner_lei",
    "base_currency",
    "jurisdiction",
    "wallet_id",
    "kyc_level",
    "kyc_verified_by",
    "kyc_reference",
    "kyc_verified_at",
    "open_aml_flags",
    "opened_at",
    "updated_at",
    "event_count",
    "last_event_id",
)
_AI = {c: i for i, c in enumerate(ACCOUNT_COLUMNS)}
AML_FLAG_COLUMNS = (
    "account",
    "flag_id",
    "open",
    "reason",
    "raised_by",
    "raised_at",
    "cleared_by",
    "note",
    "cleared_at",
    "last_event_id",
)


def account_status(kyc_level: str | None, open_aml_flags: int) -> str:
    """AML_HOLD while any AML flag is open, else KYC_PENDING until KYC, else ACTIVE."""
    if open_aml_flags > 0:
        return "AML_HOLD"
    return "KYC_PENDING" if kyc_level is None else "ACTIVE"


PRODUCER_COLUMNS = (
    "producer_id",
    "public_key",
    "accounts",
    "registered_by",
    "registered_at",
    "event_id",
    "status",
    "key_rotations",
    "previous_key",
    "rotated_at",
    "revoked_at",
    "revoked_by",
    "revoke_reason",
)
_PI = {c: i for i, c in enumerate(PRODUCER_COLUMNS)}
_PRODUCER_FACTS = ("ProducerRegistered", "ProducerRevoked", "ProducerKeyRotated")


class AccountsProjection(Projection):
    """Account state: beneficial owner, KYC, open AML flags; and registered producers."""

    name = "accounts"
    topics = (Topic.ACCOUNTS,)
    accounts = Table("accounts", ACCOUNT_COLUMNS, ("account",), WriteMode.UPSERT, stateful=True)
    aml_flags = Table(
        "aml_flags", AML_FLAG_COLUMNS, ("account", "flag_id"), WriteMode.UPSERT, stateful=True
    )
    producers = Table(
        "producers", PRODUCER_COLUMNS, ("producer_id",), WriteMode.UPSERT, stateful=True
    )
    history = Table(
        "account_events",
        ("event_id", "account", "event_type", "occurred_at", "detail"),
        ("event_id",),
    )
    tables = (accounts, aml_flags, producers, history)
    handles = _v1(
        "AccountOpened",
        "KycVerified",
        "AmlFlagRaised",
        "AmlFlagCleared",
        *_PRODUCER_FACTS,
    ) | {"AccountOpened/2"}  # v2 requires `base_currency` (v1 defaulted it): rows alike
    ignores = frozenset({"DepositReceived"})
    """The balances book folds deposits."""
    migrations = ("0108_proj_accounts.sql", "0116_accounts_producer_status.sql")
    fold_version = 2
    """2: producers show revocations and key rotations (`ProducerRevoked`,
    `ProducerKeyRotated`; version 1 did not fold them)."""
    seen_table = "account_events"  # one row per folded event

    def state_keys(self, events: Sequence[Located]) -> Mapping[str, set[Key]]:
        acc: set[Key] = set()
        flags: set[Key] = set()
        producers: set[Key] = set()
        for e in events:
            p = e.payload
            if "account" in p:
                acc.add((p["account"],))
            if "flag_id" in p:
                flags.add((p["account"], p["flag_id"]))
            if "producer_id" in p:
                producers.add((p["producer_id"],))
        return {"accounts": acc, "aml_flags": flags, "producers": producers}

    def handle(self, state: State, item: Located) -> None:
        d = item.data
        p = d["payload"]
        t = d["event_type"]
        eid, at = d["event_id"], d["occurred_at"]
        if t in _PRODUCER_FACTS:
            self._producer(state, t, p, at, eid)
            state.insert(self.history, (eid, None, t, at, _payload_json(item)))
            return
        account = p["account"]
        cur = state.get(self.accounts, (account,))
        if t == "AccountOpened":
            if cur is not None:
                raise SkipEvent(f"account {account} opened twice")
            owner = p["beneficial_owner"]
            row: list[Any] = [None] * len(ACCOUNT_COLUMNS)
            row[_AI["account"]] = account
            row[_AI["owner_id"]] = owner["owner_id"]
            row[_AI["owner_kind"]] = owner["kind"]
            row[_AI["owner_name"]] = owner["name"]
            row[_AI["owner_country"]] = owner["country"]
            row[_AI["owner_lei"]] = owner["lei"]
            row[_AI["base_currency"]] = p["base_currency"]
            row[_AI["jurisdiction"]] = p["jurisdiction"]
            row[_AI["wallet_id"]] = p["wallet_id"]
            row[_AI["open_aml_flags"]] = 0
            row[_AI["opened_at"]] = at
            row[_AI["event_count"]] = 0
        else:
            if cur is None:
                raise SkipEvent(f"{t} for unknown account {account}")
            row = list(cur)
            if t == "KycVerified":
                row[_AI["kyc_level"]] = p["level"]
                row[_AI["kyc_verified_by"]] = p["verified_by"]
                row[_AI["kyc_reference"]] = p["reference"]
                row[_AI["kyc_verified_at"]] = at
            else:
                fkey = (account, p["flag_id"])
                flag = state.get(self.aml_flags, fkey)
                if t == "AmlFlagRaised":
                    # Raising an open flag again restates it (the engine keeps a set).
                    if flag is None or not flag[2]:
                        row[_AI["open_aml_flags"]] = int(row[_AI["open_aml_flags"]]) + 1
                    state.put(
                        self.aml_flags,
                        (account, p["flag_id"], True, p["reason"], p["raised_by"], at, None,
                         None, None, eid),
                    )  # fmt: skip
                else:
                    if flag is None or not flag[2]:
                        raise SkipEvent(f"AML flag {p['flag_id']} of {account} is not open")
                    state.put(
                        self.aml_flags,
                        (*flag[:2], False, *flag[3:6], p["cleared_by"], p["note"], at, eid),
                    )
                    row[_AI["open_aml_flags"]] = int(row[_AI["open_aml_flags"]]) - 1
        row[_AI["status"]] = account_status(row[_AI["kyc_level"]], int(row[_AI["open_aml_flags"]]))
        row[_AI["event_count"]] = int(row[_AI["event_count"]]) + 1
        row[_AI["updated_at"]] = at
        row[_AI["last_event_id"]] = eid
        state.put(self.accounts, tuple(row))
        state.insert(self.history, (eid, account, t, at, _payload_json(item)))

    def _producer(self, state: State, t: str, p: dict[str, Any], at: str, eid: str) -> None:
        key = (p["producer_id"],)
        cur = state.get(self.producers, key)
        if t == "ProducerRegistered":
            if cur is None:
                row: list[Any] = [None] * len(PRODUCER_COLUMNS)
                row[_PI["producer_id"]] = p["producer_id"]
                row[_PI["key_rotations"]] = 0
            else:
                row = list(cur)
                if row[_PI["public_key"]] != p["public_key"]:
                    # Another key by registration (logs before ProducerKeyRotated, whose
                    # engine allowed it): shown as the rotation it was.
                    row[_PI["previous_key"]] = row[_PI["public_key"]]
                    row[_PI["key_rotations"]] = int(row[_PI["key_rotations"]]) + 1
                    row[_PI["rotated_at"]] = at
            row[_PI["public_key"]] = p["public_key"]
            row[_PI["accounts"]] = _json(list(p["accounts"]))
            row[_PI["registered_by"]] = p["registered_by"]
            row[_PI["registered_at"]] = at
            row[_PI["status"]] = "ACTIVE"
        else:
            if cur is None:
                raise SkipEvent(f"{t} for unknown producer {p['producer_id']}")
            row = list(cur)
            if t == "ProducerRevoked":
                row[_PI["status"]] = "REVOKED"
                row[_PI["revoked_at"]] = at
                row[_PI["revoked_by"]] = p["revoked_by"]
                row[_PI["revoke_reason"]] = p["reason"]
            else:  # ProducerKeyRotated: the accounts stay; a revoked producer is back
                row[_PI["previous_key"]] = p["previous_key"]
                row[_PI["public_key"]] = p["public_key"]
                row[_PI["key_rotations"]] = int(row[_PI["key_rotations"]]) + 1
                row[_PI["rotated_at"]] = at
                row[_PI["status"]] = "ACTIVE"
        row[_PI["event_id"]] = eid
        state.put(self.producers, tuple(row), key)


PROJECTIONS: dict[str, Projection] = {
    p.name: p
    for p in (
        OrdersProjection(),
        FillsProjection(),
        PositionsProjection(),
        BalancesProjection(),
        DecisionsProjection(),
        DrawdownProjection(),
        RiskConfigProjection(),
        DeadLettersProjection(),
        AccountsProjection(),
    )
}
"""Every projection `tradetape run projections` runs, by name."""


try:  # projections owned by other packages, when installed
    from streams.alerts_projection import AlertsProjection

    PROJECTIONS[AlertsProjection.name] = AlertsProjection()
except ModuleNotFoundError as _exc:  # pragma: no cover - streams not in this build
    if _exc.name is None or not _exc.name.startswith("streams"):
        raise


from projections.tax.projection import TaxLotsProjection  # noqa: E402  (it imports no core)

PROJECTIONS[TaxLotsProjection.name] = TaxLotsProjection()


def get(name: str) -> Projection:
    try:
        return PROJECTIONS[name]
    except KeyError:
        raise KeyError(f"unknown projection {name!r}; known: {', '.join(PROJECTIONS)}") from None


__all__ = ["PROJECTIONS", "apply_fill", "get"]
