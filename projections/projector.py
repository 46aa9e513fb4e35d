"""The Kafka -> PostgreSQL loop of one projection, or of a group sharing one consumer.

Partitions are assigned by hand from the offsets stored in PostgreSQL (Kafka's group
offsets are never used). A group of projections reads each topic once: every record is
decoded at most once and handed to each projection that reads its topic. One batch is
one transaction holding every member's rows and next offsets. Before writing, a batch
re-reads each member's stored offsets under its advisory lock: if they moved (a rebuild
swapped a schema in, or another projector ran), the batch is fenced, rolls back and the
group resumes from what is stored. Nothing is applied twice or lost.

A live projector also looks for partitions added to its topics every
`settings.projection_partition_check_seconds`: a new partition is assigned from its
stored offset (0 if none) through the same resync a fenced batch takes, so after an
operator adds partitions no event on them is missed until someone restarts it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import marshal
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from deploy import groups
from deploy.groups import group_id
from deploy.kafka import (
    PartitionsChanged,
    admin_client,
    consumer_config,
    describe_partition_changes,
    end_offsets,
    log_gone,
    partition_changes,
    partitions_of,
    topic_ids,
)
from deploy.settings import Settings
from projections.bulkload import (
    TRIM_EVERY,
    BulkBuild,
    collect,
    die_with_parent,
    libc_function,
    pause_gc,
)
from projections.foldversion import check_live
from projections.framework import Located, Projection, Quarantined
from projections.store import (
    OFFSETS_TABLE,
    BatchResult,
    RawRecord,
    Statement,
    apply_members,
    issue_offsets_query,
    issue_topic_ids_query,
    lock_projections,
    offsets_of,
    offsets_upsert,
    predecode,
    prepare,
    record_topic_ids,
)
from projections.timeorder import TimeOrder

log = logging.getLogger(__name__)

TP = tuple[str, int]


LIVE_FETCH: dict[str, int] = {"fetch.min.bytes": 64 << 10}
"""A live consumer's fetches: the broker answers once 64 KB are ready or after
`Settings.projection_fetch_wait_ms`. With `fetch.min.bytes` 1 every consumer re-fetched
as soon as any record arrived, a fetch per produce request, which the broker (itself on
the same 2 cores) has to answer. The wait bounds the fetches, and so the batches and
transactions, a consumer makes a second while records trickle in, at the cost of that
much lag: at 5,000 events/s on this machine 20 ms left 1.6-1.7 of the 2 cores busy and
the lag p99 at 144-159 ms; 50 ms, 1.2-1.3 cores and 87-89 ms (docs/benchmarks.md,
session 8)."""


_new_tuple: Any = tuple.__new__
"""`RawRecord(...)` without the Python frame of a named tuple's `__new__` (0.31 us, not
0.49, a record: every record a rebuild reads is built here)."""

REPLAY_WAIT = 0.05
"""Seconds a replay's poll waits for more records before it returns a partial batch."""

REPLAY_KBYTES_PER_RECORD = 4
"""A replay's prefetch queue, in KB per record of its batch (records are 0.3-1 KB)."""


class Fenced(RuntimeError):
    """The stored offsets are not where this projector left them."""


class OffsetsOutOfRange(RuntimeError):
    """The log no longer holds what a projection's stored offsets say it applied: a stored
    offset past a partition's end (the topic deleted and created again, or its log
    truncated), or before its first offset (records deleted; event topics are kept
    forever). Folding on would skip the new log's records below the stored offset as
    already applied, or fold a log with a hole: the projection is refused until rebuilt."""


def rebuild_hint(names: Sequence[str]) -> str:
    """What the operator runs for `names` (`tradetape rebuild` takes one name or --all)."""
    return ", ".join(f"`tradetape rebuild {n}`" for n in names)


@dataclass(frozen=True)
class Target:
    """A projection and where it is written: its schema and its offsets table."""

    projection: Projection
    schema: str
    offsets_table: tuple[str, str] = OFFSETS_TABLE

    @staticmethod
    def live(projection: Projection) -> Target:
        return Target(projection, projection.schema)


