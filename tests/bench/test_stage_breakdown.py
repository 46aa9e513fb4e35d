"""The bench's per-stage breakdown reads the worker's reports from its log."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from bench.bench_engine import stage_breakdown


def _report(at: str, transactions: int, intents: int, process: float) -> str:
    stats = {"intents": intents, "outputs": 3 * intents, "dead_letters": 0,
             "transactions": transactions, "caught_up": 0}  # fmt: skip
    busy = {"poll": 0.0, "refs+lag": 0.0, "control": 0.0, "process": process,
            "commit-wait": 0.0, "produce": 0.0, "offsets": 0.0, "end": 0.0}  # fmt: skip
    return f"{at},000 INFO tradetape.engine worker w0: {stats}, lag 0, busy {busy}"


def _epoch(at: str) -> float:
    return datetime.strptime(at, "%Y-%m-%d %H:%M:%S").timestamp()


def test_a_worker_idle_at_the_window_end_counts_up_to_its_last_report(tmp_path: Path) -> None:
    log = tmp_path / "worker0.log"
    log.write_text(
        "\n".join(
            [
                _report("2026-12-07 01:00:00", 10, 100, 1.0),
                _report("2026-12-07 01:00:05", 30, 300, 3.0),
                # idle from here on: no report after the window's end
            ]
        )
        + "\n"
    )
    out = stage_breakdown([log], _epoch("2026-12-07 01:00:01"), _epoch("2026-12-07 01:00:09"))
    assert out["transactions"] == 20
    assert out["intents/txn"] == 10
    assert out["process"] == 100.0  # 2 s over 20 transactions


def test_the_first_report_after_the_window_closes_it(tmp_path: Path) -> None:
    log = tmp_path / "worker0.log"
    log.write_text(
        "\n".join(
            [
                _report("2026-12-07 01:00:00", 10, 100, 1.0),
                _report("2026-12-07 01:00:10", 20, 200, 2.0),
                _report("2026-12-07 01:00:20", 50, 500, 5.0),
            ]
        )
        + "\n"
    )
    out = stage_breakdown([log], _epoch("2026-12-07 01:00:05"), _epoch("2026-12-07 01:00:09"))
    assert out["transactions"] == 10
    assert out["process"] == 100.0


def test_no_report_before_the_window_counts_nothing(tmp_path: Path) -> None:
    log = tmp_path / "worker0.log"
    log.write_text(_report("2026-12-07 01:00:10", 20, 200, 2.0) + "\n")
    out = stage_breakdown([log], _epoch("2026-12-07 01:00:05"), _epoch("2026-12-07 01:00:09"))
    assert out["transactions"] == 0
