"""Crash tests: kill -9 engine workers mid-stream, then prove exactly-once from the log."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from deploy.settings import Settings
from schemas.events import Side
from schemas.topics import Topic
from tests.engine.helpers import (
    RecordCounter,
    intent,
    produce,
    quote,
    trade,
    wait_for,
    world,
)
from tests.engine.workers import (
    SNAPSHOTS_OFTEN,
    check_exactly_once,
    generous_limits,
    rebuilds,
    spawn,
    stop,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ACCOUNTS = [f"CR{i:02d}" for i in range(12)]


def _intents(key, n: int, seed: int):  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    out = []
    for i in range(n):
        acc = rng.choice(ACCOUNTS)
        kind = rng.random()
        if kind < 0.5:
            out.append(intent(key, acc, f"i{i}", qty="0.01"))
        elif kind < 0.7:
            out.append(intent(key, acc, f"i{i}", side=Side.SELL, qty="0.005"))
        else:
            out.append(intent(key, acc, f"i{i}", qty="0.01", limit=f"{59900 + rng.randint(0, 99)}"))
    return out


def test_kill_nine_twice_then_exactly_once(env: Settings, tmp_path: Path) -> None:
    log, snap_log = tmp_path / "engine.log", tmp_path / "snapshotter.log"
    proc = spawn(env, "0", log)
    snap = spawn(env, "s", snap_log, SNAPSHOTS_OFTEN, components=("snapshotter",))
    procs = [proc, snap]
    counter = RecordCounter(env, Topic.DECISIONS)
    try:
        key = world(env, ACCOUNTS)
        generous_limits(env)
        produce(env, [quote(qty="100")])
        wait_for(env, Topic.RISK_CONFIG, lambda ev: len(ev) >= 1)
        intents = _intents(key, 5000, seed=7)
        waves = [intents[i : i + 1000] for i in range(0, 5000, 1000)]
        produce(env, waves[0] + waves[1])
        assert counter.wait(300, 60) >= 300
        stop(proc, hard=True)  # kill -9 while it works
        stop(snap, hard=True)  # and the snapshotter (a torn slice is refused by readers)
        produce(env, waves[2] + [trade("59950", qty="3")])
        proc = spawn(env, "0", log)
        snap_log = tmp_path / "snapshotter2.log"  # only the restarted one's lines
        snap = spawn(env, "s", snap_log, SNAPSHOTS_OFTEN, components=("snapshotter",))
        procs += [proc, snap]
        assert counter.wait(2500, 60) >= 2500
        # The last restart below can start from slices (the snapshotter had time to write).
        deadline = time.monotonic() + 30
        while "snapshot slice of partition" not in snap_log.read_text(errors="replace"):
            assert time.monotonic() < deadline, "the snapshotter wrote no slice"
            time.sleep(0.3)
        time.sleep(0.5)  # the rest of its chunks are sent (linger 5 ms)
        produce(env, waves[3] + waves[2][:200])  # and some resends
        stop(proc, hard=True)  # kill -9 again
        produce(env, waves[4] + [trade("59920", qty="5")])
        proc = spawn(env, "0", log)
        procs.append(proc)
        decided = counter.wait(5200, 90)
        assert decided >= 5200, f"only {decided} decision records"
        time.sleep(1.0)
        stop(proc)  # clean stop: the worker writes its state
    finally:
        counter.close()
        for p in procs:
            stop(p, hard=True)
    assert proc.returncode == 0, log.read_text()[-3000:]
    check_exactly_once(env, {f"i{i}" for i in range(5000)}, [env.resolved_data_dir / "engine"])
    # The restarts after the kills started from snapshot slices, not from offset 0.
    restarts = rebuilds(log)[1:]
    assert restarts and any(used for _owned, used in restarts), rebuilds(log)
    assert "snapshot slice of partition" in snap_log.read_text(errors="replace")
