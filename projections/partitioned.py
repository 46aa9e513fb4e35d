"""A single rebuild split by partition: two processes each read, decode, fold and load
half of a projection's partitions, and nothing crosses between them until the end.

Why: on one consumer a rebuild reads and decodes in one process and folds in the
other, and `marshal` carried every batch between them, about 30% of the rebuild's CPU
(docs/benchmarks.md, session 10). Where every key of a projection (its state rows and
the event ids it de-duplicates on) lives on one partition number of its topics, each
half can fold its partitions alone and the two halves' rows simply add up.

Which projections: those that set `Projection.partition_local`. That is a claim about
the log (an order's events, an account's balances and transfers all carry the account
key, and every topic is partitioned by the same murmur2 partitioner over 6 partitions,
so a key lands on the same partition number everywhere), so it is checked, not
trusted. Each half keeps a footprint: the low 64 bits of every event id it folded or
whose handler refused it, and `hash((member, table, key))` of every state key it read
or wrote (both halves are one forked interpreter, so `hash` agrees between them), and
whether a refused event came again (then its rows depend on the batch cuts, which
differ from live batches': `Footprint.retried`, which meets any footprint). If
the two footprints meet, one half could have seen the other's events (a duplicate
re-produced under another key, an order on two accounts): the split build is thrown
away and the rebuild runs again on one consumer (`rebuild.rebuild_many`). Two distinct
values that hash alike cost that fallback, never a wrong row.

How (`rebuild_split`): the parent forks its other half before it opens any connection
or consumer; creates the build schema, drops its keys and indexes and commits (both
halves COPY into the same tables, so neither may hold them locked); splits the
partition numbers into two sets of about equal records (`plan`) and sends the other
half its set. Each half bulk-builds its partitions (`BulkBuild`: folded in memory,
history COPYed as it goes, at the end its current rows and its partitions' next
offsets) and commits (its history rows first); its quarantine goes to the build
schema's own `_quarantine` table, as every rebuild's does. The parent builds a history
table's keys and indexes and analyzes it once both halves have committed their history
rows, and the other tables' once both halves are done; only if their footprints are
disjoint is the build kept (`Finish`). Nothing outside the private build schema
changes; the swap (`rebuild.swap_in`) is the rebuild's own, and makes that
`_quarantine` the projection's whole quarantine.
"""

from __future__ import annotations

import array
import contextlib
import dataclasses
import faulthandler
import logging
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
from confluent_kafka import TopicPartition
from psycopg import sql

from deploy.kafka import admin_client, end_offsets
from deploy.settings import Settings
from projections.bulkload import (
    TRIM_EVERY,
    BulkBuild,
    Dropped,
    _Member,
    build_tables,
    die_with_parent,
    drop_keys,
    history_tables,
    libc_function,
)
from projections.framework import Located, Projection, Quarantined, State
from projections.projector import CHILD_FETCH_BYTES, TP, BulkProjector, Projector, Target
from projections.store import BUILD_QUARANTINE, BatchResult

log = logging.getLogger(__name__)

WAYS = 2
SILENCE_LIMIT = 120.0  # seconds
"""How long the parent waits for any word from the other half before giving up on it
(killing it and building on one consumer). A healthy half reports every batch it reads
and gives up by itself after `Projector.catch_up`'s 30 s without records; only its last
commit is silent, a few seconds for a 1M-event rebuild. Without a bound a half that
hung (CI, stop 19: a `rebuild_split` in the test process hung 600 s) hung the rebuild."""
SILENT_RECORDS_PER_SECOND = 10_000
"""The bound grows with the half: its last commit may take a second per this many of the
records it read (a 20M-record half ~2,000 s), so a large rebuild is not killed while
it commits (review helper-60)."""
"""Halves of a split rebuild: one per core of the machine it was measured on."""

QUARANTINE = BUILD_QUARANTINE
"""A split build's quarantine table, in its build schema until the swap."""

_LOW64 = (1 << 64) - 1


def plan(
    partitions: Sequence[TopicPartition], sizes: dict[TP, int], ways: int = WAYS
) -> list[list[TopicPartition]]:
    """`partitions` in `ways` sets of whole partition numbers (a key lands on the same
    number on every topic), the numbers with the most records (`sizes`) first, each
    into the set with the fewest so far."""
    weight: dict[int, int] = {}
    for tp in partitions:
        weight[tp.partition] = weight.get(tp.partition, 0) + sizes.get((tp.topic, tp.partition), 0)
    load = [0] * ways
    where: dict[int, int] = {}
    for n in sorted(weight, key=lambda n: (-weight[n], n)):
        i = min(range(ways), key=lambda j: (load[j], j))
        where[n] = i
        load[i] += weight[n]
    return [[tp for tp in partitions if where[tp.partition] == i] for i in range(ways)]


