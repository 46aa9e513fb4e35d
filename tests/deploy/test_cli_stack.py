"""`tradetape up|status|down` on a fresh data directory, through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port, stack_dir

pytestmark = pytest.mark.integration


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.cli_entry", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )


def test_up_status_down_lifecycle(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.update(
        TRADETAPE_DATA_DIR=str(stack_dir("cli-")),
        TRADETAPE_KAFKA_PORT=str(free_port()),
        TRADETAPE_KAFKA_CONTROLLER_PORT=str(free_port()),
        TRADETAPE_POSTGRES_PORT=str(free_port()),
        TRADETAPE_POSTGRES_FSYNC="false",
    )
    try:
        down_idle = _cli(["down"], env)
        assert down_idle.returncode == 0 and "nothing was running" in down_idle.stdout

        st = _cli(["status", "--json"], env)
        assert st.returncode == 1
        assert json.loads(st.stdout)["kafka"]["ok"] is False

        first = _cli(["up"], env)
        assert first.returncode == 0, first.stderr
        assert "stack is up" in first.stdout
        # The reader's settings are pinned by `up`'s superuser step; no warning that they
        # could not be (the owner's migration run used to try first and log one).
        assert "cannot pin" not in first.stdout + first.stderr, first.stderr

        again = _cli(["up"], env)
        assert again.returncode == 0, again.stderr
        assert "already up" in again.stdout

        st = _cli(["status", "--json"], env)
        assert st.returncode == 0, st.stdout + st.stderr
        status = json.loads(st.stdout)
        assert status["kafka"]["ok"] and status["postgres"]["ok"]
        assert status["kafka"]["bootstrap"] == f"127.0.0.1:{env['TRADETAPE_KAFKA_PORT']}"
        assert "orders.intents" in status["kafka"]["topics"]
        assert status["postgres"]["dsn"].endswith(f":{env['TRADETAPE_POSTGRES_PORT']}/tradetape")
        kafka_pid, pg_pid = status["kafka"]["pid"], status["postgres"]["pid"]
        assert kafka_pid and pg_pid
    finally:
        stopped = _cli(["down"], env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    # a line before each stop, on stderr (the broker's took seconds of silence)
    assert f"postgres: stopping (pid {pg_pid}) ...\nkafka: stopping (pid {kafka_pid}) ...\n" in (
        stopped.stderr
    ), stopped.stderr
    for pid in (kafka_pid, pg_pid):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    st = _cli(["status", "--json"], env)
    assert st.returncode == 1


def test_failed_broker_start_shows_the_log(tmp_path: Path) -> None:
    import socket

    env = dict(os.environ)
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(1)  # someone else holds the controller port: the broker cannot bind
    env.update(
        TRADETAPE_DATA_DIR=str(stack_dir("cli-bad-")),
        TRADETAPE_KAFKA_PORT=str(free_port()),
        TRADETAPE_KAFKA_CONTROLLER_PORT=str(squatter.getsockname()[1]),
        TRADETAPE_POSTGRES_PORT=str(free_port()),
    )
    try:
        res = _cli(["up"], env)
    finally:
        _cli(["down"], env)
        squatter.close()
    assert res.returncode == 1
    assert "error:" in res.stderr and "last lines" in res.stderr
