"""Market-data input that must never crash the loader, and loads that must not report a
success that did not happen. No broker: the parser is pure, and "not delivered" is a
broker nobody listens on (review helper-50, rev54)."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import engine.marketdata.loader as loader
from deploy.settings import Settings
from engine.marketdata.binance import CaptureParser, parse_file
from engine.marketdata.simulate import simulate
from schemas.events import MarketTrade, QuoteUpdated
from tests.conftest import free_port


def _trade(p: object = "100", q: object = "1", t_ms: object = 1723075200000) -> str:
    data = {"e": "trade", "s": "BTCUSDT", "t": 1, "p": p, "q": q, "T": t_ms, "m": False}
    return json.dumps({"stream": "btcusdt@trade", "data": data})


def _book(b: object = "100", a: object = "101", bq: object = "1", u: object = 1) -> str:
    data = {"s": "BTCUSDT", "b": b, "a": a, "B": bq, "A": "1", "u": u}
    return json.dumps({"stream": "btcusdt@bookTicker", "data": data})


NOW_NS = 1723075200000000000
MALFORMED = {
    "price abc": f"{NOW_NS} {_trade(p='abc')}",
    "price NaN": f"{NOW_NS} {_trade(p='NaN')}",
    "price sNaN": f"{NOW_NS} {_trade(p='sNaN')}",
    "price Infinity": f"{NOW_NS} {_trade(p='Infinity')}",
    "price exponent": f"{NOW_NS} {_trade(p='1E+999999999')}",
    "JSON NaN literal": f"{NOW_NS} " + _trade().replace('"100"', "NaN"),
    "JSON huge number": f"{NOW_NS} " + _trade().replace('"100"', "1e999999"),
    "trade time 1e20": f"{NOW_NS} {_trade(t_ms=10**20)}",
    "trade time negative": f"{NOW_NS} {_trade(t_ms=-(10**18))}",
    "trade time fraction": f"{NOW_NS} {_trade(t_ms=1.5)}",
    "trade time bool": f"{NOW_NS} {_trade(t_ms=True)}",
    "quote bid NaN": f"{NOW_NS} {_book(b='NaN')}",
    "quote size x": f"{NOW_NS} {_book(bq='x')}",
    "quote update id 1e3": f"{NOW_NS} {_book(u=1e3)}",
    "receive time 10**400": f"{10**400} {_book()}",
    "receive time 10**30": f"{10**30} {_book()}",
    "receive time negative": f"-5 {_book()}",
    "data is a list": '1 {"stream":"btcusdt@trade","data":[1]}',
    "data is null": '1 {"stream":"btcusdt@bookTicker","data":null}',
    "deep JSON": "1 " + "[" * 100_000 + "]" * 100_000,
    "deep JSON object": "1 " + '{"a":' * 100_000 + "1" + "}" * 100_000,
    "not JSON": "1 {",
    "no receive time": "abc " + _trade(),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_a_malformed_line_is_a_rejection_with_its_reason_never_an_exception(name: str) -> None:
    parser = CaptureParser()
    parsed = parser.parse_line(7, MALFORMED[name])
    assert parsed.payload is None and parsed.error, parsed
    assert parser.counts == {"rejected": 1}
    # ...and the parser goes on: the next good line is read.
    good = parser.parse_line(8, f"{NOW_NS} {_trade()}")
    assert isinstance(good.payload, MarketTrade)


def test_prices_are_decimal_exactly_also_from_json_numbers() -> None:
    parser = CaptureParser()
    body = _trade().replace('"100"', "0.1").replace('"q": "1"', '"q": 0.3')
    parsed = parser.parse_line(1, f"{NOW_NS} {body}")
    assert isinstance(parsed.payload, MarketTrade)
    assert parsed.payload.price == Decimal("0.1") and parsed.payload.quantity == Decimal("0.3")
    quote = parser.parse_line(2, f"{NOW_NS + 123_456_789} {_book()}").payload
    assert isinstance(quote, QuoteUpdated)
    # receive time in integer nanoseconds -> the nearest microsecond, exactly (no float)
    assert quote.exchange_ts == datetime(2024, 8, 8, 0, 0, 0, 123457, tzinfo=UTC)
    # 504 ns is nearer 1 us than 0; the float division said 0
    later = parser.parse_line(3, f"{NOW_NS + 10**9 + 504} {_book()}").payload
    assert isinstance(later, QuoteUpdated)
    assert later.exchange_ts == datetime(2024, 8, 8, 0, 0, 1, 1, tzinfo=UTC)


def test_a_rejected_trade_does_not_move_the_monotonic_clock() -> None:
    parser = CaptureParser()
    late = _trade(t_ms=1723075300000).replace('"s": "BTCUSDT"', '"s": "NOQUOTEX"')
    assert parser.parse_line(1, f"{NOW_NS} {late}").error
    assert isinstance(parser.parse_line(2, f"{NOW_NS} {_trade()}").payload, MarketTrade)


def _truncated_gzip(path: Path, good_lines: int = 2000) -> None:
    line = f"{NOW_NS} {_book()}\n".encode()
    blob = gzip.compress(line * good_lines)
    path.write_bytes(blob[: len(blob) // 2])


def test_a_truncated_gzip_yields_the_lines_before_and_then_says_where(tmp_path: Path) -> None:
    from engine.marketdata.binance import CaptureReadError

    path = tmp_path / "cut.jsonl.gz"
    _truncated_gzip(path)
    _, records = parse_file(path)
    seen = 0
    with pytest.raises(CaptureReadError) as info:
        for rec in records:
            seen += 1
            assert rec.error is None or "backwards" in rec.error
    assert 0 < seen < 2000 and info.value.last_line == seen
    assert f"file corrupt after line {seen}" in str(info.value)


def _unreachable(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, kafka_port=free_port(), topic_prefix="nobody.")


@pytest.fixture
def fast_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Records time out after 1.5 s instead of librdkafka's 300 s (both versions of the
    loader take `producer_config` from their module)."""
    from deploy.kafka import producer_config as real

    def config(settings: Settings, **extra: Any) -> dict[str, Any]:
        return {**real(settings, **extra), "message.timeout.ms": 1500}

    monkeypatch.setattr(loader, "producer_config", config)


