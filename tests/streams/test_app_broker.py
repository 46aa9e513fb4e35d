"""`tradetape run streams` against the real broker: alerts, dead letters, clean shutdown."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.settings import Settings
from schemas.events import DeadLetter, SurveillanceAlert
from schemas.topics import Topic
from streams.detectors import all_detectors
from streams.surveillance_state import Surveillance
from tests.streams.helpers import consume, produce, produce_raw, spawn, spoof_tape, stop

pytestmark = pytest.mark.integration


def test_run_streams_alerts_on_the_real_broker(env: Settings, tmp_path: Path) -> None:
    tape = spoof_tape()
    expected = [
        a.payload.alert_id for a in Surveillance(all_detectors()).process_batch(tape.events)
    ]
    proc = spawn(env, tmp_path / "streams", "run", "streams", log_level="INFO")
    try:
        produce(env, tape.events)
        produce_raw(env, Topic.ORDERS, b"\x00garbage")
        alerts = consume(env, Topic.SURVEILLANCE_ALERTS, want=1, timeout=90)
        dead = consume(env, Topic.DEADLETTER, want=1, timeout=30)
    finally:
        rc = stop(proc)
    log = (tmp_path / "streams" / "run-streams.log").read_text(errors="replace")[-3000:]
    assert [a.payload.alert_id for a in alerts] == expected, log
    assert isinstance(alerts[0].payload, SurveillanceAlert)
    assert alerts[0].payload.pattern == "SPOOFING"
    assert alerts[0].key == "A1"
    assert len(dead) == 1 and isinstance(dead[0].payload, DeadLetter)
    assert dead[0].payload.source_topic == env.topic(Topic.ORDERS)
    assert rc == 0, log