class Projector:
    """Consumes the topics of one or more projections and applies them in batches.

    `Projector(settings, projection)` runs one projection into its live schema;
    `Projector(settings, [Target(...), ...])` runs a group on one consumer.
    """

    def __init__(
        self,
        settings: Settings,
        projection: Projection | Sequence[Target],
        *,
        schema: str | None = None,
        offsets_table: tuple[str, str] = OFFSETS_TABLE,
        batch_size: int = 5000,
        dsn: str | None = None,
        queued_kbytes: int = 8192,
        eager: bool = False,
        pipelined: bool = True,
        poll_timeout: float = 0.1,  # seconds, not money
        replay: bool = False,
        partition_check_seconds: float | None = None,  # a duration, not money
    ) -> None:
        if isinstance(projection, Projection):
            targets = [Target(projection, schema or projection.schema, offsets_table)]
        else:
            targets = list(projection)
        if not targets:
            raise ValueError("a projector needs at least one projection")
        self.settings = settings
        self.targets = sorted(targets, key=lambda t: t.projection.name)
        self.projection = self.targets[0].projection
        self.schema = self.targets[0].schema
        self.name = "+".join(t.projection.name for t in self.targets)
        self.batch_size = batch_size
        self.queued_kbytes = queued_kbytes
        self.eager = eager
        self.pipelined = pipelined
        self.poll_timeout = poll_timeout
        self.replay = replay
        """Reading a long backlog (a rebuild): larger fetches, a little more latency."""
        self._reader: threading.Thread | None = None
        self._reader_stop = threading.Event()
        self._ready: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._applied_position: dict[TP, int] = {}
        self.dsn = dsn or settings.dsn
        self.kafka_topics = sorted({t for tg in self.targets for t in tg.projection.topics})
        self.topics = [settings.topic(t) for t in self.kafka_topics]
        self.member_topics = [
            frozenset(settings.topic(x) for x in t.projection.topics) for t in self.targets
        ]
        self.expected: list[dict[TP, int]] = [{} for _ in self.targets]
        self.conn: psycopg.Connection[Any] | None = None
        self.consumer: Consumer | None = None
        self.total = BatchResult()
        self.totals = [BatchResult() for _ in self.targets]
        self.caught_up = False
        self._partitions: list[TopicPartition] | None = None
        self._admin: AdminClient | None = None
        self.topic_ids: dict[str, str] = {}
        """Each topic's id at the last (re)assignment, stored with every offset written."""
        self.partition_check_seconds = (
            0.0  # a rebuild reads up to the watermarks of the partitions seen at its start
            if replay
            else settings.projection_partition_check_seconds
            if partition_check_seconds is None
            else partition_check_seconds
        )
        """Seconds between looks for added partitions (not money); 0: never."""
        self._partitions_checked = time.monotonic()  # seconds, not money

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        self._connect()
        self._check_fold_versions()
        try:
            self._refuse_a_fresh_replay()
        except PartitionsChanged:
            self.close()  # the group's runner looks again later, with a new projector
            raise
        self.resync()
        self._start_reader()

    def _check_fold_versions(self) -> None:
        """A live projection folded by another version of its fold is refused (see
        `projections.foldversion`); a build schema is stamped when it is created."""
        assert self.conn is not None
        for table in {t.offsets_table for t in self.targets}:
            live = [
                t.projection
                for t in self.targets
                if t.offsets_table == table and t.schema == t.projection.schema
            ]
            if live:
                check_live(self.conn, live, table)

    def _refuse_a_fresh_replay(self) -> None:
        """A live projection that has applied nothing from a topic off its declared count
        (`deploy.kafka.partition_changes`) would replay it from offset 0, old and new
        partitions interleaved in no fixed order: the rebuild `tradetape rebuild` refuses.
        Raises `PartitionsChanged` naming it. A live projection that has stored offsets
        there goes on following the added partitions (DEGRADED in status)."""
        if self.replay:
            return
        counts: dict[str, int] = {}
        for tp in self.partitions():
            counts[tp.topic] = counts.get(tp.topic, 0) + 1
        changed = partition_changes(self.settings, counts)
        if not changed:
            return
        assert self.conn is not None
        self.conn.rollback()
        stored = self._load_all()
        self.conn.commit()
        fresh = [
            t.projection.name
            for t, offsets in zip(self.targets, stored, strict=True)
            if t.schema == t.projection.schema
            and {self.settings.topic(x) for x in t.projection.topics} & changed.keys()
            and not any(topic in changed for topic, _ in offsets)
        ]
        if fresh:
            raise PartitionsChanged(
                f"projector {self.name} (nothing of {', '.join(fresh)} applied from these "
                "topics yet: a replay from offset 0, which `tradetape rebuild` refuses too)",
                changed,
            )

    def _connect(self) -> None:
        """The database connection and the consumer (unassigned), unless open already."""
        if self.conn is None:
            self.conn = psycopg.connect(
                self.dsn,
                # A batch sends its own BEGIN and COMMIT inside its pipelines (see apply).
                autocommit=True,
                application_name=f"tradetape-projector-{self.name}"[:63],
            )
        if self.consumer is None:
            self.consumer = Consumer(self.consumer_config())

    def consumer_config(self) -> dict[str, Any]:
        fetch: dict[str, Any] = (
            {**LIVE_FETCH, "fetch.wait.max.ms": self.settings.projection_fetch_wait_ms}
            if not self.replay
            # A replay: fewer, larger fetches (the broker answers once 1 MB is ready).
            else {
                "fetch.wait.max.ms": 100,
                "fetch.min.bytes": 1 << 20,
                "max.partition.fetch.bytes": 8 << 20,
            }
        )
        # An out-of-range fetch is an error, never a silent jump to the log's start (the
        # records from there up to the stored offset would be skipped as applied).
        fetch["auto.offset.reset"] = "error"
        queued = self.queued_kbytes
        if self.replay:
            # The prefetch queue must hold a whole batch: `consume(n, timeout)` waits out
            # its timeout when n records never fit (10,000 decisions, ~750 B each, in
            # 8 MB: half a second per batch of a rebuild).
            queued = max(queued, self.batch_size * REPLAY_KBYTES_PER_RECORD)
        return consumer_config(
            self.settings,
            group_id=group_id(self.settings.topic_prefix, groups.PROJECTION, self.name),
            **fetch,
            **{"queued.max.messages.kbytes": queued},
        )

    def close(self) -> None:
        self._stop_reader()
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __enter__(self) -> Projector:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ pipelining
    def _start_reader(self) -> None:
        """Poll and decode the next batch on a thread while this one is written: Kafka
        and pydantic-core work overlaps PostgreSQL work (psycopg and librdkafka release
        the GIL while they wait)."""
        if not self.pipelined:
            return
        self._reader_stop = threading.Event()
        self._ready = queue.Queue(maxsize=1)
        self._applied_position = {}
        self._reader = threading.Thread(
            target=self._read, args=(self._reader_stop, self._ready), daemon=True,
            name=f"reader-{self.name}",
        )  # fmt: skip
        self._reader.start()

    def _stop_reader(self) -> None:
        if self._reader is None:
            return
        self._reader_stop.set()
        self._reader.join()
        self._reader = None

    def _read(self, stop: threading.Event, out: queue.Queue[Any]) -> None:
        assert self.consumer is not None
        tps = [TopicPartition(tp.topic, tp.partition) for tp in self.partitions()]
        projections = [t.projection for t in self.targets]
        in_time = self.in_time_order()
        while not stop.is_set():
            item: Any
            try:
                records, pos = self.poll_positioned(tps, in_time)
                names: list[tuple[str, int] | None] = []
                decoded = predecode(records, projections, self.member_topics, names)
                item = (records, decoded, names, pos)
            except Exception as exc:  # handed to the applying thread, which raises it
                item = exc
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, Exception):
                return

    def poll_positioned(
        self, tps: list[TopicPartition], in_time: TimeOrder | None
    ) -> tuple[list[RawRecord], dict[TP, int]]:
        """A reader's batch (`in_time`: merged by timestamp) and where each partition
        stands once it is taken: past it and past any transaction markers before the
        next record (`TimeOrder.positions`: past the last record handed over)."""
        assert self.consumer is not None
        if in_time is not None:
            stamps: list[int] = []
            records = in_time.take(self.poll(self.poll_timeout, stamps), stamps)
            return records, in_time.positions()
        records = self.poll(self.poll_timeout)
        pos = {
            (tp.topic, tp.partition): tp.offset
            for tp in self.consumer.position(tps)
            if tp.offset >= 0
        }
        return records, pos

    def in_time_order(self) -> TimeOrder | None:
        """A replay's `TimeOrder` over the consumer's assigned partitions, if a member
        projection asks for one (`Projection.rebuilds_in_time_order`); live, None."""
        assert self.consumer is not None
        if not self.replay or not any(t.projection.rebuilds_in_time_order for t in self.targets):
            return None
        ends = self.high_watermarks()
        mine = [(tp.topic, tp.partition) for tp in self.consumer.assignment()]
        return TimeOrder(self.consumer, {tp: ends.get(tp, 0) for tp in mine})

    def partitions(self) -> list[TopicPartition]:
        """Every partition of the group's topics, waiting out fresh topic metadata."""
        assert self.consumer is not None
        if self._partitions is None:
            out: list[TopicPartition] = []
            for topic in self.kafka_topics:
                try:
                    found = partitions_of(self.consumer, self.settings, topic)
                except RuntimeError as exc:
                    raise RuntimeError(
                        f"topic {self.settings.topic(topic)} is missing: run `tradetape up`"
                    ) from exc
                out.extend(TopicPartition(self.settings.topic(topic), p) for p in found)
            self._partitions = out
            self._log_partition_changes(out)
        return self._partitions

    def _log_partition_changes(self, partitions: list[TopicPartition]) -> None:
        """An ERROR if a topic read has another partition count than the declared one
        (`deploy.kafka.partition_changes`): status shows the projection DEGRADED."""
        counts: dict[str, int] = {}
        for tp in partitions:
            counts[tp.topic] = counts.get(tp.topic, 0) + 1
        if changed := partition_changes(self.settings, counts):
            log.error(
                "%s: %s: a key's events before and after lie on different partitions and are "
                "folded in no fixed order, so a rebuild may differ: the projection is DEGRADED "
                "in `tradetape status` and `tradetape rebuild` refuses it (docs/operations.md, "
                "Adding partitions)",
                self.name, describe_partition_changes(changed),
            )  # fmt: skip

    def admin(self) -> AdminClient:
        """A metadata client of our own: the consumer handle belongs to the reader thread
        (confluent-kafka serialises calls on one handle)."""
        if self._admin is None:
            self._admin = admin_client(self.settings)
        return self._admin

    def added_partitions(self, timeout: float = 5.0) -> list[TopicPartition]:  # seconds, not money
        """Partitions of the group's topics that the broker lists and we do not read yet
        (partitions are only ever added to a topic, never removed)."""
        known = {(tp.topic, tp.partition) for tp in self.partitions()}
        added: list[TopicPartition] = []
        for name in self.topics:
            md = self.admin().list_topics(name, timeout=timeout).topics.get(name)
            if md is None or md.error is not None:
                continue
            added.extend(
                TopicPartition(name, p) for p in sorted(md.partitions) if (name, p) not in known
            )
        return added

    def check_partitions(self, *, force: bool = False) -> list[TopicPartition]:
        """At most every `partition_check_seconds` (or now, with `force`): start reading
        any partition added to our topics, from its stored offset (0 if none), via the
        resync a fenced batch takes. Called between batches, when the stored offsets are
        exactly `expected`. A failed look is logged and retried at the next interval
        (the consumer's own errors say more if the broker is gone). A topic whose id is
        not the one of the last (re)assignment (deleted and created again) raises
        `OffsetsOutOfRange`."""
        if not force:
            if self.partition_check_seconds <= 0:
                return []
            now = time.monotonic()
            if now - self._partitions_checked < self.partition_check_seconds:
                return []
            self._partitions_checked = now
        try:
            added = self.added_partitions()
            ids = topic_ids(self.admin(), sorted(self.topic_ids), timeout=5)
        except KafkaException as exc:
            log.warning("%s: could not look for added partitions: %s", self.name, exc)
            return []
        recreated = sorted(t for t, i in self.topic_ids.items() if ids.get(t, i) != i)
        if recreated:
            # A fetch past the new log's end is refused (`poll`); one the new log had
            # already grown past is not, so the topic's id is looked at here as well.
            raise OffsetsOutOfRange(
                f"{self.name}: topic {', '.join(recreated)} was deleted and created again "
                "while read (its topic id changed); refusing to fold on from there, "
                + rebuild_hint([t.projection.name for t in self.targets])
                + " folds the log there is now"
            )
        if not added:
            return []
        log.warning(
            "%s: partitions added to its topics, reading them from their stored offsets: %s",
            self.name, ", ".join(f"{tp.topic}[{tp.partition}]" for tp in added),
        )  # fmt: skip
        assert self._partitions is not None
        self._log_partition_changes([*self._partitions, *added])
        self._partitions = sorted(
            [*self._partitions, *added], key=lambda tp: (tp.topic, tp.partition)
        )
        reading = self._reader is not None
        self._stop_reader()  # what it read ahead is re-read after the new assignment
        self.resync()
        if reading:
            self._start_reader()
        return added

    def _load_all(self) -> list[dict[TP, int]]:
        """Every member's stored offsets, one query per offsets table."""
        return self._collect_all(self._issue_load_all())

    def _issue_load_all(self) -> list[tuple[tuple[str, str], list[str], Any]]:
        """Send `_load_all`'s queries (inside a pipeline: without waiting)."""
        assert self.conn is not None
        by_table: dict[tuple[str, str], list[str]] = {}
        for t in self.targets:
            by_table.setdefault(t.offsets_table, []).append(t.projection.name)
        return [
            (table, names, issue_offsets_query(self.conn, names, table))
            for table, names in by_table.items()
        ]

    def _collect_all(
        self, issued: list[tuple[tuple[str, str], list[str], Any]]
    ) -> list[dict[TP, int]]:
        found: dict[tuple[tuple[str, str], str], dict[TP, int]] = {}
        for table, names, cur in issued:
            for name, offs in offsets_of(cur, names).items():
                found[(table, name)] = offs
        return [
            {
                k: v
                for k, v in found[(t.offsets_table, t.projection.name)].items()
                if k[0] in self.topics
            }
            for t in self.targets
        ]

    def resync(self) -> None:
        """(Re)assign every partition at the lowest offset any member has stored."""
        assert self.conn is not None and self.consumer is not None
        self.conn.rollback()
        stored = self._load_all()
        self.conn.commit()
        self.expected = []
        for i, t in enumerate(self.targets):
            mine = {self.settings.topic(x) for x in t.projection.topics}
            self.expected.append(
                {
                    (tp.topic, tp.partition): stored[i].get((tp.topic, tp.partition), 0)
                    for tp in self.partitions()
                    if tp.topic in mine
                }
            )
        self._check_log_range()
        assignment = []
        for tp in self.partitions():
            key = (tp.topic, tp.partition)
            start = min(e[key] for e in self.expected if key in e)
            assignment.append(TopicPartition(tp.topic, tp.partition, start or OFFSET_BEGINNING))
        self._assign(assignment)

    def _check_log_range(self) -> None:
        """Raise `OffsetsOutOfRange` if a member's stored offset is not in the log there is
        now (`deploy.kafka.log_gone`): before the partition's first offset or past its end,
        or stored with another topic id than the topic has now (deleted and created again,
        its new log grown past the stored offset). Asked of the broker at every
        (re)assignment, through our own consumer (the reader is stopped). Rows stored
        before topic ids were (migration 0124) are given the topic's id of now: the log
        as it stands is taken as the one they were read from, as it was before."""
        assert self.consumer is not None and self.conn is not None
        self.topic_ids = topic_ids(self.admin(), sorted(self.topics))
        names = [t.projection.name for t in self.targets]
        stored_ids: dict[tuple[str, str, int], str | None] = {}
        for table in sorted({t.offsets_table for t in self.targets}):
            for name, topic, part, tid in issue_topic_ids_query(self.conn, names, table).fetchall():
                stored_ids[(name, topic, int(part))] = tid
        self.conn.commit()
        bad: dict[str, list[str]] = {}
        unrecorded: dict[tuple[str, str], list[str]] = {}
        for tp in self.partitions():
            key = (tp.topic, tp.partition)
            low, high = self._watermarks(tp.topic, tp.partition)
            for t, e in zip(self.targets, self.expected, strict=True):
                if key not in e:
                    continue
                then = stored_ids.get((t.projection.name, tp.topic, tp.partition))
                why = log_gone(
                    tp.topic, tp.partition, e[key], low, high,
                    id_then=then, id_now=self.topic_ids.get(tp.topic), said="stored",
                )  # fmt: skip
                if why is not None:
                    bad.setdefault(t.projection.name, []).append(why)
                elif then is None and (t.projection.name, tp.topic, tp.partition) in stored_ids:
                    unrecorded.setdefault(t.offsets_table, []).append(t.projection.name)
        if bad:
            raise OffsetsOutOfRange(
                "the log no longer holds what the stored offsets say was applied ("
                + "; ".join(f"{n}: {', '.join(w)}" for n, w in sorted(bad.items()))
                + "): the topic was deleted and created again, or its log truncated or "
                "records deleted; refusing to fold on from there, "
                + rebuild_hint(sorted(bad))
                + " folds the log there is now"
            )
        for table, who in sorted(unrecorded.items()):
            record_topic_ids(self.conn, sorted(set(who)), self.topic_ids, table)
        self.conn.commit()

    def _watermarks(
        self,
        topic: str,
        partition: int,
        timeout: float = 30.0,  # seconds, not money
    ) -> tuple[int, int]:
        """The partition's first offset and end, from its leader; an error (a leader not
        elected yet, as on a topic just created: NOT_LEADER_FOR_PARTITION, which the
        client does not mark retriable) is asked again until `timeout`, then raised (as
        `deploy.kafka.end_offsets`)."""
        assert self.consumer is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=10, cached=False
                )
                return int(low), int(high)
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _assign(self, assignment: list[TopicPartition]) -> None:
        """Start reading `assignment` (where `resync` put every partition)."""
        assert self.consumer is not None
        self.consumer.assign(assignment)

    # ------------------------------------------------------------------ work
    def poll(
        self,
        timeout: float,  # seconds, not money
        stamps: list[int] | None = None,
    ) -> list[RawRecord]:
        """A batch of records. Eager (live): whatever is queued now, or else the first
        record to arrive within `timeout` plus whatever came with it, so a record never
        waits for a batch to fill. A replay (rebuild): up to `batch_size` records, until
        they pause (`REPLAY_WAIT`). Otherwise up to `batch_size` records, waiting at most
        `timeout` for them. `stamps`, if given, gets each record's Kafka timestamp (ms)."""
        assert self.consumer is not None
        if self.eager:
            msgs = self.consumer.consume(self.batch_size, 0)
            if not msgs:
                first = self.consumer.poll(timeout)
                msgs = [first] if first is not None else []
                if msgs:
                    msgs.extend(self.consumer.consume(self.batch_size - 1, 0))
        elif self.replay:
            # A full batch, or what arrived until the records paused for REPLAY_WAIT:
            # waiting out `timeout` for a full batch cost a rebuild half a second at its
            # start (the first fetch) and again at its end (the last, partial batch).
            msgs = self.consumer.consume(self.batch_size, min(timeout, REPLAY_WAIT))
            while msgs and len(msgs) < self.batch_size:
                more = self.consumer.consume(self.batch_size - len(msgs), REPLAY_WAIT)
                if not more:
                    break
                msgs.extend(more)
        else:
            msgs = self.consumer.consume(self.batch_size, timeout)
        records: list[RawRecord] = []
        append = records.append
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.code() == KafkaError._AUTO_OFFSET_RESET:
                    raise OffsetsOutOfRange(
                        f"{self.name}: a fetch found its offset outside the log ({err.str()}): "
                        "the topic was deleted and created again, or its log truncated; "
                        "refusing to fold on from there, "
                        + rebuild_hint([t.projection.name for t in self.targets])
                        + " folds the log there is now"
                    )
                if err.fatal():
                    raise RuntimeError(f"fatal Kafka error: {err}")
                log.warning("kafka error in %s: %s", self.name, err)
                continue
            headers: Any = m.headers()  # a list of (name, bytes) pairs, or None
            if headers is not None and not isinstance(headers, list):
                headers = list(headers.items() if isinstance(headers, dict) else headers)
            append(
                _new_tuple(
                    RawRecord, (m.topic(), m.partition(), m.offset(), m.value(), headers or None)
                )
            )
            if stamps is not None:
                stamps.append(m.timestamp()[1])
        return records

    def apply(
        self,
        records: Sequence[RawRecord],
        decoded: Sequence[Any] | None = None,
        names: Sequence[tuple[str, int] | None] | None = None,
    ) -> BatchResult:
        """One transaction: fence checks, every member's rows, quarantine, offsets."""
        assert self.conn is not None
        nxt = self._next_offsets(records)
        shares = prepare(
            records, [t.projection for t in self.targets], self.expected, self.member_topics,
            decoded, names,
        )  # fmt: skip
        conn = self.conn
        moved: dict[tuple[str, str], dict[str, dict[TP, int]]] = {}
        for i, t in enumerate(self.targets):
            moved.setdefault(t.offsets_table, {})[t.projection.name] = {
                k: v for k, v in nxt[i].items() if v != self.expected[i].get(k)
            }

        def prelude() -> Callable[[], None]:
            # Sent in the batch's first round trip: the lock, then the stored offsets.
            lock_projections(conn, [t.projection.name for t in self.targets])
            issued = self._issue_load_all()

            def fence() -> None:
                stored = self._collect_all(issued)
                for i, t in enumerate(self.targets):
                    for key in set(stored[i]) | set(self.expected[i]):
                        if self.expected[i].get(key, 0) != stored[i].get(key, 0):
                            raise Fenced(
                                f"{t.projection.name}: stored offset {key}="
                                f"{stored[i].get(key, 0)}, expected {self.expected[i].get(key, 0)}"
                            )

            return fence

        def epilogue() -> list[Statement]:
            return [
                stmt
                for table, offsets in moved.items()
                if (stmt := offsets_upsert(offsets, table, self.topic_ids)) is not None
            ]

        results: list[BatchResult] = []
        try:
            # BEGIN + lock + fence + reads; [COPYs of large tables]; writes + offsets +
            # COMMIT: two round trips when no table is large.
            results = apply_members(
                conn,
                [(t.projection, t.schema, shares[i]) for i, t in enumerate(self.targets)],
                prelude=prelude,
                epilogue=epilogue,
                transaction=True,
            )
        except Fenced as exc:
            self.conn.rollback()
            log.warning("%s; resuming from the stored offsets", exc)
            self._stop_reader()  # what it read ahead is from the old positions
            self.resync()
            self._start_reader()
            raise
        except BaseException:
            self.conn.rollback()  # nothing of the batch stays: rows and offsets go together
            raise
        self.expected = nxt
        return self._account(records, results)

    def _next_offsets(self, records: Sequence[RawRecord]) -> list[dict[TP, int]]:
        """Every member's next offsets once `records` are applied."""
        last: dict[TP, int] = {}  # each partition's highest offset in the batch
        for topic, partition, offset, _value, _headers in records:
            key = (topic, partition)
            if offset >= last.get(key, -1):
                last[key] = offset
        nxt = [dict(e) for e in self.expected]
        for key, offset in last.items():
            for n in nxt:
                if key in n and offset >= n[key]:
                    n[key] = offset + 1
        return nxt

    def _account(self, records: Sequence[RawRecord], results: Sequence[BatchResult]) -> BatchResult:
        batch = BatchResult(consumed=len(records))
        for i, res in enumerate(results):
            self.totals[i].add(res)
            batch.applied += res.applied
            batch.duplicates += res.duplicates
            batch.quarantined += res.quarantined
            batch.ignored += res.ignored
        self.total.add(batch)
        return batch

    def step(self, timeout: float = 0.1) -> int:  # seconds, not money
        """Consume and apply one batch. Returns the number of records consumed."""
        self.check_partitions()
        if self._reader is None:
            records = self.poll(timeout)
            if records:
                self._apply_unfenced(records)
            return len(records)
        try:
            item = self._ready.get(timeout=timeout)
        except queue.Empty:
            return 0
        if isinstance(item, Exception):
            raise item
        records, decoded, names, pos = item
        if records and not self._apply_unfenced(records, decoded, names):
            return 0
        for k, v in pos.items():
            self._applied_position[k] = max(v, self._applied_position.get(k, 0))
        return len(records)

    def _apply_unfenced(
        self, records: Sequence[RawRecord], decoded: Any = None, names: Any = None
    ) -> bool:
        """Apply; False if the batch was fenced (and the projector resynced)."""
        try:
            self.apply(records, decoded, names)
        except Fenced:
            return False
        return True

    def high_watermarks(self) -> dict[TP, int]:
        """The last stable offset of every partition now (read_committed)."""
        return end_offsets(admin_client(self.settings), self.partitions())

    def log_size(self) -> int:
        """Records up to the last stable offsets of every partition the projector's job
        covers (a progress bar's total; a split rebuild's half counts both halves)."""
        return sum(self.high_watermarks().values())

    def positions(self) -> dict[TP, int]:
        """Where each partition stands: past what every member applied, and past any
        transaction markers or aborted records the consumer stepped over."""
        assert self.consumer is not None
        out: dict[TP, int] = {}
        for e in self.expected:
            for k, v in e.items():
                out[k] = min(out.get(k, v), v)
        if self._reading_ahead():
            # Only what was applied counts, not what the reader has read ahead.
            for k, v in self._applied_position.items():
                if k in out and v > out[k]:
                    out[k] = v
            return out
        for tp in self.consumer.position([TopicPartition(t, p) for (t, p) in out]):
            key = (tp.topic, tp.partition)
            if tp.offset >= 0 and tp.offset >= out.get(key, 0):
                out[key] = tp.offset
        return out

    def _reading_ahead(self) -> bool:
        """Whether batches are read ahead (so the consumer's position is past them)."""
        return self._reader is not None

    def lag(self, targets: dict[TP, int]) -> int:
        now = self.positions()
        return sum(max(0, hi - now.get(k, 0)) for k, hi in targets.items())

    def catch_up(
        self,
        *,
        idle_timeout: float = 30.0,  # seconds, not money
        progress: Any = None,
        poll_timeout: float = 0.2,  # seconds, not money
    ) -> BatchResult:
        """Apply until every partition reaches the watermark seen at the start.

        Sets `caught_up`; it stays False only if nothing arrived for `idle_timeout`
        seconds while records were still missing (the caller decides: a rebuild fails).
        """
        targets = self.high_watermarks()
        idle_since: float | None = None  # monotonic seconds, not money
        self.caught_up = False
        while True:
            if self.lag(targets) == 0:
                self.caught_up = True
                break
            n = self.step(poll_timeout)
            if progress is not None and n:
                progress(n, self)
            if n:
                idle_since = None
                continue
            now = time.monotonic()
            idle_since = idle_since or now
            if now - idle_since >= idle_timeout:
                break
        return self.total


