"""Two workers in one group; one is killed and the other takes over its partitions."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from deploy.kafka import consumer_config, partitions_of
from deploy.settings import Settings
from schemas import new_event
from schemas.events import RiskLimits, RiskLimitsChanged
from schemas.registry import ENGINE_PRODUCER
from schemas.snapshots import HEADER_PARTITION
from schemas.topics import Topic
from tests.engine.helpers import RecordCounter, produce, quote, read_topic, wait_for, world
from tests.engine.test_crash import ACCOUNTS, _intents
from tests.engine.workers import (
    SNAPSHOTS_OFTEN,
    check_exactly_once,
    generous_limits,
    rebuilds,
    spawn,
    stop,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _owned(log: Path) -> list[int] | None:
    """The partitions named by the last 'rebuilt partitions' line of a worker's log."""
    found = re.findall(r"rebuilt partitions \[([0-9, ]*)\]", log.read_text(errors="replace"))
    if not found:
        return None
    return [int(x) for x in found[-1].split(",") if x.strip()]


def _wait_owned(log: Path, pred, timeout: float = 60) -> list[int] | None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        owned = _owned(log)
        if owned is not None and pred(owned):
            return owned
        time.sleep(0.3)
    return _owned(log)


def _slice_on_topic(env: Settings, partitions: set[int], timeout: float) -> bool:
    """Whether a slice chunk of one of `partitions` reaches engine.snapshots in time."""
    consumer = Consumer(consumer_config(env, group_id=f"slices-{uuid.uuid4().hex}"))
    try:
        name = env.topic(Topic.ENGINE_SNAPSHOTS)
        parts = partitions_of(consumer, env, Topic.ENGINE_SNAPSHOTS)
        consumer.assign([TopicPartition(name, p, 0) for p in parts])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in consumer.consume(1000, 0.3):
                headers = dict(m.headers() or []) if not m.error() else {}
                value = headers.get(HEADER_PARTITION)
                if value is not None and int(value) in partitions:
                    return True
        return False
    finally:
        consumer.close()


def _second_worker(
    env: Settings,
    procs: list[subprocess.Popen[bytes]],
    log0: Path,
    log1: Path,
    extra_env: dict[str, str] | None = None,
) -> tuple[Any, subprocess.Popen[bytes], list[int]]:
    """The accounts, generous limits and a quote, then a second worker (in `procs`) beside
    the first, which logs to `log0`, once the two have split the partitions: the signing
    key, the worker and the partitions it got."""
    key = world(env, ACCOUNTS)
    generous_limits(env)
    produce(env, [quote(qty="100")])
    wait_for(env, Topic.RISK_CONFIG, lambda ev: len(ev) >= 1)
    w1 = spawn(env, "1", log1, extra_env)
    procs.append(w1)
    owned1 = _wait_owned(log1, lambda o: len(o) > 0)
    assert owned1, "the second worker never got partitions"
    assert _wait_owned(log0, lambda o: 0 < len(o) < 6), "no rebalance to the first worker"
    return key, w1, owned1


def test_survivor_takes_over_and_exactly_once_holds(env: Settings, tmp_path: Path) -> None:
    log0, log1, snap_log = tmp_path / "w0.log", tmp_path / "w1.log", tmp_path / "snap.log"
    w0 = spawn(env, "0", log0)
    procs = [w0, spawn(env, "s", snap_log, SNAPSHOTS_OFTEN, components=("snapshotter",))]
    counter = RecordCounter(env, Topic.DECISIONS)
    try:
        key, w1, owned1 = _second_worker(env, procs, log0, log1)
        intents = _intents(key, 2000, seed=11)
        produce(env, intents[:1000])
        assert counter.wait(200, 60) >= 200
        # A slice of a partition of the second worker's is on the topic.
        assert _slice_on_topic(env, set(owned1), 30), "no snapshot slice of its partitions"
        time.sleep(0.5)  # the rest of its chunks are sent (linger 5 ms)
        stop(w1, hard=True)  # kill -9 one worker mid-stream
        produce(env, intents[1000:])
        assert _wait_owned(log0, lambda o: len(o) == 6, timeout=60) == list(range(6)), (
            "the survivor did not take over every partition"
        )
        assert counter.wait(2000, 90) >= 2000
        time.sleep(1.0)
        stop(w0)
    finally:
        counter.close()
        for p in procs:
            stop(p, hard=True)
    assert w0.returncode == 0, log0.read_text()[-3000:]
    check_exactly_once(env, {f"i{i}" for i in range(2000)}, [env.resolved_data_dir / "engine"])
    # The survivor took the dead worker's partitions over from slices the snapshotter wrote.
    written = {
        int(p) for p in re.findall(r"snapshot slice of partition (\d+)", snap_log.read_text())
    }
    assert written & set(owned1), "no slice of the killed worker's partitions"
    taken = [used for owned, used in rebuilds(log0) if len(owned) == 6]
    assert taken and written & set(taken[-1]), (written, rebuilds(log0))
    # Incrementally: the survivor kept the state of its own partitions and folded only the
    # dead worker's (engine.worker._take_over).
    last = [
        ln for ln in log0.read_text().splitlines() if "rebuilt partitions [0, 1, 2, 3, 4, 5]" in ln
    ]
    m = re.search(
        r"incrementally: gained \[([\d, ]*)\], gave up \[\], kept \[([\d, ]+)\]", last[-1]
    )
    assert m, last[-1]
    gained = {int(x) for x in m.group(1).split(",") if x.strip()}
    kept = {int(x) for x in m.group(2).split(",")}
    assert gained and kept and gained | kept == set(range(6)) and not gained & kept


