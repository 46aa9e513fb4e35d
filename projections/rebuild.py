"""`tradetape rebuild`: replay a projection from offset 0 into a fresh schema, then swap.

The new schema is built beside the live one (`proj_x__rebuild`) with the projection's
own migration bodies, filled by the ordinary projector (its offsets kept inside the new
schema), and swapped in by renaming schemas in one transaction that also replaces the
stored offsets. Readers see the old projection or the new one, never a half-built one.
A live projector of the same projection notices the moved offsets and resumes from them.
`rebuild --all --one-consumer` builds every projection on one consumer (each record
decoded once) in one process and swaps them all in in one transaction (`rebuild_many`);
`rebuild --all` (`--parallel`, the default) builds the live runner's topic groups in one
process each (at most one per core at a time) and swaps them all in in one transaction,
only if every group finished (`rebuild_parallel`; docs/benchmarks.md has both measured).
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import queue
import resource
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from deploy.kafka import admin_client, topic_ids
from deploy.settings import Settings
from projections.bulkload import libc_function
from projections.checksum import Snapshot, checksum_snapshot
from projections.foldversion import stamp_sql
from projections.framework import Projection
from projections.migrate import MIGRATIONS_DIR
from projections.partitioned import rebuild_split
from projections.projector import BulkProjector, Projector, Target
from projections.store import (
    BUILD_QUARANTINE,
    QUARANTINE_TABLE,
    REBUILD_SUFFIX,
    BatchResult,
    lock_projection,
)

log = logging.getLogger(__name__)

BODY_MARKER = "\n-- @body\n"


@dataclass
class RebuildResult:
    name: str
    events: int
    seconds: float  # wall seconds, not money
    checksum: str
    counts: dict[str, int]
    group_records: int = 0
    """Records the rebuild's one consumer read (each once, whatever it fed); in a
    parallel rebuild, the consumer of this projection's group."""
    group: str = ""
    """The group it was built in (a parallel rebuild)."""
    group_seconds: float = 0.0  # wall seconds: a measurement, not money
    peak_rss_mb: float = 0.0  # megabytes: a measurement, not money
    """The building process's own peak RSS (a parallel rebuild)."""
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    """The rebuilt projection's next offsets, read with its checksum (before the swap)."""

    @property
    def rate(self) -> float:  # events per second, not money
        return self.events / self.seconds if self.seconds > 0 else 0.0


def migration_body(filename: str) -> str:
    text = (MIGRATIONS_DIR / filename).read_text()
    if BODY_MARKER not in text:
        raise ValueError(f"{filename} has no '-- @body' line")
    return text.split(BODY_MARKER, 1)[1]


def create_schema(conn: psycopg.Connection[Any], projection: Projection, schema: str) -> None:
    """A fresh, empty copy of the projection's tables in `schema`, with its own offsets
    and quarantine (`store.BUILD_QUARANTINE`: what a rebuild refuses, until its swap)."""
    with conn.transaction():
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        for filename in projection.migrations:
            conn.execute(migration_body(filename).encode())
        conn.execute(stamp_sql(schema, projection.fold_version))  # goes live with the swap
        conn.execute(
            sql.SQL(
                "CREATE TABLE {}._offsets (LIKE public.projection_offsets INCLUDING ALL)"
            ).format(sql.Identifier(schema))
        )
        conn.execute(
            sql.SQL("CREATE TABLE {}.{} (LIKE {}.{} INCLUDING ALL)").format(
                sql.Identifier(schema), sql.Identifier(BUILD_QUARANTINE),
                *(sql.Identifier(x) for x in QUARANTINE_TABLE),
            )
        )  # fmt: skip