CHILD_FETCH_BYTES = 2 << 20
"""The reader process's fetch per partition (8 MB fetches held tens of MB more, at the
same speed; as `rebuild.GROUP_FETCH_BYTES`)."""


class ChildReader:
    """A rebuild's reader in a forked process: it polls Kafka and decodes (`predecode`,
    the lean validation: the larger half of a rebuild's Python work) on the other core,
    and hands each batch over a pipe to the process that folds it, as plain values in
    `marshal` form (both ends are one interpreter build; half pickle's cost here). A
    reader thread shares the folding thread's GIL, so a rebuild used one core; loading
    a decoded record costs a fraction of decoding it (docs/benchmarks.md, session 9).

    The process is forked when the projector is created, before it opens any
    connection or consumer (a child must not inherit a live librdkafka handle), and
    waits for its assignment. It reads one batch ahead: it blocks sending the next
    batch until the folding process asks for it."""

    def __init__(self, projector: Projector) -> None:
        ctx = multiprocessing.get_context("fork")
        self._pipe, child_end = ctx.Pipe()
        self._proc = ctx.Process(
            target=_child_read,
            args=(projector, child_end, self._pipe, os.getpid()),
            name=f"rebuild-reader-{projector.name}",
            daemon=True,
        )
        self._proc.start()
        child_end.close()

    def assign(self, assignment: Sequence[TopicPartition]) -> None:
        self._pipe.send([(tp.topic, tp.partition, tp.offset) for tp in assignment])

    def get(
        self,
        timeout: float,  # seconds, not money
    ) -> tuple[list[RawRecord], list[Any], dict[TP, int]] | None:
        """The next batch (records, decoded, positions after it), or None if none came
        within `timeout` seconds."""
        try:
            if not self._pipe.poll(timeout):
                return None
            kind, *body = marshal.loads(self._pipe.recv_bytes())
        except (EOFError, OSError) as exc:
            raise RuntimeError(f"the rebuild reader process died ({self._proc.exitcode})") from exc
        if kind == "error":
            raise RuntimeError(f"the rebuild reader failed: {body[0]}")
        rows, decoded, pos = body
        records = [RawRecord._make(r) for r in rows]
        out: list[Any] = [
            Located(d, r.topic, r.partition, r.offset, r.value, r.headers)
            if type(d) is dict
            else d if d is None
            else Quarantined(*d)
            for r, d in zip(records, decoded, strict=True)
        ]  # fmt: skip
        return records, out, pos

    def stop(self) -> None:
        self._pipe.close()  # the child's next send fails, and it exits
        self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()


