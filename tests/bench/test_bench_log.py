"""The projections bench's log: its chunks, generated apart, make one log whose time
runs forward (each account's), as a real log's does."""

from __future__ import annotations

import orjson

from bench.bench_projections import _chunk


def _times(args: tuple[int, int, str, int]) -> list[str]:
    return [orjson.loads(value)["occurred_at"] for _t, _k, value, _h in _chunk(args)]


def test_each_chunk_starts_after_the_one_before_ends() -> None:
    first, second = _times((1, 2_000, "", 0)), _times((2, 2_000, "", 1))
    assert max(first) < min(second)
    assert first == sorted(first)  # one millisecond apart within a chunk


def test_a_rebuilds_row_counts_are_read_from_its_summary_line() -> None:
    """When two rounds' checksums differ, the bench prints each round's row counts per
    table (session 27: one of nine `tax_lots` rebuilds differed, and nothing said where)."""
    from bench.bench_projections import _rows_of

    text = (
        "noise\ntax_lots: 614752 events in 30.7s (20,030 events/s); books=40, lots=167923; "
        "offsets: orders.lifecycle/0=5\n"
    )
    assert _rows_of(text, "tax_lots") == "books=40, lots=167923"
    assert _rows_of("tax_lots: 1 events in 1.0s (1 events/s)\n", "tax_lots") == "?"