def swap_in(
    conn: psycopg.Connection[Any],
    projection: Projection,
    build: str,
    readonly_role: str | None,
    ids: Mapping[str, str] | None = None,
) -> None:
    """Atomically make `build` the live schema, its offsets the stored offsets and its
    quarantine the projection's whole quarantine: entries of the old projection that the
    rebuild did not produce (their cause since fixed) are gone. A live projector resumes
    from the new offsets, so it quarantines again whatever it refuses beyond them."""
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
                "INSERT INTO projection_offsets (projection, topic, partition, next_offset, "
                "topic_id) SELECT projection, topic, partition, next_offset, "
                "COALESCE(topic_id, %s::jsonb ->> topic) FROM {}._offsets"
            ).format(live),
            (json.dumps(dict(ids or {})),),
        )
        conn.execute(sql.SQL("DROP TABLE {}._offsets").format(live))
        build_quarantine = sql.SQL("{}.{}").format(live, sql.Identifier(BUILD_QUARANTINE))
        shared = sql.SQL("{}.{}").format(*(sql.Identifier(x) for x in QUARANTINE_TABLE))
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE projection = %s").format(shared), (projection.name,)
        )
        conn.execute(
            sql.SQL("INSERT INTO {} SELECT * FROM {} WHERE projection = %s").format(
                shared, build_quarantine
            ),
            (projection.name,),
        )
        conn.execute(sql.SQL("DROP TABLE {}").format(build_quarantine))
        if readonly_role:
            role = sql.Identifier(readonly_role)
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(live, role))
            conn.execute(
                sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(live, role)
            )
        if exists:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(old))


REBUILD_LOCK_SALT = 7478203
"""The advisory-lock key space of rebuilds (`rebuild_lock`); 7478202 is the projections'
batch and swap lock (`store.lock_projection`), 7478201 the migrations'."""

REBUILD_LOCK_SQL = f"SELECT pg_try_advisory_lock(hashtextextended(%s, {REBUILD_LOCK_SALT}))"

REBUILD_LOCKS_HELD_SQL = f"""
SELECT n FROM unnest(%s::text[]) AS n
WHERE EXISTS (
    SELECT 1 FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid = ((hashtextextended(n, {REBUILD_LOCK_SALT}) >> 32) & 4294967295)::oid
      AND l.objid = (hashtextextended(n, {REBUILD_LOCK_SALT}) & 4294967295)::oid
)"""
"""Which of the names a session holds the rebuild lock of (`pg_locks` shows a bigint
advisory key as its high and low 32 bits, `objsubid` 1), without taking any lock."""


class RebuildRunning(RuntimeError):
    """Another rebuild of the projection holds its rebuild lock."""


@contextlib.contextmanager
def rebuild_lock(settings: Settings, names: Sequence[str]) -> Iterator[None]:
    """Hold the rebuild lock of every projection in `names` for the whole rebuild, or
    raise `RebuildRunning` at once (nothing is touched). Two rebuilds of one projection
    share its build schema `proj_NAME__rebuild`: the second's `create_schema` dropped the
    first's (waiting first for its load transaction), and either could swap the other's
    rows in. A session advisory lock on a connection of its own, which the rebuild never
    uses otherwise: a process forked meanwhile (a split half, a reader, a parallel group)
    inherits the socket but never touches it and exits without closing it
    (`os._exit`), and a killed rebuild's lock goes with its connection."""
    conn = psycopg.connect(
        settings.dsn,
        autocommit=True,
        application_name="tradetape-rebuild-lock",
        connect_timeout=10,  # as the rebuild's other connections: a lost host is an error
    )
    try:
        for name in sorted(set(names)):
            row = conn.execute(REBUILD_LOCK_SQL, (name,)).fetchone()
            if not (row and row[0]):
                raise RebuildRunning(
                    f"a rebuild of {name} is under way (another process holds its rebuild "
                    "lock); this one did nothing: wait for it, or stop it"
                )
        yield
    finally:
        # Released before the function returns: closing alone lets the server's backend
        # drop them when it exits, a moment later, and a rebuild started at once (or
        # `rebuilding`) still found them held.
        with contextlib.suppress(psycopg.Error):
            conn.execute("SELECT pg_advisory_unlock_all()")
        conn.close()  # and a killed rebuild's go with its connection


def rebuilding(conn: psycopg.Connection[Any], names: Sequence[str]) -> set[str]:
    """Which of `names` a rebuild holds the lock of now, read from `pg_locks`: asking
    takes no lock (a try-lock released at once, as before, refused a rebuild starting in
    between: 'a rebuild of NAME is under way' of the question itself)."""
    rows = conn.execute(REBUILD_LOCKS_HELD_SQL, (list(names),)).fetchall()
    return {str(r[0]) for r in rows}


