"""`tradetape rebuild`: replay a projection from offset 0 into a fresh schema, then swap.

The new schema is built beside the live one (`proj_x__rebuild`) with the projection's
own migration bodies, filled by the ordinary projector (its offsets kept inside the new
schema), and swapped in by renaming schemas in one transaction that also replaces the
stored offsets. Readers see the old projection or the new one, never a half-built one.
A live projector of the same projection notices the moved offsets and resumes from them.
`rebuild --all` builds every projection on one consumer (each record decoded once) and
swaps them all in in one transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from deploy.settings import Settings
from projections.checksum import checksum
from projections.framework import Projection
from projections.migrate import MIGRATIONS_DIR
from projections.projector import BulkProjector, Projector, Target
from projections.store import lock_projection

BODY_MARKER = "\n-- @body\n"


@dataclass
class RebuildResult:
    name: str
    events: int
    seconds: float
    checksum: str
    counts: dict[str, int]
    group_records: int = 0
    """Records the rebuild's one consumer read (each once, whatever it fed)."""

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def migration_body(filename: str) -> str:
    text = (MIGRATIONS_DIR / filename).read_text()
    if BODY_MARKER not in text:
        raise ValueError(f"{filename} has no '-- @body' line")
    return text.split(BODY_MARKER, 1)[1]


def create_schema(conn: psycopg.Connection[Any], projection: Projection, schema: str) -> None:
    """A fresh, empty copy of the projection's tables in `schema`, with its own offsets."""
    with conn.transaction():
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        for filename in projection.migrations:
            conn.execute(migration_body(filename).encode())
        conn.execute(
            sql.SQL(
                "CREATE TABLE {}._offsets (LIKE public.projection_offsets INCLUDING ALL)"
            ).format(sql.Identifier(schema))
        )


def swap_in(
    conn: psycopg.Connection[Any], projection: Projection, build: str, readonly_role: str | None
) -> None:
    """Atomically make `build` the live schema and its offsets the stored offsets."""
    live = sql.Identifier(projection.schema)
    old = sql.Identifier(f"{projection.schema}__old")
    new = sql.Identifier(build)
    with conn.transaction():
        lock_projection(conn, projection.name)
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(old))
        exists = conn.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", (projection.schema,)
        ).fetchone()
        if exists:
            conn.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(live, old))
        conn.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(new, live))
        conn.execute("DELETE FROM projection_offsets WHERE projection = %s", (projection.name,))
        conn.execute(
            sql.SQL(
                "INSERT INTO projection_offsets (projection, topic, partition, next_offset) "
                "SELECT projection, topic, partition, next_offset FROM {}._offsets"
            ).format(live)
        )
        conn.execute(sql.SQL("DROP TABLE {}._offsets").format(live))
        if readonly_role:
            role = sql.Identifier(readonly_role)
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(live, role))
            conn.execute(
                sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(live, role)
            )
        if exists:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(old))


def rebuild_many(
    settings: Settings,
    projections: Sequence[Projection],
    *,
    progress: Callable[[int, Projector], None] | None = None,
    batch_size: int = 10_000,
    swap: bool = True,
    bulk: bool = True,
) -> list[RebuildResult]:
    """Replay projections from offset 0, each into a fresh schema, on one consumer
    (every record decoded once), then swap them all in in one transaction.

    `bulk` (the default) folds in memory and loads with COPY, building keys and indexes
    after the load (projections/bulkload.py); otherwise every batch is applied as a
    live batch would be (one transaction with its offsets)."""
    builds = [
        Target(p, f"{p.schema}__rebuild", (f"{p.schema}__rebuild", "_offsets")) for p in projections
    ]
    with psycopg.connect(settings.dsn, autocommit=False) as conn:
        for t in builds:
            create_schema(conn, t.projection, t.schema)
        started = time.monotonic()
        kind = BulkProjector if bulk else Projector
        with kind(settings, builds, batch_size=batch_size, poll_timeout=0.5, replay=True) as proj:
            proj.catch_up(progress=progress, poll_timeout=0.5)
            if not proj.caught_up:
                raise RuntimeError(
                    f"rebuild of {proj.name} stalled before the end of the log; "
                    "the live projections were left untouched"
                )
            if isinstance(proj, BulkProjector):
                proj.finish()
            totals = {t.projection.name: r for t, r in zip(proj.targets, proj.totals, strict=True)}
            records = proj.total.consumed
        seconds = time.monotonic() - started
        if swap:
            with conn.transaction():
                for t in builds:
                    swap_in(conn, t.projection, t.schema, settings.readonly_role)
        out = []
        for t in builds:
            digest, counts = checksum(conn, t.projection, t.projection.schema if swap else t.schema)
            name = t.projection.name
            out.append(RebuildResult(name, totals[name].consumed, seconds, digest, counts, records))
    return out


def rebuild(
    settings: Settings,
    projection: Projection,
    *,
    progress: Callable[[int, Projector], None] | None = None,
    batch_size: int = 10_000,
    swap: bool = True,
    bulk: bool = True,
) -> RebuildResult:
    """Replay from offset 0 into a fresh schema and (by default) swap it in."""
    return rebuild_many(
        settings, [projection], progress=progress, batch_size=batch_size, swap=swap, bulk=bulk
    )[0]
