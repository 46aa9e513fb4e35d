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
