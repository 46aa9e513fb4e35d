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


@pytest.mark.integration
def test_bad_lines_and_key_files_are_one_clear_line_each_never_a_traceback(
    env: Settings, tmp_path: Path
) -> None:
    """The newcomer's audit (helper-132): a damaged key file ended `publish` in a
    traceback (`non-hexadecimal number found in fromhex() arg`); an unknown event type
    read `malformed event at None[None]@None: ...`; a missing key file said only `no
    private key for producer P`, not where it was looked for nor how to make one."""
    intent = {
        "strategy_id": "s",
        "account": "A1",
        "client_order_id": "c1",
        "instrument": "BTC/USDC",
        "side": "BUY",
        "order_type": "MARKET",
        "quantity": "0.01",
    }
    keys = env.resolved_data_dir / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    (keys / "bob.ed25519").write_text("not a key\n")
    path = tmp_path / "lines.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"event_type": "Nope", "payload": {}}),
                "[1, 2]",
                json.dumps({"payload": {}}),
                json.dumps(
                    {"event_type": "OrderIntent", "payload": {**intent, "producer_id": "bob"}}
                ),
                json.dumps(
                    {"event_type": "OrderIntent", "payload": {**intent, "producer_id": "carol"}}
                ),
            ]
        )
        + "\n"
    )
    done = run_cli(cli_env(env), "publish", str(path), "--wait", "1")
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr and "None[None]" not in done.stderr, done.stderr
    errors = [x for x in done.stderr.splitlines() if x.startswith("error: line ")]
    assert errors[0] == (
        "error: line 1: skipped: unknown event type 'Nope' v1 (docs/events.md lists the event types)"
    ), errors
    assert errors[1] == "error: line 2: skipped: not a JSON object but a JSON list", errors
    assert errors[2].startswith('error: line 3: skipped: no "event_type"'), errors
    assert errors[3].startswith(f"error: line 4: {keys / 'bob.ed25519'} holds no Ed25519"), errors
    assert f"no key file {keys / 'carol.ed25519'}" in errors[4], errors
    assert "`tradetape producer add carol --accounts ...` creates it" in errors[4], errors
    assert "error: 5 lines were not published: lines 1, 2, 3, 4, 5" in done.stderr
