"""The Kafka -> PostgreSQL loop of one projection.

Partitions are assigned by hand from the offsets stored in PostgreSQL (Kafka's group
offsets are never used), and each batch commits its rows and its next offsets in one
transaction. Before writing, a batch re-reads the stored offsets under an advisory lock:
if they moved (a rebuild swapped the schema in, or another projector ran), it is
fenced, rolls back and resumes from what is stored. Nothing is applied twice or lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from deploy.kafka import consumer_config
from deploy.settings import Settings
from projections.framework import Projection
from projections.store import (
    OFFSETS_TABLE,
    BatchResult,
    RawRecord,
    apply_records,
    load_offsets,
    lock_projection,
    save_offsets,
)

log = logging.getLogger(__name__)


class Fenced(RuntimeError):
    """The stored offsets are not where this projector left them."""


class Projector:
    def __init__(
        self,
        settings: Settings,
        projection: Projection,
        *,
        schema: str | None = None,
        offsets_table: tuple[str, str] = OFFSETS_TABLE,
        batch_size: int = 5000,
        dsn: str | None = None,
    ) -> None:
        self.settings = settings
        self.projection = projection
        self.schema = schema or projection.schema
        self.offsets_table = offsets_table
        self.batch_size = batch_size
        self.dsn = dsn or settings.dsn
        self.topics = [settings.topic(t) for t in projection.topics]
        self.expected: dict[tuple[str, int], int] = {}
        self.conn: psycopg.Connection[Any] | None = None
        self.consumer: Consumer | None = None
        self.total = BatchResult()
        self.caught_up = False

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        self.conn = psycopg.connect(
            self.dsn,
            autocommit=False,
            application_name=f"tradetape-projector-{self.projection.name}",
        )
        self.consumer = Consumer(
            consumer_config(
                self.settings,
                group_id=f"tradetape.projection.{self.projection.name}",
                **{"fetch.wait.max.ms": 50, "queued.max.messages.kbytes": 65536},
            )
        )
        self.resync()

    def close(self) -> None:
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

    def partitions(self) -> list[TopicPartition]:
        assert self.consumer is not None
        out: list[TopicPartition] = []
        meta = self.consumer.list_topics(timeout=10)
        for topic in self.topics:
            tmeta = meta.topics.get(topic)
            if tmeta is None or tmeta.error is not None:
                raise RuntimeError(f"topic {topic} is missing: run `tradetape up`/`topics`")
            out.extend(TopicPartition(topic, p) for p in sorted(tmeta.partitions))
        return out

    def resync(self) -> None:
        """(Re)assign every partition at the offset stored in PostgreSQL."""
        assert self.conn is not None and self.consumer is not None
        self.conn.rollback()
        stored = load_offsets(self.conn, self.projection.name, self.offsets_table)
        self.conn.commit()
        assignment = []
        self.expected = {}
        for tp in self.partitions():
            off = stored.get((tp.topic, tp.partition))
            self.expected[(tp.topic, tp.partition)] = off if off is not None else 0
            assignment.append(
                TopicPartition(tp.topic, tp.partition, off if off is not None else OFFSET_BEGINNING)
            )
        self.consumer.assign(assignment)

    # ------------------------------------------------------------------ work
    def poll(self, timeout: float) -> list[RawRecord]:
        assert self.consumer is not None
        msgs = self.consumer.consume(self.batch_size, timeout)
        records: list[RawRecord] = []
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal():
                    raise RuntimeError(f"fatal Kafka error: {err}")
                log.warning("kafka error in %s: %s", self.projection.name, err)
                continue
            topic, partition, offset = m.topic(), m.partition(), m.offset()
            assert topic is not None and partition is not None and offset is not None
            headers = m.headers()
            records.append(
                RawRecord(
                    topic,
                    partition,
                    offset,
                    m.value(),
                    list(headers.items() if isinstance(headers, dict) else headers)
                    if headers
                    else None,
                )
            )
        return records

    def apply(self, records: Sequence[RawRecord]) -> BatchResult:
        """One transaction: fence check, rows, quarantine, offsets."""
        assert self.conn is not None
        name = self.projection.name
        nxt = dict(self.expected)
        for r in records:
            nxt[(r.topic, r.partition)] = max(nxt.get((r.topic, r.partition), 0), r.offset + 1)
        try:
            with self.conn.transaction():
                lock_projection(self.conn, name)
                stored = {
                    k: v
                    for k, v in load_offsets(self.conn, name, self.offsets_table).items()
                    if k[0] in self.topics
                }
                for key in set(stored) | set(self.expected):
                    if self.expected.get(key, 0) != stored.get(key, 0):
                        raise Fenced(
                            f"{name}: stored offset {key}={stored.get(key, 0)}, "
                            f"expected {self.expected.get(key, 0)}"
                        )
                result = apply_records(self.conn, self.projection, self.schema, records)
                save_offsets(self.conn, name, nxt, self.offsets_table)
            self.conn.commit()
        except Fenced as exc:
            self.conn.rollback()
            log.warning("%s; resuming from the stored offsets", exc)
            self.resync()
            return BatchResult()
        self.expected = nxt
        self._add(result)
        return result

    def _add(self, r: BatchResult) -> None:
        t = self.total
        t.consumed += r.consumed
        t.applied += r.applied
        t.duplicates += r.duplicates
        t.quarantined += r.quarantined

    def step(self, timeout: float = 0.1) -> int:
        """Consume and apply one batch. Returns the number of records consumed."""
        records = self.poll(timeout)
        if not records:
            return 0
        self.apply(records)
        return len(records)

    def high_watermarks(self) -> dict[tuple[str, int], int]:
        """The last stable offset of every partition now (read_committed)."""
        assert self.consumer is not None
        out = {}
        for tp in self.partitions():
            for attempt in range(50):
                try:
                    _low, high = self.consumer.get_watermark_offsets(tp, timeout=10, cached=False)
                    break
                except KafkaException:
                    # A just-created topic may not have elected its leader yet.
                    if attempt == 49:
                        raise
                    time.sleep(0.2)
            out[(tp.topic, tp.partition)] = int(high)
        return out

    def positions(self) -> dict[tuple[str, int], int]:
        """Where each partition stands: past what was applied, and past any transaction
        markers or aborted records the consumer stepped over (librdkafka's position)."""
        assert self.consumer is not None
        out = dict(self.expected)
        for tp in self.consumer.position([TopicPartition(t, p) for (t, p) in self.expected]):
            key = (tp.topic, tp.partition)
            if tp.offset >= 0 and tp.offset >= out.get(key, 0):
                out[key] = tp.offset
        return out

    def lag(self, targets: dict[tuple[str, int], int]) -> int:
        now = self.positions()
        return sum(max(0, hi - now.get(k, 0)) for k, hi in targets.items())

    def catch_up(self, *, idle_timeout: float = 30.0, progress: Any = None) -> BatchResult:
        """Apply until every partition reaches the watermark seen at the start.

        Sets `caught_up`; it stays False only if nothing arrived for `idle_timeout`
        seconds while records were still missing (the caller decides: a rebuild fails).
        """
        targets = self.high_watermarks()
        idle_since: float | None = None
        self.caught_up = False
        while True:
            if self.lag(targets) == 0:
                self.caught_up = True
                break
            n = self.step(0.2)
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
