"""The table format never truncates silently: into a file it holds every row, column and
full string (the CLI's "wrote N rows" is true); on stdout a cut table says what it cut."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from projections import query

LONG = "account-" + "x" * 100


def _df(rows: int = 500, cols: int = 3) -> pl.DataFrame:
    data = {f"c{j}": [f"r{i}" for i in range(rows)] for j in range(cols)}
    data["c0"] = [LONG if i == 0 else f"r{i}" for i in range(rows)]
    return pl.DataFrame(data)


def test_table_into_a_file_holds_every_row_and_full_strings(tmp_path: Path) -> None:
    out = tmp_path / "t.txt"
    query.write(_df(500, 40), "table", str(out))
    text = out.read_text()
    assert LONG in text
    assert "…" not in text
    for i in range(500):
        assert f" r{i} " in text, i
    assert " c39 " in text  # every column
    assert "showing" not in text


def test_a_cut_table_on_stdout_says_so() -> None:
    text = query.write(_df(500, 40), "table", None) or ""
    last = text.rstrip("\n").splitlines()[-1]
    assert "showing 200 of 500 rows" in last
    assert "30 of 40 columns" in last
    assert "strings cut at 40 characters" in last
    assert "--format csv" in last and "--out" in last
    # a table that fits is printed whole, with no note
    small = query.write(_df(5, 2).with_columns(pl.lit("ok").alias("c0")), "table", None) or ""
    assert "showing" not in small and "…" not in small


@pytest.mark.parametrize(
    ("rows", "cols", "long"), [(200, 30, False), (201, 1, False), (1, 1, True)]
)
def test_the_note_names_only_what_was_cut(rows: int, cols: int, long: bool) -> None:
    df = _df(rows, cols)
    if not long:
        df = df.with_columns(pl.lit("short").alias("c0"))
    text = query.write(df, "table", None) or ""
    cut = rows > 200 or cols > 30 or long
    assert ("showing" in text) == cut
    assert ("rows" in text.splitlines()[-1]) == (rows > 200)


WIDE = Decimal("1234567890123456789.012345678")
"""28 digits: a NUMERIC value of the positions table polars holds as Decimal(38, 9)."""
WIDER = Decimal("123456789012345678901234567890.123456789012345678")
"""48 digits, more than a polars Decimal holds: `query._fit` makes the column text."""


def _positions(value: Decimal, cols: int = 7) -> pl.DataFrame:
    data: dict[str, list[Any]] = {"account": ["ACC-1"], "instrument": ["BTC/USDC"]}
    for j in range(cols):
        data[f"amount_{j}"] = query._fit([value])
    return pl.DataFrame(data, strict=False)


@pytest.mark.parametrize("value", [WIDE, WIDER], ids=["decimal", "decimal-as-text"])
def test_a_number_is_shown_whole_on_one_line(value: Decimal) -> None:
    """A row of 28-digit decimals wider than 200 characters printed each one folded over
    two lines (`1234567890123456789.01` / `2345678`): polars wrapped the cells to fit
    `tbl_width_chars=200`. A table grows as wide as its values instead; and a number too
    wide for a polars Decimal, held as text, was cut at 40 characters like a string."""
    df = _positions(value)
    text = query.write(df, "table", None) or ""
    rows = [line for line in text.splitlines() if "ACC-1" in line]
    assert len(rows) == 1, text
    assert rows[0].count(format(value, "f")) == 7, text
    assert "…" not in text and "showing" not in text, text
    # a string is still cut at TABLE_STR characters, and the note says so
    long = df.with_columns(pl.lit("x" * 100).alias("account"))
    cut = query.write(long, "table", None) or ""
    assert "x" * query.TABLE_STR + "…" in cut and "x" * (query.TABLE_STR + 1) not in cut
    assert cut.count(format(value, "f")) == 7, cut
    assert "strings cut at 40 characters" in cut.splitlines()[-1]