def test_a_load_nobody_received_reports_every_record_as_not_delivered(
    tmp_path: Path, fast_timeout: None
) -> None:
    path = tmp_path / "cap.jsonl"
    path.write_text(f"1 {_book()}\n2 {_trade(p='abc')}\n3 {_book()}\n")
    report = loader.load_capture(_unreachable(tmp_path), path, speed=None)
    assert (report.published, report.dead_letters) == (0, 0)
    assert report.not_delivered == 3 and not report.ok
    assert report.delivery_error


def test_a_simulation_nobody_received_reports_it(tmp_path: Path, fast_timeout: None) -> None:
    payloads = list(simulate("BTC/USDC", 0.05, 1, datetime(2026, 1, 1, tzinfo=UTC)))
    report = loader.publish_payloads(_unreachable(tmp_path), payloads)
    assert getattr(report, "published", report) == 0
    assert report.not_delivered == len(payloads) and not report.ok


def test_a_seeded_simulation_with_a_start_is_reproducible() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    a = [p.model_dump_json() for p in simulate("BTC/USDC", 0.2, 7, start)]
    b = [p.model_dump_json() for p in simulate("BTC/USDC", 0.2, 7, start)]
    assert a == b and len(a) > 60


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_a_line_too_long_is_rejected_without_holding_it(tmp_path: Path, suffix: str) -> None:
    """A file without newlines (the wrong file, a corrupt one) must not have to fit in
    memory: an over-long line is read in pieces, rejected with its length and SHA-256."""
    import hashlib

    from engine.marketdata import binance

    cap = getattr(binance, "MAX_LINE_CHARS", 1024 * 1024)
    long_line = "1 " + "x" * (3 * cap + 5) + "\n"
    text = f"{NOW_NS} {_book()}\n" + long_line + f"{NOW_NS} {_trade()}\n"
    path = tmp_path / f"cap{suffix}"
    if suffix.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    parser, records = parse_file(path)
    out = list(records)
    assert [r.line_no for r in out] == [1, 2, 3]
    assert isinstance(out[0].payload, QuoteUpdated) and isinstance(out[2].payload, MarketTrade)
    bad = out[1]
    assert bad.error and "longer than" in bad.error
    assert len(bad.raw) <= cap
    assert getattr(bad, "raw_bytes", None) == len(long_line)
    assert getattr(bad, "raw_sha256", None) == hashlib.sha256(long_line.encode()).hexdigest()
    assert parser.counts["rejected"] == 1


