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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from xdist.scheduler import LoadScheduling

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


LONGEST: dict[str, float] = {
    # Seconds each took in one process on a quiet machine (`pytest --durations`, sessions
    # 22-23; the cargo builds with the Makefile's cached CARGO_TARGET_DIR), with the setup
    # of a fixture only it uses. `LongestFirst` hands them out in this order; a renamed
    # test is simply scheduled in collection order again.
    "tests/streams/test_end_to_end.py::test_scenarios_through_engine_faust_and_projection": 92,
    "tests/engine/test_snapshot_worker.py::"
    "test_restart_reads_only_the_tail_and_folds_the_full_replays_state": 31,
    "tests/deploy/test_demo.py::test_the_demo_runs_every_stage_and_its_results_hold": 28,
    "tests/engine/test_takeover.py::test_without_snapshots_the_survivor_rebuilds_in_full": 22,
    "tests/engine/test_takeover.py::test_survivor_takes_over_and_exactly_once_holds": 22,
    "tests/engine/test_crash.py::test_kill_nine_twice_then_exactly_once": 20,
    "tests/projections/test_crash.py::test_kill_9_mid_batch_then_equal_to_rebuild": 19,
    "tests/deploy/test_cli_stack.py::test_up_status_down_lifecycle": 15,
    "tests/engine/test_e2e.py::test_a_print_while_no_worker_ran_fills_the_resting_order_at_restart": 14,
    "tests/engine/test_pipelined_commit.py::"
    "test_a_failed_transaction_in_flight_loses_and_duplicates_nothing": 13,
    "tests/engine/test_worker_fail_closed.py::"
    "test_broker_errors_in_recovery_hold_the_worker_instead_of_crashing": 13,
    "tests/engine/test_control_drain.py::"
    "test_a_kill_switch_behind_a_market_data_backlog_stops_the_next_intent": 13,
    "tests/engine/test_cli_revoke.py::"
    "test_revoke_cancels_the_resting_order_and_rejects_then_rotate_restores": 12,
    "tests/projections/test_parallel_rebuild.py::"
    "test_parallel_rebuild_equals_one_consumer_and_is_all_or_nothing": 11,
    # The two cargo builds last, so that rustc (threads on both cores) does not compete
    # with the end-to-end test's paced 10x replay, which sets its recall on time.
    "tests/signer/test_nonce_race.py::test_rust_concurrent_signs_take_each_handle_once": 36,
    "tests/signer/test_vectors.py::test_rfc9591_vectors": 18,
}


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`make test`'s two workers (`--dist load`, xdist's default) start with the longest
    tests: see `LongestFirst`. Another `--dist` keeps xdist's own scheduler."""
    if config.getoption("dist") != "load":
        return None
    return LongestFirst(config, log)


class LongestFirst(LoadScheduling):  # type: ignore[misc]
    """xdist's `load` scheduling, but the tests named in `LONGEST` are handed out first,
    in its order, each to the worker with the fewest of their seconds so far; the rest
    follows in collection order as before (consecutive chunks, then more to whichever
    worker runs low).

    In collection order the longest tests come last (tests/signer's two cargo builds and
    tests/streams' 90 s end-to-end test were among the last 190 of ~1,560), and when the
    workers finished depended on what came after them (docs/benchmarks.md, The test
    suite). Nothing about what a test does changes, only which worker runs it, and when.
    """

    def schedule(self) -> None:
        if self.collection is not None or not self._check_nodes_have_same_collection():  # type: ignore[has-type]
            return super().schedule()  # type: ignore[no-any-return]
        collection: list[str] = next(iter(self.node2collection.values()))
        where = {name: i for i, name in enumerate(collection)}
        first = [where[name] for name in LONGEST if name in where]
        if not first or len(collection) < 2 * len(self.nodes):
            return super().schedule()  # type: ignore[no-any-return]
        self.collection = collection
        taken = set(first)
        self.pending[:] = [i for i in range(len(collection)) if i not in taken]
        chunk_max: int = self.maxschedchunk or len(collection)  # type: ignore[has-type]
        self.maxschedchunk = chunk_max
        seconds = dict.fromkeys(self.nodes, 0.0)
        for i in first:
            node = min(self.nodes, key=seconds.__getitem__)
            seconds[node] += LONGEST[collection[i]]
            self.node2pending[node].append(i)
            node.send_runtest_some([i])
        # then the first chunk of the rest, as LoadScheduling.schedule sends it
        chunk = max(min(len(collection) // len(self.nodes) // 4, chunk_max), 2)
        for node in self.nodes:
            self._send_tests(node, chunk)
        if not self.pending:
            for node in self.nodes:
                node.shutdown()
        return None


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
    # PostgreSQL (initdb, start) on a thread while the broker starts: `up` then finds
    # both running and creates the topics and runs the migrations, as it does on a cold
    # start. Sequentially the database's start-up waited for the broker's.
    with ThreadPoolExecutor(1) as pool:
        postgres = pool.submit(local.postgres.start)
        local.kafka.start(echo=lambda _m: None)
        postgres.result()
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
    read-only role's grants are run again), so a test sees what a migration run leaves.
    The topics are created on a thread meanwhile: the broker's part and the database's
    (the copy is the slower, ~0.5 s) wait on different servers, and ~170 tests set this
    up. The test's topics (including any a component created under the prefix, such as
    faust's internal ones) are deleted afterwards, so the session broker stays small.
    """
    from projections.migrate import apply_migrations

    tag = uuid.uuid4().hex[:10]
    db = f"t_{tag}"
    settings = stack.settings.with_overrides(topic_prefix=f"t{tag}.", postgres_db=db)
    with ThreadPoolExecutor(1) as pool:
        topics = pool.submit(create_topics, settings)
        with psycopg.connect(stack.postgres.admin_dsn("postgres"), autocommit=True) as conn:
            conn.execute(
                f'CREATE DATABASE "{db}" TEMPLATE "{migrated_template}"'
                f' OWNER "{stack.settings.postgres_user}"'
            )
            # The database's own privileges are not copied (see `migrated_template`).
            # Both have the same owner, so the template's ACL is this database's as
            # migrated.
            conn.execute(
                "UPDATE pg_database SET datacl ="
                " (SELECT datacl FROM pg_database WHERE datname = %s) WHERE datname = %s",
                (migrated_template, db),
            )
        apply_migrations(settings.dsn, readonly_role=settings.readonly_role)
        topics.result()
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
