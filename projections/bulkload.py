"""The in-memory rebuild: fold a replay in memory, stream history rows in with COPY.

A rebuild writes into a fresh schema nobody reads, so it needs none of a live batch's
per-batch work: no de-duplication query (every folded event id is kept in memory), no
state query (the current rows of every UPSERT table live in memory for the whole
replay, frozen to compact JSON between batches, and are written once at the end), no upserts, and no index maintenance while
loading (primary keys and indexes are dropped after the schema is created and built
once after the load). History rows go straight into the unindexed tables with COPY
on a writer thread with its own connection, so PostgreSQL parses and stores one batch
while the next is decoded and folded. The folds, the de-duplication rules and the row
rendering are the live path's own (`store.fold_fresh`, `store.copy_block`), so the
checksum of a bulk rebuild equals that of the incrementally built projection.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import itertools
import os
import queue
import signal
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from projections.framework import (
    Key,
    Located,
    Projection,
    Quarantined,
    Row,
    State,
    Table,
    WriteMode,
)
from projections.store import (
    BatchResult,
    Prepared,
    copy_block,
    fold_fresh,
    quarantine_table,
    save_offsets_many,
    write_quarantine,
)

Conn = psycopg.Connection[Any]


TRIM_EVERY = 10
"""Batches between handing freed heap memory back to the system (`malloc_trim`), and
between garbage collections while a build pauses the automatic ones (`pause_gc`)."""


def libc_function(name: str) -> Callable[..., int] | None:
    """A C library function by name (glibc's allocator controls), or None elsewhere."""
    lib = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(lib), name, None) if lib else None


def die_with_parent(parent: int) -> None:
    """In a child process: be killed when `parent` dies (Linux PR_SET_PDEATHSIG), so a
    `kill -9` of the parent leaves no orphan; exit at once if it is already gone."""
    prctl = libc_function("prctl")
    if prctl is not None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


_MALLOC_TRIM = libc_function("malloc_trim")


