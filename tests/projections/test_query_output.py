"""Results polars cannot hold as a Decimal (more than 38 digits at the column's scale,
NaN) are written as exact text in every format; a polars error is a QueryError."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import polars as pl
import psycopg
import pytest
from typer.testing import CliRunner

from deploy.settings import Settings
from projections import query

pytestmark = pytest.mark.integration

BIG = "123456789012345678901.123456789012345678"  # 39 digits
WIDE = (
    f"SELECT v FROM (VALUES (1, '{BIG}'::numeric), (2, 1::numeric), (3, NULL), "
    "(4, 'NaN'::numeric)) AS t(i, v) ORDER BY i"
)


def test_wide_decimals_are_exact_text_in_every_format(env: Settings, tmp_path: Path) -> None:
    df = query.raw(WIDE, env)
    assert df["v"].to_list() == [BIG, "1", None, "NaN"]
    assert json.loads(query.write(df, "json", None) or "") == [
        {"v": BIG}, {"v": "1"}, {"v": None}, {"v": "NaN"},
    ]  # fmt: skip
    assert (query.write(df, "csv", None) or "").splitlines()[1] == BIG
    out = tmp_path / "wide.parquet"
    query.write(df, "parquet", str(out))
    assert pl.read_parquet(out)["v"].to_list()[0] == BIG
    # a column that fits stays a polars Decimal
    fits = query.raw("SELECT 1.5::numeric AS v UNION ALL SELECT 0.000000000000000001", env)
    assert isinstance(fits.schema["v"], pl.Decimal)
    assert fits["v"].to_list() == [Decimal("1.5"), Decimal("0.000000000000000001")]


def test_a_polars_error_is_a_query_error() -> None:
    df = pl.DataFrame({"v": [object()]}, schema={"v": pl.Object})
    for fmt in ("json", "csv"):
        with pytest.raises(query.QueryError, match=f"as {fmt}"):
            query.write(df, fmt, None)
    with pytest.raises(query.QueryError, match="cannot write"):
        query.write(pl.DataFrame({"v": [1]}), "csv", "/nonexistent-dir/x.csv")


def test_cli_writes_wide_decimals(env: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from deploy.cli import app
    from deploy.settings import get_settings

    monkeypatch.setenv("TRADETAPE_POSTGRES_PORT", str(env.postgres_port))
    monkeypatch.setenv("TRADETAPE_POSTGRES_DB", env.postgres_db)
    get_settings.cache_clear()
    try:
        res = CliRunner().invoke(app, ["query", "--sql", WIDE, "--format", "json"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)[0] == {"v": BIG}
    finally:
        get_settings.cache_clear()


FORMULAS = ["=1+1", "+cmd|' /C calc'!A0", "-1+1", "@SUM(A1)", "\t=1+1", "\r=1+1"]


def test_csv_guards_text_cells_that_a_spreadsheet_would_run_as_formulas() -> None:
    """OWASP CSV injection: a text cell starting with = + - @ tab or CR is a formula in a
    spreadsheet; it is written with a leading `'`. Numbers are not guarded: a negative
    Decimal, and a number as text (a wide decimal, `-Infinity`), stay as they are."""
    safe = ["plain", "a=1", "-5", "-123456789012345678901.5", "-Infinity", "+7", "1e-3", None]
    df = pl.DataFrame(
        {
            "reason": FORMULAS + safe,
            "amount": [Decimal("-5")] * (len(FORMULAS) + len(safe)),
            "n": [-3] * (len(FORMULAS) + len(safe)),
        },
        schema={"reason": pl.String, "amount": pl.Decimal(10, 0), "n": pl.Int64},
    )
    back = pl.read_csv((query.write(df, "csv", None) or "").encode(), infer_schema=False)
    assert back["reason"].to_list() == ["'" + f for f in FORMULAS] + safe
    assert set(back["amount"].to_list()) == {"-5"} and set(back["n"].to_list()) == {"-3"}
    # the other formats carry the exact text
    assert [r["reason"] for r in json.loads(query.write(df, "json", None) or "")][:1] == ["=1+1"]


def test_csv_guards_a_dead_letter_reason(env: Settings, tmp_path: Path) -> None:
    """The dead-letter browser shows attacker-controlled text (a producer's error text)."""
    with psycopg.connect(env.dsn) as conn:
        conn.execute(
            "INSERT INTO proj_deadletters.deadletters (event_id, source_topic, error_type,"
            " error, stage, producer, original_value_b64, occurred_at) VALUES"
            " (gen_random_uuid(), 't', '=1+1', '@SUM(A1)', 'decode', '-2+3', '', now())"
        )
    out = tmp_path / "dl.csv"
    query.write(query.frame("deadletters", env), "csv", str(out))
    row = pl.read_csv(out, infer_schema=False).row(0, named=True)
    assert (row["error_type"], row["error"], row["producer"]) == ("'=1+1", "'@SUM(A1)", "'-2+3")
    neg = query.raw("SELECT '=1+1'::text AS t, -5::numeric AS a, -5 AS i", env)
    assert (query.write(neg, "csv", None) or "").splitlines() == ["t,a,i", "'=1+1,-5,-5"]


def test_an_empty_result_keeps_its_column_types(env: Settings, tmp_path: Path) -> None:
    """No rows (a filter that matches nothing), or a column that is NULL in every row,
    still has its columns' types, in the frame and in parquet: text a String, numeric a
    Decimal, integer an Int64, timestamptz a Datetime, boolean a Boolean. Polars made each
    a Null column, so a day's empty export could not be read beside a full one."""
    df = query.frame("positions", env, account="NOBODY")
    assert df.height == 0
    types = dict(df.schema)
    assert types["account"] == pl.String and types["fees_other"] == pl.String
    assert isinstance(types["quantity"], pl.Decimal)
    assert types["fill_count"] == pl.Int64
    assert isinstance(types["updated_at"], pl.Datetime)
    out = tmp_path / "empty.parquet"
    query.write(df, "parquet", str(out))
    assert dict(pl.read_parquet(out).schema) == types
    nulls = query.raw(
        "SELECT 'x' AS s, NULL::numeric(20, 4) AS n, NULL::bool AS b, NULL::uuid AS u, "
        "NULL::timestamptz AS t, NULL::jsonb AS j",
        env,
    )
    assert nulls.schema["s"] == pl.String and nulls.schema["n"] == pl.Decimal(38, 4)
    assert nulls.schema["b"] == pl.Boolean and nulls.schema["u"] == pl.String
    assert isinstance(nulls.schema["t"], pl.Datetime) and nulls.schema["j"] == pl.String
    assert nulls.row(0) == ("x", None, None, None, None, None)
