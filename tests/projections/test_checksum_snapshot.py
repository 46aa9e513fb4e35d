"""A checksum describes one state of a projection and says which: every table and the
stored offsets are read in one REPEATABLE READ snapshot (a batch committed between two
tables' reads is not half in it), `tradetape checksum` prints the offsets, and a
rebuild's checksum is of its rebuilt tables, taken before the swap."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from deploy.settings import Settings
from projections import checksum as ck
from projections import rebuild as rb
from projections.core import PROJECTIONS
from projections.projector import Projector
from projections.store import REBUILD_SUFFIX
from projections.synthetic import generate
from tests.projections.helpers import produce

pytestmark = pytest.mark.integration

ORDERS = PROJECTIONS["orders"]


@pytest.fixture
def loaded(env: Settings) -> Iterator[Settings]:
    produce(env, generate(5, 400))
    with Projector(env, ORDERS) as proj:
        proj.catch_up()
    yield env


def _stored(conn: psycopg.Connection[Any]) -> dict[tuple[str, int], int]:
    rows = conn.execute(
        "SELECT topic, partition, next_offset FROM projection_offsets WHERE projection = 'orders'"
    ).fetchall()
    return {(t, p): o for t, p, o in rows}


def _batch_after_first_table(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, tag: str
) -> list[str]:
    """After the first table is read, another connection commits a 'batch' that changes
    a row of each table and the offsets together, as a projector's batch does."""
    done: list[str] = []

    def batch() -> None:
        if done:
            return
        with psycopg.connect(settings.dsn, autocommit=True) as other, other.transaction():
            other.execute(
                "UPDATE proj_orders.order_events SET status = %s "
                "WHERE event_id = (SELECT min(event_id::text)::uuid FROM proj_orders.order_events)",
                (tag,),
            )
            other.execute(
                "UPDATE proj_orders.orders SET status = %s "
                "WHERE order_id = (SELECT min(order_id) FROM proj_orders.orders)",
                (tag,),
            )
            other.execute(
                "UPDATE projection_offsets SET next_offset = next_offset + 1 "
                "WHERE projection = 'orders'"
            )
        done.append(tag)

    for fn in ("_digest_copy", "_digest_rows"):
        real = getattr(ck, fn)

        def wrapped(*a: Any, _real: Any = real) -> int:
            n = int(_real(*a))
            batch()
            return n

        monkeypatch.setattr(ck, fn, wrapped)
    return done


def test_checksum_is_one_snapshot_of_rows_and_offsets(
    loaded: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert [t.name for t in sorted(ORDERS.tables, key=lambda t: t.name)] == [
        "order_events", "orders",
    ]  # fmt: skip
    with psycopg.connect(loaded.dsn) as conn:
        before = ck.checksum(conn, ORDERS)
        offsets_before = _stored(conn)
        conn.commit()
        done = _batch_after_first_table(monkeypatch, loaded, "X")
        snap = ck.checksum_snapshot(conn, ORDERS)
        assert done == ["X"]
        assert (snap.digest, snap.counts) == before
        assert snap.offsets == offsets_before
        monkeypatch.undo()
        x_state = ck.checksum(conn, ORDERS)
        conn.commit()
        assert x_state != before
        assert ck.checksum_snapshot(conn, ORDERS).offsets == _stored(conn) != offsets_before
        # table by table, each in its own transaction: a state that never existed
        _batch_after_first_table(monkeypatch, loaded, "Z")
        mixed = ck.checksum(conn, ORDERS)
        conn.commit()
        monkeypatch.undo()
        z_state = ck.checksum(conn, ORDERS)
        assert mixed not in (x_state, z_state)  # the defect the snapshot avoids


def test_rebuild_checksums_the_build_before_the_swap(
    loaded: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str]] = []
    real_snap, real_swap = ck.checksum_snapshot, rb.swap_in

    def snap(conn: Any, projection: Any, schema: Any = None, *a: Any, **k: Any) -> Any:
        calls.append(("checksum", schema))
        return real_snap(conn, projection, schema, *a, **k)

    def swap(conn: Any, projection: Any, build: str, role: Any, *a: Any) -> None:
        calls.append(("swap", build))
        real_swap(conn, projection, build, role, *a)

    monkeypatch.setattr(rb, "checksum_snapshot", snap)
    monkeypatch.setattr(rb, "swap_in", swap)
    with psycopg.connect(loaded.dsn) as conn:
        live = ck.checksum_snapshot(conn, ORDERS)
    for kind in ("one", "parallel"):
        calls.clear()
        if kind == "one":
            result = rb.rebuild(loaded, ORDERS)
        else:
            (result,) = rb.rebuild_parallel(loaded, [ORDERS])
        build = "proj_orders" + REBUILD_SUFFIX
        assert calls == [("checksum", build), ("swap", build)], (kind, calls)
        assert result.checksum == live.digest
        assert result.offsets == live.offsets  # no row for an empty partition in either