def swap_all(
    conn: psycopg.Connection[Any],
    builds: Sequence[tuple[Projection, str]],
    readonly_role: str | None,
    ids: Mapping[str, str] | None = None,
) -> None:
    """`swap_in` every (projection, build schema) in one transaction, in projection name
    order: the order in which a live group's batch takes its members' locks
    (`store.lock_projections`). In another order (`rebuild --all --one-consumer` swapped
    `orders` before `fills`) the swap held one member's lock while a live batch held the
    other's and waited for it: PostgreSQL broke the deadlock by failing one of them, the
    live batch (a group restart) or the swap (and so the whole rebuild). `ids`: the topic
    ids the rebuild read (`read_topic_ids`), stored with the offsets."""
    with conn.transaction():
        for projection, schema in sorted(builds, key=lambda b: b[0].name):
            swap_in(conn, projection, schema, readonly_role, ids)


def read_topic_ids(settings: Settings, projections: Sequence[Projection]) -> dict[str, str]:
    """The ids of the topics `projections` read, by full name (`deploy.kafka.topic_ids`)."""
    names = sorted({settings.topic(t) for p in projections for t in p.topics})
    return topic_ids(admin_client(settings), names)


def same_topics(
    settings: Settings, projections: Sequence[Projection], ids: Mapping[str, str]
) -> None:
    """Refuse a swap if a topic read was deleted and created again during the rebuild (its
    id is not the one taken at the start, or it is gone): the build may hold records of
    both logs. A topic with no id at the start is not compared: the broker had not listed
    it yet (a topic just created is unknown to `describe_topics` for a moment on a loaded
    broker: a rebuild of `positions` was refused for 'recreated' topics that had merely
    been created, session 25's mid-session clone); the ids stored are the start's, so the
    next assignment records its id as for rows stored before migration 0124."""
    now = read_topic_ids(settings, projections)
    changed = sorted(t for t in ids if ids[t] != now.get(t))
    if changed:
        raise RuntimeError(
            f"topic {', '.join(changed)} was deleted and created again during the rebuild "
            "(its topic id changed): the build may hold records of both logs; the live "
            "projections were left untouched, rebuild again"
        )


BULK_BATCH = 5000
"""Records per batch of a bulk rebuild on one consumer. Its reader process holds a batch
being decoded and one being sent, the folding process one being folded: at 10,000
records a 1M-event rebuild's processes together held ~100 MB more at the same speed;
at 2,000 the hand-overs between them slowed it by a third (session 9)."""


def rebuild_many(
    settings: Settings,
    projections: Sequence[Projection],
    *,
    progress: Callable[[int, Projector], None] | None = None,
    batch_size: int | None = None,
    swap: bool = True,
    bulk: bool = True,
    split: bool = True,
    on_locked: Callable[[], None] | None = None,
) -> list[RebuildResult]:
    """Replay projections from offset 0, each into a fresh schema, on one consumer
    (every record decoded once), then swap them all in in one transaction.

    One `partition_local` projection (bulk, `split`) is built in two halves by
    partition instead, one process each (`projections.partitioned`); if the halves turn
    out to share an event id or key, it is built again on one consumer.

    `bulk` (the default) folds in memory and loads with COPY, building keys and indexes
    after the load (projections/bulkload.py); otherwise every batch is applied as a
    live batch would be (one transaction with its offsets). `batch_size`: records per
    batch, by default `BULK_BATCH` (bulk) or 10,000. `on_locked()` is called once the
    rebuild lock is held, before any schema is made (`rebuild_lock`)."""
    batch_size = batch_size or (BULK_BATCH if bulk else 10_000)
    builds = [_build_target(p) for p in projections]
    with rebuild_lock(settings, [p.name for p in projections]):  # before any schema
        try:
            if on_locked is not None:
                on_locked()
            return _rebuild_many(settings, builds, progress, batch_size, swap, bulk, split)
        except BaseException:
            # A Ctrl-C (or any failure) leaves no half-built schema behind: the next
            # rebuild and `status` would otherwise meet it (it was left until the next
            # rebuild). Once swapped in, the build schema has its live name: nothing of it
            # is dropped.
            _drop_builds(settings, projections, quiet=True)
            raise