def trim() -> None:
    """A replay frees each batch's decoded records and rendered rows, but glibc keeps
    the freed pages mapped (they count in RSS) until trimmed."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def pause_gc() -> bool:
    """Stop automatic garbage collection for a bulk fold; whether it was on. Each batch
    allocates ~25 containers per record, which set off a full collection every couple of
    batches over the build's growing state: 6-7 s of a 20 s `orders` rebuild, and they
    found next to nothing (a batch's objects are freed by reference counting). `collect`
    every `TRIM_EVERY` batches still finds any cycles.

    What exists already (the modules, ~130k objects) is frozen at once, as `collect`
    freezes what survives it: else the first `collect` scans it all, ~100 ms of CPU
    in each half of a split rebuild (docs/benchmarks.md, session 12)."""
    was = gc.isenabled()
    gc.disable()
    gc.freeze()
    return was


def collect(*, trim_memory: bool = True) -> None:
    """The periodic collection and trim of a bulk fold (`pause_gc`). What survives a
    collection is frozen (never scanned again; `gc.unfreeze` when the build closes), so
    each one looks only at what the last `TRIM_EVERY` batches left: scanning the whole
    state took 50-100 ms a time and found nothing."""
    gc.collect()
    gc.freeze()
    if trim_memory:
        trim()


def _ident(schema: str, table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def build_tables(projection: Projection) -> list[str]:
    """The tables of a build schema whose keys and indexes a bulk load drops."""
    names = [t.name for t in projection.tables]
    if projection.seen_table == "_seen":
        names.append("_seen")
    return names


def history_tables(projection: Projection) -> list[str]:
    """The build tables a bulk build fills only through its writer thread, batch by
    batch (INSERT tables keyed on the event id, and `_seen`): complete once the writer
    has drained, before the current rows are written (`BulkBuild.apply`)."""
    names = [t.name for t in projection.tables if t.mode is WriteMode.INSERT and "event_id" in t.pk]
    if projection.seen_table == "_seen":
        names.append("_seen")
    return names


@dataclass(frozen=True)
class Dropped:
    """A primary key, unique constraint or index a bulk load dropped, and how to build
    it again."""

    build: sql.Composed | sql.SQL
    """The one statement that builds it (ALTER TABLE ... ADD CONSTRAINT, or CREATE
    INDEX)."""
    index: sql.Composed | sql.SQL | None = None
    """Its index alone (`pg_get_indexdef`: CREATE [UNIQUE] INDEX ...), which may be
    built beside the table's other indexes; None if it must be built by `build`."""
    attach: sql.Composed | sql.SQL | None = None
    """For a constraint built from `index`: the ALTER TABLE ... USING INDEX that makes
    that index the constraint (its columns keep their NOT NULL when the key is dropped,
    so this takes no scan)."""


def drop_keys(conn: Conn, schema: str, tables: Sequence[str]) -> list[Dropped]:
    """Drop every primary key, unique constraint and index of `tables` in `schema` and
    say how to build each again (constraints first, as declared)."""
    cons = conn.execute(
        "SELECT c.conname, r.relname, pg_get_constraintdef(c.oid), c.contype, "
        "c.condeferrable, x.relname, pg_get_indexdef(c.conindid) FROM pg_constraint c "
        "JOIN pg_class r ON r.oid = c.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace "
        "JOIN pg_class x ON x.oid = c.conindid "
        "WHERE n.nspname = %s AND r.relname = ANY(%s) AND c.contype IN ('p', 'u') ORDER BY c.oid",
        (schema, list(tables)),
    ).fetchall()
    idx = conn.execute(
        "SELECT x.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class x ON x.oid = i.indexrelid JOIN pg_namespace n ON n.oid = x.relnamespace "
        "JOIN pg_class r ON r.oid = i.indrelid WHERE n.nspname = %s AND r.relname = ANY(%s) "
        "AND NOT EXISTS "
        "(SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) ORDER BY i.indexrelid",
        (schema, list(tables)),
    ).fetchall()
    out: list[Dropped] = []
    for name, table, definition, kind, deferrable, index_name, index_def in cons:
        conn.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                _ident(schema, table), sql.Identifier(name)
            )
        )
        build = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
            _ident(schema, table), sql.Identifier(name), sql.SQL(definition)
        )
        if deferrable:
            out.append(Dropped(build))
            continue
        attach = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} USING INDEX {}").format(
            _ident(schema, table),
            sql.Identifier(name),
            sql.SQL("PRIMARY KEY" if kind == "p" else "UNIQUE"),
            sql.Identifier(index_name),
        )
        out.append(Dropped(build, sql.SQL(index_def), attach))
    for name, definition in idx:
        conn.execute(sql.SQL("DROP INDEX {}").format(_ident(schema, name)))
        out.append(Dropped(sql.SQL(definition), sql.SQL(definition)))
    return out


def drop_keys_and_indexes(
    conn: Conn, schema: str, tables: Sequence[str]
) -> list[sql.Composed | sql.SQL]:
    """Drop every primary key, unique constraint and index of `tables` in `schema` and
    return the statements that build them again (constraints first, as declared)."""
    return [d.build for d in drop_keys(conn, schema, tables)]


@dataclass
class _Member:
    projection: Projection
    schema: str
    bit: int = 1
    """This member's bit in `BulkBuild.seen`."""
    cold: dict[str, dict[Key, str]] = field(default_factory=dict)
    """Current rows of the stateful tables (what a live batch would load), each frozen
    to JSON between batches: a third of the memory of a tuple of Python values."""
    current: dict[str, dict[Key, Row]] = field(default_factory=dict)
    """Final row per key of the other UPSERT tables, and of INSERT tables not keyed on
    the event id (first row wins). Written, like `cold`, once at the end."""

    def thaw(self, table: Table, key: Key) -> Row | None:
        frozen = self.cold.get(table.name, {}).get(key)
        return None if frozen is None else tuple(orjson.loads(frozen))

    rebuild_ddl: list[sql.Composed | sql.SQL] = field(default_factory=list)


