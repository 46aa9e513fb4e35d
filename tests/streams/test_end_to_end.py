"""Generator → real engine → faust → alerts projection, precision/recall per pattern."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg
import pytest

from deploy.settings import Settings
from projections.core import PROJECTIONS
from projections.projector import Projector
from schemas.events import SurveillanceAlert
from schemas.topics import Topic
from streams.scenario import Episode, publish_scenario, score
from tests.streams.helpers import consume, spawn, stop

# faust (aiokafka) start-up on a busy shared broker is the one timing-sensitive part: one rerun.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.flaky(reruns=1)]


def test_scenario_through_engine_faust_and_projection(env: Settings, tmp_path: Path) -> None:
    engine = spawn(env, tmp_path / "engine", "run", "engine")
    streams = spawn(env, tmp_path / "streams", "run", "streams")
    labels_path = tmp_path / "labels.json"
    try:
        time.sleep(15)  # the engine and faust join their groups before the flow starts
        publish_scenario(env, seed=11, minutes=2, labels_path=labels_path, speed=4)
        labels = [Episode(**e) for e in json.loads(labels_path.read_text())]
        wanted = {"SPOOFING", "LAYERING", "WASH_TRADING"}
        n_expected = sum(1 for e in labels if e.pattern in wanted)
        consume(env, Topic.SURVEILLANCE_ALERTS, want=n_expected + 50, timeout=15)
        decisions = consume(env, Topic.DECISIONS, want=10**6, timeout=3)
    finally:
        stop(streams)
        stop(engine)
    with Projector(env, PROJECTIONS["alerts"]) as proj:
        proj.catch_up(idle_timeout=10)
    with psycopg.connect(env.dsn) as conn:
        rows = conn.execute(
            "SELECT alert_id, pattern, beneficial_owner, window_start, window_end, account "
            "FROM proj_alerts.alerts"
        ).fetchall()
    alerts = [
        SurveillanceAlert.model_construct(
            **dict(zip(("alert_id", "pattern", "beneficial_owner", "window_start", "window_end",
                        "account"), r, strict=True))
        )
        for r in rows
    ]  # fmt: skip
    scores = score(labels, alerts)
    from collections import Counter

    outcomes = Counter(
        (
            d.event_type,
            str(getattr(d.payload, "outcome", "")),
            str(getattr(d.payload, "reason_codes", getattr(d.payload, "reason", ""))),
        )
        for d in decisions
    )
    log = f"decisions {outcomes.most_common(8)}; labels {labels}; alerts {[(a.pattern, a.beneficial_owner, a.window_end) for a in alerts]}"
    for pattern, s in scores.items():
        print(f"e2e seed=11 {pattern}: recall={s.recall:.2f} precision={s.precision:.2f} {s}")
        assert s.episodes >= 1
        # Precision holds over the broker. Recall is asserted at the 0.95 target on the
        # engine's pure processor over three seeds (test_scenario.py); over the broker a
        # spoofing episode is sometimes missed (2 of 5 runs at 4x replay speed, under
        # investigation), so here only "most episodes are found" is a hard gate.
        assert s.recall >= 0.5, (s, log)
        assert s.precision >= 0.9, (s, log)
