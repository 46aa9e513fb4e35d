"""`simulate surveillance` and `stor`: bad input is an `error:` line and exit 2 before
anything is sent or read, and an unreachable broker is exit 1, never a success (review
helper-57, items 1 and 12: with the broker down `simulate surveillance` printed
`published 1229 intents` and exited 0; `--speed 0` was a ZeroDivisionError traceback,
`--minutes 0` published 68 events and exited 0, `--labels /nonexistent/x.json` a
FileNotFoundError traceback; `stor --out` to an unwritable path failed only after every
topic was read). Nothing listens on the port these commands are pointed at."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.engine.workers import run_cli


def _cli(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {
        "TRADETAPE_KAFKA_PORT": str(free_port()),  # nobody listens
        "TRADETAPE_DATA_DIR": str(tmp_path / "data"),
    }
    return run_cli(env, *args, timeout=timeout)


def _no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr, done.stderr[-3000:]


@pytest.mark.parametrize(
    "args, message",
    [
        (("--speed", "0"), "--speed must be a positive number"),
        (("--speed", "-2"), "--speed must be a positive number"),
        (("--speed", "nan"), "--speed must be a positive number"),
        (("--minutes", "0"), "--minutes must be a positive number"),
        (("--labels", "/nonexistent/x.json"), "cannot write --labels: directory /nonexistent"),
    ],
)
def test_simulate_surveillance_checks_its_input_before_sending(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    labels = ["--labels", str(tmp_path / "labels.json")] if "--labels" not in args else []
    done = _cli(tmp_path, "simulate", "surveillance", *labels, *args)
    _no_traceback(done)
    assert done.returncode == 2, done.stderr[-3000:]
    assert f"error: {message}" in done.stderr, done.stderr[-3000:]
    assert "published" not in done.stderr
    assert not (tmp_path / "labels.json").exists()  # nothing was done


def test_simulate_surveillance_with_the_broker_down_is_a_failure(tmp_path: Path) -> None:
    labels = tmp_path / "labels.json"
    done = _cli(
        tmp_path, "simulate", "surveillance", "--minutes", "1", "--speed", "600",
        "--labels", str(labels),
    )  # fmt: skip
    _no_traceback(done)
    assert done.returncode == 1, done.stderr[-3000:]
    # Said at once (a TCP check first), not after 30 s of flushing into nothing; what a
    # broker that goes away mid-run leaves unacknowledged is counted by the loader's
    # `Deliveries` (tests/engine/test_marketdata_input.py).
    assert "error: nothing published: cannot reach the Kafka broker at" in done.stderr
    assert "published 1" not in done.stderr and not labels.exists()


@pytest.mark.parametrize(
    "out, message",
    [
        ("/nonexistent/stor.json", "cannot write --out: directory /nonexistent does not exist"),
        (".", "cannot write --out: . is a directory"),
    ],
)
def test_stor_checks_out_before_reading_any_topic(tmp_path: Path, out: str, message: str) -> None:
    done = _cli(tmp_path, "stor", "00000000-0000-7000-8000-000000000001", "--out", out,
                "--timeout", "60")  # fmt: skip
    _no_traceback(done)
    # Before: the topics were read first (exit 3 here, with no broker, after --timeout).
    assert done.returncode == 2, done.stderr[-3000:]
    assert f"error: {message}" in done.stderr, done.stderr[-3000:]


@pytest.mark.parametrize(
    "args, message",
    [
        (("not-a-uuid",), "error: not a UUID: 'not-a-uuid'"),
        (("00000000-0000-7000-8000-000000000001", "--format", "pdf"), "error: --format must be"),
    ],
)
def test_stor_bad_arguments_are_error_lines(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    done = _cli(tmp_path, "stor", *args)
    _no_traceback(done)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-3000:]


def test_stor_with_the_broker_down_says_error(tmp_path: Path) -> None:
    done = _cli(tmp_path, "stor", "00000000-0000-7000-8000-000000000001", "--timeout", "2")
    _no_traceback(done)
    # exit 1 at once, as every command says no broker (it was 3, a read cut short, after
    # ~30 s of librdkafka's failures: tests/deploy/test_cli_no_broker.py)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "error: no STOR drafted: cannot reach the Kafka broker" in done.stderr