@dataclass
class Footprint:
    """What one half's folds depended on: event ids (low 64 bits) folded or refused,
    and hashes of the state keys read or written. Disjoint footprints mean neither
    half's result could depend on the other's events."""

    ids: bytes
    """array('Q')"""
    keys: bytes
    """array('q')"""
    retried: bool = False
    """A refused event came again in this half (a redelivery, a duplicate): the copy is
    tried again (`store.fold_retrying`, in the same batch or a later one) and may fold
    once the state has changed; kept conservative: such halves fall back."""

    def meets(self, other: Footprint) -> bool:
        if self.retried or other.retried:
            return True
        mine = set(array.array("Q", self.ids))
        if not mine.isdisjoint(array.array("Q", other.ids)):
            return True
        keys = set(array.array("q", self.keys))
        return not keys.isdisjoint(array.array("q", other.keys))


def _key_hash(m: _Member, table: str, key: tuple[str, ...]) -> int:
    return hash((m.bit, table, key))


class HalfBuild(BulkBuild):
    """One half of a split rebuild: a `BulkBuild` into tables whose keys the parent
    dropped, which records its footprint and commits without building indexes."""

    tracking = True
    collect_every = 3 * TRIM_EVERY
    """A collect scans what is in flight (a batch being folded, one decoded, rows queued
    for COPY: ~60 ms of CPU) and found nothing in any rebuild measured: every 30
    batches, a 1M `decisions` half (~20 batches) never collects (session 12)."""
    trim_every = 3 * TRIM_EVERY
    """A trim took ~80 ms of a half's GIL (walking the freed heap): every 30 batches
    instead of 10, a 1M `orders` rebuild ran 1.10x as fast for ~25 MB more tree PSS
    (docs/benchmarks.md, session 11)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused: set[int] = set()
        """Event ids (low 64 bits) whose handler refused them: not in `seen`."""
        self.absent: set[int] = set()
        """Key hashes a fold read and found no row for, and did not write."""
        self.retried = False
        """A refused event id came again: in the batch that refused it (a copy not
        tried) or a later one (tried again) (`Footprint.retried`)."""

    def __enter__(self) -> HalfBuild:
        self.start()
        return self

    def start(self, *, drop_keys: bool = False) -> None:
        """As `BulkBuild.start`, but the parent has dropped the keys and indexes."""
        super().start(drop_keys=drop_keys)

    def _track(
        self,
        m: _Member,
        state: State,
        items: Sequence[Located],
        fresh: Sequence[Located],
        bad: Sequence[Quarantined],
    ) -> None:
        if bad:
            # Only a batch with a refusal pays for this. A copy refused in an earlier
            # batch and folded in a later one is found in `footprint` (refused and seen).
            failed = {(q.topic, q.partition, q.offset) for q in bad}
            names: set[str] = set()
            for i in fresh:
                if (i.topic, i.partition, i.offset) in failed:
                    eid = int(i.data["event_id"].replace("-", ""), 16) & _LOW64
                    if eid in self.refused:
                        self.retried = True  # refused again in a later batch
                    self.refused.add(eid)
                    names.add(i.data["event_id"])
            if names and len(items) > len(fresh):
                copies = sum(1 for i in items if i.data["event_id"] in names)
                if copies > len(names):
                    self.retried = True  # a copy in the same batch (tried again)
        for tname, rows in state.rows.items():
            written = state.dirty.get(tname, {})
            for key, row in rows.items():
                if row is None and key not in written:
                    self.absent.add(_key_hash(m, tname, key))

    def footprint(self) -> Footprint:
        ids = array.array("Q", [e & _LOW64 for e in self.seen])
        retried = self.retried or (bool(self.refused) and not self.refused.isdisjoint(ids))
        ids.extend(self.refused)
        keys = array.array("q", self.absent)
        for m in self.members:
            for tname, frozen in m.cold.items():
                keys.extend(_key_hash(m, tname, k) for k in frozen)
            for tname, kept in m.current.items():
                keys.extend(_key_hash(m, tname, k) for k in kept)
        return Footprint(ids.tobytes(), keys.tobytes(), retried)

    def finish_half(
        self,
        offsets: Sequence[tuple[tuple[str, str], str, dict[tuple[str, int], int]]],
        on_history: Callable[[], None] | None = None,
    ) -> None:
        """Commit this half's history rows (then call `on_history`), then write its
        current rows and next offsets and commit again (no keys, indexes or ANALYZE:
        the parent builds them once both halves are in, a history table's as soon as
        both halves have committed their history: `_Finish`)."""
        self._drain()
        self.conn.commit()
        if on_history is not None:
            on_history()
        self._copy_current()
        self._save_offsets(offsets)
        self.conn.commit()


class HalfProjector(BulkProjector):
    """A split rebuild's half: its own consumer over the partitions `choose` picks out
    of the projection's, decoding on a reader thread (no pipe), folding into a
    `HalfBuild`."""

    read_in_child = False

    def __init__(
        self,
        settings: Settings,
        target: Target,
        *,
        choose: Callable[[list[TopicPartition]], list[TopicPartition]],
        **kwargs: Any,
    ) -> None:
        super().__init__(settings, [target], **kwargs)
        self._choose = choose
        self.ends: dict[TP, int] = {}
        """The last stable offsets of every partition of both halves, as the parent read
        them once when it planned the split: both halves replay to them (one ListOffsets
        for the rebuild: a fresh admin client's first one sometimes took 1-3 s)."""

    _every: list[TopicPartition] | None = None
    """Every partition of the projection's topics, if `connect` read them already."""
    _early: HalfBuild | None = None
    """The build `connect` made (its connection open, not started)."""

    def connect(self) -> None:
        """Open what `open` needs that depends on neither the build schema nor the split:
        the database connections, the consumer and its topics' partitions. The forked
        half does it while the parent creates the build schema and plans the split;
        it did it all after them, and started folding ~0.1 s after the parent (a 1M
        `decisions` rebuild takes ~4.5 s; session 13)."""
        self._connect()
        self._every = list(Projector.partitions(self))
        self._partitions = None
        if self._early is None:
            self._early = self._half_build()

    def open(self) -> None:
        self._connect()
        self.resync()
        self._start_reader()
        self.bulk = self._new_build()

    def close(self) -> None:
        super().close()
        if self._early is not None:  # made, never started
            self._early.conn.close()
            self._early = None

    def partitions(self) -> list[TopicPartition]:
        if self._partitions is None:
            every = self._every if self._every is not None else list(super().partitions())
            self._partitions = self._choose(every)
        return self._partitions

    def high_watermarks(self) -> dict[TP, int]:
        return {
            (tp.topic, tp.partition): self.ends[(tp.topic, tp.partition)]
            for tp in self.partitions()
        }

    def log_size(self) -> int:
        self.partitions()
        return sum(self.ends.values())

    def consumer_config(self) -> dict[str, Any]:
        # As the reader process's (8 MB fetches held tens of MB more at the same speed).
        return {**super().consumer_config(), "max.partition.fetch.bytes": CHILD_FETCH_BYTES}

    def _half_build(self) -> HalfBuild:
        t = self.targets[0]
        return HalfBuild(
            self.dsn, [(t.projection, t.schema)], quarantine_table=(t.schema, QUARANTINE)
        )

    def _new_build(self) -> BulkBuild:
        build, self._early = self._early or self._half_build(), None
        build.start()
        return build

    def finish(self, on_history: Callable[[], None] | None = None) -> None:
        assert isinstance(self.bulk, HalfBuild)
        t = self.targets[0]
        self.bulk.finish_half([(t.offsets_table, t.projection.name, self.expected[0])], on_history)

    def footprint(self) -> Footprint:
        assert isinstance(self.bulk, HalfBuild)
        return self.bulk.footprint()


def _half(
    proj: HalfProjector,
    progress: Callable[[int, Projector], None],
    on_history: Callable[[], None] | None = None,
    on_done: Callable[[], None] | None = None,
) -> tuple[BatchResult, int, Footprint]:
    """Build one half to its watermarks and commit it: (totals, records, footprint).
    `on_history` is called once its history rows are committed, `on_done` once all of
    its rows are (before its footprint is taken)."""
    with proj:
        proj.catch_up(progress=progress, poll_timeout=0.5)
        if not proj.caught_up:
            raise RuntimeError(f"rebuild of {proj.name} stalled before the end of the log")
        proj.finish(on_history)
        if on_done is not None:
            on_done()
        return proj.totals[0], proj.total.consumed, proj.footprint()


def _other_half(
    settings: Settings,
    target: Target,
    batch_size: int,
    pipe: Any,
    parent: int,
    history: Any = None,
    done: Any = None,
) -> None:
    """The forked half: wait for its partitions, build them, report on `pipe` (and set
    the `history` event once its history rows are committed, `done` once all are)."""
    die_with_parent(parent)
    # Where it hangs, for the parent's `HalfSilent`: on fd 2 (a caller's stderr may be no
    # file at all, e.g. a CLI test runner's, where registering raised and killed the half).
    with contextlib.suppress(OSError, ValueError, AttributeError):
        faulthandler.register(signal.SIGUSR1, file=2, all_threads=True)
    mallopt = libc_function("mallopt")
    if mallopt is not None:
        mallopt(-8, 2)  # M_ARENA_MAX: librdkafka's and the writer's threads would each get one
    try:
        mine: set[tuple[str, int]] = set()
        proj = HalfProjector(
            settings, target, batch_size=batch_size, poll_timeout=0.5, replay=True,
            choose=lambda every: [tp for tp in every if (tp.topic, tp.partition) in mine],
        )  # fmt: skip
        try:
            proj.connect()  # while the parent makes the schema and plans the split
            got = pipe.recv()
        except BaseException:
            proj.close()
            raise
        if got is None:
            proj.close()
            return
        mine.update((t, p) for t, p in got[0])
        proj.ends = got[1]
        totals, records, footprint = _half(
            proj,
            lambda n, _p: pipe.send(("progress", n)),
            None if history is None else history.set,
            None if done is None else done.set,
        )
        pipe.send(("done", dataclasses.asdict(totals), records, footprint))
    except (BrokenPipeError, EOFError, KeyboardInterrupt):
        return  # the parent is done (or gone)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            pipe.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))


@dataclass
class SplitResult:
    totals: BatchResult
    """Both halves' counts added up."""
    records: int


class HalfSilent(RuntimeError):
    """The other half sent nothing for `SILENCE_LIMIT` seconds."""


class _OtherHalf:
    """The parent's view of the forked half: its progress and its final report."""

    def __init__(self, pipe: Any, proc: Any) -> None:
        self.pipe, self.proc = pipe, proc
        self.done: tuple[BatchResult, int, Footprint] | None = None
        self.heard = time.monotonic()
        """When the half last sent anything (or `wait` began)."""
        self.records = 0
        """Records the half reported reading."""

    def drain(
        self,
        progress: Callable[[int], None],
        wait: float = 0.0,  # seconds, not money
    ) -> None:
        """Take what the half has sent (waiting up to `wait` seconds for a message)."""
        while self.done is None and self.pipe.poll(wait):
            wait = 0.0
            kind, *body = self.pipe.recv()
            self.heard = time.monotonic()
            if kind == "progress":
                self.records += body[0]
                progress(body[0])
            elif kind == "done":
                rows = body[0].pop("rows")
                totals = BatchResult(**body[0])
                totals.rows = rows
                self.done = (totals, body[1], body[2])
            else:
                log.error("the other half of the rebuild failed:\n%s", body[1])
                raise RuntimeError(f"the other half of the rebuild failed: {body[0]}")

    def wait(
        self,
        progress: Callable[[int], None],
        silence: float | None = None,  # seconds, not money
    ) -> tuple[BatchResult, int, Footprint]:
        """The half's report; raises `HalfSilent` if it sends nothing for `silence`
        seconds (`SILENCE_LIMIT`, more for a large half) from now on."""
        self.heard = time.monotonic()
        while self.done is None:
            limit = silence
            if limit is None:
                limit = max(SILENCE_LIMIT, self.records / SILENT_RECORDS_PER_SECOND)
            try:
                self.drain(progress, 0.5)
            except EOFError as exc:
                raise RuntimeError(
                    f"the other half of the rebuild died ({self.proc.exitcode})"
                ) from exc
            if self.done is None and not self.proc.is_alive() and not self.pipe.poll(0):
                raise RuntimeError(f"the other half of the rebuild died ({self.proc.exitcode})")
            if self.done is None and time.monotonic() - self.heard > limit:
                raise HalfSilent(f"the other half of the rebuild sent nothing for {limit:.0f} s")
        return self.done


def prepare_schema(
    conn: psycopg.Connection[Any], projection: Projection, schema: str
) -> dict[str, list[Dropped]]:
    """Make a fresh build schema (`rebuild.create_schema`: with its `_quarantine`) ready
    for two halves, committed: its keys and indexes dropped (returned by table: how to
    build them again)."""
    ddl = {t: drop_keys(conn, schema, [t]) for t in build_tables(projection)}
    conn.commit()
    return ddl


def _execute(dsn: str, stmt: sql.Composed | sql.SQL) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(stmt)


def _build_table(
    dsn: str, schema: str, table: str, dropped: Sequence[Dropped], analyze: bool
) -> None:
    """One table's keys and indexes, and its ANALYZE. Its indexes are built at the same
    time, each on a connection of its own (a key as its unique index, then made the
    key: `Dropped.attach`); one after the other, `order_events`' index waited ~250 ms
    for its primary key (session 13)."""
    # A single index gains nothing from a connection of its own.
    parts = [d for d in dropped if d.index is not None] if len(dropped) > 1 else []
    if parts:
        with ThreadPoolExecutor(max_workers=len(parts)) as pool:
            for job in [pool.submit(_execute, dsn, d.index) for d in parts if d.index]:
                job.result()
    built = {id(d) for d in parts}
    with psycopg.connect(dsn, autocommit=False) as conn:
        for d in dropped:
            if id(d) not in built:
                conn.execute(d.build)
            elif d.attach is not None:
                conn.execute(d.attach)
        if analyze:
            conn.execute(
                sql.SQL("ANALYZE {}").format(
                    sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
                )
            )
        conn.commit()


class Finish:
    """Builds a split build's keys and indexes and analyzes, each table on a connection
    of its own, at the same time (one after the other, a 1M `orders` rebuild spent ~1 s
    of its ~11 s in them on one PostgreSQL backend, the other core idle; session 12).

    A history table (`bulkload.history_tables`: filled only by the halves' writer
    threads) starts once `history()` says both halves have committed their history
    rows, while they still write their current rows: `orders`' `order_events` (its
    key, index and ANALYZE, the longest of the finish) no longer waits for the ~75k
    current rows each half writes (session 13). The others start at `rest()`, once both
    halves have committed all their rows, while the parent still takes its footprint
    and compares it with the other half's (before session 15 they waited for that
    comparison: ~0.2 s of a 1M `orders` rebuild under load). Footprints that meet throw
    every table's build away with the halves (a key the halves' rows break makes a
    build fail; `close` waits for it and ignores its error). Every table commits on its
    own, but only inside the private build schema; the swap publishes them."""

    def __init__(
        self, dsn: str, projection: Projection, schema: str, ddl: Mapping[str, Sequence[Dropped]]
    ) -> None:
        self._dsn, self._schema, self._ddl = dsn, schema, ddl
        self._analyzed = {t.name for t in projection.tables}
        tables = [t for t in ddl if ddl[t] or t in self._analyzed]
        early = set(history_tables(projection))
        self._early = [t for t in tables if t in early]
        self._late = [t for t in tables if t not in early]
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(tables)))
        self._jobs: list[Any] = []
        self._lock = threading.Lock()
        self._history = False
        self._rest = False

    def _submit(self, tables: Sequence[str]) -> None:
        for t in tables:
            self._jobs.append(
                self._pool.submit(
                    _build_table, self._dsn, self._schema, t, self._ddl[t], t in self._analyzed
                )
            )

    def history(self) -> None:
        """Both halves have committed their history rows: build those tables now."""
        with self._lock:
            if not self._history:
                self._history = True
                self._submit(self._early)

    def rest(self) -> None:
        """Both halves have committed all their rows: build the other tables now."""
        self.history()
        with self._lock:
            if not self._rest:
                self._rest = True
                self._submit(self._late)

    def complete(self) -> None:
        """Both halves are in and disjoint: build whatever has not started, and wait for
        every table (raising the first failure)."""
        self.rest()
        for job in self._jobs:
            job.result()

    def close(self) -> None:
        """Wait for any build still running (after a failure, or halves that met and
        are thrown away: their builds' own errors, e.g. a key two halves' rows break,
        do not matter then)."""
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Finish:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def complete(
    dsn: str, projection: Projection, schema: str, ddl: Mapping[str, Sequence[Dropped]]
) -> None:
    """Both halves are in: build keys and indexes and analyze, each table on its own
    connection at the same time (`Finish`). The quarantine stays in the build schema's
    `_quarantine` for the swap."""
    with Finish(dsn, projection, schema, ddl) as finish:
        finish.complete()


