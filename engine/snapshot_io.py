"""Slices on `engine.snapshots`: publishing them, and finding the newest usable one.

The thin Kafka side of `engine.snapshot`. Slices are published by the snapshotter
(`engine.snapshotter`) with a plain idempotent producer; it folds only committed records
(`read_committed`), so a slice only ever names committed offsets (a slice is state, not a
fact: it is never part of the engine's transactions, and a lost one costs only a longer
replay). A reader still
trusts nothing: a slice is used only if all its chunks are there, its digest and format
check, and the offsets it names are within what `read_committed` can see of the own
topics. A slice naming more than the committed end (`BeyondTheLog`) cannot come from the
snapshotter of this log (it names offsets it read committed before the slice was written,
and the reader measures the ends after the snapshot topic's): the own topic's log went
back (deleted and created again, truncated), and the reader holds (`engine.replay.load_slices`).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from deploy import groups
from deploy.groups import group_id
from deploy.kafka import (
    READ_WAIT_SECONDS,
    admin_client,
    consumer_config,
    end_offsets,
    producer_config,
)
from deploy.settings import Settings
from engine.snapshot import Slice, SnapshotError, chunks, decode_slice, encode_slice
from schemas.snapshots import (
    FORMAT_VERSION,
    HEADER_CHUNK,
    HEADER_DIGEST,
    HEADER_FORMAT,
    HEADER_ID,
    HEADER_PARTITION,
    record_key,
)
from schemas.topics import Topic

log = logging.getLogger("tradetape.engine.snapshots")


class BeyondTheLog(SnapshotError):
    """A slice names an own-topic offset past the partition's committed end: the log
    went back under it (the topic deleted and created again, or truncated)."""


class SnapshotWriter:
    """Publishes slices: `publish` queues a slice's chunks, `flush`/`close` wait for them."""

    def __init__(self, settings: Settings, snapshot_partitions: int) -> None:
        self.topic = settings.topic(Topic.ENGINE_SNAPSHOTS)
        self.partitions = snapshot_partitions
        self.producer = Producer(
            producer_config(settings, **{"linger.ms": 5, "compression.type": "none"})  # type: ignore[arg-type]
        )
        self.failed = 0

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failed += 1
            log.warning("snapshot chunk not delivered: %s", err)

    def publish(self, s: Slice) -> int:
        """Produce `s` in chunks; returns the bytes queued."""
        blob, digest = encode_slice(s)
        parts = chunks(blob)
        headers_common = [
            (HEADER_FORMAT, str(FORMAT_VERSION).encode()),
            (HEADER_ID, s.slice_id.encode()),
            (HEADER_DIGEST, digest.encode()),
            (HEADER_PARTITION, str(s.partition).encode()),
        ]
        for i, chunk in enumerate(parts):
            while True:
                try:
                    self.producer.produce(
                        self.topic,
                        key=record_key(s.partition, i),
                        value=chunk,
                        partition=s.partition % self.partitions,
                        headers=[*headers_common, (HEADER_CHUNK, f"{i}/{len(parts)}".encode())],
                        on_delivery=self._on_delivery,
                    )
                    break
                except BufferError:
                    self.producer.poll(0.01)
        self.producer.poll(0)
        return len(blob)

    def flush(self, timeout: float = 30.0) -> int:  # seconds, not money
        """Wait for the queued chunks; returns how many are still undelivered."""
        return int(self.producer.flush(timeout))

    def close(self, timeout: float = 10.0) -> None:  # seconds, not money
        left = self.flush(timeout)
        if left:
            log.warning("%d snapshot chunks not delivered at stop", left)


@dataclass
class _Candidate:
    partition: int
    fmt: int
    digest: str
    count: int
    parts: dict[int, bytes] = field(default_factory=dict)
    slice_id: str = ""
    order: int = 0
    """offset of its last chunk: later = newer"""


def _headers(msg: Any) -> dict[str, str]:
    return {k: (v or b"").decode(errors="replace") for k, v in (msg.headers() or [])}


