"""The demo's table excerpts say how many rows there are and which are shown, without
polars' `shape:` line: "balances (8 rows):" over "shape: (5, 4)" (demo16)."""

from __future__ import annotations

from decimal import Decimal

import polars as pl

from projections.demo import excerpt


def test_an_excerpt_names_the_rows_it_shows() -> None:
    frame = pl.DataFrame({"account": [f"A{i}" for i in range(8)], "n": list(range(8))})
    lines = excerpt("balances", frame)
    assert lines[0] == "balances (8 rows, the first 5):"
    text = "\n".join(lines[1:])
    assert "shape" not in text and "i64" not in text and "---" not in text, text
    assert "A4" in text and "A5" not in text, text
    assert all(line.startswith("  ") for line in lines[1:])


def test_a_short_table_is_shown_whole() -> None:
    lines = excerpt("positions", pl.DataFrame({"account": ["A1", "A2", "A3"]}))
    assert lines[0] == "positions (3 rows):"
    assert "A3" in "\n".join(lines)


def test_a_value_is_never_folded_over_lines() -> None:
    """polars held the excerpt to its default width (100 characters), folding a
    positions row's 28-digit decimals and its column names over three lines."""
    wide = Decimal("1234567890123456789.012345678")
    frame = pl.DataFrame(
        {
            "account": ["DEMO-abcdef-1"],
            "instrument": ["BTC/USDC"],
            **{name: [wide] for name in ("quantity", "avg_cost", "cost_basis", "realized_pnl")},
        }
    )
    lines = excerpt("positions", frame)
    assert sum("DEMO-abcdef-1" in line for line in lines) == 1, lines
    row = next(line for line in lines if "DEMO-abcdef-1" in line)
    assert row.count(format(wide, "f")) == 4, lines
    assert any("realized_pnl" in line for line in lines), lines
