"""A named query's filter with a closed set of values (a status, an outcome, open) takes
one of them: another (a typo, `TRUE`, `yes`) is refused, a usage error, where it used to
match nothing and print an empty result as if there were no such rows."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from projections import query
from projections.core import ORDER_STATUSES, account_status


@pytest.mark.parametrize(
    ("name", "param", "good", "bad"),
    [
        ("aml_flags", "open", ("true", "false"), ("TRUE", "yes", "1", "t", "")),
        ("orders", "status", ORDER_STATUSES, ("FILED", "filled", "PARTIAL")),
        ("accounts", "status", ("ACTIVE", "KYC_PENDING", "AML_HOLD"), ("active", "HOLD")),
        ("decisions", "outcome", ("APPROVED", "REJECTED", "INTENT_REJECTED", "ADMIN_REJECTED"),
         ("approved", "DENIED")),
    ],
)  # fmt: skip
def test_a_filter_of_known_values_refuses_any_other(
    name: str, param: str, good: tuple[str, ...], bad: tuple[str, ...]
) -> None:
    for v in good:
        assert query.named(name, {param: v})[1][param] == v
    for v in bad:
        with pytest.raises(query.QueryError, match=f"{param} is one of"):
            query.named(name, {param: v})
    assert query.named(name, {})[1][param] is None  # no filter: every row


def test_the_account_statuses_are_the_folds() -> None:
    assert {account_status(k, n) for k in (None, "BASIC") for n in (0, 1)} == set(
        dict(query.NAMED["accounts"].values)["status"]
    )


def test_the_cli_refuses_it_before_the_query_runs() -> None:
    from deploy.cli import app

    res = CliRunner().invoke(app, ["query", "orders", "-p", "status=FILED"])
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error:") and "status is one of" in res.output, res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["query", "positions", "--sql", "select 1"], 'give a query NAME or --sql "...", not both'),
        (["query", "--sql", "  "], "--sql is empty: give one SELECT statement"),
        (["rebuild", "--all", "positions"], "give a projection NAME or --all, not both"),
        (["rebuild", "--one-consumer", "positions"], "--one-consumer goes with --all"),
    ],
)
def test_contradictory_or_empty_arguments_say_what_is_wrong(args: list[str], message: str) -> None:
    """The newcomer's audit (helper-132): a NAME with --sql (or --all) was told to "give a
    query NAME or --sql", which it had; an empty --sql reached the server and came back
    as "the last operation didn't produce records (result status: EMPTY_QUERY)"."""
    from deploy.cli import app

    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    assert res.output.startswith(f"error: {message}"), res.output


@pytest.mark.parametrize("timeout", ["inf", "nan", "1e12", "-1"])
def test_a_time_limit_the_database_cannot_hold_is_a_usage_error(timeout: str) -> None:
    """Before: `--timeout inf` (which would mean no limit) and `nan` ended in an
    OverflowError or ValueError traceback (exit 1), and `1e12` reached the server, which
    refused the connection's `statement_timeout` (more than its 2,147,483,647 ms)."""
    from deploy.cli import app

    res = CliRunner().invoke(app, ["query", "--sql", "select 1", "--timeout", timeout])
    assert res.exit_code == 2, (res.output, res.exception)
    assert "Traceback" not in res.output and "--timeout" in res.output, res.output
    for bad in (float(timeout), 0.0):
        with pytest.raises(query.QueryError, match="time limit"):
            query.check_timeout(bad)
    query.check_timeout(query.QUERY_TIMEOUT_S)