def _plain(value: Any) -> Any:
    """How a frozen row keeps a value orjson has no type for: as the text COPY would
    send (`store.copy_text`), which the folds read back as they read database values
    (`Decimal(text)`)."""
    if isinstance(value, Decimal):
        # str() is format(value, "f") unless it took exponent notation (a positive
        # exponent, or below 1E-6), in ~40 % of its instructions (callgrind, session 20).
        text = str(value)
        return format(value, "f") if "E" in text or "e" in text else text
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def freeze(row: Row) -> str:
    """A row as compact JSON text (a `str`: orjson's own bytes keep a 4 KB buffer)."""
    return orjson.dumps(row, default=_plain, option=orjson.OPT_PASSTHROUGH_DATETIME).decode()


_STOP = object()

QUEUED_CHUNKS = 64
"""Chunks (psycopg's, at most 128 KB each) a `QueuedWriter` holds before its caller waits:
at most ~8 MB of COPY text ahead of PostgreSQL."""


class QueuedWriter(QueuedLibpqWriter):
    """psycopg's queued COPY writer (a thread sends while the caller renders), with a
    shorter queue than its 1,024 chunks (up to 128 MB)."""

    def __init__(self, cursor: psycopg.Cursor[Any]) -> None:
        super().__init__(cursor)
        self._queue = type(self._queue)(maxsize=QUEUED_CHUNKS)


COPY_BLOCK = 5000


def _eid(item: Located) -> int:
    """A folded event's id as the seen set keys it (a canonical UUID's 128 bits)."""
    return int(item.data["event_id"].replace("-", ""), 16)


