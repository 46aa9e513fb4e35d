"""Parser for raw Binance websocket captures: `<recv_ns> <combined-stream json>` per line.

Trade and bookTicker streams become `MarketTrade` and `QuoteUpdated` payloads; depth
updates are skipped and counted. Every record is validated: unparsable lines, a crossed
book, a non-positive price or size, or a timestamp that goes backwards (per stream and
symbol) is returned as a rejection with the reason, for the dead-letter topic.

`parse_line` never raises: whatever a line holds (a price `"abc"` or `"NaN"`, a timestamp
beyond the calendar, JSON nested too deep to decode), it is a rejection with its reason.
Prices and sizes are read as `Decimal` only (JSON numbers too: `parse_float=Decimal`),
in the plain form the schemas publish (`schemas.types`); timestamps are integers,
converted without floating point.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from schemas.events import MarketTrade, QuoteUpdated, Side
from schemas.types import _parse_decimal

QUOTE_ASSETS = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "EURC", "EUR", "BTC", "ETH", "BNB")
VENUE = "binance"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TS_MS = 253_402_300_799_999
"""The last millisecond of year 9999: `datetime`'s range, and far beyond any capture."""


MAX_LINE_CHARS = 1024 * 1024
"""A capture line is a few hundred bytes. A longer one is read in pieces and rejected
whole, keeping only its first MAX_LINE_CHARS characters, with its full length and SHA-256:
a file without newlines (the wrong file, a corrupt one) never has to fit in memory."""


@dataclass(frozen=True)
class Overlong:
    """A line longer than MAX_LINE_CHARS: its beginning, its UTF-8 length and SHA-256."""

    prefix: str
    nbytes: int
    sha256: str


