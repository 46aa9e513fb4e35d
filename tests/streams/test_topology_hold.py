"""Surveillance on a grown log: it holds rather than fold a key's moved events.

After partitions are added, an account's events before and after lie on different
partitions of `orders.lifecycle`. The sequencer releases equal event times in their
partition's log order and ties partitions by name, so an order's expiry (stamped with its
intent's time) on `orders.lifecycle:10` would go before its submit on `:4`. Before: the
app never looked and went on folding. Now a running app stops (exit 1) and a starting
one waits, both saying which topic is off its declared count."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewPartitions  # type: ignore[attr-defined]

from deploy.settings import Settings
from schemas.topics import Topic
from tests.streams.helpers import spawn, stop

pytestmark = pytest.mark.integration


def _wait_log(path: Path, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        seen = path.read_text(errors="replace") if path.exists() else ""
        if text in seen:
            return seen
        time.sleep(0.5)
    raise AssertionError(f"{text!r} not logged within {timeout} s:\n{seen[-3000:]}")


def test_surveillance_stops_and_holds_on_a_grown_source_topic(
    env: Settings, tmp_path: Path
) -> None:
    running = spawn(env, tmp_path / "a", "run", "streams", log_level="INFO")
    held = None
    try:
        _wait_log(tmp_path / "a" / "run-streams.log", "Ready", 120)
        client = AdminClient({"bootstrap.servers": env.bootstrap})
        grown = env.topic(Topic.ORDERS)
        client.create_partitions([NewPartitions(grown, 12)])[grown].result(30)
        why = f"surveillance holds: {grown} has 12 partitions, declared 6"
        _wait_log(tmp_path / "a" / "run-streams.log", why, 60)
        assert running.wait(60) == 1
        held = spawn(env, tmp_path / "b", "run", "streams", log_level="INFO")
        log = _wait_log(tmp_path / "b" / "run-streams.log", "not starting until they are", 60)
        assert why in log
        assert "Ready" not in log
    finally:
        stop(running)
        rc = stop(held) if held is not None else None
    assert rc == 0