def _rebuild_many(
    settings: Settings,
    builds: list[Target],
    progress: Callable[[int, Projector], None] | None,
    batch_size: int,
    swap: bool,
    bulk: bool,
    split: bool,
) -> list[RebuildResult]:
    totals: dict[str, BatchResult] = {}
    started = time.monotonic()
    ids = read_topic_ids(settings, [t.projection for t in builds])
    if bulk and split and len(builds) == 1 and builds[0].projection.partition_local:
        # Before any connection is open here: it forks its other half.
        got = rebuild_split(settings, builds[0], batch_size=batch_size, progress=progress)
        if got is not None:
            totals = {builds[0].projection.name: got.totals}
            records = got.records
    with psycopg.connect(settings.dsn, autocommit=False) as conn:
        if not totals:  # on one consumer (also when a split build's halves met)
            for t in builds:
                create_schema(conn, t.projection, t.schema)
            kind = BulkProjector if bulk else Projector
            with kind(
                settings, builds, batch_size=batch_size, poll_timeout=0.5, replay=True
            ) as proj:
                proj.catch_up(progress=progress, poll_timeout=0.5)
                if not proj.caught_up:
                    raise RuntimeError(
                        f"rebuild of {proj.name} stalled before the end of the log; "
                        "the live projections were left untouched"
                    )
                if isinstance(proj, BulkProjector):
                    proj.finish()
                totals = {
                    t.projection.name: r for t, r in zip(proj.targets, proj.totals, strict=True)
                }
                records = proj.total.consumed
        seconds = time.monotonic() - started
        conn.commit()
        # The rebuilt tables' checksum before the swap (nothing else writes them): after
        # it, a live projector may already have added batches to the live schema.
        sums = {t.projection.name: _build_checksum(conn, t) for t in builds}
        if swap:
            same_topics(settings, [t.projection for t in builds], ids)
            swap_all(conn, [(t.projection, t.schema) for t in builds], settings.readonly_role, ids)
        out = []
        for t in builds:
            name = t.projection.name
            snap = sums[name]
            out.append(
                RebuildResult(
                    name, totals[name].consumed, seconds, snap.digest, snap.counts, records,
                    offsets=snap.offsets,
                )
            )  # fmt: skip
    return out


def _build_checksum(conn: psycopg.Connection[Any], build: Target) -> Snapshot:
    """The checksum of a build schema and its offsets: what the swap makes live."""
    return checksum_snapshot(conn, build.projection, build.schema, build.offsets_table)


def _build_target(p: Projection) -> Target:
    build = p.schema + REBUILD_SUFFIX
    return Target(p, build, (build, "_offsets"))


GROUP_BATCH = 2000
"""Records per batch of a parallel rebuild's group. Three batches are alive at once (one
being decoded, one queued, one folded) besides their rendered rows on the writer's
queue: at 10,000 records they held about 100 MB of a group's peak (session 7)."""

GROUP_FETCH_BYTES = 2 << 20
"""A parallel rebuild's fetch per partition (a single-consumer replay asks 8 MB). Smaller
fetches cut a group's peak by tens of MB at the same speed; a smaller prefetch queue
(`queued.max.messages.kbytes`) than the default stalled the consumer (session 7)."""

FIRST = ("orders", "balances", "positions", "decisions")
"""The order in which a parallel rebuild starts its groups when there are more groups
than slots: a group holding an earlier name first (the longest builds of a trading
log), then the rest by name. Only the wall time depends on it, never the result."""


class _GroupProjector(BulkProjector):
    """A parallel rebuild's projector: smaller fetches (`GROUP_FETCH_BYTES`), and its
    reader a thread, not a process: the groups already share the cores between them."""

    read_in_child = False

    def consumer_config(self) -> dict[str, Any]:
        return {**super().consumer_config(), "max.partition.fetch.bytes": GROUP_FETCH_BYTES}


def _few_arenas() -> None:
    """Cap glibc's malloc arenas at 2 in this process (the reader, writer and librdkafka
    threads otherwise each get one, and freed batches stay mapped in all of them)."""
    mallopt = libc_function("mallopt")
    if mallopt is not None:
        mallopt(-8, 2)  # M_ARENA_MAX


def start_order(groups: Sequence[Sequence[Projection]]) -> list[int]:
    """Indexes of `groups` in the order they are started (`FIRST`, then by name)."""

    def rank(i: int) -> tuple[int, str]:
        names = [p.name for p in groups[i]]
        first = min((FIRST.index(n) for n in names if n in FIRST), default=len(FIRST))
        return first, "+".join(names)

    return sorted(range(len(groups)), key=rank)


@dataclass
class GroupBuild:
    """One group's build in a parallel rebuild, as its process reported it."""

    names: list[str]
    total: int = 0
    """Records up to the watermarks its consumer saw at its start (for a progress bar)."""
    records: int = 0
    done: bool = False
    seconds: float = 0.0  # wall seconds: a measurement, not money
    consumed: dict[str, int] = field(default_factory=dict)
    peak_rss_mb: float = 0.0  # megabytes, not money

    @property
    def label(self) -> str:
        return "+".join(self.names)


