"""Snapshot slices on the real broker: the snapshotter slices what it folded from the log, a
restarted worker replays only the tail after them, ends up in exactly the state a full
replay gives, refuses corrupt and over-reaching slices, and
exactly-once still holds. (Kill -9 restarts and a takeover from slices: test_crash.py and
test_takeover.py run with snapshots every few hundred records.)"""

from __future__ import annotations

import logging
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from deploy.kafka import consumer_config, producer_config
from deploy.settings import Settings
from engine.partitioning import partition_for
from engine.snapshot import Slice, canonical_state, chunks, decode_slice, encode_slice
from engine.snapshot_io import slice_status
from engine.worker import EngineWorker
from schemas.events import RiskLimits, RiskLimitsChanged
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
from tests.engine.helpers import (
    RecordCounter,
    admin,
    intent,
    produce,
    quote,
    running_snapshotter,
    running_worker,
    trade,
    world,
)
from tests.engine.test_crash import ACCOUNTS, _intents
from tests.engine.workers import check_exactly_once, generous_limits

pytestmark = pytest.mark.integration

USED = sorted({partition_for(a, 6) for a in ACCOUNTS})
"""The partitions the test accounts land on (murmur2 leaves partition 0 empty)."""


def _records(settings: Settings, topic: Topic) -> list[Any]:
    """Every committed record of `topic` (raw messages), to its end."""
    c = Consumer(consumer_config(settings, group_id=f"raw-{uuid.uuid4().hex}"))
    name = settings.topic(topic)
    meta = c.list_topics(name, timeout=10).topics[name].partitions
    c.assign([TopicPartition(name, p, 0) for p in meta])
    out: list[Any] = []
    idle = time.monotonic()
    while time.monotonic() - idle < 2.0:
        msgs = [m for m in c.consume(5000, 0.3) if not m.error()]
        if msgs:
            idle = time.monotonic()
            out += msgs
    c.close()
    return out


def _slices_on_topic(settings: Settings) -> dict[int, list[Slice]]:
    """The whole slices on engine.snapshots, oldest first, per engine partition."""
    parts: dict[tuple[int, str], dict[int, bytes]] = {}
    meta: dict[tuple[int, str], tuple[str, int]] = {}
    for m in _records(settings, Topic.ENGINE_SNAPSHOTS):
        h = {k: v.decode() for k, v in m.headers()}
        key = (int(h[HEADER_PARTITION]), h[HEADER_ID])
        i, n = (int(x) for x in h[HEADER_CHUNK].split("/"))
        parts.setdefault(key, {})[i] = m.value()
        meta[key] = (h[HEADER_DIGEST], n)
    out: dict[int, list[Slice]] = {}
    for key, chunks_ in parts.items():
        digest, n = meta[key]
        if len(chunks_) == n:
            s = decode_slice(b"".join(chunks_[i] for i in range(n)), digest)
            out.setdefault(key[0], []).append(s)
    for lst in out.values():
        lst.sort(key=lambda s: s.offsets["risk.decisions"])
    return out


def _publish_raw(settings: Settings, s: Slice, blob: bytes, digest: str) -> None:
    p = Producer(producer_config(settings))
    pieces = chunks(blob)
    for i, piece in enumerate(pieces):
        p.produce(
            settings.topic(Topic.ENGINE_SNAPSHOTS),
            key=record_key(s.partition, i),
            value=piece,
            partition=s.partition,
            headers=[
                (HEADER_FORMAT, str(FORMAT_VERSION).encode()),
                (HEADER_ID, s.slice_id.encode()),
                (HEADER_DIGEST, digest.encode()),
                (HEADER_PARTITION, str(s.partition).encode()),
                (HEADER_CHUNK, f"{i}/{len(pieces)}".encode()),
            ],
        )
    assert p.flush(10) == 0


def _rebuilt(settings: Settings, wid: str) -> EngineWorker:
    """A worker that only rebuilds all six partitions (not run: no group membership)."""
    w = EngineWorker(settings, wid=wid)
    try:
        w.rebuild(range(6))
    finally:
        w.close()
    return w


