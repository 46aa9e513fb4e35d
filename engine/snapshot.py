"""Per-partition slices of the engine's state: take, serialise, check, and merge.

Pure (no Kafka). A slice of partition `p` is everything the fold derived from `p` of the
engine's own topics, i.e. from the accounts on `p`: their orders and client order ids,
the idempotency record of their decisions (recent bytes, archived fingerprints), the
parent orders that ended (`engine.ended`: recent ends, archived fingerprints), their
order-rate windows, what their fills moved (balances minus deposits, positions, fill
counts, the newest maker fill per instrument and side, what the orders took of the
displayed book), the drawdown peaks their decisions
recorded (as suffix maxima, so a later `KillSwitchReleased` is applied exactly as a full
replay would; NAV per unit since format 9), the units their `UnitsChanged` recorded (with
the flows they named, so the deposits and settled withdrawals folded from the reference
topics and not named are pending again), the facts their `WITHDRAWAL_HELD` cancels were
caused by (`AccountState.unheld`, format 15; and their limits cancels, 17; and the
facts their `RestingOrdersChecked` records name, 18), the limits version their newest approved decision was made under (`decided_under`, 17),
orphan fill ids, the admin commands rejected with a key on the partition (format 19), and
the own-topic offsets it covers. Reference state
(producers, accounts' KYC/AML/deposits, withdrawals and what they hold, limits, kill
switches, prices) is not in it: it is replayed from the reference topics. A settled
withdrawal is taken off `deposited` as off `balances`, so the fills' part of a balance
(`traded`) is what it was: the slice format needs no change for withdrawals.

`merge_slices(state, slices)` installs slices into a state that already holds the
reference topics; replaying the own-topic records after each slice's offsets then gives
the same `canonical_state` as a full replay (property-tested in
tests/engine/test_snapshot.py).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import zlib
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from engine.ended import Ended
from engine.idempotency import Key, Recorded, fingerprint
from engine.state import NOT_OPEN_CURRENCY, ZERO, EngineState, Exposure, OrderState, RateWindow
from schemas.events import OrderType, Side, TimeInForce
from schemas.snapshots import FORMAT_VERSION, MAX_CHUNK_BYTES


class SnapshotError(Exception):
    """A slice that cannot be used: corrupt, unknown format, or not consistent with the
    state or the log. The caller replays the partition's log in full instead."""


@dataclass(frozen=True)
class Slice:
    partition: int
    offsets: dict[str, int]
    """own topic (catalogue name, e.g. `risk.decisions`) -> next offset to read"""
    body: dict[str, Any]
    """the plain-value content (see `take_slice`)"""

    @property
    def topic_ids(self) -> dict[str, str]:
        """catalogue topic name -> the Kafka topic id of the log the slice was folded from
        (format 21: every topic a worker's state comes from, `engine.replay.LOG_ID_TOPICS`)"""
        ids = self.body.get("topic_ids") or {}
        return {str(k): str(v) for k, v in ids.items()}

    @property
    def slice_id(self) -> str:
        return ":".join(
            [str(self.partition), *(str(self.offsets[t]) for t in sorted(self.offsets))]
        )


def _ts(d: datetime) -> str:
    return d.isoformat()


def _dt(s: str) -> datetime:
    return datetime.fromisoformat(s)


def _dec(d: Decimal | None) -> str | None:
    return None if d is None else str(d)


def _undec(s: str | None) -> Decimal | None:
    return None if s is None else Decimal(s)


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _unb64(s: str) -> bytes:
    return base64.b64decode(s.encode(), validate=True)


def _kafka_key_account(key: Any) -> str:
    return key.decode() if isinstance(key, bytes | bytearray) else str(key)