def test_a_load_or_simulation_with_no_broker_sends_nothing_and_says_so_at_once(
    tmp_path: Path,
) -> None:
    """The newcomer's audit (helper-132): with the stack down, `marketdata load` and
    `simulate` printed a minute of librdkafka connection failures, then `N records not
    acknowledged by the broker within 60 s`; `publish`, `admin` and the others said at
    once that no broker answers. Now these two do too, before sending anything."""
    from tests.engine.workers import cli_env, run_cli

    path = tmp_path / "cap.jsonl"
    path.write_text(f"1 {_book()}\n")
    env = cli_env(_unreachable(tmp_path))
    for args in (["load", str(path), "--as-fast-as-possible"], ["simulate", "--minutes", "0.1"]):
        done = run_cli(env, "marketdata", *args, timeout=110)
        assert done.returncode == 1, (args, done.stdout, done.stderr[-2000:])
        assert "error: nothing sent: cannot reach the Kafka broker" in done.stderr, done.stderr
        assert "not acknowledged" not in done.stderr and done.stdout == "", done.stderr


def test_a_gz_file_that_is_not_gzip_is_named_so(tmp_path: Path) -> None:
    """Not "file corrupt after line 0: BadGzipFile: ..." (the audit): the wrong file."""
    from engine.marketdata.binance import CaptureReadError

    path = tmp_path / "capture.jsonl.gz"
    path.write_text(f"1 {_book()}\n")
    _, records = parse_file(path)
    with pytest.raises(CaptureReadError) as info:
        list(records)
    assert "not gzip-compressed, though its name ends in .gz" in str(info.value)


def test_a_file_with_no_market_data_line_is_a_failed_load(tmp_path: Path) -> None:
    """The wrong file (here a README) dead-lettered every line and exited 0 with
    `"published": 0` (the audit); a capture with some bad lines still loads."""
    readme = loader.LoadReport(published=0, dead_letters=2, counts={"rejected": 2, "blank": 1})
    assert readme.nothing_usable and not readme.ok
    some_bad = loader.LoadReport(
        published=3, dead_letters=1, counts={"rejected": 1, "bookTicker": 2, "trade": 1}
    )
    assert not some_bad.nothing_usable and some_bad.ok
    depth_only = loader.LoadReport(published=0, dead_letters=0, counts={"skipped:depth": 5})
    assert not depth_only.nothing_usable and depth_only.ok


def test_a_ctrl_c_in_a_load_ends_it_with_a_report_of_what_was_sent(
    tmp_path: Path, fast_timeout: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The newcomer's audit (helper-132): a Ctrl-C in a paced replay (6 minutes for the
    reference capture at real time) dropped what the producer still held and said
    nothing. Now the load stops reading, flushes what it handed over, and reports the
    last line read (the CLI prints the report and exits 130)."""
    path = tmp_path / "cap.jsonl"
    path.write_text("".join(f"{i} {_book(u=i)}\n" for i in range(1, 6)))
    real = parse_file  # what the loader calls, as `loader.parse_file`

    def interrupted(p: Path, **kw: Any) -> Any:
        parser, records = real(p, **kw)

        def two_then_ctrl_c() -> Any:
            for n, rec in enumerate(records, start=1):
                if n == 3:
                    raise KeyboardInterrupt
                yield rec

        return parser, two_then_ctrl_c()

    monkeypatch.setattr(loader, "parse_file", interrupted)
    try:
        report = loader.load_capture(_unreachable(tmp_path), path, speed=None)
    except KeyboardInterrupt:
        pytest.fail("the Ctrl-C escaped the load: nothing flushed, nothing reported")
    assert report.interrupted_after == 2 and not report.ok
    assert report.not_delivered == 2  # both handed over, counted (nobody listens here)