def _read_ranges(
    reader: Consumer,
    topic: str,
    ranges: dict[int, tuple[int, int]],
    deadline: float,  # time.monotonic() seconds, not money
) -> dict[int, list[Any]]:
    """The records of `topic` in [start, end) per partition, read in one assignment
    (fewer if the deadline passes)."""
    todo = {sp: end for sp, (start, end) in ranges.items() if start < end}
    out: dict[int, list[Any]] = {sp: [] for sp in ranges}
    if not todo:
        return out
    reader.assign([TopicPartition(topic, sp, ranges[sp][0]) for sp in todo])
    while todo and time.monotonic() < deadline:
        msg: Any
        for msg in reader.consume(num_messages=500, timeout=READ_WAIT_SECONDS):
            if msg.error():
                continue
            sp = msg.partition()
            end = ranges[sp][1]
            if msg.offset() < end:
                out[sp].append(msg)
            if msg.offset() + 1 >= end:
                todo.pop(sp, None)
    return out


def _candidates(msgs: list[Any], wanted: set[int], notes: list[str]) -> list[_Candidate]:
    found: dict[tuple[int, str, str], _Candidate] = {}
    for msg in msgs:
        h = _headers(msg)
        try:
            p = int(h[HEADER_PARTITION])
            i, n = (int(x) for x in h[HEADER_CHUNK].split("/"))
            fmt = int(h[HEADER_FORMAT])
            sid, digest = h[HEADER_ID], h[HEADER_DIGEST]
        except (KeyError, ValueError):
            notes.append(f"snapshot record at {msg.partition()}@{msg.offset()} unreadable")
            continue
        if p not in wanted:
            continue
        cand = found.get((p, sid, digest))
        if cand is None:
            cand = found[(p, sid, digest)] = _Candidate(p, fmt, digest, n, slice_id=sid)
        cand.parts[i] = msg.value() or b""
        cand.order = msg.offset()
    return sorted(found.values(), key=_coverage, reverse=True)


def _coverage(c: _Candidate) -> tuple[int, int]:
    """How much of the log a candidate claims to cover (from its id, checked later), then
    how late it was written: a slice a lagging ex-owner wrote after the new owner's is
    older state and comes second."""
    try:
        covered = sum(int(x) for x in c.slice_id.split(":")[1:])
    except ValueError:
        covered = -1
    return covered, c.order


def _check(
    cand: _Candidate,
    own_topics: dict[str, str],
    own_ends: dict[tuple[str, int], int],
    own_lows: dict[tuple[str, int], int],
) -> Slice:
    p = cand.partition
    if len(cand.parts) != cand.count or set(cand.parts) != set(range(cand.count)):
        raise SnapshotError(f"incomplete ({len(cand.parts)}/{cand.count} chunks)")
    s = decode_slice(
        b"".join(cand.parts[i] for i in range(cand.count)), cand.digest, format_version=cand.fmt
    )
    if s.partition != p or set(s.offsets) != set(own_topics):
        raise SnapshotError("slice names other partitions or topics")
    for short, name in own_topics.items():
        off = s.offsets[short]
        if off > own_ends[(name, p)]:
            raise BeyondTheLog(
                f"{name}[{p}]: a slice names offset {off}, beyond the committed end "
                f"{own_ends[(name, p)]}"
            )
        if off < max(own_lows[(name, p)], 0):
            raise SnapshotError(f"{short} offset {off} below the log start")
    return s


