"""`stor`, `sign` and `acls user` with no broker answering: one `error:` line naming the
broker, exit 1, as `admin`, `publish`, `marketdata` and `topics` say it (the newcomer's
audit, session 24). Before: `stor` printed librdkafka's connection failures for ~30 s
and `error: no STOR drafted: surveillance.alerts: KafkaError{code=_TRANSPORT,...}`
(exit 3, "retry, or raise --timeout"); `sign` `KafkaException: KafkaError{...}` after
~12 s; `acls user` raw `%3|...|FAIL|` log lines and `Failed while waiting for
controller: Local: Timed out` after ~30 s."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from engine.auth import key_path, new_keypair, write_private_key
from tests.conftest import free_port
from tests.engine.workers import REPO, run_cli


def _env(tmp_path: Path, port: int) -> dict[str, str]:
    return {
        "TRADETAPE_KAFKA_PORT": str(port),  # nobody listens
        "TRADETAPE_POSTGRES_PORT": str(free_port()),
        "TRADETAPE_DATA_DIR": str(tmp_path / "data"),
        "TRADETAPE_SIGNER_PASSPHRASE": "correct horse battery staple",
    }


def _one_error_line(done: subprocess.CompletedProcess[str], port: int) -> str:
    assert done.returncode == 1, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-3000:]
    assert f"cannot reach the Kafka broker at 127.0.0.1:{port}" in lines[0], lines
    return lines[0]


def test_stor(tmp_path: Path) -> None:
    port = free_port()
    done = run_cli(_env(tmp_path, port), "stor", "01a250af-4275-71d3-8596-a485c21fcede")
    assert _one_error_line(done, port).startswith("error: no STOR drafted: cannot reach")


def test_sign(tmp_path: Path) -> None:
    port = free_port()
    env = _env(tmp_path, port)
    made = run_cli(env, "signer", "keygen", "--threshold", "2", "--signers", "3")
    assert made.returncode == 0, made.stderr[-3000:]
    write_private_key(key_path(tmp_path / "data", "signing-coordinator"), new_keypair()[0])
    doc = tmp_path / "report.txt"
    doc.write_text("a report\n")
    done = run_cli(env, "sign", str(doc))
    assert _one_error_line(done, port).startswith("error: nothing signed: cannot reach")


def test_acls_user(tmp_path: Path) -> None:
    port = free_port()
    import os
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "deploy.cli_entry", "acls", "user", "engine"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **_env(tmp_path, port)},
        input="a password\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert _one_error_line(done, port).startswith("error: cannot set user engine: cannot reach")


@pytest.mark.parametrize("command", [("stor", "not-a-uuid"), ("acls", "user", "engine")])
def test_bad_arguments_still_come_first(tmp_path: Path, command: tuple[str, ...]) -> None:
    """A usage error is exit 2 whether or not a broker answers."""
    done = run_cli(_env(tmp_path, free_port()), *command)  # acls user: no password on stdin
    assert done.returncode == 2, done.stderr[-3000:]
