"""Analyst queries: read-only raw SQL, injection-proof named queries, output formats."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import psycopg
import pytest
from typer.testing import CliRunner

from deploy.settings import Settings
from projections import query
from projections.core import PROJECTIONS
from projections.projector import Projector
from projections.synthetic import generate
from tests.projections.helpers import produce

pytestmark = pytest.mark.integration


@pytest.fixture
def loaded(env: Settings) -> Settings:
    produce(env, generate(21, 1500))
    for name in ("positions", "orders", "fills", "balances"):
        with Projector(env, PROJECTIONS[name]) as proj:
            proj.catch_up()
    return env


WRITES = [
    "DELETE FROM proj_positions.positions",
    "UPDATE proj_orders.orders SET status = 'X'",
    "INSERT INTO projection_offsets VALUES ('x', 't', 0, 0)",
    "DROP TABLE proj_fills.fills",
    "CREATE TABLE public.evil (x int)",
    "SET TRANSACTION READ WRITE; DELETE FROM proj_fills.fills",
    "COMMIT; DELETE FROM proj_fills.fills",
    "SELECT 1; DELETE FROM proj_fills.fills",
]


def test_read_only_role_cannot_write(loaded: Settings) -> None:
    with psycopg.connect(loaded.dsn) as conn:
        before = conn.execute("SELECT count(*) FROM proj_fills.fills").fetchone()
    for statement in WRITES:
        with pytest.raises(query.QueryError, match=r"refused|failed"):
            query.raw(statement, loaded)
    with psycopg.connect(loaded.dsn) as conn:
        after = conn.execute("SELECT count(*) FROM proj_fills.fills").fetchone()
        evil = conn.execute("SELECT to_regclass('public.evil')").fetchone()
    assert before == after and before is not None and before[0] > 0
    assert evil == (None,)


def test_read_only_role_cannot_write_even_outside_a_read_only_transaction(loaded: Settings) -> None:
    """The role itself lacks the privileges; READ ONLY is a second lock, not the only one."""
    with psycopg.connect(loaded.readonly_dsn, autocommit=True) as conn:
        for statement in (
            "DELETE FROM proj_positions.positions",
            "UPDATE projection_offsets SET next_offset = 0",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


INJECTIONS = [
    "ACC001' OR '1'='1",
    "ACC001'; DELETE FROM proj_positions.positions; --",
    "x') OR true --",
    "%(account)s",
    "ACC001\\'; DROP SCHEMA proj_positions CASCADE; --",
]


def test_named_query_parameters_cannot_inject(loaded: Settings) -> None:
    everyone = query.frame("positions", loaded)
    one = query.frame("positions", loaded, account="ACC001")
    assert everyone.height > one.height > 0
    for evil in INJECTIONS:
        assert query.frame("positions", loaded, account=evil).height == 0, evil
        assert query.frame("orders", loaded, account=evil, instrument=evil).height == 0, evil
        with pytest.raises(query.QueryError, match="status is one of"):  # never sent
            query.frame("orders", loaded, status=evil)
        assert query.frame("positions", loaded).height == everyone.height, evil


def test_unknown_parameter_is_refused(loaded: Settings) -> None:
    with pytest.raises(query.QueryError, match="takes account, instrument"):
        query.frame("positions", loaded, **{"account = account OR 1=1 --": "x"})


def test_named_queries_return_frames(loaded: Settings) -> None:
    for name in query.NAMED:
        assert isinstance(query.frame(name, loaded), pl.DataFrame)
    pnl = query.frame("pnl", loaded)
    assert {"realized_pnl", "unrealized_pnl", "mark_price", "avg_cost"} <= set(pnl.columns)
    assert pnl.height > 0


def test_cli_formats(loaded: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deploy.cli import app
    from deploy.settings import get_settings

    monkeypatch.setenv("TRADETAPE_TOPIC_PREFIX", loaded.topic_prefix)
    monkeypatch.setenv("TRADETAPE_POSTGRES_PORT", str(loaded.postgres_port))
    monkeypatch.setenv("TRADETAPE_POSTGRES_DB", loaded.postgres_db)
    monkeypatch.setenv("TRADETAPE_KAFKA_PORT", str(loaded.kafka_port))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        res = runner.invoke(app, ["query", "balances", "--format", "json", "-p", "account=ACC001"])
        assert res.exit_code == 0, res.output
        rows = json.loads(res.stdout)
        assert rows and all(r["account"] == "ACC001" for r in rows)
        assert all(isinstance(r["amount"], str) for r in rows)  # money stays a string
        out = tmp_path / "fills.parquet"
        res = runner.invoke(app, ["query", "fills", "--format", "parquet", "--out", str(out)])
        assert res.exit_code == 0, res.output
        assert pl.read_parquet(out).height > 0
        res = runner.invoke(
            app,
            ["query", "--sql", "SELECT count(*) AS n FROM proj_orders.orders", "--format", "csv"],
        )
        assert res.exit_code == 0 and res.stdout.splitlines()[0] == "n"
        res = runner.invoke(app, ["query", "--sql", "DELETE FROM proj_orders.orders"])
        assert res.exit_code == 1 and "refused" in res.output
        res = runner.invoke(app, ["checksum", "orders"])
        assert res.exit_code == 0 and res.stdout.startswith("orders ")
        live = res.stdout.strip()
        res = runner.invoke(app, ["rebuild", "orders"])
        assert res.exit_code == 0, res.output
        assert res.stdout.strip().splitlines()[-1] == live
        res = runner.invoke(app, ["rebuild", "--all", "--one-consumer"])
        assert res.exit_code == 0, res.output
        pairs = [line.split() for line in res.stdout.strip().splitlines()]
        sums = {p[0]: p[1] for p in pairs if len(p) == 2 and len(p[1]) == 64}
        assert set(sums) == set(PROJECTIONS) and f"orders {sums['orders']}" == live
        assert "each decoded once" in res.output
        res = runner.invoke(app, ["rebuild", "--all"])  # the default: one process per group
        assert res.exit_code == 0, res.output
        pairs = [line.split() for line in res.stdout.strip().splitlines()]
        assert {p[0]: p[1] for p in pairs if len(p) == 2 and len(p[1]) == 64} == sums
        assert "groups in parallel" in res.output and "swapped in together" in res.output
        res = runner.invoke(app, ["rebuild", "orders", "--parallel"])  # one group anyway
        assert res.exit_code == 0 and res.stdout.strip().splitlines()[-1] == live
        res = runner.invoke(app, ["rebuild", "nope"])
        assert res.exit_code == 2
    finally:
        get_settings.cache_clear()
