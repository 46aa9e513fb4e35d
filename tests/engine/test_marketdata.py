"""Market data: the Binance capture parser, the simulation and the loader's dead letters."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from deploy.settings import Settings
from engine.marketdata.binance import CaptureParser, parse_file, unified_symbol
from engine.marketdata.loader import load_capture
from engine.marketdata.simulate import simulate
from schemas.events import MarketTrade, QuoteUpdated
from schemas.topics import Topic
from tests.engine.helpers import read_topic


def _line(ns: int, stream: str, data: dict[str, object]) -> str:
    return f"{ns} {json.dumps({'stream': stream, 'data': data})}"


def _trade(ns: int, t: int, price: str = "100", ts: int = 1723161255342) -> str:
    return _line(
        ns,
        "btcusdt@trade",
        {"e": "trade", "E": ts, "s": "BTCUSDT", "t": t, "p": price, "q": "0.5", "T": ts, "m": True},
    )


def _book(ns: int, bid: str = "99", ask: str = "101") -> str:
    return _line(
        ns, "btcusdt@bookTicker", {"u": ns, "s": "BTCUSDT", "b": bid, "B": "1", "a": ask, "A": "2"}
    )


def test_parser_accepts_trades_and_quotes_and_rejects_bad_records() -> None:
    p = CaptureParser()
    good_trade = p.parse_line(1, _trade(10, 1))
    assert isinstance(good_trade.payload, MarketTrade)
    assert good_trade.payload.instrument == "BTC/USDT"
    assert good_trade.payload.aggressor_side == "SELL"  # buyer was maker
    assert isinstance(p.parse_line(2, _book(11)).payload, QuoteUpdated)
    assert "crossed book" in (p.parse_line(3, _book(12, bid="102", ask="101")).error or "")
    assert "non-positive" in (p.parse_line(4, _trade(13, 2, price="0")).error or "")
    assert "backwards" in (p.parse_line(5, _trade(14, 3, ts=1723161255000)).error or "")
    assert "backwards" in (p.parse_line(6, _book(5)).error or "")
    assert p.parse_line(7, "not a line").error
    depth = _line(15, "btcusdt@depth@100ms", {"e": "depthUpdate"})
    assert p.parse_line(8, depth).skipped == "depth@100ms"
    assert p.counts["rejected"] == 5 and p.counts["trade"] == 1


def test_real_capture_parses(reference_dir: Path) -> None:
    path = reference_dir / "marketdata" / "binance_spot_btcusdt_20240808.jsonl.gz"
    parser, records = parse_file(path, instrument="BTC/USDC", limit=3000)
    payloads = [r.payload for r in records if r.payload is not None]
    assert len(payloads) > 1000
    assert all(p.instrument == "BTC/USDC" for p in payloads)
    assert parser.counts.get("skipped:depth", 0) > 0
    assert unified_symbol("ETHUSDT") == "ETH/USDT"


def test_simulation_is_seeded() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    a = list(simulate("BTC/USDC", 0.5, 42, start))
    b = list(simulate("BTC/USDC", 0.5, 42, start))
    c = list(simulate("BTC/USDC", 0.5, 43, start))
    assert a == b and a != c
    quotes = [e for e in a if isinstance(e, QuoteUpdated)]
    assert len(quotes) == 150 and all(q.bid_price < q.ask_price for q in quotes)


@pytest.mark.integration
def test_loader_publishes_and_dead_letters_bad_records(env: Settings, tmp_path: Path) -> None:
    path = tmp_path / "cap.jsonl.gz"
    lines = [
        _book(10),
        _trade(11, 1),
        _book(12, bid="105", ask="101"),
        _trade(13, 2, "-1"),
        _book(14),
    ]
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    report = load_capture(env, path, speed=None)
    assert (report.published, report.dead_letters) == (3, 2)
    md = read_topic(env, Topic.MARKETDATA)
    dls = read_topic(env, Topic.DEADLETTER)
    assert len(md) == 3
    assert sorted(d.payload.source_offset for d in dls) == [3, 4]
    assert all(d.payload.stage == "loader" for d in dls)


@pytest.mark.integration
def test_loader_dead_letters_a_huge_line_bounded_and_survives_a_truncated_gzip(
    env: Settings, tmp_path: Path
) -> None:
    """Review helper-50 (rev54): a price "abc" crashed the load (InvalidOperation), an 800 KB
    line's dead letter was over the producer's size limit (MSG_SIZE_TOO_LARGE), and a
    truncated .gz ended in click's "Aborted!"; now: dead letters, then an error naming the
    last line read, after the lines before it were delivered."""
    import hashlib

    from tests.engine.workers import cli_env, run_cli

    huge = "1 " + "x" * 800_000
    bad = _trade(12, 2, price="abc")
    lines = [_book(10), huge, bad, _book(13)]
    good_block = "\n".join(_book(20 + i) for i in range(2000)) + "\n"
    path = tmp_path / "cap.jsonl.gz"
    blob = gzip.compress(("\n".join(lines) + "\n" + good_block).encode())
    path.write_bytes(blob[: len(blob) // 2])
    args = ["marketdata", "load", str(path), "--as-fast-as-possible"]
    done = run_cli(cli_env(env), *args, timeout=180)
    assert done.returncode == 1, (done.stdout, done.stderr[-3000:])
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout)
    assert report["dead_letters"] == 2 and report["not_delivered"] == 0
    read = report["published"] + report["dead_letters"]
    assert 4 < read < 2004
    assert f"file corrupt after line {read}" in done.stderr
    dls = {d.payload.source_offset: d.payload for d in read_topic(env, Topic.DEADLETTER)}
    assert sorted(dls) == [2, 3]
    big = dls[2]
    assert big.original_truncated and big.original_value_bytes == len(huge) + 1
    assert big.original_value_sha256 == hashlib.sha256((huge + "\n").encode()).hexdigest()
    assert "price" in dls[3].error and not dls[3].original_truncated
    assert len(read_topic(env, Topic.MARKETDATA)) == report["published"]