def _build_group(
    settings: Settings,
    projections: Sequence[Projection],
    index: int,
    out: Any,
    batch_size: int,
    go: Any,
) -> None:
    """A parallel rebuild's child: once `go` is set, bulk-build one group into its build
    schemas (committed there, not swapped in) and report progress and totals on `out`."""
    try:
        go.wait()
        _few_arenas()
        started = time.monotonic()
        builds = [_build_target(p) for p in projections]
        with _GroupProjector(
            settings, builds, batch_size=batch_size, poll_timeout=0.5, replay=True
        ) as proj:
            out.put(("total", index, sum(proj.high_watermarks().values())))
            proj.catch_up(progress=lambda n, _p: out.put(("progress", index, n)), poll_timeout=0.5)
            if not proj.caught_up:
                raise RuntimeError(f"rebuild of {proj.name} stalled before the end of the log")
            proj.finish()
            consumed = {
                t.projection.name: r.consumed
                for t, r in zip(proj.targets, proj.totals, strict=True)
            }
            records = proj.total.consumed
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out.put(("done", index, consumed, records, time.monotonic() - started, rss))
    except BaseException as exc:
        out.put(("error", index, f"{type(exc).__name__}: {exc}", traceback.format_exc()))


def _drop_builds(
    settings: Settings, projections: Sequence[Projection], *, quiet: bool = False
) -> None:
    """Drop the build schemas of `projections` (a failed or interrupted rebuild). `quiet`:
    when it cannot (the database gone), log it rather than hide the rebuild's own error;
    the next rebuild drops them (`leftover_builds`)."""
    try:
        with psycopg.connect(settings.dsn, autocommit=False, connect_timeout=10) as conn:
            with conn.transaction():
                for p in projections:
                    conn.execute(
                        sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                            sql.Identifier(_build_target(p).schema)
                        )
                    )
    except psycopg.Error as exc:
        if not quiet:
            raise
        log.warning("could not drop the rebuild's build schemas: %s", exc)


