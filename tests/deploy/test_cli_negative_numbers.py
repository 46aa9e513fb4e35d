"""A negative number where a command takes an argument is one `error:` line saying what
the argument must be, exit 2. Before: `tradetape admin deposit ACC1 USDC -5 dep-1` (and
`admin limits '*' -1`) printed click's usage box `No such option: -5`, as if a flag had
been mistyped. Nothing is sent: these fail while the arguments are parsed (no broker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.engine.workers import run_cli


def _cli(tmp_path: Path, *args: str) -> tuple[int, str]:
    env = {
        "TRADETAPE_KAFKA_PORT": str(free_port()),  # nobody listens: nothing could be sent
        "TRADETAPE_POSTGRES_PORT": str(free_port()),
        "TRADETAPE_DATA_DIR": str(tmp_path / "data"),
    }
    done = run_cli(env, *args)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.returncode, done.stderr


@pytest.mark.parametrize(
    ("args", "wanted"),
    [
        (("admin", "deposit", "ACC1", "USDC", "-5", "dep-1"), "AMOUNT must be positive, not -5"),
        (("admin", "deposit", "ACC1", "USDC", "-0.5", "d"), "AMOUNT must be positive, not -0.5"),
        (("admin", "deposit", "ACC1", "USDC", "-0", "dep-1"), "AMOUNT must be positive, not -0"),
        (("admin", "limits", "*", "-1"), "VERSION must be positive, not -1"),
        (
            ("admin", "--wait", "5", "deposit", "--data-dir", "x", "A", "USDC", "-5", "d"),
            "AMOUNT must be positive, not -5",
        ),
    ],
    ids=["deposit -5", "deposit -0.5", "deposit -0", "limits -1", "after options"],
)
def test_a_negative_amount_or_version_says_it_must_be_positive(
    tmp_path: Path, args: tuple[str, ...], wanted: str
) -> None:
    assert _cli(tmp_path, *args) == (2, f"error: {wanted}\n")


def test_a_negative_number_for_a_name_says_how_to_pass_it(tmp_path: Path) -> None:
    rc, err = _cli(tmp_path, "admin", "kyc", "-5")
    assert (rc, err) == (
        2,
        "error: no such option: -5 (if it is the ACCOUNT, put -- before the arguments)\n",
    )


def test_after_double_dash_the_amount_is_checked_as_before(tmp_path: Path) -> None:
    assert _cli(tmp_path, "admin", "deposit", "ACC1", "USDC", "--", "-5", "dep-1") == (
        2,
        "error: amount: Value error, must be positive\n",
    )


def test_a_mistyped_option_is_still_click_s_error(tmp_path: Path) -> None:
    rc, err = _cli(tmp_path, "admin", "deposit", "ACC1", "USDC", "5", "dep-1", "--bogus")
    assert rc == 2 and "No such option: --bogus" in err, err
