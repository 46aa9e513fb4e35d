"""`tradetape up` with TRADETAPE_KAFKA_BOOTSTRAP / TRADETAPE_POSTGRES_DSN: the external
broker and database are checked and used, and no local one is started in their place."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from deploy.kafka import admin_client
from deploy.local import LocalStack
from deploy.local.process import port_open
from deploy.settings import Settings
from tests.conftest import free_port, stack_dir

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.cli_entry", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TRADETAPE_")}
    env.update(
        TRADETAPE_DATA_DIR=str(stack_dir("ext-")),
        TRADETAPE_KAFKA_PORT=str(free_port()),
        TRADETAPE_KAFKA_CONTROLLER_PORT=str(free_port()),
        TRADETAPE_POSTGRES_PORT=str(free_port()),
        TRADETAPE_POSTGRES_FSYNC="false",
    )
    env.update(extra)
    return env


def test_up_uses_the_external_broker_and_database(stack: LocalStack) -> None:
    """Before: `up` started a local broker and PostgreSQL anyway (on the local ports),
    and created the topics and migrated on the external ones."""
    tag = uuid.uuid4().hex[:10]
    db, prefix = f"t_{tag}", f"ext{tag}."
    with psycopg.connect(stack.postgres.admin_dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}" OWNER "{stack.settings.postgres_user}"')
    external = stack.settings.with_overrides(postgres_db=db, topic_prefix=prefix)
    env = _env(
        TRADETAPE_KAFKA_BOOTSTRAP=f"127.0.0.1:{stack.settings.kafka_port}",
        TRADETAPE_POSTGRES_DSN=external.dsn,
        TRADETAPE_TOPIC_PREFIX=prefix,
    )
    data = Path(env["TRADETAPE_DATA_DIR"])
    try:
        res = _cli(["up"], env)
        assert res.returncode == 0, res.stderr
        assert "no local broker started" in res.stderr and "no local server started" in res.stderr
        # Nothing of ours runs on the local ports, nothing was initialised.
        assert not port_open("127.0.0.1", int(env["TRADETAPE_KAFKA_PORT"]))
        assert not port_open("127.0.0.1", int(env["TRADETAPE_POSTGRES_PORT"]))
        assert not (data / "kafka").exists() and not (data / "postgres").exists()
        # The topics and the migrations went to the external ones.
        topics = admin_client(external).list_topics(timeout=10).topics
        assert f"{prefix}orders.intents" in topics
        with psycopg.connect(external.dsn) as conn:
            assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() != (0,)
        # And the read-only role reaches the same database (item 2).
        with psycopg.connect(Settings(postgres_dsn=external.dsn).readonly_dsn) as conn:
            assert conn.info.dbname == db
    finally:
        _cli(["down"], env)
        admin = admin_client(external)
        names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        if names:
            for fut in admin.delete_topics(names, operation_timeout=30).values():
                fut.exception(30)


def test_up_with_an_unreachable_external_broker_is_an_error(tmp_path: Path) -> None:
    """Before: a local broker was started, and its readiness wait probed the external
    bootstrap instead, so `up` waited 120 s for a broker it had not started."""
    dead = free_port()
    env = _env(TRADETAPE_KAFKA_BOOTSTRAP=f"127.0.0.1:{dead}")
    try:
        res = _cli(["up"], env)
    finally:
        _cli(["down"], env)
    assert res.returncode == 1, res.stderr
    assert f"external cluster 127.0.0.1:{dead} (TRADETAPE_KAFKA_BOOTSTRAP) does not answer" in (
        res.stderr
    )
    assert not (Path(env["TRADETAPE_DATA_DIR"]) / "kafka").exists()


def test_up_refuses_a_port_another_stack_holds() -> None:
    """A stack started from another data directory (or any program) on the broker's
    port: `up` says so instead of starting a second broker that dies on the port."""
    import socket

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(1)
    port = squatter.getsockname()[1]
    env = _env(TRADETAPE_KAFKA_PORT=str(port))
    try:
        res = _cli(["up"], env)
    finally:
        _cli(["down"], env)
        squatter.close()
    assert res.returncode == 1, res.stderr
    assert f"kafka: 127.0.0.1:{port} is in use, but not by a server of" in res.stderr
    assert not (Path(env["TRADETAPE_DATA_DIR"]) / "kafka").exists()
