"""`tradetape topics` and `up` refuse topics off their declared partition count at once.

The declared count of a partitioned topic is TRADETAPE_DEFAULT_PARTITIONS when set. Set
after the topics exist (12 against topics created with 6), it declares a count they do not
have: every component then holds (the engine decides every intent STALE_STATE). Before,
`topics` listed `p=12` beside topics of 6 partitions and exited 0, and `up` said "stack is
up"; only the engine's log and `status` showed it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.settings import Settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _cli(settings: Settings, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update(
        TRADETAPE_DATA_DIR=str(tmp_path / "data"),
        TRADETAPE_KAFKA_BOOTSTRAP=settings.bootstrap,
        TRADETAPE_POSTGRES_DSN=settings.dsn,
        TRADETAPE_TOPIC_PREFIX=settings.topic_prefix,
        TRADETAPE_DEFAULT_PARTITIONS="12",
    )
    return subprocess.run(
        [sys.executable, "-m", "deploy.cli_entry", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.mark.parametrize("command", ["topics", "up"])
def test_a_default_partitions_set_after_the_topics_exist_is_refused(
    env: Settings, tmp_path: Path, command: str
) -> None:
    done = _cli(env, tmp_path, command)
    assert done.returncode == 1, done.stdout + done.stderr
    orders = env.topic_prefix + "orders.lifecycle"
    assert f"{orders} has 6 partitions, declared 12" in done.stderr, done.stderr
    assert "set it back to the count the topics were created with" in done.stderr


def test_topics_lists_the_admin_commands_topic_with_its_commands(
    env: Settings, tmp_path: Path
) -> None:
    """`tradetape topics` listed admin.commands with "-" for its event types, as if it
    carried nothing (helper-132's newcomer audit): it carries the admin commands."""
    done = _cli(env, tmp_path, "topics")
    admin = next(
        line for line in done.stdout.splitlines() if f"{env.topic_prefix}admin.commands " in line
    )
    assert "AccountOpened, KycVerified" in admin and admin.rstrip().endswith(
        "DetectorConfigChanged"
    ), admin
