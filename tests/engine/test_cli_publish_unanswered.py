"""`tradetape publish` exits 1 when an event got no answer in time, naming its lines.

Before, with no engine running (or one too slow for `--wait`), every printed answer was
`null` and the command still exited 0, so a script could not tell "published and decided"
from "published into the void" (issue #3, h62 item 1).
"""

from __future__ import annotations

import json
import time
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
    assert [p["line_event"] for p in printed] == ["KycVerified"]
    assert [p["answer"] for p in printed] == [None]
    assert "error: no answer from the engine within 1 s to 1 of 1 events" in done.stderr
    assert "on lines 1 " in done.stderr, done.stderr[-2000:]
    # the second must follow the first's answer: not sent (fail closed, review helper-60)
    assert "error: lines 3 not sent: the admin command on line 1 got no answer" in done.stderr
    assert "not delivered" not in done.stderr  # they were: only the answers are missing


@pytest.mark.integration
def test_without_an_engine_publish_waits_about_twice_wait_not_wait_per_line(
    env: Settings, tmp_path: Path
) -> None:
    """Every event waited --wait of its own, and the ones before each admin command again:
    six admin lines at --wait 3 took 3 x (1 + 2 + ... + 6) + 6 x 3 = 81 s with no engine
    (a 1,000-line file, hours). The lines after an unanswered admin command are not sent
    (they must follow it), and the answers still missing share one last --wait."""
    lines = [
        json.dumps(
            {"event_type": "KycVerified", "payload": {"account": f"A{i}", "verified_by": "admin"}}
        )
        for i in range(6)
    ]
    path = tmp_path / "commands.jsonl"
    path.write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    done = run_cli(cli_env(env), "publish", str(path), "--wait", "3")
    took = time.monotonic() - started
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert "error: lines 2, 3, 4, 5, 6 not sent" in done.stderr, done.stderr[-2000:]
    assert "to 1 of 1 events, on lines 1 " in done.stderr, done.stderr[-2000:]
    assert took < 45, took  # the old code cannot finish in under 81 s


@pytest.mark.integration
def test_a_line_that_cannot_be_published_exits_1(env: Settings, tmp_path: Path) -> None:
    """Lines that could not be read were reported and skipped, and the command exited 0
    (a file of nothing but bad lines printed nothing and succeeded)."""
    path = tmp_path / "bad.jsonl"
    path.write_text('{"event_type": "NoSuchEvent", "payload": {}}\nnot json\n')
    done = run_cli(cli_env(env), "publish", str(path), "--wait", "1")
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert "error: line 1: skipped" in done.stderr and "error: line 2: skipped" in done.stderr
    assert "error: 2 lines were not published: lines 1, 2" in done.stderr, done.stderr[-2000:]
    assert done.stdout == ""
