"""A projection's fold version, stamped on its schema, so a fold change is rolled out by
a rebuild and never silently mixed with rows the old fold wrote.

`Projection.fold_version` is raised whenever `handle` folds the same events into
different rows. A rebuild's build schema is stamped with the code's version
(`COMMENT ON SCHEMA ... 'tradetape fold_version=N'`, in `rebuild.create_schema`) and the
swap renames it live, stamp and all. A live projector checks the stamp when it opens: a
schema that has folded records (stored offsets) under another version (no stamp: 1, the
version of every projection before stamps) is refused with `FoldVersionMismatch`, which
names the rebuild to run; an empty one (nothing folded yet) is stamped and used.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql

from projections.framework import Projection

STAMP = "tradetape fold_version={}"
_STAMP_RE = re.compile(r"tradetape fold_version=(\d+)")


class FoldVersionMismatch(RuntimeError):
    """The live schema holds rows folded by another version of the projection's fold."""


def stamp_sql(schema: str, version: int) -> sql.Composed:
    return sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
        sql.Identifier(schema), sql.Literal(STAMP.format(version))
    )


def stamped_version(conn: psycopg.Connection[Any], schema: str) -> int | None:
    """The fold version `schema` is stamped with, or None (no stamp, or no schema)."""
    row = conn.execute(
        "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
        (schema,),
    ).fetchone()
    m = _STAMP_RE.fullmatch(row[0] or "") if row else None
    return int(m.group(1)) if m else None


def check_live(
    conn: psycopg.Connection[Any],
    projections: Iterable[Projection],
    offsets_table: tuple[str, str],
) -> None:
    """Refuse (FoldVersionMismatch) a live schema folded by another fold version; stamp
    one that has folded nothing yet, or that is unstamped and folded by version 1."""
    for p in projections:
        have = stamped_version(conn, p.schema)
        if have == p.fold_version:
            continue
        folded = conn.execute(
            sql.SQL("SELECT 1 FROM {}.{} WHERE projection = %s LIMIT 1").format(
                *(sql.Identifier(x) for x in offsets_table)
            ),
            (p.name,),
        ).fetchone()
        if folded is not None and (have or 1) != p.fold_version:
            raise FoldVersionMismatch(
                f"{p.schema} holds rows folded by fold version {have or 1} of {p.name}; "
                f"this code folds version {p.fold_version} (docs/projections.md, Fold "
                f"versions): run `tradetape rebuild {p.name}` (the live projector refuses "
                "to mix the two)"
            )
        with conn.transaction():
            conn.execute(stamp_sql(p.schema, p.fold_version))


def mismatches(conn: psycopg.Connection[Any]) -> dict[str, tuple[int, int]]:
    """Per projection whose live schema has folded records under another fold version:
    (stamped version, this code's version): what a projector refuses, for status."""
    from projections.core import PROJECTIONS

    folded = {str(r[0]) for r in conn.execute("SELECT DISTINCT projection FROM projection_offsets")}
    out: dict[str, tuple[int, int]] = {}
    for name, p in PROJECTIONS.items():
        if name in folded:
            have = stamped_version(conn, p.schema) or 1
            if have != p.fold_version:
                out[name] = (have, p.fold_version)
    return out
