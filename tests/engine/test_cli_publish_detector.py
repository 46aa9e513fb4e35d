"""`tradetape publish` gets the engine's answer to an accepted `DetectorConfigChanged`.

The engine writes the accepted command on `surveillance.config` (its topic), but the
publisher's watcher read only risk.decisions, accounts.events and risk.config
(`engine.client.ANSWER_TOPICS`): the accepted command was never seen, the line waited
--wait, was reported "no answer" (exit 1), and the lines after it were not sent (h125).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy.settings import Settings
from tests.engine.helpers import running_worker
from tests.engine.workers import cli_env, run_cli

pytestmark = pytest.mark.integration


def test_an_accepted_detector_config_is_answered_and_the_lines_after_it_are_sent(
    env: Settings, tmp_path: Path
) -> None:
    lines = [
        {
            "event_type": "DetectorConfigChanged",
            "payload": {
                "detector": "order_to_trade",
                "config_version": 2,
                "params": {"window_s": "60", "min_orders": "150"},
                "changed_by": "admin",
            },
        },
        {
            "event_type": "KillSwitchEngaged",
            "payload": {"scope": "*", "engaged_by": "admin", "reason": "after the config"},
        },
    ]
    path = tmp_path / "commands.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    with running_worker(env):
        done = run_cli(cli_env(env), "publish", str(path), "--wait", "20")
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    printed = [json.loads(x) for x in done.stdout.splitlines()]
    assert [p["line_event"] for p in printed] == ["DetectorConfigChanged", "KillSwitchEngaged"]
    assert [p["answer"] for p in printed] == ["DetectorConfigChanged", "KillSwitchEngaged"]
    assert [p["outcome"] for p in printed] == ["ACCEPTED", "ACCEPTED"]
    assert "error" not in done.stderr, done.stderr[-2000:]
