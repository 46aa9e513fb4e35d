"""`Settings.child_env`, the one way a test, a benchmark or a demo puts a child process on
its own stack (seven copies of it before): the child's settings name the same stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.settings import Settings


def test_a_child_reads_the_same_stack_from_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (
        "TRADETAPE_KAFKA_PORT",
        "TRADETAPE_KAFKA_CONTROLLER_PORT",
        "TRADETAPE_TOPIC_PREFIX",
        "TRADETAPE_POSTGRES_PORT",
        "TRADETAPE_POSTGRES_DB",
        "TRADETAPE_DATA_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
    parent = Settings(
        kafka_port=41001,
        kafka_controller_port=41002,
        topic_prefix="t-child.",
        postgres_port=41003,
        postgres_db="child_db",
        data_dir=tmp_path / "data",
    )
    env = parent.child_env(TRADETAPE_LOG_LEVEL="WARNING")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    child = Settings()
    fields = ("kafka_port", "kafka_controller_port", "topic_prefix", "postgres_port", "postgres_db")
    assert {f: getattr(child, f) for f in fields} == {f: getattr(parent, f) for f in fields}
    assert child.resolved_data_dir == parent.resolved_data_dir
    assert env["TRADETAPE_LOG_LEVEL"] == "WARNING"


def test_extra_variables_win(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    env = settings.child_env(TRADETAPE_DATA_DIR=str(tmp_path / "other"))
    assert env["TRADETAPE_DATA_DIR"] == str(tmp_path / "other")