def _order_dump(o: OrderState) -> dict[str, Any]:
    return {
        "order_id": o.order_id,
        "account": o.account,
        "producer_id": o.producer_id,
        "strategy_id": o.strategy_id,
        "client_order_id": o.client_order_id,
        "instrument": o.instrument,
        "side": o.side.value,
        "order_type": o.order_type.value,
        "quantity": str(o.quantity),
        "limit_price": _dec(o.limit_price),
        "trigger_price": _dec(o.trigger_price),
        "time_in_force": o.time_in_force.value,
        "venue": o.venue,
        "parent_order_id": o.parent_order_id,
        "stop_loss": _dec(o.stop_loss),
        "take_profit": _dec(o.take_profit),
        "submitted_at": _ts(o.submitted_at),
        "filled": str(o.filled),
        "done": o.done,
        "children": list(o.children),
        "fill_ids": sorted(o.fill_ids),
        "protected": str(o.protected),
        "last_fill_at": None if o.last_fill_at is None else _ts(o.last_fill_at),
        "triggered_at": None if o.triggered_at is None else _ts(o.triggered_at),
        "producer_key": o.producer_key,
    }


def _order_load(d: dict[str, Any]) -> OrderState:
    return OrderState(
        order_id=d["order_id"],
        account=d["account"],
        producer_id=d["producer_id"],
        strategy_id=d["strategy_id"],
        client_order_id=d["client_order_id"],
        instrument=d["instrument"],
        side=Side(d["side"]),
        order_type=OrderType(d["order_type"]),
        quantity=Decimal(d["quantity"]),
        limit_price=_undec(d["limit_price"]),
        trigger_price=_undec(d["trigger_price"]),
        time_in_force=TimeInForce(d["time_in_force"]),
        venue=d["venue"],
        parent_order_id=d["parent_order_id"],
        stop_loss=_undec(d["stop_loss"]),
        take_profit=_undec(d["take_profit"]),
        submitted_at=_dt(d["submitted_at"]),
        filled=Decimal(d["filled"]),
        done=bool(d["done"]),
        children=list(d["children"]),
        fill_ids=set(d["fill_ids"]),
        protected=Decimal(d["protected"]),
        last_fill_at=None if d["last_fill_at"] is None else _dt(d["last_fill_at"]),
        triggered_at=None if d["triggered_at"] is None else _dt(d["triggered_at"]),
        producer_key=d["producer_key"],
    )


def _recorded_dump(key: Key, r: Recorded) -> list[Any]:
    headers = [[k, _b64(v if isinstance(v, bytes) else bytes(v or b""))] for k, v in r.headers]
    return [
        list(key),
        str(r.event_id),
        r.event_type,
        r.topic,
        _ts(r.ranked_at),
        _b64(r.key),
        _b64(r.value),
        headers,
    ]


def _recorded_load(e: list[Any]) -> tuple[Key, Recorded]:
    from uuid import UUID

    producer, account, coid = e[0]
    return (producer, account, coid), Recorded(
        UUID(e[1]),
        e[2],
        e[3],
        _dt(e[4]),
        _unb64(e[5]),
        _unb64(e[6]),
        [(k, _unb64(v)) for k, v in e[7]],
    )


def _ended_dump(key: Key, e: Ended) -> list[Any]:
    return [list(key), _ts(e.at), e.order_id, e.state, e.cause, str(e.filled), str(e.quantity)]


def _ended_load(d: list[Any]) -> tuple[Key, Ended]:
    producer, account, coid = d[0]
    return (producer, account, coid), Ended(
        _dt(d[1]), d[2], d[3], d[4], Decimal(d[5]), Decimal(d[6])
    )


def _micros(d: timedelta | None) -> int | None:
    return None if d is None else d // timedelta(microseconds=1)


@dataclass(frozen=True)
class Capture:
    """A partition's part of the state, copied out as it was (`capture`): references to
    immutable values (recorded decisions, timestamps) and copies of the mutable ones
    (orders, balances, windows). Cheap enough for the worker's loop; `render` turns it
    into plain values later, on another thread."""

    partition: int
    accounts: list[tuple[str, dict[str, Decimal], dict[str, Decimal], dict[str, Decimal], int,
                         list[tuple[datetime, Decimal]], dict[str, datetime],
                         dict[str, dict[str, Decimal]],
                         tuple[Decimal, Decimal | None, frozenset[str], datetime | None],
                         tuple[frozenset[UUID], int]]]  # fmt: skip
    orders: list[OrderState]
    client_orders: list[tuple[str, str, str, str]]
    recent: list[tuple[Key, Recorded]]
    archive: list[tuple[Any, array[int]]]
    ended: list[tuple[Key, Ended]]
    ended_archive: list[tuple[str, array[int]]]
    ended_max: int
    newest: list[tuple[Any, datetime]]
    rate: list[tuple[str, str, str, list[datetime]]]
    idempotency: tuple[int, timedelta]
    rate_pruned_min: timedelta | None
    orphans: list[tuple[str, str]]
    rejected: list[tuple[UUID, str]]


