"""Raw SQL results that are JSON or arrays stay exact: jsonb numbers are Decimals (never
floats), numeric arrays render as exact JSON text, and a result the CLI cannot render is
one `error:` line with exit 1, not a traceback."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from deploy.settings import Settings
from projections import query

pytestmark = pytest.mark.integration

ARRAYS = (
    "SELECT array_agg(v ORDER BY i) AS arr FROM (VALUES (1, 1.5::numeric), "
    "(2, 12345678901234567890.5::numeric), (3, 0.1000000000000000055::numeric), "
    "(4, 'NaN'::numeric), (5, NULL)) t(i, v)"
)
JSONB = (
    "SELECT to_jsonb(0.1000000000000000055::numeric) AS j, "
    "jsonb_build_object('amount', 12345678.123456789012345::numeric, 'n', 1.10::numeric, "
    "'big', 1e30::numeric, 'list', jsonb_build_array(0.30::numeric, 1, 'x', true, null)) AS obj"
)


def test_numeric_arrays_are_exact_json_text(env: Settings) -> None:
    df = query.raw(ARRAYS, env)
    assert df["arr"].to_list() == ['[1.5,12345678901234567890.5,0.1000000000000000055,"NaN",null]']
    # the text parses back to the same decimals
    back = json.loads(df["arr"][0], parse_float=Decimal)
    assert back[:3] == [Decimal("1.5"), Decimal("12345678901234567890.5"),
                        Decimal("0.1000000000000000055")]  # fmt: skip


def test_jsonb_numbers_stay_decimal(env: Settings) -> None:
    df = query.raw(JSONB, env)
    assert df["j"].to_list() == [Decimal("0.1000000000000000055")]
    obj = df["obj"][0]
    assert obj == (
        '{"amount":12345678.123456789012345,"big":1000000000000000000000000000000,'
        '"list":[0.30,1,"x",true,null],"n":1.10}'
    )
    for fmt in ("json", "csv"):
        text = query.write(df, fmt, None) or ""
        assert "0.1000000000000000055" in text and "12345678.123456789012345" in text


def test_cli_error_line_for_a_result_it_cannot_render(
    env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deploy.cli import app
    from deploy.settings import get_settings

    monkeypatch.setenv("TRADETAPE_POSTGRES_PORT", str(env.postgres_port))
    monkeypatch.setenv("TRADETAPE_POSTGRES_DB", env.postgres_db)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        res = runner.invoke(app, ["query", "--sql", ARRAYS, "--format", "json"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)[0]["arr"].startswith("[1.5,12345678901234567890.5,")
        # an array of ranges: no exact JSON rendering; one error line, exit 1
        for fmt in ("json", "csv", "table"):
            res = runner.invoke(
                app, ["query", "--sql", "SELECT ARRAY[int4range(1, 5)] AS r", "--format", fmt]
            )
            assert res.exit_code == 1, (fmt, res.output)
            assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
            assert res.output.startswith("error:"), res.output
    finally:
        get_settings.cache_clear()


JSONB_INTS = (
    "SELECT v FROM (VALUES (1, '0.5'::jsonb), (2, '10000000000000000000000000000000000000000'"
    "::jsonb), (3, '-170141183460469231731687303715884105729'::jsonb), (4, NULL)) t(i, v) "
    "ORDER BY i"
)
"""jsonb numbers: json.loads makes one without a fraction an int of any size (a risk
limit's `max_open_orders` is an unbounded int, and a surveillance alert's `evidence` free)."""


def test_jsonb_integers_are_never_lost(env: Settings, tmp_path: Any) -> None:
    """An int beside Decimals in one column, or beyond what a polars integer column holds,
    stays exact: polars made the 41-digit int beside 0.5 a null in a Decimal(38, 1)
    column, a column of ints beyond int128 a column of nulls, and [2**127, -1] an Int128
    column holding another number."""
    mixed = query.raw(JSONB_INTS, env)
    want = [
        "0.5",
        "10000000000000000000000000000000000000000",
        "-170141183460469231731687303715884105729",
        None,
    ]
    assert [None if v is None else str(v) for v in mixed["v"].to_list()] == want
    only = query.raw(JSONB_INTS.replace("(1, '0.5'::jsonb), ", ""), env)
    assert [None if v is None else str(v) for v in only["v"].to_list()] == want[1:]
    edge = query.raw(
        "SELECT v FROM (VALUES (1, '170141183460469231731687303715884105728'::jsonb), "
        "(2, '-1'::jsonb)) t(i, v) ORDER BY i",
        env,
    )
    assert [str(v) for v in edge["v"].to_list()] == [
        "170141183460469231731687303715884105728",
        "-1",
    ]
    fits = query.raw(
        "SELECT v FROM (VALUES (1, '0.5'::jsonb), (2, '3'::jsonb)) t(i, v) ORDER BY i", env
    )
    assert fits["v"].to_list() == [Decimal("0.5"), Decimal(3)]  # still a Decimal column
    small = query.raw("SELECT v FROM (VALUES (1, '7'::jsonb), (2, '-3'::jsonb)) t(i, v)", env)
    assert small.schema["v"] == pl.Int64 and small["v"].to_list() == [7, -3]
    for fmt in ("json", "csv"):
        text = query.write(mixed, fmt, None) or ""
        assert all(str(w) in text for w in want[:3]), (fmt, text)
    out = tmp_path / "ints.parquet"
    query.write(only, "parquet", str(out))
    assert [None if v is None else str(v) for v in pl.read_parquet(out)["v"].to_list()] == want[1:]


def test_a_jsonb_integer_of_any_length_is_its_digits(env: Settings) -> None:
    """json.loads refuses an int of more than 4,300 digits (a ValueError, out of the
    query as a traceback): one jsonb holds is its exact text, alone or inside JSON."""
    digits = "1" + "0" * 5000
    df = query.raw(f"SELECT '{digits}'::jsonb AS v, '{{\"a\": [{digits}, 2]}}'::jsonb AS j", env)
    assert df["v"].to_list() == [digits]
    assert df["j"].to_list() == [f'{{"a":[{digits},2]}}']


def test_text_that_is_not_utf8_is_a_query_error(
    env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filter or SQL text holding a lone surrogate (what Python makes of argv bytes that
    are not UTF-8, e.g. `-p account=$'\\xff'` from a Latin-1 terminal) cannot be sent:
    a QueryError, one `error:` line from the CLI; it raised a UnicodeEncodeError out of
    `frame` and `raw`, a traceback."""
    from deploy.cli import app
    from deploy.settings import get_settings

    with pytest.raises(query.QueryError, match="UTF-8"):
        query.frame("positions", env, account="A\udcff1")
    with pytest.raises(query.QueryError, match="UTF-8"):
        query.raw("SELECT 'A\udcff1' AS x", env)
    monkeypatch.setenv("TRADETAPE_POSTGRES_PORT", str(env.postgres_port))
    monkeypatch.setenv("TRADETAPE_POSTGRES_DB", env.postgres_db)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        for args, code in (
            (["query", "positions", "-p", "account=A\udcff1"], 2),
            (["query", "--sql", "SELECT 'A\udcff1' AS x"], 1),
        ):
            res = runner.invoke(app, args)
            assert res.exit_code == code, res.output
            assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
            assert res.output.startswith("error:") and "UTF-8" in res.output, res.output
    finally:
        get_settings.cache_clear()