class BulkBuild:
    """Folds batches of several projections into their fresh build schemas.

    `start()` drops the build schemas' keys and indexes; `apply(shares)` folds one
    batch (one `Prepared` per member, from `store.prepare`); `finish(offsets)` writes the
    current rows and the next offsets, builds the keys and indexes, and commits. Until
    `finish` returns nothing is committed, so a failed rebuild leaves only a schema the
    next rebuild drops."""

    def __init__(
        self,
        dsn: str,
        members: Sequence[tuple[Projection, str]],
        *,
        quarantine_table: tuple[str, str] | None = None,
    ) -> None:
        self.members = [_Member(p, schema, 1 << i) for i, (p, schema) in enumerate(members)]
        self.quarantine_table = quarantine_table
        """Where quarantined records go; by default each member's own
        (`store.quarantine_table`: a rebuild's build schema keeps its quarantine, which
        the swap makes the projection's whole quarantine)."""
        self._batches = 0
        self.seen: dict[int, int] = {}
        """Every folded event id (as a 128-bit int: half the memory of its text), with
        one bit per member that folded it. One map for all members: an id read by four
        projections is kept once."""
        self.conn: Conn = psycopg.connect(
            dsn, autocommit=False, application_name="tradetape-rebuild-writer"
        )
        self._jobs: queue.Queue[Any] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._writer = threading.Thread(target=self._write, daemon=True, name="bulk-writer")

    # ------------------------------------------------------------------ lifecycle
    def start(self, *, drop_keys: bool = True) -> None:
        """Drop the build tables' keys and indexes (unless the caller did: a half of a
        split rebuild) and start the writer."""
        for m in self.members:
            if drop_keys:
                m.rebuild_ddl = drop_keys_and_indexes(
                    self.conn, m.schema, build_tables(m.projection)
                )
        self._writer.start()
        self._gc_was_on = pause_gc()

    _gc_was_on = False

    def close(self) -> None:
        if self._writer.is_alive():
            self._put(_STOP)
            self._writer.join()
        self.conn.close()
        gc.unfreeze()
        if self._gc_was_on:
            gc.enable()

    def __enter__(self) -> BulkBuild:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writer thread
    def _write(self) -> None:
        """COPY each queued block (rendered here, off the folding thread)."""
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            if self._error is not None:
                continue  # drain: the folding thread raises it
            try:
                kind, *args = job
                if kind == "copy":
                    schema, table, rows = args
                    self._copy(schema, table, rows)
                else:
                    name, bad, where = args
                    write_quarantine(self.conn, name, bad, where)
            except BaseException as exc:  # handed to the folding thread
                self._error = exc

    def _copy(
        self, schema: str, table: Table, rows: Iterable[Row], *, queued: bool = False
    ) -> None:
        """One COPY, sent in blocks of `COPY_BLOCK` rows (a large table's current rows
        are thawed block by block, never all at once). `queued`: sent by a thread of its
        own (`QueuedWriter`), so the caller renders the next block while PostgreSQL
        parses this one."""
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in table.columns)
        with self.conn.cursor() as cur:
            stmt = sql.SQL("COPY {} ({}) FROM STDIN").format(_ident(schema, table.name), cols)
            with cur.copy(stmt, writer=QueuedWriter(cur) if queued else None) as cp:
                it = iter(rows)
                while block := list(itertools.islice(it, COPY_BLOCK)):
                    cp.write(copy_block(block))

    def _put(self, job: Any) -> None:
        while True:
            self._raise()
            try:
                self._jobs.put(job, timeout=0.5)
                return
            except queue.Full:
                if not self._writer.is_alive():
                    raise RuntimeError("the rebuild writer thread stopped") from self._error

    def _raise(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"rebuild write failed: {self._error}") from self._error

    # ------------------------------------------------------------------ folding
    def apply(self, shares: Sequence[Prepared]) -> list[BatchResult]:
        """Fold one batch's shares (member order); history rows are queued for COPY."""
        results: list[BatchResult] = []
        for m, share in zip(self.members, shares, strict=True):
            res = BatchResult(consumed=share.consumed, ignored=share.ignored)
            bad: list[Quarantined] = list(share.bad)
            first: dict[int, Any] = {}
            seen, bit = self.seen, m.bit
            for item in share.items:
                eid = int(item.data["event_id"].replace("-", ""), 16)  # `_eid`, inlined
                if not seen.get(eid, 0) & bit:
                    first.setdefault(eid, item)
            fresh = list(first.values())
            res.duplicates = len(share.items) - len(fresh)
            ordered = None
            if res.duplicates:  # copies of an event id in the batch? (`fold_retrying`)
                unseen = [(_eid(i), i) for i in share.items]
                unseen = [(e, i) for e, i in unseen if not seen.get(e, 0) & bit]
                if len(unseen) > len(fresh):
                    ordered = [i for _e, i in unseen]
            state = State(loader=m.thaw)
            folded_bad, res.applied, writes = fold_fresh(m.projection, state, fresh, ordered)
            if ordered is not None:
                res.duplicates = len(share.items) - res.applied - len(folded_bad)
            if self.tracking:
                self._track(m, state, share.items, ordered or fresh, folded_bad)
            bad.extend(folded_bad)
            failed = {(q.topic, q.partition, q.offset) for q in folded_bad}
            if ordered is not None:  # an id is folded if any of its copies was
                first = {e: i for e, i in unseen if (i.topic, i.partition, i.offset) not in failed}
                failed = set()
            for eid, i in first.items():
                if not failed or (i.topic, i.partition, i.offset) not in failed:
                    seen[eid] = seen.get(eid, 0) | bit
            for table, rows in writes:
                if table.name != "_seen":
                    res.rows[table.name] = len(rows)
                if not rows:
                    continue
                if table.mode is WriteMode.UPSERT and (table.stateful or table.frozen_in_rebuild):
                    cold = m.cold.setdefault(table.name, {})
                    for r in rows:
                        cold[table.key_of(r)] = freeze(r)
                elif table.mode is WriteMode.UPSERT:
                    # Never read back: a live batch sees no earlier row of such a table.
                    m.current.setdefault(table.name, {}).update((table.key_of(r), r) for r in rows)
                elif "event_id" not in table.pk:
                    kept = m.current.setdefault(table.name, {})
                    for r in rows:
                        kept.setdefault(table.key_of(r), r)
                else:
                    self._put(("copy", m.schema, table, rows))
            if bad:
                where = self.quarantine_table or quarantine_table(m.projection, m.schema)
                self._put(("quarantine", m.projection.name, bad, where))
            res.quarantined = len(bad)
            results.append(res)
        self._batches += 1
        if self._batches % self.collect_every == 0:
            collect(trim_memory=self._batches % self.trim_every == 0)
        return results

    collect_every = TRIM_EVERY
    """Batches between garbage collections (`collect`)."""

    trim_every = TRIM_EVERY
    """Batches between `malloc_trim`s (a multiple of `collect_every`)."""

    tracking = False
    """Whether `apply` records what each batch touched (`_track`; a split rebuild's half)."""

    def _track(
        self,
        m: _Member,
        state: State,
        items: Sequence[Located],
        fresh: Sequence[Located],
        bad: Sequence[Quarantined],
    ) -> None:
        """Record what a batch's fold touched beyond its written rows (`items`: the
        batch's share, `fresh`: those folded; a half of a split rebuild,
        `projections.partitioned`): no-op here."""

    def finish(
        self, offsets: Sequence[tuple[tuple[str, str], str, dict[tuple[str, int], int]]]
    ) -> None:
        """Write the current rows and `(offsets table, projection, next offsets)`, build
        keys and indexes, commit."""
        self._write_current()
        for m in self.members:
            for stmt in m.rebuild_ddl:
                self.conn.execute(stmt)
            for t in m.projection.tables:
                self.conn.execute(sql.SQL("ANALYZE {}").format(_ident(m.schema, t.name)))
        self._save_offsets(offsets)
        self.conn.commit()

    def _write_current(self) -> None:
        """Wait for the writer, then COPY every member's current rows (by key)."""
        self._drain()
        self._copy_current()

    def _drain(self) -> None:
        """Wait until the writer has sent every queued block (the history rows)."""
        self._put(_STOP)
        self._writer.join()
        self._raise()

    def _copy_current(self) -> None:
        """COPY every member's current rows (by key), once the writer has drained. The
        writer thread is gone by then, so a COPY's sending is queued to a thread of its
        own: on the folding thread alone, thawing and rendering waited for PostgreSQL to
        parse each block (`orders`: ~75k 25-column rows a half, session 15)."""
        for m in self.members:
            for tname, kept in m.current.items():
                if kept:
                    rows = (kept[k] for k in sorted(kept))
                    self._copy(m.schema, m.projection.table(tname), rows, queued=True)
            for tname, frozen in m.cold.items():
                if frozen:
                    rows = (tuple(orjson.loads(frozen[k])) for k in sorted(frozen))
                    self._copy(m.schema, m.projection.table(tname), rows, queued=True)

    def _save_offsets(
        self, offsets: Sequence[tuple[tuple[str, str], str, dict[tuple[str, int], int]]]
    ) -> None:
        """Store the next offsets of the partitions the build read records from. An
        empty partition (next offset 0) gets no row, as a live projector stores none
        until it applies a record there: a partition without a row resumes from its
        beginning just as one at 0 does (`Projector.resync`), and live and rebuilt
        projections list the same offsets (`checksum`, `rebuild`)."""
        by_table: dict[tuple[str, str], dict[str, dict[tuple[str, int], int]]] = {}
        for table, name, offs in offsets:
            by_table.setdefault(table, {})[name] = {k: v for k, v in offs.items() if v}
        for table, offs_by_name in by_table.items():
            save_offsets_many(self.conn, offs_by_name, table)
