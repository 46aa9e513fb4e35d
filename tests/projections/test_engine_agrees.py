"""The projections fold an engine-written log to what the engine's own fold holds.

The pure engine harness (`tests.engine.test_snapshot`: four accounts, limit and market
orders with stop-loss/take-profit children, prints that fill them in part, quotes,
cancels, resent intents, deposits, kill switches and their release, limit changes,
withdrawal steps in any order) writes a log; the projections fold it as a projector does
(each its topics, in log order, an event id once) and must agree with
`engine.state.EngineState` wherever both hold the same quantity: every balance, every
position, each open order's filled quantity and whether it is done (and each ended
parent's end), each withdrawal's status, the kill switches engaged, the fills per
account and the units of each account's drawdown. Nothing may be quarantined but the
withdrawal steps the engine ignores too (a step of a withdrawal never requested, a
second request or settlement)."""

from __future__ import annotations

import re
import zlib
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploy.settings import Settings
from engine.state import EngineState
from projections import store
from projections.checksum import checksum
from projections.core import ORDER_COLUMNS, PROJECTIONS
from projections.framework import Located, State
from projections.rebuild import create_schema
from projections.store import RawRecord, apply_records, decode_one
from schemas import encode
from schemas.topics import TOPICS, Topic
from tests.engine.test_snapshot import ACTION, Log, _harness
from tests.projections.test_properties import _interleave, _split

OI = {c: i for i, c in enumerate(ORDER_COLUMNS)}
TERMINAL = ("FILLED", "CANCELED", "EXPIRED", "REJECTED", "OVERFILLED")
REFUSED_ALIKE = re.compile("unknown transfer|already settled|requested twice")
"""What the books quarantine and the engine's fold ignores (`EngineState._apply_transfer`)."""


def play(actions: list[tuple[Any, ...]]) -> tuple[EngineState, list[tuple[str, Any]]]:
    """Play `actions`; the engine's state and the log as (topic, (key, value, headers)) in
    the order written (a cause before what it caused)."""
    h = _harness()
    log = Log(h)
    written: list[tuple[str, Any]] = []
    nref = nown = 0

    def take() -> None:
        nonlocal nref, nown
        for e in log.ref[nref:]:
            written.append((str(e.topic), encode(e)))
        for t, _p, raw in log.own[nown:]:
            written.append((t, raw))
        nref, nown = len(log.ref), len(log.own)

    take()
    for a in actions:
        log.play(a)
        take()
    return h.state, written


def fold(name: str, written: list[tuple[str, Any]]) -> tuple[State, list[str]]:
    """The projection's rows and quarantine reasons, folded as a projector folds."""
    proj = PROJECTIONS[name]
    offsets: dict[str, int] = {}
    items = []
    seen: set[str] = set()
    for t, (_k, v, h) in written:
        if t not in proj.topics:
            continue
        off = offsets[t] = offsets.get(t, -1) + 1
        d = decode_one(RawRecord(t, 0, off, v, h))
        assert isinstance(d, Located), d
        if d.event_id not in seen:  # a resent intent's decision again: the seen set's
            seen.add(d.event_id)
            items.append(d)
    s = State()
    return s, [b.error for b in proj.fold(s, items)]


def rows(s: State, table: str) -> dict[Any, Any]:
    return s.dirty.get(table, {})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ACTION, min_size=1, max_size=45))
def test_the_projections_agree_with_the_engines_fold(actions: list[tuple[Any, ...]]) -> None:
    eng, written = play(actions)
    folded = {}
    for name in ("orders", "fills", "positions", "balances", "decisions", "drawdown",
                 "risk_config", "accounts"):  # fmt: skip
        s, bad = fold(name, written)
        assert [b for b in bad if not REFUSED_ALIKE.search(b)] == [], name
        folded[name] = s
    balances = folded["balances"]
    assert {k: Decimal(v[2]) for k, v in rows(balances, "balances").items() if Decimal(v[2])} == {
        (a, asset): amount
        for a, acc in eng.accounts.items()
        for asset, amount in acc.balances.items()
        if amount
    }
    assert {k: v[4] for k, v in rows(balances, "transfers").items()} == {
        (a, tid): w.status for a, acc in eng.accounts.items() for tid, w in acc.withdrawals.items()
    }
    positions = rows(folded["positions"], "positions")
    assert {k: Decimal(v[2]) for k, v in positions.items() if Decimal(v[2])} == {
        (a, inst): q for a, acc in eng.accounts.items() for inst, q in acc.positions.items() if q
    }
    for (oid,), row in rows(folded["orders"], "orders").items():
        order = eng.orders.get(oid)
        if order is not None:
            assert Decimal(row[OI["filled_quantity"]]) == order.filled, (oid, row)
            assert (row[OI["status"]] in TERMINAL) == order.done, (oid, row, order)
        elif row[OI["parent_order_id"]] is None:  # forgotten once done: its end, if kept
            key = (row[OI["producer_id"]], row[OI["account"]], row[OI["client_order_id"]])
            ended = eng.ended.get(key)
            if ended is not None and ended.order_id == oid:
                assert row[OI["status"]] == ended.state, (oid, row, ended)
    switches = rows(folded["risk_config"], "kill_switches")
    assert {k[0] for k, v in switches.items() if v[1]} == eng.kill_switches
    per: dict[str, int] = {}
    for row in folded["fills"].inserts.get("fills", {}).values():
        per[row[3]] = per.get(row[3], 0) + 1
    assert per == {a: acc.fills for a, acc in eng.accounts.items() if acc.fills}
    units = {k[0]: Decimal(v[1]) for k, v in rows(folded["drawdown"], "drawdowns").items()}
    assert {a: u for a, u in units.items() if u} == {
        a: acc.units for a, acc in eng.accounts.items() if acc.units
    }


@pytest.mark.integration
@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    actions=st.lists(ACTION, min_size=20, max_size=60),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
    picks=st.lists(st.integers(0, 1000), max_size=40),
)
def test_an_engine_log_in_any_batch_split_equals_its_rebuild(
    env: Settings, actions: list[tuple[Any, ...]], cuts: list[int], picks: list[int]
) -> None:
    """The engine's own log (cancels, triggered children, releases, withdrawal steps: types
    `projections.synthetic` does not write) folded live in any batch split and partition
    interleaving, each batch reading back the rows the last wrote, equals its one-batch
    rebuild, quarantine included, for every projection."""
    _eng, written = play(actions)
    ends: dict[tuple[str, int], int] = {}
    records = []
    for t, (k, v, h) in written:
        topic = env.topic(Topic(t))
        partition = zlib.crc32(k) % TOPICS[Topic(t)].partitions
        off = ends[(topic, partition)] = ends.get((topic, partition), -1) + 1
        records.append(RawRecord(topic, partition, off, v, h))
    with psycopg.connect(env.dsn) as conn:
        for p in PROJECTIONS.values():
            names = {env.topic(t) for t in p.topics}
            mine = [r for r in records if r.topic in names]
            rebuilt = p.schema + store.REBUILD_SUFFIX
            create_schema(conn, p, rebuilt)
            create_schema(conn, p, "t_live")
            with conn.transaction():
                conn.execute("DELETE FROM projection_quarantine WHERE projection = %s", (p.name,))
            with conn.transaction():
                apply_records(conn, p, rebuilt, mine)
            for batch in _split(_interleave(mine, picks), cuts):
                with conn.transaction():
                    apply_records(conn, p, "t_live", batch)
            assert checksum(conn, p, "t_live") == checksum(conn, p, rebuilt), p.name