def _portable(d: Located | Quarantined | None) -> Any:
    """A decoded record as the reader sends it (plain values, for `marshal`): its JSON
    values, or the quarantine entry's fields. The rest of a `Located` is the record's
    own coordinates and bytes, sent once. A model the full path made is not sent:
    `Located.event` decodes it again from the bytes if a projection asks."""
    if d is None:
        return None
    if isinstance(d, Quarantined):
        return dataclasses.astuple(d)
    return d.data


def _child_read(proj: Projector, pipe: Any, other_end: Any, parent: int) -> None:
    """The reader process: poll, decode, send, until the pipe closes."""
    other_end.close()  # so that the folding process closing its end ends the pipe
    die_with_parent(parent)
    mallopt = libc_function("mallopt")
    if mallopt is not None:
        mallopt(-8, 2)  # M_ARENA_MAX: librdkafka's threads would each get an arena
    pause_gc()
    try:
        assignment = [TopicPartition(t, p, o) for t, p, o in pipe.recv()]
        proj.consumer = Consumer(proj.consumer_config())
        proj.consumer.assign(assignment)
        tps = [TopicPartition(tp.topic, tp.partition) for tp in assignment]
        projections = [t.projection for t in proj.targets]
        in_time = proj.in_time_order()
        for batch in itertools.count(1):
            if batch % TRIM_EVERY == 0:
                collect()  # each batch's records and decoded values are freed
            records, pos = proj.poll_positioned(tps, in_time)
            decoded = [_portable(d) for d in predecode(records, projections, proj.member_topics)]
            # A record every projection ignores (None) is sent without its bytes and
            # headers: the folding process only counts it and takes its offset. (Half of
            # `positions`' records are lifecycle events it ignores by their type: marshal
            # of their values and headers was ~15 % of a batch's dumps and loads.)
            rows = [
                tuple(r) if d is not None else (r[0], r[1], r[2], None, None)
                for r, d in zip(records, decoded, strict=True)
            ]
            pipe.send_bytes(marshal.dumps(("batch", rows, decoded, pos)))
    except (BrokenPipeError, EOFError, KeyboardInterrupt):
        return  # the folding process is done (or gone)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            pipe.send_bytes(marshal.dumps(("error", f"{type(exc).__name__}: {exc}")))
    # No consumer close: the process exits at once, and a replay commits nothing.


