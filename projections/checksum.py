"""A deterministic checksum of a projection: sha256 over its rows in primary-key order.

Values are rendered canonically so the hash depends only on what the rows mean:
NUMERIC without trailing zeros (`1.50` and `1.5` are one amount), timestamps in UTC ISO
form, JSON with sorted keys, NULL as `\\N`, and tabs/newlines/backslashes escaped.
Keys sort with the "C" collation, so the order does not depend on the server locale.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from projections.framework import Projection


def render(value: Any) -> str:
    """The canonical text of one column value."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, Decimal):
        if value == 0:
            return "0"
        text = format(value.normalize(), "f")
        return text
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, dict | list):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    else:
        text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def render_row(row: Iterable[Any]) -> bytes:
    return ("\t".join(render(v) for v in row) + "\n").encode()


def checksum(
    conn: psycopg.Connection[Any], projection: Projection, schema: str | None = None
) -> tuple[str, dict[str, int]]:
    """(hex sha256, row count per table) of the projection's tables in `schema`."""
    schema = schema or projection.schema
    digest = hashlib.sha256()
    counts: dict[str, int] = {}
    for table in sorted(projection.tables, key=lambda t: t.name):
        digest.update(f"# {table.name}\n".encode())
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in table.columns)
        order = sql.SQL(", ").join(
            sql.SQL('{}::text COLLATE "C"').format(sql.Identifier(c)) for c in table.pk
        )
        q = sql.SQL("SELECT {} FROM {}.{} ORDER BY {}").format(
            cols, sql.Identifier(schema), sql.Identifier(table.name), order
        )
        n = 0
        with conn.transaction(), conn.cursor(name=f"ck_{table.name}") as cur:
            cur.itersize = 5000
            cur.execute(q)
            for row in cur:
                digest.update(render_row(row))
                n += 1
        counts[table.name] = n
    return digest.hexdigest(), counts
