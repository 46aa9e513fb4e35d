"""An idle worker's periodic report: logged when something changed, not every 10 s (a
quiet `tradetape run` printed the same stats line six times a minute; review helper-78)."""

from __future__ import annotations

import logging
import time

import pytest

from deploy.settings import Settings
from schemas.topics import Topic
from tests.engine.helpers import intent, produce, quote, running_worker, wait_for, world

pytestmark = pytest.mark.integration


def _reports(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if ", busy {" in r.getMessage()]


def test_an_idle_worker_reports_only_what_changed(
    env: Settings, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADETAPE_ENGINE_REPORT_SECONDS", "0.1")
    caplog.set_level(logging.INFO, logger="tradetape.engine")
    with running_worker(env, wid="ir0"):
        key = world(env, ["ACC1"])
        produce(env, [quote(), intent(key, "ACC1", "one")])
        wait_for(env, Topic.DECISIONS, lambda ev: len(ev) >= 1)
        time.sleep(1.0)  # settled: what follows is idle
        before = len(_reports(caplog))
        time.sleep(2.0)  # ~20 report intervals with nothing new
        idle = len(_reports(caplog)) - before
        produce(env, [intent(key, "ACC1", "two")])
        wait_for(env, Topic.DECISIONS, lambda ev: len(ev) >= 2)
        deadline = time.monotonic() + 10
        while len(_reports(caplog)) <= before + idle:  # a change is reported
            assert time.monotonic() < deadline, _reports(caplog)
            time.sleep(0.1)
    assert before >= 1, "no periodic report at all"
    assert idle <= 1, f"{idle} identical reports in 2 s of idling"
