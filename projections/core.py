"""The core projections: orders, fills, positions and PnL, balances, risk, dead letters.

Every handler is a pure function of the event and the current rows it reads. Money is
`Decimal` throughout; the one division (average cost) is quantized to 18 places with
banker's rounding so a rebuild reproduces it exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any

from projections.framework import Key, Located, Projection, SkipEvent, State, Table, WriteMode
from schemas.serde import canonical_json
from schemas.topics import Topic

ZERO = Decimal(0)
AVG_COST_QUANTUM = Decimal("1e-18")
_CTX = Context(prec=80, rounding=ROUND_HALF_EVEN)


def _json(data: Any) -> str:
    return canonical_json(data).decode()


def _payload_json(item: Located) -> str:
    """The payload as JSON for a jsonb column (jsonb orders keys itself; the checksum
    renders jsonb with sorted keys), serialised by pydantic-core for speed."""
    return str(item.event.payload.model_dump_json())


def _v1(*types: str) -> frozenset[str]:
    return frozenset(f"{t}/1" for t in types)


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
    handles = _v1(
        "OrderSubmitted",
        "OrderAccepted",
        "OrderRejected",
        "CancelRequested",
        "OrderCanceled",
        "OrderExpired",
        "Fill",
    )
    migrations = ("0101_proj_orders.sql",)

    def state_keys(self, events: Sequence[Located]) -> Mapping[str, set[Key]]:
        keys: set[Key] = {(str(getattr(e.event.payload, "order_id", "")),) for e in events}
        return {"orders": keys}

    def handle(self, state: State, item: Located) -> None:
        ev = item.event
        p = ev.payload
        key = (p.order_id,)
        cur = state.get(self.orders, key)
        if ev.event_type == "OrderSubmitted":
            if cur is not None:
                raise SkipEvent(f"order {p.order_id} submitted twice")
            row: list[Any] = [None] * len(ORDER_COLUMNS)
            for col in (
                "order_id",
                "account",
                "producer_id",
                "strategy_id",
                "client_order_id",
                "instrument",
                "venue",
                "parent_order_id",
                "quantity",
                "limit_price",
                "trigger_price",
            ):
                row[_OI[col]] = getattr(p, col)
            row[_OI["side"]] = p.side.value
            row[_OI["order_type"]] = p.order_type.value
            row[_OI["time_in_force"]] = p.time_in_force.value
            row[_OI["decision_event_id"]] = p.decision_event_id
            row[_OI["status"]] = "SUBMITTED"
            row[_OI["filled_quantity"]] = ZERO
            row[_OI["filled_notional"]] = ZERO
            row[_OI["leaves_quantity"]] = p.quantity
            row[_OI["event_count"]] = 0
            row[_OI["created_at"]] = ev.occurred_at
        else:
            if cur is None:
                raise SkipEvent(f"{ev.event_type} for unknown order {p.order_id}")
            row = list(cur)
            t = ev.event_type
            if t == "OrderAccepted":
                row[_OI["venue_order_id"]] = p.venue_order_id
                if row[_OI["status"]] == "SUBMITTED":
                    row[_OI["status"]] = "ACCEPTED"
            elif t == "OrderRejected":
                row[_OI["status"]] = "REJECTED"
                row[_OI["reason"]] = p.reason
                row[_OI["leaves_quantity"]] = ZERO
            elif t == "CancelRequested":
                row[_OI["status"]] = (
                    "PENDING_CANCEL"
                    if row[_OI["status"]] in ("SUBMITTED", "ACCEPTED", "PARTIALLY_FILLED")
                    else row[_OI["status"]]
                )
                row[_OI["reason"]] = p.reason
            elif t in ("OrderCanceled", "OrderExpired"):
                row[_OI["status"]] = "CANCELED" if t == "OrderCanceled" else "EXPIRED"
                row[_OI["leaves_quantity"]] = p.leaves_quantity
                row[_OI["reason"]] = p.reason
            elif t == "Fill":
                row[_OI["filled_quantity"]] = row[_OI["filled_quantity"]] + p.quantity
                row[_OI["filled_notional"]] = row[_OI["filled_notional"]] + p.quantity * p.price
                row[_OI["leaves_quantity"]] = p.leaves_quantity
                row[_OI["status"]] = "FILLED" if p.leaves_quantity == 0 else "PARTIALLY_FILLED"
        row[_OI["event_count"]] = int(row[_OI["event_count"]]) + 1
        row[_OI["updated_at"]] = ev.occurred_at
        row[_OI["last_event_id"]] = ev.event_id
        state.put(self.orders, tuple(row))
        state.insert(
            self.history,
            (
                ev.event_id,
                p.order_id,
                p.account,
                ev.event_type,
                row[_OI["status"]],
                ev.occurred_at,
                _payload_json(item),
            ),
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
        ),
        ("event_id",),
    )
    tables = (fills,)
    handles = _v1("Fill")
    ignores = frozenset(
        {
            "OrderSubmitted",
            "OrderAccepted",
            "OrderRejected",
            "CancelRequested",
            "OrderCanceled",
            "OrderExpired",
        }
    )
    migrations = ("0102_proj_fills.sql",)

    def handle(self, state: State, item: Located) -> None:
        ev, p = item.event, item.event.payload
        state.insert(
            self.fills,
            (
                ev.event_id,
                p.fill_id,
                p.order_id,
                p.account,
                p.instrument,
                p.side.value,
                p.quantity,
                p.price,
                p.quantity * p.price,
                p.fee,
                p.fee_asset,
                p.liquidity.value,
                p.venue,
                p.venue_trade_id,
                p.uti,
                p.traded_at,
                p.leaves_quantity,
                ev.occurred_at,
            ),
        )


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
)


def apply_fill(
    quantity: Decimal, avg_cost: Decimal, realized: Decimal, signed_qty: Decimal, price: Decimal
) -> tuple[Decimal, Decimal, Decimal]:
    """Average-cost method: (new quantity, new average cost, new realized PnL).

    Adding to a position (or opening one) moves the average; reducing realizes
    `closed * (price - avg) * direction`; crossing through zero opens the remainder at
    `price`. A flat position has average cost 0.
    """
    if quantity == 0 or (quantity > 0) == (signed_qty > 0):
        new_qty = quantity + signed_qty
        total = _CTX.add(
            _CTX.multiply(abs(quantity), avg_cost), _CTX.multiply(abs(signed_qty), price)
        )
        new_avg = _CTX.divide(total, abs(new_qty)).quantize(AVG_COST_QUANTUM, context=_CTX)
        return new_qty, new_avg, realized
    closed = min(abs(signed_qty), abs(quantity))
    direction = 1 if quantity > 0 else -1
    realized = realized + closed * (price - avg_cost) * direction
    new_qty = quantity + signed_qty
    if new_qty == 0:
        return new_qty, ZERO, realized
    if (new_qty > 0) != (quantity > 0):
        return new_qty, price, realized
    return new_qty, avg_cost, realized


class PositionsProjection(Projection):
    """Positions with average cost and realized PnL, the last mark, and PnL (a view)."""

    name = "positions"
    topics = (Topic.ORDERS, Topic.MARKETDATA)
    positions = Table(
        "positions", POSITION_COLUMNS, ("account", "instrument"), WriteMode.UPSERT, stateful=True
    )
    marks = Table(
        "marks",
        ("instrument", "price", "source", "venue", "exchange_ts", "event_id"),
        ("instrument",),
        WriteMode.UPSERT,
    )
    tables = (positions, marks)
    handles = _v1("Fill", "MarketTrade", "QuoteUpdated")
    ignores = FillsProjection.ignores
    migrations = ("0103_proj_positions.sql",)

    def state_keys(self, events: Sequence[Located]) -> Mapping[str, set[Key]]:
        keys: set[Key] = {
            (e.event.payload.account, e.event.payload.instrument)
            for e in events
            if e.event.event_type == "Fill"
        }
        return {"positions": keys}

    def handle(self, state: State, item: Located) -> None:
        ev, p = item.event, item.event.payload
        if ev.event_type == "MarketTrade":
            state.put(
                self.marks,
                (p.instrument, p.price, "TRADE", p.venue, p.exchange_ts, ev.event_id),
            )
            return
        if ev.event_type == "QuoteUpdated":
            mid = (p.bid_price + p.ask_price) / 2
            state.put(self.marks, (p.instrument, mid, "MID", p.venue, p.exchange_ts, ev.event_id))
            return
        key = (p.account, p.instrument)
        cur = state.get(self.positions, key)
        qty, avg, realized, fees, count = (
            (ZERO, ZERO, ZERO, ZERO, 0) if cur is None else (cur[2], cur[3], cur[4], cur[5], cur[6])
        )
        signed = p.quantity if p.side.value == "BUY" else -p.quantity
        qty, avg, realized = apply_fill(qty, avg, realized, signed, p.price)
        if p.fee_asset == p.instrument.split("/")[1]:
            fees = fees + p.fee
        state.put(
            self.positions,
            (
                p.account,
                p.instrument,
                qty,
                avg,
                realized,
                fees,
                int(count) + 1,
                ev.event_id,
                ev.occurred_at,
            ),
        )


# --------------------------------------------------------------------------- balances
class BalancesProjection(Projection):
    """Balance per account and asset: deposits, fills (both legs and fee), withdrawals."""

    name = "balances"
    topics = (Topic.ORDERS, Topic.TRANSFERS)
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
        ("transfer_id",),
        WriteMode.UPSERT,
        stateful=True,
    )
    tables = (balances, movements, transfers)
    handles = _v1(
        "Fill",
        "DepositReceived",
        "TransferRequested",
        "TransferChecked",
        "TransferReleased",
        "TransferSettled",
    )
    ignores = FillsProjection.ignores
    migrations = ("0104_proj_balances.sql",)

    @staticmethod
    def _legs(item: Located) -> list[tuple[str, str, Decimal, str]]:
        """(leg, asset, signed amount, kind) of one event. Pure."""
        ev, p = item.event, item.event.payload
        if ev.event_type == "DepositReceived":
            return [("deposit", p.asset, p.amount, "DEPOSIT")]
        if ev.event_type == "Fill":
            base, quote = p.instrument.split("/")
            notional = p.quantity * p.price
            sign = 1 if p.side.value == "BUY" else -1
            legs = [
                ("base", base, sign * p.quantity, "TRADE"),
                ("quote", quote, -sign * notional, "TRADE"),
            ]
            if p.fee > 0:
                legs.append(("fee", p.fee_asset, -p.fee, "FEE"))
            return legs
        return []

    def state_keys(self, events: Sequence[Located]) -> Mapping[str, set[Key]]:
        bal: set[Key] = set()
        tr: set[Key] = set()
        for e in events:
            p = e.event.payload
            if e.event.event_type.startswith("Transfer"):
                # A settlement's asset is known only from its request row; the balance
                # row it moves is then loaded on demand by `State.get`.
                tr.add((p.transfer_id,))
            for _leg, asset, _amt, _kind in self._legs(e):
                bal.add((p.account, asset))
        return {"balances": bal, "transfers": tr}

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
        ev, p = item.event, item.event.payload
        key = (p.account, asset)
        cur = state.get(self.balances, key)
        bal, count = (ZERO, 0) if cur is None else (cur[2], cur[3])
        state.put(
            self.balances,
            (p.account, asset, bal + amount, int(count) + 1),
        )
        state.insert(
            self.movements, (ev.event_id, leg, p.account, asset, amount, kind, ref, ev.occurred_at)
        )

    def handle(self, state: State, item: Located) -> None:
        ev, p = item.event, item.event.payload
        t = ev.event_type
        if t == "DepositReceived" or t == "Fill":
            ref = p.deposit_id if t == "DepositReceived" else p.fill_id
            for leg, asset, amount, kind in self._legs(item):
                self._move(state, item, leg, asset, amount, kind, ref)
            return
        key = (p.transfer_id,)
        cur = state.get(self.transfers, key)
        if t == "TransferRequested":
            if cur is not None:
                raise SkipEvent(f"transfer {p.transfer_id} requested twice")
            state.put(
                self.transfers,
                (
                    p.transfer_id,
                    p.account,
                    p.asset,
                    p.amount,
                    "REQUESTED",
                    ev.event_id,
                    ev.occurred_at,
                ),
            )
            return
        if cur is None:
            raise SkipEvent(f"{t} for unknown transfer {p.transfer_id}")
        status = {
            "TransferChecked": f"CHECKED_{getattr(p, 'outcome', '')}",
            "TransferReleased": "RELEASED",
            "TransferSettled": "SETTLED",
        }[t]
        if cur[4] == "SETTLED":
            raise SkipEvent(f"{t} for already settled transfer {p.transfer_id}")
        state.put(self.transfers, (*cur[:4], status, ev.event_id, ev.occurred_at))
        if t == "TransferSettled":
            asset, amount = cur[2], cur[3]
            self._move(state, item, "withdrawal", asset, -amount, "WITHDRAWAL", p.transfer_id)


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
    migrations = ("0105_proj_decisions.sql",)

    def handle(self, state: State, item: Located) -> None:
        ev, p = item.event, item.event.payload
        t = ev.event_type
        if t == "RiskDecision":
            state.insert(
                self.decisions,
                (
                    ev.event_id, t, p.account, p.producer_id, p.strategy_id, p.client_order_id,
                    p.intent_event_id, p.intent_kind, p.outcome.value, _json(list(p.reason_codes)),
                    p.risk_config_version, p.order_id, "", ev.occurred_at,
                ),
            )  # fmt: skip
            for i, r in enumerate(p.rule_results):
                state.insert(
                    self.rules,
                    (ev.event_id, i, r.rule_id, r.rule_version, r.passed, r.reason_code, r.detail),
                )
        elif t == "IntentRejected":
            state.insert(
                self.decisions,
                (
                    ev.event_id, t, p.account, p.producer_id, None, p.client_order_id,
                    p.intent_event_id, None, "INTENT_REJECTED", _json([p.reason.value]),
                    None, None, p.detail, ev.occurred_at,
                ),
            )  # fmt: skip
        else:
            state.insert(
                self.decisions,
                (
                    ev.event_id, t, p.key, None, None, None, p.command_event_id, p.command_type,
                    "ADMIN_REJECTED", _json([]), None, None, p.reason, ev.occurred_at,
                ),
            )  # fmt: skip


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

    def handle(self, state: State, item: Located) -> None:
        ev, p = item.event, item.event.payload
        t = ev.event_type
        row: tuple[Any, ...]
        if t == "RiskLimitsChanged":
            row = (
                ev.event_id, t, p.scope, p.config_version, _json(p.limits.model_dump(mode="json")),
                p.changed_by, p.reason, None, ev.occurred_at,
            )  # fmt: skip
        elif t == "KillSwitchEngaged":
            detail = {
                k: v
                for k, v in p.model_dump(mode="json").items()
                if k in ("drawdown", "peak_equity", "equity") and v is not None
            }
            row = (
                ev.event_id, t, p.scope, None, None, p.engaged_by, p.reason,
                _json(detail) if detail else None, ev.occurred_at,
            )  # fmt: skip
            state.put(
                self.kill_switches,
                (p.scope, True, p.engaged_by, p.reason, ev.event_id, ev.occurred_at),
            )
        else:
            row = (
                ev.event_id,
                t,
                p.scope,
                None,
                None,
                p.released_by,
                p.reason,
                None,
                ev.occurred_at,
            )
            state.put(
                self.kill_switches,
                (p.scope, False, p.released_by, p.reason, ev.event_id, ev.occurred_at),
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
        ),
        ("event_id",),
    )
    tables = (deadletters,)
    handles = _v1("DeadLetter")
    migrations = ("0107_proj_deadletters.sql",)

    def handle(self, state: State, item: Located) -> None:
        ev, p = item.event, item.event.payload
        state.insert(
            self.deadletters,
            (
                ev.event_id, p.source_topic, p.source_partition, p.source_offset, p.error_type,
                p.error, p.stage, ev.producer, p.original_key_b64, p.original_value_b64,
                ev.occurred_at,
            ),
        )  # fmt: skip


PROJECTIONS: dict[str, Projection] = {
    p.name: p
    for p in (
        OrdersProjection(),
        FillsProjection(),
        PositionsProjection(),
        BalancesProjection(),
        DecisionsProjection(),
        RiskConfigProjection(),
        DeadLettersProjection(),
    )
}
"""Every projection `tradetape run projections` runs, by name."""


try:  # projections owned by other packages, when installed
    from streams.alerts_projection import AlertsProjection

    PROJECTIONS[AlertsProjection.name] = AlertsProjection()
except ModuleNotFoundError as _exc:  # pragma: no cover - streams not in this build
    if _exc.name is None or not _exc.name.startswith("streams"):
        raise


def get(name: str) -> Projection:
    try:
        return PROJECTIONS[name]
    except KeyError:
        raise KeyError(f"unknown projection {name!r}; known: {', '.join(PROJECTIONS)}") from None


__all__ = ["PROJECTIONS", "apply_fill", "get"]