def rebuild_split(
    settings: Settings,
    target: Target,
    *,
    batch_size: int,
    progress: Callable[[int, Projector], None] | None = None,
) -> SplitResult | None:
    """Build `target` (a fresh schema, its offsets in it) in two halves by partition
    (module docstring). None if the halves' footprints meet: the build schema is then
    left half-built for the caller to build again on one consumer. Raises on failure;
    either way nothing outside the build schema has changed."""
    from projections.rebuild import create_schema  # rebuild imports this module

    projection = target.projection
    ctx = multiprocessing.get_context("fork")
    pipe, child_end = ctx.Pipe()
    their_history = ctx.Event()  # the other half's history rows are committed
    their_done = ctx.Event()  # and all its rows
    # Forked before any connection or consumer is open here (a child must not inherit
    # a live socket or librdkafka handle), but the rebuild lock's, which it never
    # touches (`rebuild.rebuild_lock`).
    proc = ctx.Process(
        target=_other_half,
        args=(settings, target, batch_size, child_end, os.getpid(), their_history, their_done),
        name=f"rebuild-half-{projection.name}",
        daemon=True,
    )
    proc.start()
    child_end.close()
    other = _OtherHalf(pipe, proc)
    # Made now, so that it has its broker connection by the time the split is planned
    # (made right before, its first request sometimes waited 3 s); dropped once used:
    # a later fork (the next rebuild's reader) must not copy a live librdkafka handle.
    admin = [admin_client(settings)]
    finish: Finish | None = None
    my_history, my_done, stop = threading.Event(), threading.Event(), threading.Event()
    watcher: threading.Thread | None = None
    try:
        with psycopg.connect(settings.dsn, autocommit=False) as conn:
            create_schema(conn, projection, target.schema)
            ddl = prepare_schema(conn, projection, target.schema)
        finish = Finish(settings.dsn, projection, target.schema, ddl)

        def watch(finish: Finish) -> None:
            while not stop.is_set():
                if my_history.wait(0.1) and their_history.wait(0.1):
                    finish.history()
                    break
            while not stop.is_set():
                if my_done.wait(0.1) and their_done.wait(0.1):  # seconds, not money
                    finish.rest()
                    return

        watcher = threading.Thread(target=watch, args=(finish,), daemon=True, name="finish")
        watcher.start()

        def choose(every: list[TopicPartition]) -> list[TopicPartition]:
            proj.ends = end_offsets(admin.pop(), every)
            halves = plan(every, proj.ends)
            pipe.send(([(tp.topic, tp.partition) for tp in halves[1]], proj.ends))
            return halves[0]

        proj = HalfProjector(
            settings, target, choose=choose, batch_size=batch_size, poll_timeout=0.5, replay=True
        )

        def theirs(n: int) -> None:
            if progress is not None:
                progress(n, proj)

        def mine(n: int, p: Projector) -> None:
            other.drain(theirs)
            if progress is not None:
                progress(n, p)

        started = time.monotonic()
        totals, records, footprint = _half(proj, mine, my_history.set, my_done.set)
        waited = time.monotonic()
        try:
            their_totals, their_records, their_footprint = other.wait(theirs)
        except HalfSilent as exc:
            log.warning("%s: %s; rebuilding on one consumer", projection.name, exc)
            if proc.pid is not None:
                with contextlib.suppress(OSError):  # where it hangs, on its stderr
                    os.kill(proc.pid, signal.SIGUSR1)
                    time.sleep(0.5)
            proc.kill()  # not the 10 s `join` below: it has shown it will not answer
            return None
        log.info(
            "%s: this half %.1f s, waited %.1f s for the other",
            projection.name, waited - started, time.monotonic() - waited,
        )  # fmt: skip
        if footprint.meets(their_footprint):
            log.warning(
                "%s: the halves of a split rebuild share an event id or a key, or a "
                "refused event came again; rebuilding on one consumer",
                projection.name,
            )
            return None
        stop.set()
        finish.complete()
        totals.add(their_totals)
        for name, n in their_totals.rows.items():
            totals.rows[name] = totals.rows.get(name, 0) + n
        return SplitResult(totals, records + their_records)
    finally:
        stop.set()
        admin.clear()  # if the split was never planned
        # The half goes first: a table build below may wait for a lock its connection
        # holds, and nothing else would end it.
        with contextlib.suppress(OSError):
            pipe.close()  # a half still waiting for its partitions exits
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join()
        if watcher is not None:
            watcher.join()
        if finish is not None:
            finish.close()
