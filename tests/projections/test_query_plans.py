"""A live batch's reads are index probes, whatever the table statistics say.

A projection table grows by thousands of rows a second and its statistics trail behind;
as plain joins, the seen-id check and the current-row load were planned as hash joins
over a full scan of the table, so every batch cost more than the one before.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from psycopg import sql

from deploy.settings import Settings
from projections.core import PROJECTIONS
from projections.store import _load_query, _seen_sql

pytestmark = pytest.mark.integration

ROWS = 20_000


def _plan_nodes(plan: dict[str, Any]) -> list[str]:
    nodes = [str(plan["Node Type"])]
    for child in plan.get("Plans", []):
        nodes.extend(_plan_nodes(child))
    return nodes


def _explain(conn: psycopg.Connection[Any], query: bytes, params: list[str]) -> list[str]:
    # A generic plan, as a prepared statement gets after its first executions.
    conn.execute("SET plan_cache_mode = force_generic_plan")
    text = query.decode()
    for n in range(1, len(params) + 1):
        text = text.replace("%s", f"${n}", 1)
    conn.execute(f"PREPARE probe AS {text}".encode())
    args = sql.SQL(", ").join(sql.Literal(p) for p in params)
    row = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE probe({})").format(args)).fetchone()
    conn.execute("DEALLOCATE probe")
    assert row is not None
    return _plan_nodes(row[0][0]["Plan"])


def test_seen_check_probes_the_index_of_a_table_with_stale_statistics(env: Settings) -> None:
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        # Rows the planner's statistics have never seen (no ANALYZE since).
        conn.execute(
            "INSERT INTO proj_orders.order_events "
            "(event_id, order_id, account, event_type, status, occurred_at, detail) "
            "SELECT md5(i::text)::uuid, 'o' || i, 'A1', 'OrderAccepted', 'ACCEPTED', "
            "'2026-01-01T00:00:00Z', '{}' FROM generate_series(1, %s) AS i",
            (ROWS,),
        )
        ids = json.dumps([f"00000000-0000-0000-0000-{i:012d}" for i in range(300)])
        nodes = _explain(conn, _seen_sql("proj_orders", "order_events"), [ids])
    assert "Seq Scan" not in nodes, nodes
    assert any(n.startswith("Index") for n in nodes), nodes


def test_current_rows_load_probes_the_index_of_a_table_with_stale_statistics(
    env: Settings,
) -> None:
    orders = PROJECTIONS["orders"].table("orders")
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO proj_orders.orders (order_id, account, producer_id, strategy_id, "
            "client_order_id, instrument, side, order_type, quantity, time_in_force, venue, "
            "status, filled_quantity, filled_notional, leaves_quantity, event_count, "
            "created_at, updated_at, last_event_id) "
            "SELECT 'o' || i, 'A1', 'p', 's', 'c' || i, 'BTC/USDT', 'BUY', 'LIMIT', 1, 'GTC', "
            "'paper', 'ACCEPTED', 0, 0, 1, 1, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', "
            "md5(i::text)::uuid FROM generate_series(1, %s) AS i",
            (ROWS,),
        )
        query, arrays = _load_query("proj_orders", orders, {(f"o{i}",) for i in range(1, 301)})
        nodes = _explain(conn, query, arrays)
        found = conn.execute(query, arrays).fetchall()
    assert "Seq Scan" not in nodes, nodes
    assert len(found) == 300  # the probe still finds every key it is given


def test_stateful_tables_are_keyed_by_text(env: Settings) -> None:
    """`_load_query` compares `key::text`, which an index only serves on text keys."""
    with psycopg.connect(env.dsn) as conn:
        for p in PROJECTIONS.values():
            for t in p.tables:
                if not t.stateful:
                    continue
                for col in t.pk:
                    typ = conn.execute(
                        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                        "WHERE attrelid = %s::regclass AND attname = %s",
                        (f'"{p.schema}"."{t.name}"', col),
                    ).fetchone()
                    assert typ == ("text",), (p.name, t.name, col, typ)
