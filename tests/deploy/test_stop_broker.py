"""`tradetape down` waits for the broker's clean shutdown, and says when it had to kill it.

Before: the broker got 30 s, then SIGKILL, silently (`down` printed `stopped postgres,
kafka`). With ~2,000 partitions its log manager was still closing logs at 30 s, and the
next start recovered every log (45 s). No broker started here."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psutil
import pytest

from deploy.local import kafka_node, process
from deploy.local.postgres_node import PostgresNode
from deploy.local.stack import LocalStack
from deploy.settings import Settings


def test_the_broker_gets_minutes_for_a_clean_shutdown() -> None:
    assert kafka_node.STOP_SECONDS >= 300


def test_stop_process_says_whether_it_killed() -> None:
    stubborn = subprocess.Popen(
        ["sh", "-c", "trap '' TERM; echo ready; exec sleep 30"], stdout=subprocess.PIPE
    )
    assert stubborn.stdout is not None
    assert stubborn.stdout.readline() == b"ready\n"  # SIGTERM ignored, by the sleep too
    try:
        assert process.stop_process(psutil.Process(stubborn.pid), timeout=0.5) is True
    finally:
        stubborn.kill()
        stubborn.wait()
    polite = subprocess.Popen(["sleep", "30"])
    assert process.stop_process(psutil.Process(polite.pid), timeout=10) is False
    polite.wait()


def test_down_reports_a_killed_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    said: list[str] = []

    def killed_stop(node: kafka_node.KafkaNode) -> bool:
        node.killed = True
        return True

    monkeypatch.setattr(PostgresNode, "stop", lambda _node: False)
    monkeypatch.setattr(kafka_node.KafkaNode, "stop", killed_stop)
    monkeypatch.setattr(kafka_node.KafkaNode, "pid", lambda _node: 4242)
    stack = LocalStack(Settings(data_dir=tmp_path), echo=said.append)
    assert stack.down() == {"postgres": False, "kafka": True}
    assert any("killed" in line and "recovers every log" in line for line in said), said