def read_slices(
    settings: Settings,
    admin: AdminClient,
    partitions: list[int],
    own_topics: dict[str, str],
    snapshot_partitions: int,
    *,
    timeout: float = 30.0,  # seconds, not money
    window: int = 16,
) -> tuple[dict[int, Slice], list[str], list[str]]:
    """The newest usable slice per engine partition in `partitions` (absent: none usable),
    the reasons slices were passed over (for the log), and the own-topic partitions a
    slice names an offset beyond the committed end of, described (the log went back).

    `own_topics` maps the catalogue name (`risk.decisions`) to the full topic name. A slice
    naming an offset beyond the own topic's last stable offset, or below its start, is
    refused: the log does not hold (or no longer holds) what it claims to cover.

    The snapshot topic is read backwards from its end in growing windows (`window`
    records, then 4x as many, ...), so start-up does not read every slice ever written
    before compaction removes the old ones.
    """
    notes: list[str] = []
    topic = settings.topic(Topic.ENGINE_SNAPSHOTS)
    by_snap: dict[int, set[int]] = {}
    for p in partitions:
        by_snap.setdefault(p % snapshot_partitions, set()).add(p)
    tps = [TopicPartition(topic, sp) for sp in sorted(by_snap)]
    ends = end_offsets(admin, tps)
    lows = end_offsets(admin, tps, earliest=True)
    own = [TopicPartition(name, p) for name in own_topics.values() for p in partitions]
    own_ends = end_offsets(admin, own)
    own_lows = end_offsets(admin, own, earliest=True)
    chosen: dict[int, Slice] = {}
    refused: set[tuple[int, str]] = set()
    beyond: list[str] = []
    deadline = time.monotonic() + timeout
    reader = Consumer(
        consumer_config(
            settings,
            group_id=group_id(settings.topic_prefix, groups.ENGINE_SNAPSHOTS, uuid.uuid4().hex),
        )
    )
    try:
        size = window
        open_ = {sp for sp in by_snap if ends[(topic, sp)] > max(lows[(topic, sp)], 0)}
        while open_ and time.monotonic() < deadline:
            ranges = {
                sp: (max(max(lows[(topic, sp)], 0), ends[(topic, sp)] - size), ends[(topic, sp)])
                for sp in open_
            }
            got = _read_ranges(reader, topic, ranges, deadline)
            for sp in sorted(open_):
                start = ranges[sp][0]
                at_start = start <= max(lows[(topic, sp)], 0)
                for cand in _candidates(got[sp], by_snap[sp] - chosen.keys(), notes):
                    if cand.partition in chosen:
                        continue
                    tag = (cand.partition, f"{cand.order}:{cand.digest}")
                    try:
                        chosen[cand.partition] = _check(cand, own_topics, own_ends, own_lows)
                    except BeyondTheLog as exc:
                        if tag not in refused:
                            refused.add(tag)
                            beyond.append(str(exc))
                    except SnapshotError as exc:
                        whole = cand.count <= len(cand.parts) or at_start
                        if (whole or cand.order - start >= cand.count) and tag not in refused:
                            # Complete in this window (or cut by the log start): refused.
                            refused.add(tag)
                            notes.append(f"partition {cand.partition}: slice refused ({exc})")
                if at_start or not (by_snap[sp] - chosen.keys()):
                    open_.discard(sp)
            size *= 4
        if open_:
            notes.append(f"snapshot topic not read within {timeout:.0f}s")
    finally:
        reader.close()
    return chosen, notes, beyond


def slice_status(
    settings: Settings,
    *,
    timeout: float = 15.0,  # seconds, not money
) -> dict[int, dict[str, Any]]:
    """Per engine partition: the newest usable slice (`slice`, None if none) and how many
    own-topic offsets lie after it (`behind`: what a worker taking the partition now would
    replay, transaction markers included). For `tradetape status`: is the snapshotter
    keeping up?"""
    admin = admin_client(settings)
    names = {t.value: settings.topic(t) for t in (Topic.DECISIONS, Topic.ORDERS)}
    reader = Consumer(
        consumer_config(
            settings,
            group_id=group_id(settings.topic_prefix, groups.SNAPSHOT_STATUS, uuid.uuid4().hex),
        )
    )
    try:
        md = reader.list_topics(timeout=10).topics
        counts = {len(md[n].partitions) for n in names.values() if n in md}
        snap = md.get(settings.topic(Topic.ENGINE_SNAPSHOTS))
        if len(counts) != 1 or snap is None:
            return {}
        n_own, n_snap = counts.pop(), len(snap.partitions)
    finally:
        reader.close()
    parts = list(range(n_own))
    slices, _notes, _beyond = read_slices(settings, admin, parts, names, n_snap, timeout=timeout)
    ends = end_offsets(admin, [TopicPartition(n, p) for n in names.values() for p in parts])
    lows = end_offsets(
        admin, [TopicPartition(n, p) for n in names.values() for p in parts], earliest=True
    )
    out: dict[int, dict[str, Any]] = {}
    for p in parts:
        s = slices.get(p)
        behind = sum(
            ends[(name, p)] - (s.offsets[short] if s is not None else max(lows[(name, p)], 0))
            for short, name in names.items()
        )
        out[p] = {"slice": s.slice_id if s is not None else None, "behind": behind}
    return out
