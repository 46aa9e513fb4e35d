"""`tradetape run engine snapshotter`: components as one supervised process group."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from deploy.settings import Settings
from tests.engine.workers import spawn

pytestmark = pytest.mark.integration


def test_a_group_starts_each_component_and_stops_cleanly(env: Settings, tmp_path: Path) -> None:
    log = tmp_path / "group.log"
    proc = spawn(env, "0", log, components=("engine", "snapshotter"), session=True)
    try:
        wanted = ("engine worker 0 started", "engine snapshotter started")
        deadline = time.monotonic() + 60
        while not all(w in log.read_text(errors="replace") for w in wanted):
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)  # the supervisor stops every child
        assert proc.wait(60) == 0, log.read_text(errors="replace")[-3000:]
        text = log.read_text(errors="replace")
        assert "engine worker 0 stopped" in text and "engine snapshotter stopped" in text, text[
            -3000:
        ]
    finally:
        if proc.poll() is None:  # a failed test: the supervisor and its children
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
