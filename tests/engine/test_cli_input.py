"""Bad command-line input is an `error:` line and a non-zero exit, never a traceback, and
nothing touches the broker before the input is checked (review helper-50, rev54 defect 7:
`publish /nonexistent.jsonl` contacted the broker first, then a traceback; `marketdata
simulate --symbol BTCUSDT` a pydantic traceback; `--minutes -5` published nothing and
exited 0; `--speed 0` silently became 1.0 and a negative speed meant as fast as possible)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.engine.workers import run_cli


def _cli(tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {
        "TRADETAPE_KAFKA_PORT": str(free_port()),  # nobody listens: validation comes first
        "TRADETAPE_DATA_DIR": str(tmp_path / "data"),
    }
    return run_cli(env, *args, timeout=timeout)


@pytest.mark.parametrize(
    "args, message",
    [
        (("publish", "/nonexistent/intents.jsonl"), "cannot read /nonexistent/intents.jsonl"),
        (("marketdata", "load", "/nonexistent/cap.jsonl"), "cannot read /nonexistent/cap.jsonl"),
        (("marketdata", "simulate", "--symbol", "BTCUSDT"), "--symbol 'BTCUSDT'"),
        (("marketdata", "simulate", "--minutes", "-5"), "--minutes must be a positive"),
        (("marketdata", "simulate", "--minutes", "nan"), "--minutes must be a positive"),
        (("marketdata", "simulate", "--speed", "0"), "--speed must be a positive"),
        (("marketdata", "simulate", "--start", "yesterday"), "--start 'yesterday'"),
        (("marketdata", "load", "x.jsonl", "--speed", "0"), "--speed must be a positive"),
        (("marketdata", "load", "x.jsonl", "--speed", "-1"), "--speed must be a positive"),
        (("marketdata", "load", "x", "--speed", "2", "--as-fast-as-possible"), "either"),
        (("marketdata", "load", "x.jsonl", "--instrument", "btc"), "--instrument 'btc'"),
        (("admin", "deposit", "A1", "USDC", "1e5", "d1"), "not a plain decimal"),
        (("admin", "limits", "*", "2", "--values", "{bad"), "error: "),
    ],
)
def test_bad_command_line_input_is_an_error_line_not_a_traceback(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    done = _cli(tmp_path, *args)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert message in done.stderr and "error: " in done.stderr, done.stderr[-2000:]


def test_publish_of_an_empty_file_says_so(tmp_path: Path) -> None:
    """An empty file was published as nothing, silently, exit 0 (helper-132's audit)."""
    path = tmp_path / "intents.jsonl"
    path.write_text("\n  \n")
    done = _cli(tmp_path, "publish", str(path))
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr == f"error: nothing to publish: {path} has no lines\n", done.stderr


def test_publish_without_a_broker_is_an_error_line(tmp_path: Path) -> None:
    path = tmp_path / "intents.jsonl"
    path.write_text('{"event_type": "KycVerified", "payload": {"account": "A1"}}\n')
    done = _cli(tmp_path, "publish", str(path), timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "error: nothing sent" in done.stderr


def test_a_line_that_is_no_valid_event_is_one_short_reason() -> None:
    """`publish`'s reason for skipping a line: pydantic's text took three lines a field,
    each with a web address (nine fields missing: 27 lines for one bad line)."""
    from pydantic import ValidationError

    from engine.cli import _why_skipped
    from schemas.events import OrderIntent

    with pytest.raises(ValidationError) as caught:
        OrderIntent.model_validate({"foo": 1})
    why = _why_skipped(caught.value)
    assert "\n" not in why and "http" not in why, why
    assert why.startswith("not a valid OrderIntent: producer_id: Field required; "), why
    assert why.endswith("; foo: Extra inputs are not permitted"), why
    assert _why_skipped(ValueError("unknown event type 'X'")) == "unknown event type 'X'"