class CaptureReadError(Exception):
    """The capture file itself cannot be read on (a truncated or corrupt gzip, an I/O
    error): `last_line` lines were read before it."""

    def __init__(self, path: Path, last_line: int, cause: BaseException) -> None:
        if last_line == 0 and isinstance(cause, gzip.BadGzipFile):
            # The wrong file, not a damaged capture ("file corrupt after line 0" said less).
            why = f"{path}: not gzip-compressed, though its name ends in .gz ({cause})"
        else:
            why = f"{path}: file corrupt after line {last_line}: {type(cause).__name__}: {cause}"
        super().__init__(why)
        self.path = path
        self.last_line = last_line
        self.cause = cause


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _decimal(value: object, name: str) -> Decimal:
    """A price or size: a plain decimal string (or a JSON number, read as Decimal), finite."""
    try:
        return _parse_decimal(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _integer(value: object, name: str) -> int:
    """An id or timestamp: a JSON integer or a string of digits, never a bool or fraction."""
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and 0 < len(value) <= 40 and value.lstrip("-").isdigit():
        return int(value)
    raise ValueError(f"{name}: expected an integer, got {str(value)[:40]!r}")


def _from_ms(ts_ms: int, name: str) -> datetime:
    if not 0 <= ts_ms <= MAX_TS_MS:
        raise ValueError(f"{name} out of range: {ts_ms} ms since the epoch")
    return EPOCH + timedelta(milliseconds=ts_ms)


def _from_ns(ts_ns: int, name: str) -> datetime:
    if not 0 <= ts_ns <= MAX_TS_MS * 1_000_000:
        raise ValueError(f"{name} out of range: {ts_ns} ns since the epoch")
    # to the nearest microsecond, ties to even: what `datetime.fromtimestamp(ns / 1e9)`
    # gave before, computed exactly (the float was off by one microsecond now and then)
    us, rest = divmod(ts_ns, 1000)
    if rest > 500 or (rest == 500 and us % 2):
        us += 1
    return EPOCH + timedelta(microseconds=us)


def unified_symbol(symbol: str) -> str:
    """`BTCUSDT` -> `BTC/USDT` (ccxt's unified form)."""
    s = symbol.upper()
    for quote in QUOTE_ASSETS:
        if s.endswith(quote) and len(s) > len(quote):
            return f"{s[: -len(quote)]}/{quote}"
    raise ValueError(f"cannot split symbol {symbol!r} into base and quote")


@dataclass(frozen=True)
class Parsed:
    """One line's outcome: a payload, a skip, or a rejection with its reason."""

    line_no: int
    raw: str
    recv_ns: int | None
    payload: MarketTrade | QuoteUpdated | None = None
    skipped: str | None = None
    error: str | None = None
    raw_bytes: int | None = None
    """Set when `raw` is only the line's beginning: the whole line's UTF-8 length..."""
    raw_sha256: str | None = None
    """...and its SHA-256."""


@dataclass
class CaptureParser:
    instrument_override: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    _last_ts: dict[tuple[str, str], int] = field(default_factory=dict)

    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def parse_line(self, line_no: int, raw: str) -> Parsed:
        """One line's outcome; never raises (anything unexpected is a rejection too)."""
        try:
            return self._parse_line(line_no, raw)
        except Exception as exc:  # the last resort: a bad line must not stop a load
            self._count("rejected")
            return Parsed(line_no, raw, None, error=f"unparsable line: {_short(exc)}")

    def _parse_line(self, line_no: int, raw: str) -> Parsed:
        text = raw.strip()
        if not text:
            self._count("blank")
            return Parsed(line_no, raw, None, skipped="blank")
        try:
            ns_text, _, body = text.partition(" ")
            recv_ns = _integer(ns_text, "receive time")
            _from_ns(recv_ns, "receive time")  # in range, or the replay's pacing is absurd
            msg = json.loads(body, parse_float=Decimal, parse_constant=_reject_constant)
            if isinstance(msg, dict) and "lastUpdateId" in msg and "stream" not in msg:
                self._count("skipped:depthSnapshot")
                return Parsed(line_no, raw, recv_ns, skipped="depthSnapshot")
            stream = str(msg["stream"])
            data = msg["data"]
        except RecursionError:
            self._count("rejected")
            return Parsed(line_no, raw, None, error="unparsable line: JSON nested too deep")
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            self._count("rejected")
            return Parsed(line_no, raw, None, error=f"unparsable line: {_short(exc)}")
        kind = stream.split("@", 1)[1] if "@" in stream else stream
        try:
            if kind in ("trade", "bookTicker"):
                if not isinstance(data, dict):
                    raise TypeError(f"data is {type(data).__name__}, not an object")
                if kind == "trade":
                    return self._trade(line_no, raw, recv_ns, data)
                return self._quote(line_no, raw, recv_ns, data)
        except (ValueError, KeyError, TypeError, ArithmeticError, ValidationError) as exc:
            self._count("rejected")
            return Parsed(line_no, raw, recv_ns, error=f"{kind[:100]}: {_short(exc)}")
        self._count(f"skipped:{kind.split('@')[0][:100]}")
        return Parsed(line_no, raw, recv_ns, skipped=kind[:100])

    def overlong(self, line_no: int, line: Overlong) -> Parsed:
        self._count("rejected")
        return Parsed(
            line_no,
            line.prefix,
            None,
            error=f"line longer than {MAX_LINE_CHARS} characters ({line.nbytes} bytes)",
            raw_bytes=line.nbytes,
            raw_sha256=line.sha256,
        )

    def _monotonic(self, stream: str, symbol: str, ts: int) -> None:
        key = (stream, symbol)
        last = self._last_ts.get(key)
        if last is not None and ts < last:
            raise ValueError(f"timestamp goes backwards on {stream} {symbol}: {ts} < {last}")
        self._last_ts[key] = ts

    def _instrument(self, symbol: str) -> str:
        return self.instrument_override or unified_symbol(symbol)

    def _trade(self, line_no: int, raw: str, recv_ns: int, d: dict[str, object]) -> Parsed:
        symbol = str(d["s"])
        ts_ms = _integer(d["T"], "trade time T")
        exchange_ts = _from_ms(ts_ms, "trade time T")
        price, qty = _decimal(d["p"], "price p"), _decimal(d["q"], "quantity q")
        if price <= 0 or qty <= 0:
            raise ValueError(f"non-positive price or quantity: {price} x {qty}")
        payload = MarketTrade(
            venue=VENUE,
            instrument=self._instrument(symbol),
            trade_id=str(d["t"]),
            price=price,
            quantity=qty,
            # `m`: the buyer is the maker, so the seller was the aggressor.
            aggressor_side=Side.SELL if d.get("m") else Side.BUY,
            exchange_ts=exchange_ts,
        )
        self._monotonic("trade", symbol, ts_ms)
        self._count("trade")
        return Parsed(line_no, raw, recv_ns, payload=payload)

    def _quote(self, line_no: int, raw: str, recv_ns: int, d: dict[str, object]) -> Parsed:
        symbol = str(d["s"])
        bid, ask = _decimal(d["b"], "bid b"), _decimal(d["a"], "ask a")
        if bid <= 0 or ask <= 0:
            raise ValueError(f"non-positive price: bid {bid} ask {ask}")
        # Spot bookTicker has no event time: the capture's receive time stands in.
        exchange_ts = _from_ns(recv_ns, "receive time")
        payload = QuoteUpdated(
            venue=VENUE,
            instrument=self._instrument(symbol),
            bid_price=bid,
            bid_quantity=_decimal(d["B"], "bid size B"),
            ask_price=ask,
            ask_quantity=_decimal(d["A"], "ask size A"),
            update_id=_integer(d["u"], "update id u"),
            exchange_ts=exchange_ts,
        )
        self._monotonic("bookTicker", symbol, recv_ns)
        self._count("bookTicker")
        return Parsed(line_no, raw, recv_ns, payload=payload)


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(str(e.get("msg", "")) for e in exc.errors(include_url=False))[:500]
    return str(exc)[:500]


def read_lines(path: Path) -> Iterator[str | Overlong]:
    """The file's lines (gzip if it ends in .gz), a line longer than MAX_LINE_CHARS as an
    `Overlong`; a file that cannot be read on raises `CaptureReadError` naming the last
    line read, after yielding every line before it."""
    opener = gzip.open if path.suffix == ".gz" else open
    n = 0
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
            while line := fh.readline(MAX_LINE_CHARS):
                if len(line) < MAX_LINE_CHARS or line.endswith("\n"):
                    yield line
                else:
                    digest = hashlib.sha256()
                    nbytes = 0
                    piece = line
                    while piece:
                        data = piece.encode("utf-8", "replace")
                        digest.update(data)
                        nbytes += len(data)
                        if piece.endswith("\n"):
                            break
                        piece = fh.readline(MAX_LINE_CHARS)
                    yield Overlong(line, nbytes, digest.hexdigest())
                n += 1
    except (EOFError, OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise CaptureReadError(path, n, exc) from exc


def parse_file(
    path: Path, *, instrument: str | None = None, limit: int | None = None
) -> tuple[CaptureParser, Iterator[Parsed]]:
    """The parser (its counts) and the parsed lines, lazily. Opening and reading errors
    surface while iterating, as `CaptureReadError`."""
    parser = CaptureParser(instrument_override=instrument)

    def _gen() -> Iterator[Parsed]:
        for n, line in enumerate(read_lines(path), start=1):
            if limit is not None and n > limit:
                return
            if isinstance(line, Overlong):
                yield parser.overlong(n, line)
            else:
                yield parser.parse_line(n, line)

    return parser, _gen()