def _full_replay(settings: Settings) -> EngineWorker:
    return _rebuilt(settings.with_overrides(engine_snapshot_load=False), "full")


def test_restart_reads_only_the_tail_and_folds_the_full_replays_state(
    env: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = env.with_overrides(engine_snapshot_every=80, engine_snapshot_seconds=1.0)
    counter = RecordCounter(settings, Topic.DECISIONS)
    intents: list[Any] = []
    try:
        with running_worker(settings, "s0"), running_snapshotter(settings) as snap:
            key = world(settings, ACCOUNTS)
            generous_limits(settings)
            produce(settings, [quote(qty="100")])
            intents = _intents(key, 800, seed=3)
            produce(settings, [*intents[:700], trade("59950", qty="3")])
            assert counter.wait(700, 90) >= 700
            deadline = time.monotonic() + 30
            while snap.stats["slices"] < len(USED) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert snap.stats["slices"] >= len(USED), snap.stats
            time.sleep(2.5)  # the time-based slices of the last batches (1 s rounds)
        own_total = sum(len(_records(settings, t)) for t in (Topic.DECISIONS, Topic.ORDERS))
        # The broker put every record where the engine's murmur2 says it goes.
        for m in _records(settings, Topic.DECISIONS):
            assert m.partition() == partition_for(m.key().decode(), 6), m.key()
        slices = _slices_on_topic(settings)
        assert sorted(slices) == USED, sorted(slices)
        # `tradetape status`: the newest slice per partition and the offsets after it.
        status = slice_status(settings)
        for p in range(6):
            if p in USED:
                assert status[p]["slice"] == slices[p][-1].slice_id, (p, status)
                assert 0 <= status[p]["behind"] < 80, (p, status)  # under one slice's worth
            else:
                assert status[p] == {"slice": None, "behind": 0}, (p, status)

        full = _full_replay(settings)
        assert full.last_rebuild["own_records"] == own_total
        with running_worker(settings, "s0") as w2:
            deadline = time.monotonic() + 60
            while not w2.last_rebuild and time.monotonic() < deadline:
                time.sleep(0.1)
            rebuilt = dict(w2.last_rebuild)
            assert sorted(rebuilt["slices"]) == USED, rebuilt
            # Only the tail after the slices was read back, not the whole log.
            assert rebuilt["own_records"] < own_total // 4, (rebuilt, own_total)
            time.sleep(0.5)
            assert canonical_state(w2.state) == canonical_state(full.state)
            # New intents and resends (recent and long ago) after the restart.
            produce(settings, intents[700:] + intents[:50] + intents[650:700])
            assert counter.wait(800 + 100, 90) >= 900
            time.sleep(1.0)
        check_exactly_once(
            settings, {f"i{i}" for i in range(800)}, [settings.resolved_data_dir / "engine"]
        )

        # Refused: a corrupt newest slice (one partition). That partition falls back to
        # an older slice or the full log; the state is still the full replay's.
        latest = _slices_on_topic(settings)
        pa, pb = USED[0], USED[1]
        s0, s1 = latest[pa][-1], latest[pb][-1]
        blob, digest = encode_slice(s0)
        _publish_raw(settings, s0, blob[:-3] + b"xyz", digest)
        caplog.set_level(logging.WARNING, logger="tradetape.engine")
        w3 = _rebuilt(settings, "s3")
        notes = " ".join(r.getMessage() for r in caplog.records)
        assert f"partition {pa}: slice refused (snapshot digest mismatch)" in notes, notes
        full = _full_replay(settings)
        assert full.last_rebuild["slices"] == {}  # TRADETAPE_ENGINE_SNAPSHOT_LOAD=false
        assert canonical_state(w3.state) == canonical_state(full.state)
        off = _rebuilt(settings.with_overrides(engine_snapshots=False), "off")
        assert off.last_rebuild["slices"] == {}  # TRADETAPE_ENGINE_SNAPSHOTS=false
        assert off.last_rebuild["own_records"] == full.last_rebuild["own_records"]
        # A slice naming offsets the log has not committed (the snapshotter names only
        # committed ones): the log went back under it. The rebuild holds (session 24;
        # before, that partition was replayed from the new log's start).
        beyond = {t: o + 10_000 for t, o in s1.offsets.items()}
        forged = Slice(pb, beyond, dict(s1.body, offsets=beyond))
        _publish_raw(settings, forged, *encode_slice(forged))
        caplog.clear()
        w4 = _rebuilt(settings, "s4")
        errors = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
        assert not w4.complete
        assert f"{settings.topic(Topic.DECISIONS)}[{pb}]: a slice names offset" in errors, errors
    finally:
        counter.close()


def test_slices_stay_usable_when_a_longer_rate_window_comes_in_force(
    env: Settings,
) -> None:
    """Rate windows keep a fixed horizon whatever the limits (ORDER_RATE v3): the
    snapshotter goes on folding onto its state (no second fold of the log), and the slices
    it writes are used by a rebuild that ends in the full replay's state."""
    settings = env.with_overrides(engine_snapshot_every=50, engine_snapshot_seconds=1.0)
    counter = RecordCounter(settings, Topic.DECISIONS)
    try:
        with running_worker(settings, "h0"), running_snapshotter(settings) as snap:
            key = world(settings, ACCOUNTS)
            generous_limits(settings)  # a 1 s order-rate window
            produce(settings, [quote(qty="100")])
            produce(settings, _intents(key, 300, seed=5))
            assert counter.wait(300, 90) >= 300
            _wait_until(lambda: snap.stats["slices"] >= len(USED), 30, snap.stats)
            longer = RiskLimits(
                max_price_age_seconds=3600,
                max_orders_per_window=100_000,
                rate_window_seconds=120,
                max_open_orders=100_000,
                max_position=Decimal("1000000"),
                max_order_notional=Decimal("100000000"),
            )
            produce(
                settings,
                [
                    admin(
                        RiskLimitsChanged(
                            scope="*", config_version=2, changed_by="admin", limits=longer
                        )
                    )
                ],
                admin=True,
            )
            after = snap.stats["slices"]
            produce(
                settings,
                [
                    intent(key, acc, f"after-{acc}-{i}", qty="0.01")
                    for i in range(5)
                    for acc in ACCOUNTS
                ],
            )
            _wait_until(lambda: snap.stats["slices"] >= after + len(USED), 30, snap.stats)
            assert snap.stats["restarts"] == 0, snap.stats
        rebuilt = _rebuilt(settings, "h1")
        assert sorted(rebuilt.last_rebuild["slices"]) == USED, rebuilt.last_rebuild
        assert canonical_state(rebuilt.state) == canonical_state(_full_replay(settings).state)
    finally:
        counter.close()


def _wait_until(cond: Any, timeout: float, what: Any) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert cond(), what


def test_without_the_snapshot_topic_a_worker_replays_the_log(env: Settings) -> None:
    """The snapshot topic is a cache: deleting it costs a full replay, not the worker."""
    from confluent_kafka.admin import AdminClient

    counter = RecordCounter(env, Topic.DECISIONS)
    try:
        with running_worker(env, "n0"):
            key = world(env, ACCOUNTS)
            generous_limits(env)
            produce(env, [quote(qty="100")])
            produce(env, _intents(key, 100, seed=9))
            assert counter.wait(100, 60) >= 100
    finally:
        counter.close()
    admin = AdminClient({"bootstrap.servers": env.bootstrap})
    admin.delete_topics([env.topic(Topic.ENGINE_SNAPSHOTS)])[
        env.topic(Topic.ENGINE_SNAPSHOTS)
    ].result(30)
    _wait_until(
        lambda: env.topic(Topic.ENGINE_SNAPSHOTS) not in admin.list_topics(timeout=10).topics,
        30,
        "the snapshot topic is still listed",
    )
    rebuilt = _rebuilt(env, "n1")
    assert rebuilt.last_rebuild["slices"] == {}
    assert rebuilt.last_rebuild["own_records"] > 0
    assert canonical_state(rebuilt.state) == canonical_state(_full_replay(env).state)
