"""`checksum`, `rebuild` (every mode) and `topics` with the database or the broker down:
one `error:` line naming what could not be reached (host:port) and exit 1, never a
traceback (review helper-57, item 5: psycopg.OperationalError and KafkaException
tracebacks). And `query nosuch` is a usage error (exit 2) like `rebuild nosuch` and
`checksum nosuch` (item 13: it exited 1)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from deploy.settings import Settings
from tests.conftest import free_port
from tests.engine.workers import cli_env, run_cli

REBUILDS = [
    ("checksum", "orders"),
    ("rebuild", "orders"),
    ("rebuild", "--all"),
    ("rebuild", "--all", "--one-consumer"),
]


def _one_error_line(done: subprocess.CompletedProcess[str], wanted: str) -> None:
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 1, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and wanted in errors[0], done.stderr[-3000:]


@pytest.mark.parametrize("args", REBUILDS, ids=" ".join)
def test_no_database_is_one_error_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    port = free_port()  # nobody listens
    env = {
        "TRADETAPE_KAFKA_PORT": str(free_port()),
        "TRADETAPE_POSTGRES_PORT": str(port),
        "TRADETAPE_DATA_DIR": str(tmp_path / "data"),
    }
    done = run_cli(env, *args)
    _one_error_line(done, f"cannot reach the database at 127.0.0.1:{port}")


@pytest.mark.integration
@pytest.mark.parametrize("args", REBUILDS[1:], ids=" ".join)
def test_no_broker_is_one_error_line(env: Settings, args: tuple[str, ...]) -> None:
    """The database is there (the rebuild's schemas are made), the broker is not."""
    port = free_port()
    cli = {**cli_env(env), "TRADETAPE_KAFKA_PORT": str(port), "TRADETAPE_POSTGRES_DSN": env.dsn}
    done = run_cli(cli, *args, timeout=300)
    _one_error_line(done, f"127.0.0.1:{port}")


def test_topics_without_a_broker_is_one_error_line(tmp_path: Path) -> None:
    port = free_port()
    env = {"TRADETAPE_KAFKA_PORT": str(port), "TRADETAPE_DATA_DIR": str(tmp_path / "data")}
    done = run_cli(env, "topics")
    # at once (a TCP check first): the admin client's create_topics waited 30 s
    _one_error_line(
        done, f"cannot create topics: cannot reach the Kafka broker at 127.0.0.1:{port}"
    )


@pytest.mark.parametrize("command", ["query", "rebuild", "checksum"])
def test_an_unknown_name_is_a_usage_error(tmp_path: Path, command: str) -> None:
    env = {
        "TRADETAPE_POSTGRES_PORT": str(free_port()),
        "TRADETAPE_DATA_DIR": str(tmp_path / "data"),
    }
    done = run_cli(env, command, "nosuch")
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.startswith("error: unknown ") and "'nosuch'" in done.stderr, done.stderr


@pytest.mark.parametrize("flag", ["-p", "--param"])
def test_parameters_with_raw_sql_are_a_usage_error(tmp_path: Path, flag: str) -> None:
    """`-p` binds a named query's filters; raw SQL has none to bind, so `--sql ... -p k=v`
    is refused before any connection (it was silently ignored: the unfiltered result)."""
    env = {
        "TRADETAPE_POSTGRES_PORT": str(free_port()),  # nobody listens: refused before
        "TRADETAPE_DATA_DIR": str(tmp_path / "data"),
    }
    done = run_cli(env, "query", "--sql", "SELECT 1 AS n", flag, "account=ACC001")
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.startswith("error: --param filters a named query"), done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "wanted"),
    [
        (("-p", "acct=x"), "error: positions takes account, instrument; got acct\n"),
        (("--format", "xml"), "error: unknown format 'xml': table, csv, json or parquet\n"),
        (("--format", "parquet"), "error: --format parquet needs --out FILE\n"),
    ],
    ids=["unknown filter", "unknown format", "parquet to stdout"],
)
def test_a_bad_filter_or_format_is_a_usage_error(
    tmp_path: Path, args: tuple[str, ...], wanted: str
) -> None:
    """Refused before the query runs, exit 2 as `query --help` says (they exited 1, the
    format ones only after the query had run: with the database down, a connection error
    instead)."""
    env = {
        "TRADETAPE_POSTGRES_PORT": str(free_port()),  # nobody listens: refused before
        "TRADETAPE_DATA_DIR": str(tmp_path / "data"),
    }
    done = run_cli(env, "query", "positions", *args)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr == wanted


def test_query_without_a_database_is_one_error_line(tmp_path: Path) -> None:
    """Named like checksum's and rebuild's: it was `query failed: connection failed: ...`
    over two lines, naming no port."""
    port = free_port()
    env = {"TRADETAPE_POSTGRES_PORT": str(port), "TRADETAPE_DATA_DIR": str(tmp_path / "data")}
    done = run_cli(env, "query", "positions")
    _one_error_line(done, f"cannot reach the database at 127.0.0.1:{port}")
    assert len(done.stderr.splitlines()) == 1, done.stderr