class BulkProjector(Projector):
    """A rebuild's projector: batches fold in memory into a `BulkBuild` (no per-batch
    transaction, fencing or offsets; the build schema is private until it is swapped
    in), and `finish` writes the current rows and offsets and builds the indexes.

    With `read_in_child` (the default) the records are polled and decoded in a
    `ChildReader` process, so decoding and folding use two cores."""

    read_in_child = True

    def __init__(self, settings: Settings, targets: Sequence[Target], **kwargs: Any) -> None:
        super().__init__(settings, targets, **kwargs)
        self.bulk: BulkBuild | None = None
        self._child: ChildReader | None = None

    def open(self) -> None:
        if self.read_in_child and self.pipelined:
            self._child = ChildReader(self)  # forked before any connection is opened
        super().open()  # reads the (empty) build offsets before the build locks its tables
        self.bulk = self._new_build()

    def _new_build(self) -> BulkBuild:
        """The build batches fold into, started (its keys and indexes dropped)."""
        build = BulkBuild(self.dsn, [(t.projection, t.schema) for t in self.targets])
        build.start()
        return build

    def close(self) -> None:
        super().close()
        if self._child is not None:
            self._child.stop()
            self._child = None
        if self.bulk is not None:
            self.bulk.close()
            self.bulk = None

    def __enter__(self) -> BulkProjector:
        self.open()
        return self

    def consumer_config(self) -> dict[str, Any]:
        config = super().consumer_config()
        if self.read_in_child and self.pipelined:
            config["max.partition.fetch.bytes"] = CHILD_FETCH_BYTES
        return config

    def _assign(self, assignment: list[TopicPartition]) -> None:
        if self._child is None:
            super()._assign(assignment)
        elif self._assigned:
            raise RuntimeError("a rebuild's reader process is assigned once")
        else:
            self._child.assign(assignment)  # our own consumer only reads metadata
            self._assigned = True

    _assigned = False

    def _start_reader(self) -> None:
        if self._child is None:
            super()._start_reader()

    def _reading_ahead(self) -> bool:
        return self._child is not None or super()._reading_ahead()

    def step(self, timeout: float = 0.1) -> int:  # seconds, not money
        if self._child is None:
            return super().step(timeout)
        item = self._child.get(timeout)
        if item is None:
            return 0
        records, decoded, pos = item
        if records:
            self.apply(records, decoded)
        for k, v in pos.items():
            self._applied_position[k] = max(v, self._applied_position.get(k, 0))
        return len(records)

    def apply(
        self,
        records: Sequence[RawRecord],
        decoded: Sequence[Any] | None = None,
        names: Sequence[tuple[str, int] | None] | None = None,
    ) -> BatchResult:
        assert self.bulk is not None
        nxt = self._next_offsets(records)
        shares = prepare(
            records, [t.projection for t in self.targets], self.expected, self.member_topics,
            decoded, names,
        )  # fmt: skip
        results = self.bulk.apply(shares)
        self.expected = nxt
        return self._account(records, results)

    def finish(self) -> None:
        """Commit the build: current rows, offsets, keys and indexes."""
        assert self.bulk is not None
        self.bulk.finish(
            [(t.offsets_table, t.projection.name, self.expected[i])
             for i, t in enumerate(self.targets)]
        )  # fmt: skip