def test_cli_checksum_prints_the_offsets(loaded: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from deploy.cli import app
    from deploy.settings import get_settings

    monkeypatch.setenv("TRADETAPE_POSTGRES_PORT", str(loaded.postgres_port))
    monkeypatch.setenv("TRADETAPE_POSTGRES_DB", loaded.postgres_db)
    get_settings.cache_clear()
    try:
        res = CliRunner().invoke(app, ["checksum", "orders"])
        assert res.exit_code == 0, res.output
        with psycopg.connect(loaded.dsn) as conn:
            stored = _stored(conn)
            digest, _ = ck.checksum(conn, ORDERS)
        assert res.stdout.strip() == f"orders {digest}"
        line = next(x for x in res.stderr.splitlines() if x.startswith("offsets: "))
        assert line == "offsets: " + " ".join(
            f"{t}[{p}]={o}" for (t, p), o in sorted(stored.items())
        )
        assert stored
    finally:
        get_settings.cache_clear()


def test_live_and_rebuilt_offsets_are_the_same_with_an_empty_partition(env: Settings) -> None:
    """A partition with no records has no stored offset, live or rebuilt (a rebuild
    stored it at 0): `checksum` and `rebuild` print the same offsets line for both. A
    projector resumes a partition without a row from its beginning, as it did from 0:
    records produced to it after the rebuild are folded as a rebuild folds them."""
    produce(env, generate(5, 200, accounts=1))  # one account: one partition has records
    with Projector(env, ORDERS) as proj:
        proj.catch_up()
        every = {(tp.topic, tp.partition) for tp in proj.partitions()}
    with psycopg.connect(env.dsn) as conn:
        live = ck.checksum_snapshot(conn, ORDERS)
    assert live.offsets and set(live.offsets) < every  # an empty partition is there
    for kind in ("split", "one", "parallel"):
        if kind == "parallel":
            (result,) = rb.rebuild_parallel(env, [ORDERS])
        else:
            result = rb.rebuild(env, ORDERS, split=kind == "split")
        assert ck.offsets_line(result.offsets) == ck.offsets_line(live.offsets), kind
        with psycopg.connect(env.dsn) as conn:
            assert _stored(conn) == live.offsets, kind
    # the empty partitions get records: the live projector (from the rebuilt offsets)
    # folds them as a rebuild of everything does
    produce(env, generate(6, 200, accounts=8, namespace="later"))
    with Projector(env, ORDERS) as proj:
        proj.catch_up()
    with psycopg.connect(env.dsn) as conn:
        resumed = ck.checksum_snapshot(conn, ORDERS)
    assert set(resumed.offsets) - set(live.offsets)  # a partition empty before has records
    again = rb.rebuild(env, ORDERS)
    assert (again.checksum, again.offsets) == (resumed.digest, resumed.offsets)
