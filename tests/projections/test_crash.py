"""kill -9 the projector process mid-batch, repeatedly, while 20,000 events flow.

At the end every projection must equal a clean rebuild (row counts and checksum), and
each event must be folded exactly once: `_seen` holds one row per event and the history
tables hold exactly the events that were produced.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from deploy.settings import Settings
from projections.checksum import checksum
from projections.core import PROJECTIONS
from projections.rebuild import rebuild
from projections.synthetic import generate
from schemas.topics import Topic
from tests.projections.helpers import produce
from tests.streams.helpers import child_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
N_EVENTS = 20_000
KILLS = 4


class Spawner:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "deploy.cli_entry", "run", "projections"],
            cwd=ROOT,
            env=child_env(self.settings, self.settings.data_dir),
            stdout=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def spawner(env: Settings) -> Iterator[Spawner]:
    s = Spawner(env)
    yield s
    s.cleanup()


def _wait_mid_batch(conn: psycopg.Connection[tuple[object, ...]], deadline: float) -> bool:
    """Wait until some projector has a batch transaction open."""
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name LIKE 'tradetape-projector-%%' AND xact_start IS NOT NULL "
            "AND state IN ('active', 'idle in transaction') AND pid <> pg_backend_pid()"
        ).fetchone()
        if row and int(str(row[0])) > 0:
            return True
        time.sleep(0.002)
    return False


def _consumed(conn: psycopg.Connection[tuple[object, ...]]) -> dict[str, int]:
    return {
        str(n): int(str(c))
        for n, c in conn.execute(
            "SELECT projection, sum(next_offset) FROM projection_offsets GROUP BY 1"
        ).fetchall()
    }


def test_kill_9_mid_batch_then_equal_to_rebuild(env: Settings, spawner: Spawner) -> None:
    events = generate(20251123, N_EVENTS)
    per_topic = Counter(env.topic(Topic(e.topic)) for e in events)
    expected = {
        name: n
        for name, p in PROJECTIONS.items()
        if (n := sum(per_topic[env.topic(t)] for t in p.topics))
    }
    # Events each projection folds (it skips, by header, the types it ignores).
    folded = {
        name: sum(1 for e in events if p.accepts(e.event_type, e.schema_version))
        for name, p in PROJECTIONS.items()
        if name in expected
    }

    def feed() -> None:
        for i in range(0, len(events), 1000):
            produce(env, events[i : i + 1000])
            time.sleep(0.15)

    feeder = threading.Thread(target=feed)
    feeder.start()
    kills_mid_batch = 0
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        for _ in range(KILLS):
            proc = spawner.start()
            time.sleep(0.4)
            if _wait_mid_batch(conn, time.monotonic() + 15):
                kills_mid_batch += 1
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        feeder.join()
        proc = spawner.start()
        deadline = time.monotonic() + 60
        while _consumed(conn) != expected and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _consumed(conn) == expected
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert kills_mid_batch >= KILLS - 1

    with psycopg.connect(env.dsn) as conn:
        live = {name: checksum(conn, p) for name, p in PROJECTIONS.items()}
        seen = {
            name: conn.execute(
                f"SELECT count(*) FROM {PROJECTIONS[name].schema}.{PROJECTIONS[name].seen_table}"
            ).fetchone()
            for name in expected
        }
        quarantined = conn.execute("SELECT count(*) FROM projection_quarantine").fetchone()
    assert quarantined == (0,)
    # Exactly once: every event of each projection's topics folded, none twice.
    assert seen == {n: (c,) for n, c in folded.items()}
    n_orders = sum(1 for e in events if e.topic == Topic.ORDERS)
    assert live["orders"][1]["order_events"] == n_orders
    assert live["fills"][1]["fills"] == sum(1 for e in events if e.event_type == "Fill")
    for name, p in PROJECTIONS.items():
        rebuilt = rebuild(env, p)
        assert (rebuilt.checksum, rebuilt.counts) == live[name], name