def leftover_builds(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Build schemas there now, by projection name: a rebuild under way, or one that
    ended without its clean-up (killed, or its database lost meanwhile)."""
    from projections.core import PROJECTIONS

    wanted = {_build_target(p).schema: name for name, p in PROJECTIONS.items()}
    rows = conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (list(wanted),)
    ).fetchall()
    return {wanted[str(r[0])]: str(r[0]) for r in rows}


def rebuild_parallel(
    settings: Settings,
    projections: Sequence[Projection],
    *,
    on_start: Callable[[list[GroupBuild]], None] | None = None,
    progress: Callable[[int, GroupBuild], None] | None = None,
    batch_size: int = GROUP_BATCH,
    swap: bool = True,
    jobs: int | None = None,
    on_locked: Callable[[], None] | None = None,
) -> list[RebuildResult]:
    """Rebuild `projections` from offset 0, one process per topic group (the groups
    `tradetape run projections` runs), each into its fresh schemas; then, only if every
    group finished, swap them all in in one transaction (all or nothing: on any failure
    the live projections are untouched and the build schemas are dropped).

    Groups that share a topic read it each (the `orders.lifecycle` records are read and
    decoded twice, as live), in exchange for using both cores. At most `jobs` groups
    (default: one per core) build at a time, the next starting when one finishes: more
    would share the same cores and add their memory together. `progress(n, group)` is
    called in this process for every batch a group applied; `on_locked()` once the
    rebuild lock is held, before any schema is made."""
    with rebuild_lock(settings, [p.name for p in projections]):  # before any schema
        if on_locked is not None:
            on_locked()
        return _rebuild_parallel(settings, projections, on_start, progress, batch_size, swap, jobs)


def _rebuild_parallel(
    settings: Settings,
    projections: Sequence[Projection],
    on_start: Callable[[list[GroupBuild]], None] | None,
    progress: Callable[[int, GroupBuild], None] | None,
    batch_size: int,
    swap: bool,
    jobs: int | None,
) -> list[RebuildResult]:
    from projections.runner import topic_groups

    groups = topic_groups(projections)
    builds = [GroupBuild([p.name for p in g]) for g in groups]
    ids = read_topic_ids(settings, projections)
    # No connection is open across the fork but the rebuild lock's, which the children
    # never touch (`rebuild_lock`): a child must not use an inherited socket.
    with psycopg.connect(settings.dsn, autocommit=False) as conn:
        for g in groups:
            for p in g:
                create_schema(conn, p, _build_target(p).schema)
    ctx = multiprocessing.get_context("fork")
    out: Any = ctx.Queue()
    started = time.monotonic()
    # Every group is forked now, before the caller starts any thread (its progress bar),
    # and waits for its `go`: a fork beside a running thread could copy a held lock.
    # A waiting child only shares this process's pages.
    go = [ctx.Event() for _ in groups]
    procs = [
        ctx.Process(
            target=_build_group,
            args=(settings, g, i, out, batch_size, go[i]),
            name=f"rebuild-{builds[i].label}",
            daemon=True,
        )
        for i, g in enumerate(groups)
    ]
    waiting = start_order(groups)
    slots = max(1, jobs if jobs is not None else (os.cpu_count() or 1))

    def start_next() -> None:
        running = sum(1 for i, e in enumerate(go) if e.is_set() and not builds[i].done)
        for _ in range(min(len(waiting), slots - running)):
            go[waiting.pop(0)].set()

    failure: str | None = None
    try:
        for proc in procs:
            proc.start()
        start_next()
        if on_start is not None:
            on_start(builds)
        while failure is None and not all(b.done for b in builds):
            try:
                msg = out.get(timeout=0.5)
            except queue.Empty:
                dead = [
                    builds[i].label
                    for i, proc in enumerate(procs)
                    if not builds[i].done and not proc.is_alive()
                ]
                if dead and out.empty():
                    failure = f"the build of {', '.join(dead)} died without a word"
                continue
            kind, i = msg[0], msg[1]
            b = builds[i]
            if kind == "total":
                b.total = msg[2]
                if progress is not None:
                    progress(0, b)
            elif kind == "progress":
                b.records += msg[2]
                if progress is not None:
                    progress(msg[2], b)
            elif kind == "done":
                b.consumed, b.records, b.seconds, b.peak_rss_mb = msg[2], msg[3], msg[4], msg[5]
                b.done = True
                procs[i].join(30)  # its memory is freed before the next group starts
                start_next()
                if progress is not None:
                    progress(0, b)
            else:
                failure = f"the build of {b.label} failed: {msg[2]}"
                log.error("the build of %s failed:\n%s", b.label, msg[3])
    finally:
        for i, proc in enumerate(procs):
            if proc.pid is None:  # never started
                continue
            if proc.is_alive() and not builds[i].done:  # a failure, or Ctrl-C here
                proc.terminate()
            proc.join(30)
        if not all(b.done for b in builds):
            _drop_builds(settings, [p for g in groups for p in g])
    seconds = time.monotonic() - started
    if failure is not None:
        raise RuntimeError(f"{failure}; the live projections were left untouched")
    names = [p.name for g in groups for p in g]
    with psycopg.connect(settings.dsn, autocommit=False) as conn:
        by_name = {p.name: p for g in groups for p in g}
        sums = {name: _build_checksum(conn, _build_target(by_name[name])) for name in names}
        if swap:
            same_topics(settings, projections, ids)
            swap_all(
                conn,
                [(by_name[n], _build_target(by_name[n]).schema) for n in names],
                settings.readonly_role,
                ids,
            )
        results = []
        for b in builds:
            for name in b.names:
                p = by_name[name]
                snap = sums[name]
                results.append(
                    RebuildResult(
                        name,
                        b.consumed[name],
                        seconds,
                        snap.digest,
                        snap.counts,
                        b.records,
                        group=b.label,
                        group_seconds=b.seconds,
                        peak_rss_mb=b.peak_rss_mb,
                        offsets=snap.offsets,
                    )
                )
    order = [p.name for p in projections]
    return sorted(results, key=lambda r: order.index(r.name))


def rebuild(
    settings: Settings,
    projection: Projection,
    *,
    progress: Callable[[int, Projector], None] | None = None,
    batch_size: int | None = None,
    swap: bool = True,
    bulk: bool = True,
    split: bool = True,
) -> RebuildResult:
    """Replay from offset 0 into a fresh schema and (by default) swap it in."""
    return rebuild_many(
        settings, [projection], progress=progress, batch_size=batch_size, swap=swap, bulk=bulk,
        split=split,
    )[0]  # fmt: skip