def capture(state: EngineState, partition: int) -> Capture:
    """Copy out what `state` derived from `partition` of the own topics (see `Capture`)."""
    part = state.partition_of
    key_part: dict[Any, int] = {}

    def kpart(k: Any) -> int:
        p = key_part.get(k)
        if p is None:
            p = key_part[k] = part(_kafka_key_account(k))
        return p

    accounts = [
        (
            name,
            dict(a.balances),
            dict(a.deposited),
            dict(a.positions),
            a.fills,
            list(a.peaks),
            dict(a.maker_fill_at),
            {k: dict(v) for k, v in a.taken.items()},
            (a.units, a.unit_nav, frozenset(a.unitized), a.wiped_at),
            (frozenset(a.unheld), a.decided_under),
        )
        for name, a in state.accounts.items()
        if part(name) == partition
    ]
    orders = []
    for o in state.orders.values():
        if part(o.account) == partition:
            c = copy.copy(o)
            c.children = list(o.children)
            c.fill_ids = set(o.fill_ids)
            orders.append(c)
    mine = {o.order_id for o in orders}
    client_orders = [(*k, oid) for k, oid in state.client_orders.items() if oid in mine]
    rec = state.decisions
    return Capture(
        partition=partition,
        accounts=accounts,
        orders=orders,
        client_orders=client_orders,
        recent=[(k, r) for k, r in rec.recent.items() if kpart(r.key) == partition],
        archive=[(k, array("Q", v)) for k, v in rec.archived_by.items() if kpart(k) == partition],
        newest=[(k, t) for k, t in rec.newest_by_key.items() if kpart(k) == partition],
        ended=[(k, e) for k, e in state.ended.recent.items() if part(k[1]) == partition],
        ended_archive=[
            (a, array("Q", v)) for a, v in state.ended.archived_by.items() if part(a) == partition
        ],
        ended_max=state.ended.max_recent,
        rate=[
            (producer, strategy, account, window.live())
            for (producer, strategy), windows in state.rate.items()
            for account, window in windows.items()
            if part(account) == partition and len(window)
        ],
        idempotency=(rec.max_recent, rec.window),
        rate_pruned_min=state.rate_pruned_min,
        orphans=[(f, a) for f, a in state.orphan_fill_ids.items() if part(a) == partition],
        rejected=[(c, k) for c, k in state.rejected_commands.items() if part(k) == partition],
    )


