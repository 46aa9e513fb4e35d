"""Session fixtures: one real Kafka broker and one real PostgreSQL per test run.

`stack` starts them once (free ports, a throwaway data directory). `env` gives each
test its own topic prefix and its own database, so tests never see each other's data.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from deploy.kafka import create_topics
from deploy.local import LocalStack
from deploy.settings import Settings

REFERENCE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def stack_dir(prefix: str) -> Path:
    """A directory outside pytest's tmp tree for server data.

    pytest resets its own base directory to mode 0700 whenever a session starts, which
    would lock the unprivileged PostgreSQL user out of a data directory below it.
    """
    base = Path(tempfile.gettempdir()) / "tradetape-tests"
    base.mkdir(mode=0o755, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    path.chmod(0o755)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE_DIR.is_dir():
        pytest.fail(f"reference data missing at {REFERENCE_DIR}")
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    """The real broker and database, started once for the whole session."""
    data_dir = stack_dir("session-")
    settings = Settings(
        data_dir=data_dir,
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        postgres_port=free_port(),
        postgres_fsync=False,
        kafka_heap="1g",
    )
    local = LocalStack(settings, echo=lambda _m: None)
    local.up()
    yield local
    _discard(local)
    shutil.rmtree(data_dir, ignore_errors=True)


def _discard(local: LocalStack) -> None:
    """Stop the session's servers without a clean shutdown: their data is deleted next.

    `LocalStack.down` (tested by tests/deploy/test_cli_stack.py) waits for a controlled
    broker shutdown, which after a suite's hundreds of created and deleted topics ran
    into its 30 s limit and took 40-88 s of the run's teardown. SIGKILL of our own broker
    (found by its pid file and command-line marker) takes a moment; PostgreSQL's fast
    stop was already quick.
    """
    from deploy.local.process import owned_process

    local.postgres.stop()
    node = local.kafka
    broker = owned_process(node.pid_file, node.marker)
    if broker is not None:
        broker.kill()
        broker.wait(10)  # seconds, not money


@pytest.fixture(scope="session")
def migrated_template(stack: LocalStack) -> str:
    """A database with every migration applied, which `env` copies for each test.

    Copying it (CREATE DATABASE ... TEMPLATE) costs what creating an empty database
    costs; running the migrations for each of the suite's ~110 `env` tests cost about as
    much again. Nothing connects to it after this fixture, as a template copy requires.
    """
    from projections.migrate import apply_migrations

    db = "t_migrated_template"
    with psycopg.connect(stack.postgres.admin_dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}" OWNER "{stack.settings.postgres_user}"')
    settings = stack.settings.with_overrides(postgres_db=db)
    apply_migrations(settings.dsn, readonly_role=settings.readonly_role)
    with psycopg.connect(stack.postgres.admin_dsn("postgres"), autocommit=True) as conn:
        # A copy takes the template's schemas, tables and grants, but not what is kept
        # per database in the shared catalogs. `env` copies the database's own ACL (0109
        # revokes TEMPORARY from PUBLIC); anything else there would be lost: fail loudly.
        kept = conn.execute(
            "SELECT (SELECT count(*) FROM pg_db_role_setting WHERE setdatabase = d.oid)"
            " + (SELECT count(*) FROM pg_shdescription WHERE objoid = d.oid)"
            " FROM pg_database d WHERE datname = %s",
            (db,),
        ).fetchone()
    assert kept == (0,), f"migrations left per-database settings a template copy loses: {kept}"
    return db


@pytest.fixture
def env(stack: LocalStack, migrated_template: str) -> Iterator[Settings]:
    """Settings for one test: a fresh topic namespace and a fresh, migrated database.

    The database is a copy of `migrated_template` (with its database-level ACL);
    `apply_migrations` still runs on it (it finds every migration applied: only the
    read-only role's grants are run again), so a test sees what a migration run leaves. The test's topics (including any a
    component created under the prefix, such as faust's internal ones) are deleted
    afterwards, so the session broker stays small.
    """
    tag = uuid.uuid4().hex[:10]
    db = f"t_{tag}"
    with psycopg.connect(stack.postgres.admin_dsn("postgres"), autocommit=True) as conn:
        conn.execute(
            f'CREATE DATABASE "{db}" TEMPLATE "{migrated_template}"'
            f' OWNER "{stack.settings.postgres_user}"'
        )
        # The database's own privileges are not copied (see `migrated_template`). Both
        # have the same owner, so the template's ACL is this database's as migrated.
        conn.execute(
            "UPDATE pg_database SET datacl ="
            " (SELECT datacl FROM pg_database WHERE datname = %s) WHERE datname = %s",
            (migrated_template, db),
        )
    settings = stack.settings.with_overrides(topic_prefix=f"t{tag}.", postgres_db=db)
    create_topics(settings)
    from projections.migrate import apply_migrations

    apply_migrations(settings.dsn, readonly_role=settings.readonly_role)
    yield settings
    _delete_topics_with_prefix(settings)


def _delete_topics_with_prefix(settings: Settings) -> None:
    from deploy.kafka import admin_client

    admin = admin_client(settings)
    try:
        names = [
            t for t in admin.list_topics(timeout=10).topics if t.startswith(settings.topic_prefix)
        ]
        if names:
            for fut in admin.delete_topics(names, operation_timeout=30).values():
                fut.exception(30)  # best effort: a leftover topic only costs broker memory
    except Exception:
        pass
