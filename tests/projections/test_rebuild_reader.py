"""A single rebuild's reader: a process of its own, whole batches, no waiting out timeouts."""

from __future__ import annotations

import marshal
import os
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Producer

import projections.projector as projector_module
from deploy.kafka import producer_config
from deploy.settings import Settings
from projections.checksum import checksum
from projections.core import PROJECTIONS
from projections.projector import Projector, Target
from projections.rebuild import rebuild
from projections.store import predecode
from projections.synthetic import generate
from schemas.topics import Topic
from tests.projections.helpers import produce

pytestmark = pytest.mark.integration


def test_rebuild_decodes_in_a_reader_process_and_equals_live(
    env: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decoding (quarantine verdicts included) happens outside the folding process, and
    what crosses the pipe gives the live projection's rows and quarantine."""
    events = generate(21, 1800)
    produce(env, events[:1500])
    producer = Producer(producer_config(env))
    producer.produce(env.topic(Topic.ORDERS), b"\x00not json", b"k")  # quarantined
    assert producer.flush(30) == 0
    produce(env, events[1500:])

    pids = tmp_path / "pids"

    def recording(*args: Any, **kwargs: Any) -> Any:
        with pids.open("a") as f:
            f.write(f"{os.getpid()}\n")
        return predecode(*args, **kwargs)

    with Projector(env, PROJECTIONS["orders"]) as proj:  # live, for the reference
        proj.catch_up()
    with psycopg.connect(env.dsn) as conn:
        live = checksum(conn, PROJECTIONS["orders"])
        live_bad = conn.execute(
            'SELECT topic, partition, "offset", error, raw_value FROM projection_quarantine '
            "WHERE projection = 'orders' ORDER BY 1, 2, 3"
        ).fetchall()
        conn.execute("DELETE FROM projection_quarantine WHERE projection = 'orders'")
    assert [r[4] for r in live_bad] == [b"\x00not json"]

    monkeypatch.setattr(projector_module, "predecode", recording)
    result = rebuild(env, PROJECTIONS["orders"], split=False)  # on one consumer
    assert (result.checksum, result.counts) == live
    seen = {int(x) for x in pids.read_text().split()}
    assert seen and os.getpid() not in seen  # decoded in the reader process only
    with psycopg.connect(env.dsn) as conn:
        rebuilt_bad = conn.execute(
            'SELECT topic, partition, "offset", error, raw_value FROM projection_quarantine '
            "WHERE projection = 'orders' ORDER BY 1, 2, 3"
        ).fetchall()
    assert rebuilt_bad == live_bad


def test_replay_poll_does_not_wait_out_its_timeout_for_a_full_batch(env: Settings) -> None:
    """A few records in a 10,000-record replay batch come back at once (a full batch's
    wait was half a second at a rebuild's start and end)."""
    produce(env, [e for e in generate(23, 400) if e.topic == Topic.DECISIONS])
    p = PROJECTIONS["decisions"]
    target = Target(p, p.schema)
    with Projector(env, [target], batch_size=10_000, replay=True, pipelined=False) as proj:
        started = time.monotonic()
        got = 0
        while got == 0 and time.monotonic() - started < 20:
            got += len(proj.poll(5.0))
        elapsed = time.monotonic() - started
    assert got > 0
    assert elapsed < 2.5, elapsed


def test_replay_prefetch_queue_holds_a_whole_batch(env: Settings) -> None:
    """`consume(n, timeout)` waits out its timeout when n records never fit the queue."""
    p = PROJECTIONS["decisions"]
    proj = Projector(env, [Target(p, p.schema)], batch_size=10_000, replay=True)
    # 10,000 decisions of ~750 bytes: 7.5 MB, and more with librdkafka's own overhead.
    assert proj.consumer_config()["queued.max.messages.kbytes"] >= 10_000 * 2


def test_the_reader_sends_no_bytes_of_a_record_every_projection_ignores(
    env: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`positions` ignores every lifecycle event but a `Fill` by its headers' type: the
    reader process sends such a record's coordinates alone (they are counted and give
    the next offsets), and the rebuild equals the live projection."""
    produce(env, generate(22, 1500))
    with Projector(env, PROJECTIONS["positions"]) as proj:
        proj.catch_up()
    with psycopg.connect(env.dsn) as conn:
        live = checksum(conn, PROJECTIONS["positions"])
    sent = tmp_path / "sent"

    class Recording:
        """`marshal` in the reader process, noting what each batch sends."""

        loads = staticmethod(marshal.loads)

        @staticmethod
        def dumps(value: Any) -> bytes:
            if value[0] == "batch":
                _kind, rows, decoded, _pos = value
                with sent.open("a") as f:
                    for row, d in zip(rows, decoded, strict=True):
                        f.write(f"{d is None} {row[3] is not None or row[4] is not None}\n")
            return marshal.dumps(value)

    monkeypatch.setattr(projector_module, "marshal", Recording)
    result = rebuild(env, PROJECTIONS["positions"])
    lines = sent.read_text().splitlines()
    assert "True False" in lines  # ignored, sent without its bytes
    assert "True True" not in lines
    assert "False True" in lines  # decoded: its bytes go along (`Located.event`)
    assert (result.checksum, result.counts) == live