def render(c: Capture, offsets: dict[str, int], ids: Mapping[str, str] | None = None) -> Slice:
    """The captured state as a slice of plain values, naming `offsets`: the own-topic
    positions the captured state has folded exactly (the worker knows them once the
    transaction that produced them has committed), and `ids`: the topic ids of the logs
    it was folded from, by catalogue name (format 21)."""
    accounts: dict[str, Any] = {}
    for (
        name, balances, deposited, positions, fills, peaks, maker_fill_at, taken, units, answered
    ) in sorted(c.accounts, key=lambda a: a[0]):  # fmt: skip
        unheld, decided_under = answered
        traded = {
            asset: str(amount - deposited.get(asset, ZERO))
            for asset, amount in sorted(balances.items())
        }
        held, nav, unitized, wiped_at = units
        if not any((traded, positions, fills, peaks, maker_fill_at, taken, unitized, unheld)):
            if not decided_under:
                continue
        if held or nav is not None or unitized:
            # DRAWDOWN_BRAKE v6 (format 9): what the account's `UnitsChanged` recorded.
            accounts[name] = {
                "units": str(held),
                "unit_nav": _dec(nav),
                "unitized": sorted(unitized),
            }
            if wiped_at is not None:  # DRAWDOWN_BRAKE v8 (format 14): the capital was gone
                accounts[name]["wiped_at"] = _ts(wiped_at)
        else:
            accounts[name] = {}
        accounts[name] |= {
            "traded": traded,
            "positions": {i: str(q) for i, q in sorted(positions.items())},
            "fills": fills,
            "peaks": [[_ts(t), str(v)] for t, v in peaks],
            "maker_fill_at": {i: _ts(t) for i, t in sorted(maker_fill_at.items())},
            "taken": {i: [[q, str(v)] for q, v in qs.items()] for i, qs in sorted(taken.items())},
        }
        if unheld:  # format 15: the facts whose WITHDRAWAL_HELD (17: or limits) cancels
            # (18: or `RestingOrdersChecked` records) are on the log
            accounts[name]["unheld"] = sorted(str(u) for u in unheld)
        if decided_under:  # format 17: the limits version of its newest approved decision
            accounts[name]["decided_under"] = decided_under
    body = {
        "format": FORMAT_VERSION,
        "partition": c.partition,
        "offsets": dict(sorted(offsets.items())),
        "topic_ids": dict(sorted((ids or {}).items())),
        "accounts": accounts,
        "orders": [_order_dump(o) for o in sorted(c.orders, key=lambda o: o.order_id)],
        "client_orders": sorted([a, b, c_, oid] for a, b, c_, oid in c.client_orders),
        "recent": [
            _recorded_dump(k, r)
            for k, r in sorted(c.recent, key=lambda kv: (kv[1].ranked_at, kv[0]))
        ],
        "archive": {
            _kafka_key_account(k): _b64(array("Q", sorted(fps)).tobytes())
            for k, fps in sorted(c.archive)
        },
        "decided_until": {_kafka_key_account(k): _ts(t) for k, t in sorted(c.newest)},
        "ended": [
            _ended_dump(k, e) for k, e in sorted(c.ended, key=lambda ke: (ke[1].at, ke[1].order_id))
        ],
        "ended_archive": {
            a: _b64(array("Q", sorted(fps)).tobytes()) for a, fps in sorted(c.ended_archive)
        },
        "ended_max": c.ended_max,
        "idempotency": [c.idempotency[0], _micros(c.idempotency[1])],
        "rate": [[p, s, a, [_ts(t) for t in times]] for p, s, a, times in sorted(c.rate)],
        "rate_pruned_min_us": _micros(c.rate_pruned_min),
        "orphan_fill_ids": sorted([f, a] for f, a in c.orphans),
        "rejected_commands": sorted([str(u), k] for u, k in c.rejected),
    }
    return Slice(c.partition, dict(offsets), body)


def take_slice(
    state: EngineState,
    partition: int,
    offsets: dict[str, int],
    ids: Mapping[str, str] | None = None,
) -> Slice:
    """`render(capture(state, partition), offsets, ids)` in one go."""
    return render(capture(state, partition), offsets, ids)


# ---- bytes -----------------------------------------------------------------------------


