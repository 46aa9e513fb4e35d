"""`marketdata load --speed X` caps each pause: a capture with a multi-hour gap between two
records stalled the load for hours (the gap divided by X, uncapped; issue #3, h62 item 3).

The loader's clock and sleep are a stand-in here (the module's `time`), so the test
records the pauses the loader asked for instead of taking them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy.settings import Settings
from engine.marketdata import loader
from engine.marketdata.binance import parse_file
from schemas.topics import Topic
from tests.engine.helpers import read_topic

S = 1_000_000_000  # nanoseconds in a second
HOURS_3 = 3 * 3600 * S
CAP = 5.0  # loader.MAX_PACING_SLEEP_SECONDS, as documented in docs/engine.md


class _Clock:
    """`time.monotonic` and `time.sleep` that only advance when slept."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _line(ns: int, stream: str, data: dict[str, object]) -> str:
    return f"{ns} {json.dumps({'stream': stream, 'data': data})}"


def _trade(ns: int, t: int, price: str) -> str:
    ts = 1723161255342 + ns // 1_000_000
    data = {"e": "trade", "E": ts, "s": "BTCUSDT", "t": t, "p": price, "q": "0.5", "T": ts}
    return _line(ns, "btcusdt@trade", {**data, "m": True})


def _book(ns: int, bid: str, ask: str) -> str:
    data = {"u": ns, "s": "BTCUSDT", "b": bid, "B": "1", "a": ask, "A": "2"}
    return _line(ns, "btcusdt@bookTicker", data)


@pytest.mark.integration
def test_a_gap_of_hours_is_cut_to_the_cap_and_the_records_are_unchanged(
    env: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "gap.jsonl"
    t0 = 1_723_161_255_000_000_000
    lines = [
        _book(t0, "99", "101"),
        _trade(t0 + 1 * S, 1, "100"),
        # the capture stopped for three hours, then went on
        _book(t0 + 1 * S + HOURS_3, "98", "100"),
        _trade(t0 + 1 * S + HOURS_3 + S // 2, 2, "99"),
    ]
    path.write_text("\n".join(lines) + "\n")
    clock = _Clock()
    monkeypatch.setattr(loader, "time", clock)
    report = loader.load_capture(env, path, speed=1.0)
    assert report.ok and report.published == 4, report
    # Real time up to the gap and after it; the gap itself one capped pause.
    assert max(clock.sleeps) <= CAP, clock.sleeps
    assert clock.sleeps == pytest.approx([1.0, CAP, 0.5])
    err = capsys.readouterr().err
    assert "pacing: line 3: a gap of 10,800.0 s" in err and f"waiting {CAP:g} s" in err, err
    # What is produced is what an unpaced load produces: the same records in order.
    _parser, records = parse_file(path)
    expected = [r.payload for r in records if r.payload is not None]
    assert [e.payload for e in read_topic(env, Topic.MARKETDATA)] == expected


def test_the_pacer_keeps_real_time_below_the_cap_and_at_speed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _Clock()
    monkeypatch.setattr(loader, "time", clock)
    said: list[str] = []
    pacer = loader.Pacer(10.0, max_sleep=2.0, say=said.append)
    for at in [0.0, 10.0, 30.0, 30.0, 500.0, 510.0]:
        pacer.wait(at, f"t={at}")
    # 10 s of records at speed 10 is 1 s; 470 s (47 s at speed 10) is cut to 2 s
    assert clock.sleeps == pytest.approx([1.0, 2.0, 2.0, 1.0])
    assert len(said) == 1 and said[0].startswith("pacing: t=500.0: a gap of 470.0 s")