def test_without_snapshots_the_survivor_rebuilds_in_full(env: Settings, tmp_path: Path) -> None:
    """With snapshots off no delivery reports say what a worker's state folded, so a
    take-over cannot add partitions to the state it holds: it must rebuild in full (folding
    its kept partitions' records again onto its state would count their fills twice)."""
    off = {"TRADETAPE_ENGINE_SNAPSHOTS": "false"}
    log0, log1 = tmp_path / "w0.log", tmp_path / "w1.log"
    w0 = spawn(env, "0", log0, off)
    procs = [w0]
    counter = RecordCounter(env, Topic.DECISIONS)
    try:
        key, w1, _owned = _second_worker(env, procs, log0, log1, off)
        intents = _intents(key, 1200, seed=12)
        produce(env, intents[:600])
        assert counter.wait(600, 60) >= 600
        stop(w1, hard=True)
        produce(env, intents[600:])
        assert _wait_owned(log0, lambda o: len(o) == 6, timeout=60) == list(range(6))
        assert counter.wait(1200, 90) >= 1200
        time.sleep(1.0)
        stop(w0)
    finally:
        counter.close()
        for p in procs:
            stop(p, hard=True)
    assert w0.returncode == 0, log0.read_text()[-3000:]
    check_exactly_once(env, {f"i{i}" for i in range(1200)}, [env.resolved_data_dir / "engine"])
    last = [
        ln for ln in log0.read_text().splitlines() if "rebuilt partitions [0, 1, 2, 3, 4, 5]" in ln
    ]
    assert last and "incrementally" not in last[-1], last[-1:]


def test_a_take_over_its_kept_steps_cannot_redo_rebuilds_from_the_log(
    env: Settings, tmp_path: Path
) -> None:
    """A worker keeps the newest `STEPS_KEPT` limits changes (`EngineState.bound_limits`).
    The other worker is killed, and 12 global limits changes are read by the survivor
    before it takes the dead one's partitions over: their passes over the dead worker's
    resting orders were never run, and the survivor no longer holds the 4 oldest. It
    refuses the incremental hand-over (`processor.redo_known`) and rebuilds from the log,
    whose `catch_up` records every change's pass for every account, once (before session
    24 every change was kept and the hand-over was incremental)."""
    log0, log1 = tmp_path / "w0.log", tmp_path / "w1.log"
    w0 = spawn(env, "0", log0)
    procs = [w0]
    counter = RecordCounter(env, Topic.DECISIONS)
    limits = RiskLimits(
        max_price_age_seconds=3600,
        max_orders_per_window=100_000,
        max_open_orders=100_000,
        max_position=Decimal("1000000"),
        max_order_notional=Decimal("100000000"),
    )
    try:
        key, w1, _owned = _second_worker(env, procs, log0, log1)
        produce(env, _intents(key, 400, seed=13))  # a third rest: limit buys below the ask
        assert counter.wait(400, 60) >= 400
        stop(w1, hard=True)
        changes = [
            new_event(
                RiskLimitsChanged(
                    scope="*", config_version=v, limits=limits, changed_by="admin", reason="t"
                ),
                producer=ENGINE_PRODUCER,
            )
            for v in range(2, 14)
        ]
        produce(env, changes)  # read within the session timeout, before the take-over
        assert _wait_owned(log0, lambda o: len(o) == 6, timeout=60) == list(range(6))
        time.sleep(2.0)
        stop(w0)
    finally:
        counter.close()
        for p in procs:
            stop(p, hard=True)
    assert w0.returncode == 0, log0.read_text()[-3000:]
    text = log0.read_text()
    assert "cannot redo their lost passes exactly; rebuilding from the log" in text, text[-3000:]
    last = [ln for ln in text.splitlines() if "rebuilt partitions [0, 1, 2, 3, 4, 5]" in ln]
    assert last and "incrementally" not in last[-1], last[-1:]
    ids = {c.event_id for c in changes}
    checked = Counter(
        (e.payload.account, e.payload.fact_event_id)
        for e in read_topic(env, Topic.DECISIONS, timeout=60)
        if e.event_type == "RestingOrdersChecked" and e.payload.fact_event_id in ids
    )
    assert checked and max(checked.values()) == 1, checked
    per_account = Counter(account for account, _ in checked)
    assert set(per_account.values()) == {len(changes)}, per_account
