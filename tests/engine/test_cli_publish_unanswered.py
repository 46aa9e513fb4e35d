"""`tradetape publish` exits 1 when an event got no answer in time, naming its lines.

Before, with no engine running (or one too slow for `--wait`), every printed answer was
`null` and the command still exited 0, so a script could not tell "published and decided"
from "published into the void" (issue #3, h62 item 1).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy.settings import Settings
from tests.engine.workers import cli_env, run_cli


@pytest.mark.integration
def test_publish_exits_1_and_names_the_lines_without_an_answer(
    env: Settings, tmp_path: Path
) -> None:
    # No engine runs: the commands are delivered to the broker but nobody answers them.
    path = tmp_path / "commands.jsonl"
    path.write_text(
        '{"event_type": "KycVerified", "payload": {"account": "A1", "verified_by": "admin"}}\n'
        "\n"
        '{"event_type": "KycVerified", "payload": {"account": "A2", "verified_by": "admin"}}\n'
    )
    done = run_cli(cli_env(env), "publish", str(path), "--wait", "1")
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    # the decisions (here: none) are still printed, one line per published event
    printed = [json.loads(x) for x in done.stdout.splitlines()]
    assert [p["line_event"] for p in printed] == ["KycVerified", "KycVerified"]
    assert [p["answer"] for p in printed] == [None, None]
    assert "error: no answer from the engine within 1 s to 2 of 2 events" in done.stderr
    assert "on lines 1, 3 " in done.stderr, done.stderr[-2000:]
    assert "not delivered" not in done.stderr  # they were: only the answers are missing
