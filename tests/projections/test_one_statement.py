"""`store.one_statement`: a batch's INSERTs as one statement, or apart when they must be."""

from __future__ import annotations

from projections.store import one_statement

A = (b'INSERT INTO "s"."a" (x) SELECT x FROM f(%s::jsonb) ON CONFLICT (x) DO NOTHING', ["1"])
B = (b'INSERT INTO "s"."b" (y) SELECT y FROM f(%s::jsonb) ON CONFLICT (y) DO NOTHING', ["2"])
OFFS = (b'INSERT INTO "public"."o" (p) SELECT * FROM unnest(%s::text[], %s::int[])', [["p"], [1]])


def test_inserts_into_distinct_tables_become_one_statement_with_every_parameter() -> None:
    [(query, params)] = one_statement([A, B, OFFS])
    assert query == b"WITH w0 AS (" + A[0] + b"), w1 AS (" + B[0] + b") " + OFFS[0]
    assert params == ["1", "2", ["p"], [1]]


def test_a_table_written_twice_or_a_statement_not_an_insert_stays_apart() -> None:
    assert one_statement([A, B, A]) == [A, B, A]
    fail: tuple[bytes, list[object]] = (b"SELECT 1/0", [])
    assert one_statement([A, fail]) == [A, fail]
    assert one_statement([A]) == [A]
    assert one_statement([]) == []