def encode_slice(s: Slice) -> tuple[bytes, str]:
    """(zlib-compressed canonical JSON, its hex SHA-256)."""
    raw = json.dumps(s.body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    blob = zlib.compress(raw, 6)
    return blob, hashlib.sha256(blob).hexdigest()


def chunks(blob: bytes, size: int = MAX_CHUNK_BYTES) -> list[bytes]:
    return [blob[i : i + size] for i in range(0, len(blob), size)] or [b""]


def decode_slice(blob: bytes, digest: str, *, format_version: int = FORMAT_VERSION) -> Slice:
    """The slice in `blob`; SnapshotError if the digest, the format or the content is off."""
    if format_version != FORMAT_VERSION:
        raise SnapshotError(f"unknown snapshot format {format_version}")
    if hashlib.sha256(blob).hexdigest() != digest:
        raise SnapshotError("snapshot digest mismatch")
    try:
        body = json.loads(zlib.decompress(blob))
        if body.get("format") != FORMAT_VERSION:
            raise SnapshotError(f"unknown snapshot format {body.get('format')}")
        offsets = {str(k): int(v) for k, v in body["offsets"].items()}
        return Slice(int(body["partition"]), offsets, body)
    except SnapshotError:
        raise
    except Exception as exc:  # a malformed body is unusable, never fatal
        raise SnapshotError(f"unreadable snapshot: {exc}") from exc


# ---- merge -----------------------------------------------------------------------------


def merge_slices(state: EngineState, slices: list[Slice]) -> None:
    """Install `slices` (distinct partitions) into `state`, which holds the reference topics
    and nothing of those partitions' own topics yet (it may hold other partitions': a worker
    taking over partitions adds them to its state). SnapshotError (and `state` must then be
    discarded) if a slice cannot reproduce a full replay."""
    if len({s.partition for s in slices}) != len(slices):
        raise SnapshotError("two slices for one partition")
    try:
        _merge(state, slices)
    except SnapshotError:
        raise
    except Exception as exc:
        raise SnapshotError(f"slice does not fit: {exc}") from exc


def _merge(state: EngineState, slices: list[Slice]) -> None:
    rec = state.decisions
    horizon = state.rate_horizon
    installed: list[OrderState] = []
    for s in slices:
        b = s.body
        if b["idempotency"] != [rec.max_recent, _micros(rec.window)]:
            raise SnapshotError("slice taken with other idempotency bounds")
        if b["ended_max"] != state.ended.max_recent:
            raise SnapshotError("slice taken with another bound of the ended orders kept")
        pruned = b["rate_pruned_min_us"]
        if pruned is not None and timedelta(microseconds=pruned) < horizon:
            # Rate windows pruned shorter than the fixed horizon (written by an engine that
            # pruned them to the limits in force, ORDER_RATE v2): a full replay instead.
            raise SnapshotError("slice's rate windows are pruned shorter than the horizon")
        part = state.partition_of
        for name, a in b["accounts"].items():
            if part(name) != s.partition:
                raise SnapshotError(f"account {name} is not on partition {s.partition}")
            acc = state.account(name)
            for asset, amount in a["traded"].items():
                acc.balances[asset] = acc.balances.get(asset, ZERO) + Decimal(amount)
            acc.positions = {i: Decimal(q) for i, q in a["positions"].items()}
            acc.fills = int(a["fills"])
            state.fills_applied += acc.fills
            acc.peaks = [(_dt(t), Decimal(v)) for t, v in a["peaks"]]
            acc.peak_nav = acc.peak_since(acc.peak_reset_at)
            acc.maker_fill_at = {i: _dt(t) for i, t in a["maker_fill_at"].items()}
            acc.taken = {i: {str(q): Decimal(v) for q, v in qs} for i, qs in a["taken"].items()}
            acc.units = Decimal(a.get("units", "0"))
            acc.unit_nav = _undec(a.get("unit_nav"))
            named = set(a.get("unitized", ()))
            folded = acc.folded_flows()
            acc.pending = folded - named
            acc.early = named - folded
            for f in named:
                acc.flows.pop(f, None)  # named: never read again (issue #3)
            acc.unheld = {UUID(u) for u in a.get("unheld", ())}
            acc.decided_under = int(a.get("decided_under", 0))
            # The steps before the newest one the slice shows committed are never read
            # again (`EngineState.trim_transfer_steps`): a hand-over trims them here.
            state.trim_transfer_steps(name, state.step_committed)
            wiped = a.get("wiped_at")
            reset = acc.peak_reset_at
            # A release folded from the reference topics after the slice clears it.
            acc.wiped_at = (
                None if wiped is None or (reset is not None and _dt(wiped) < reset) else _dt(wiped)
            )
        for d in b["orders"]:
            o = _order_load(d)
            if part(o.account) != s.partition:
                raise SnapshotError(f"order {o.order_id} is not on partition {s.partition}")
            if o.order_id in state.orders:
                raise SnapshotError(f"order {o.order_id} is already in the state")
            state.orders[o.order_id] = o
            installed.append(o)
        for producer, account, coid, oid in b["client_orders"]:
            state.client_orders[(producer, account, coid)] = oid
        for e in b["recent"]:
            key, r = _recorded_load(e)
            if key in rec.recent:
                raise SnapshotError(f"decision {key} in two slices")
            rec.restore(key, r)
        fps: list[int] = []
        for acct, packed in b["archive"].items():
            arr = array("Q")
            arr.frombytes(_unb64(packed))
            rec.archived_by[acct.encode()] = arr
            fps.extend(arr)
        rec.archive.update(fps)
        for acct, t in b["decided_until"].items():
            at = _dt(t)
            rec.newest_by_key[acct.encode()] = at
            if rec.newest is None or at > rec.newest:
                rec.newest = at
        ended = state.ended
        for d in b["ended"]:
            key, e = _ended_load(d)
            if part(key[1]) != s.partition:
                raise SnapshotError(f"ended order of {key[1]} is not on partition {s.partition}")
            if key in ended.recent:
                raise SnapshotError(f"ended order {key} in two slices")
            ended.restore(key, e)
        for acct, packed in b["ended_archive"].items():
            if part(acct) != s.partition:
                raise SnapshotError(f"ended orders of {acct} are not on partition {s.partition}")
            arr = array("Q")
            arr.frombytes(_unb64(packed))
            ended.archived_by[acct] = arr
            ended.archive.update(arr)
        for producer, strategy, account, times in b["rate"]:
            if part(account) != s.partition:
                raise SnapshotError(f"rate window of {account} is not on partition {s.partition}")
            window = RateWindow(sorted(_dt(t) for t in times))
            window.prune(horizon)
            state.rate.setdefault((producer, strategy), {})[account] = window
            if state.rate_pruned_min is None or horizon < state.rate_pruned_min:
                state.rate_pruned_min = horizon
        for f, a in b["orphan_fill_ids"]:
            state.orphan_fill_ids[f] = a
        for u, k in b["rejected_commands"]:
            if part(k) != s.partition:
                raise SnapshotError(f"rejected command keyed {k} is not on partition {s.partition}")
            state.rejected_commands[UUID(u)] = k
    if any(fingerprint(k) in rec.archive for k in rec.recent):
        raise SnapshotError("a decision is both recent and archived")
    if any(fingerprint(k) in state.ended.archive for k in state.ended.recent):
        raise SnapshotError("an ended order is both recent and archived")
    rec.prune()
    state.ended.prune()
    state.resting = None  # rebuilt with the installed orders when next asked
    state.holders = None  # and the holders with the installed balances
    state.valued = {}
    # Derived aggregates: recomputed from the installed orders, as the fold keeps them.
    for o in sorted(installed, key=lambda o: o.order_id):
        if o.done:
            continue
        acc = state.account(o.account)
        acc.open_orders.add(o.order_id)
        if o.parent_order_id is None:
            acc.exposure.add(o, 1)
        state.open_by_instrument.setdefault(o.instrument, set()).add(o.order_id)


def release_partitions(state: EngineState, partitions: set[int]) -> None:
    """Forget what `state` folded from `partitions` of the own topics, leaving exactly the
    state of a worker that never read them (the inverse of a slice merge plus its tail):
    a worker giving partitions up keeps deciding on the others without a rebuild. The
    reference part (producers, accounts' KYC/AML/deposits, limits, kill switches, prices)
    stays: every worker reads it in full."""
    if not partitions:
        return
    part = state.partition_of
    gone = {name for name in state.accounts if part(name) in partitions}
    for name in gone:
        acc = state.accounts[name]
        acc.balances = {a: v for a, v in acc.deposited.items()}
        acc.positions = {}
        state.fills_applied -= acc.fills
        acc.fills = 0
        acc.peaks = []
        acc.peak_nav = acc.peak_since(acc.peak_reset_at)
        acc.units, acc.unit_nav, acc.early, acc.wiped_at = ZERO, None, set(), None
        acc.unheld = set()
        acc.decided_under = 0
        acc.pending = acc.folded_flows()  # some without their fact: see `pending`
        acc.maker_fill_at = {}
        acc.taken = {}
        acc.open_orders = set()
        acc.exposure = Exposure()
    dropped = [oid for oid, o in state.orders.items() if part(o.account) in partitions]
    state.resting = None
    state.holders = None
    state.valued = {}
    for oid in dropped:
        o = state.orders.pop(oid)
        ids = state.open_by_instrument.get(o.instrument)
        if ids is not None:
            ids.discard(oid)
    for k in [k for k in state.client_orders if part(k[1]) in partitions]:
        del state.client_orders[k]
    for windows in state.rate.values():
        for account in [a for a in windows if part(a) in partitions]:
            del windows[account]
    for f in [f for f, a in state.orphan_fill_ids.items() if part(a) in partitions]:
        del state.orphan_fill_ids[f]
    for u in [u for u, k in state.rejected_commands.items() if part(k) in partitions]:
        del state.rejected_commands[u]
    state.decisions.release(lambda kafka_key: part(_kafka_key_account(kafka_key)) in partitions)
    state.ended.release(lambda account: part(account) in partitions)


# ---- comparison ------------------------------------------------------------------------


def canonical_state(state: EngineState) -> dict[str, Any]:
    """Everything decisions depend on, as plain sorted values: two states that compare
    equal here decide every future input identically. Counters of work done (`applied`,
    `orders_evicted`) and the pruning bookkeeping are left out."""
    accounts = {}
    for name, acc in sorted(state.accounts.items()):
        d = {
            "opened": acc.opened,
            "base_currency": acc.base_currency,
            "kyc": acc.kyc,
            "aml_flags": sorted(acc.aml_flags),
            "balances": {k: str(v) for k, v in sorted(acc.balances.items()) if v},
            "deposited": {k: str(v) for k, v in sorted(acc.deposited.items()) if v},
            "positions": {k: str(v) for k, v in sorted(acc.positions.items()) if v},
            "deposits": sorted(acc.deposits),
            "withdrawals": sorted(
                (t, w.asset, str(w.amount), w.status) for t, w in acc.withdrawals.items()
            ),
            "held": {k: str(v) for k, v in sorted(acc.held.items()) if v},
            "open_orders": sorted(acc.open_orders),
            "peak_nav": str(acc.peak_nav),
            "peak_reset_at": None if acc.peak_reset_at is None else _ts(acc.peak_reset_at),
            "fills": acc.fills,
            "maker_fill_at": {k: _ts(v) for k, v in sorted(acc.maker_fill_at.items())},
            "taken": {
                k: [[q, str(v)] for q, v in qs.items()] for k, qs in sorted(acc.taken.items())
            },
            "exposure": repr(
                (
                    acc.exposure.open_parents,
                    *(
                        sorted(x.items())
                        for x in (
                            acc.exposure.buy_leaves,
                            acc.exposure.sell_leaves,
                            acc.exposure.buy_limit_notional,
                            acc.exposure.buy_market_leaves,
                            acc.exposure.sell_leaves_by_base,
                        )
                    ),
                )
            ),
            "peaks": [[_ts(t), str(v)] for t, v in acc.peaks],
            "units": str(acc.units),
            "unit_nav": _dec(acc.unit_nav),
            "unitized": sorted(acc.unitized),
            "pending": sorted(acc.pending),
            "wiped_at": None if acc.wiped_at is None else _ts(acc.wiped_at),
        }
        if acc.unheld:  # only then: states without such cancels compare as before
            d["unheld"] = sorted(str(u) for u in acc.unheld)
        if acc.decided_under:  # likewise
            d["decided_under"] = acc.decided_under
        if d == _UNTOUCHED:
            continue
        accounts[name] = d
    rec = state.decisions
    return {
        "producers": sorted(
            [v.producer_id, v.public_key, sorted(v.accounts)] for v in state.producers.values()
        ),
        # Only when some producer is revoked: a state without revocations compares (and
        # digests, tests/engine/test_output_digest.py) as it did before they existed.
        **(
            {
                "revoked": sorted(
                    [v.producer_id, v.public_key, sorted(v.accounts)]
                    for v in state.revoked.values()
                )
            }
            if state.revoked
            else {}
        ),
        # Likewise only once a key was revoked or rotated: which orders a revocation
        # cancels, and which keys a rotation may not bring back (`EngineState.revocations`).
        **(
            {
                "revocations": sorted(
                    [p, k or "", str(e.event_id)] for (p, k), e in state.revocations.items()
                ),
                "producer_keys": sorted([p, list(ks)] for p, ks in state.producer_keys.items()),
            }
            if state.revocations or any(len(ks) > 1 for ks in state.producer_keys.values())
            else {}
        ),
        "accounts": accounts,
        "limits": sorted((k, v, lim.model_dump_json()) for k, (v, lim) in state.limits.items()),
        "kill_switches": sorted(state.kill_switches),
        "prices": sorted(
            (
                i,
                repr(
                    (
                        p.last_trade,
                        p.last_trade_at,
                        p.bid,
                        p.ask,
                        p.bid_qty,
                        p.ask_qty,
                        p.quote_at,
                        p.quote_id,
                        list(p.history),
                    )
                ),
            )
            for i, p in state.prices.items()
        ),
        "orders": [_order_dump(o) for _, o in sorted(state.orders.items())],
        "client_orders": sorted(state.client_orders.items()),
        "recent": sorted(
            (k, str(r.event_id), _b64(r.key), _b64(r.value)) for k, r in rec.recent.items()
        ),
        "archive": sorted(rec.archive),
        "archived_by_key": sorted(
            (_kafka_key_account(k), sorted(v)) for k, v in rec.archived_by.items() if v
        ),
        "decided_until": sorted(
            (_kafka_key_account(k), _ts(t)) for k, t in rec.newest_by_key.items()
        ),
        "newest": None if rec.newest is None else _ts(rec.newest),
        "ended": sorted(_ended_dump(k, e) for k, e in state.ended.recent.items()),
        "ended_archive": sorted(state.ended.archive),
        "ended_by_account": sorted((a, sorted(v)) for a, v in state.ended.archived_by.items() if v),
        "ended_max": state.ended.max_recent,
        "rate": sorted(
            (k, p, [_ts(t) for t in w.live()])
            for k, ws in state.rate.items()
            for p, w in ws.items()
            if len(w)
        ),
        "rate_horizon": _micros(state.rate_horizon),
        "orphan_fill_ids": sorted(state.orphan_fill_ids),
        "open_by_instrument": sorted(
            (i, sorted(s)) for i, s in state.open_by_instrument.items() if s
        ),
        "seen_reference": sorted(str(u) for u in state.seen_reference),
        # Only while a check waits for its request: a state without one compares (and
        # digests) as before session 27.
        **(
            {
                "early_checks": sorted(
                    [a, t, [str(e.event_id) for e in kept]]
                    for (a, t), kept in state.early_checks.items()
                )
            }
            if state.early_checks
            else {}
        ),
        "executed_commands": sorted(str(u) for u in state.executed_commands),
        "rejected_commands": sorted([str(u), k] for u, k in state.rejected_commands.items()),
        "fills_applied": state.fills_applied,
    }


_UNTOUCHED: dict[str, Any] = {
    "opened": False,
    "base_currency": NOT_OPEN_CURRENCY,
    "kyc": False,
    "aml_flags": [],
    "balances": {},
    "deposited": {},
    "positions": {},
    "deposits": [],
    "withdrawals": [],
    "held": {},
    "open_orders": [],
    "peak_nav": "0",
    "peak_reset_at": None,
    "fills": 0,
    "maker_fill_at": {},
    "taken": {},
    "exposure": repr((0, [], [], [], [], [])),
    "peaks": [],
    "units": "0",
    "unit_nav": None,
    "unitized": [],
    "pending": [],
    "wiped_at": None,
}
"""An account nothing has touched (`EngineState.account` creates them on lookups)."""
