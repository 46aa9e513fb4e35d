"""The pnl view on the real database: an unknown mark is not a zero unrealized PnL."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest

from deploy.settings import Settings
from projections import query
from projections.core import PROJECTIONS
from projections.rebuild import create_schema

pytestmark = pytest.mark.integration

ROWS = [  # account, instrument, quantity, avg_cost, realized_pnl, fees_quote
    ("A", "BTC/USDT", "1", "60000", "100", "10"),  # open, no mark
    ("A", "SOL/USDC", "0", "0", "-5", "1"),  # flat, no mark
    ("A", "ETH/USDT", "2", "3000", "0", "2"),  # open, marked
]


def _load(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> None:
    for i, (acct, inst, qty, avg, real, fees) in enumerate(ROWS):
        conn.execute(
            f"INSERT INTO {schema}.positions (account, instrument, quantity, avg_cost, "
            "realized_pnl, fees_quote, fill_count, last_event_id, updated_at, cost_basis) "
            "VALUES (%s, %s, %s, %s, %s, %s, 1, %s, now(), %s::numeric * %s::numeric)",
            (acct, inst, qty, avg, real, fees, f"00000000-0000-0000-0000-00000000000{i}", qty, avg),
        )
    conn.execute(
        f"INSERT INTO {schema}.marks VALUES ('ETH/USDT', 3100, 'TRADE', 'paper', now(), "
        "'00000000-0000-0000-0000-000000000009')"
    )


def _totals(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> dict[str, object]:
    rows = conn.execute(f"SELECT instrument, total_pnl FROM {schema}.pnl").fetchall()
    return {str(r[0]): r[1] for r in rows}


EXPECTED = {"BTC/USDT": None, "SOL/USDC": Decimal(-6), "ETH/USDT": Decimal(198)}


def test_total_pnl_is_null_for_an_open_position_without_a_mark(env: Settings) -> None:
    with psycopg.connect(env.dsn) as conn:
        _load(conn, "proj_positions")
        assert _totals(conn, "proj_positions") == EXPECTED
    df = query.frame("pnl", env)
    assert dict(zip(df["instrument"], df["total_pnl"], strict=True)) == EXPECTED


def test_a_flat_position_has_no_unrealized_pnl_mark_or_not(env: Settings) -> None:
    """Flat, nothing is open to value: its unrealized PnL is 0, not unknown (it showed
    NULL without a mark beside a total that counted it as 0); open and unmarked stays
    NULL."""
    with psycopg.connect(env.dsn) as conn:
        _load(conn, "proj_positions")
        rows = conn.execute("SELECT instrument, unrealized_pnl FROM proj_positions.pnl")
        got = {str(r[0]): r[1] for r in rows.fetchall()}
    assert got == {"BTC/USDT": None, "SOL/USDC": 0, "ETH/USDT": Decimal(200)}


def test_a_rebuilt_schema_has_the_same_view(env: Settings) -> None:
    with psycopg.connect(env.dsn) as conn:
        create_schema(conn, PROJECTIONS["positions"], "proj_positions__t")
        _load(conn, "proj_positions__t")
        assert _totals(conn, "proj_positions__t") == EXPECTED
