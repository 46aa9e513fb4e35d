"""The analysts' read-only role: one statement per query, no writes that outlive it, no
temporary tables, no locks that stall the projectors, and a time limit."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from deploy.local import LocalStack
from deploy.settings import Settings
from projections import query
from projections.migrate import harden_reader
from projections.store import lock_projection

pytestmark = pytest.mark.integration

LOCK_ORDERS = "SELECT pg_advisory_xact_lock(hashtextextended('orders', 7478202))"


WAL_WRITES = (
    "SELECT pg_logical_emit_message(false, 'analyst', 'x')",
    "SELECT pg_logical_emit_message(true, 'analyst', '\\x00'::bytea)",
    "SELECT pg_logical_emit_message(false, 'analyst', 'x', true)",
)
"""Writes to the WAL (any size, at once when not transactional: a rollback does not
take them back) that PUBLIC may call in a READ ONLY transaction."""


def test_superuser_hardening_takes_wal_messages(env: Settings, stack: LocalStack) -> None:
    """Before: as the read-only role, in its READ ONLY transaction, each returned the
    LSN it wrote at (`SELECT pg_logical_emit_message(false, 'x', repeat('x', 10^9))`
    writes a gigabyte of WAL a call, and a logical-decoding consumer sees it)."""
    with psycopg.connect(stack.postgres.admin_dsn(env.postgres_db), autocommit=True) as admin:
        harden_reader(admin, env.readonly_role)
    for statement in WAL_WRITES:
        with pytest.raises(query.QueryError, match="refused: the read-only role may not"):
            query.raw(statement, env)


def _large_objects(env: Settings) -> list[tuple[object, ...]]:
    with psycopg.connect(env.dsn) as conn:
        return conn.execute("SELECT oid FROM pg_largeobject_metadata").fetchall()


@pytest.mark.parametrize(
    "text",
    [
        "COMMIT; SELECT lo_from_bytea(4242, 'x'::bytea)",
        "COMMIT; CREATE TEMP TABLE t AS SELECT 1 AS x; SELECT * FROM t",
        "SELECT 1; SELECT 2",
    ],
)
def test_raw_refuses_more_than_one_statement(env: Settings, text: str) -> None:
    """A `COMMIT;` ended the READ ONLY transaction and the rest ran outside it."""
    with pytest.raises(query.QueryError, match="one SQL statement"):
        query.raw(text, env)
    assert _large_objects(env) == []


def test_raw_single_statements_still_work(env: Settings) -> None:
    df = query.raw("SELECT 'a%' AS pct, count(*) AS n FROM projection_offsets", env)
    assert df.rows() == [("a%", 0)]


def test_reader_cannot_create_temp_tables(env: Settings) -> None:
    """Not even on its own connection, outside any READ ONLY transaction (0109)."""
    with psycopg.connect(env.readonly_dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TEMP TABLE t (x int)")
    with psycopg.connect(env.dsn, autocommit=True) as conn:  # the projectors' role keeps it
        conn.execute("CREATE TEMP TABLE t (x int)")


def test_analyst_query_is_time_limited_and_releases_a_projector_lock(env: Settings) -> None:
    """Where the role may still take an advisory lock, the analyst session's limit
    bounds how long it can hold up a projector batch."""
    with pytest.raises(query.QueryError, match="time limit"):
        query.raw("SELECT pg_sleep(30)", env, timeout_s=0.5)
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            query.raw(f"SELECT ({LOCK_ORDERS})::text, pg_sleep(30)", env, timeout_s=1.0)
        except query.QueryError as exc:
            errors.append(exc)

    t = threading.Thread(target=hold)
    t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    with psycopg.connect(env.dsn) as conn:
        lock_projection(conn, "orders")
    waited = time.monotonic() - t0
    t.join()
    assert waited < 5, waited
    assert errors and "time limit" in str(errors[0])


def test_superuser_hardening_takes_large_objects_and_advisory_locks(
    env: Settings, stack: LocalStack
) -> None:
    """`harden_reader`, what the local stack runs as its superuser after the migrations."""
    with psycopg.connect(stack.postgres.admin_dsn(env.postgres_db), autocommit=True) as admin:
        harden_reader(admin, env.readonly_role)
        harden_reader(admin, env.readonly_role)  # idempotent: `tradetape up` runs it each time
    with pytest.raises(query.QueryError, match="refused"):
        query.raw(LOCK_ORDERS, env)
    with psycopg.connect(env.readonly_dsn, autocommit=True) as conn:
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        assert conn.execute("SHOW statement_timeout").fetchone() == ("1min",)
        conn.execute("SET default_transaction_read_only = off")
        for statement in (
            "SELECT lo_from_bytea(4243, 'x'::bytea)",
            "SELECT lo_create(4244)",
            "SELECT pg_try_advisory_lock(1)",
            LOCK_ORDERS,
            *WAL_WRITES,
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    assert _large_objects(env) == []
    with psycopg.connect(env.dsn) as conn:  # the projectors' role keeps its locks
        lock_projection(conn, "orders")
        conn.execute("SELECT pg_try_advisory_lock(7478201), pg_advisory_unlock(7478201)")
