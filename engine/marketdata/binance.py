"""Parser for raw Binance websocket captures: `<recv_ns> <combined-stream json>` per line.

Trade and bookTicker streams become `MarketTrade` and `QuoteUpdated` payloads; depth
updates are skipped and counted. Every record is validated: unparsable lines, a crossed
book, a non-positive price or size, or a timestamp that goes backwards (per stream and
symbol) is returned as a rejection with the reason, for the dead-letter topic.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from pydantic import ValidationError

from schemas.events import MarketTrade, QuoteUpdated, Side

QUOTE_ASSETS = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "EURC", "EUR", "BTC", "ETH", "BNB")
VENUE = "binance"


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


@dataclass
class CaptureParser:
    instrument_override: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    _last_ts: dict[tuple[str, str], int] = field(default_factory=dict)

    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def parse_line(self, line_no: int, raw: str) -> Parsed:
        text = raw.strip()
        if not text:
            self._count("blank")
            return Parsed(line_no, raw, None, skipped="blank")
        try:
            ns_text, _, body = text.partition(" ")
            recv_ns = int(ns_text)
            msg = json.loads(body)
            if isinstance(msg, dict) and "lastUpdateId" in msg and "stream" not in msg:
                self._count("skipped:depthSnapshot")
                return Parsed(line_no, raw, recv_ns, skipped="depthSnapshot")
            stream = str(msg["stream"])
            data = msg["data"]
        except (ValueError, KeyError, TypeError) as exc:
            self._count("rejected")
            return Parsed(line_no, raw, None, error=f"unparsable line: {exc}")
        kind = stream.split("@", 1)[1] if "@" in stream else stream
        try:
            if kind == "trade":
                return self._trade(line_no, raw, recv_ns, data)
            if kind == "bookTicker":
                return self._quote(line_no, raw, recv_ns, data)
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            self._count("rejected")
            return Parsed(line_no, raw, recv_ns, error=f"{kind}: {_short(exc)}")
        self._count(f"skipped:{kind.split('@')[0]}")
        return Parsed(line_no, raw, recv_ns, skipped=kind)

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
        ts_ms = int(str(d["T"]))
        price, qty = Decimal(str(d["p"])), Decimal(str(d["q"]))
        if price <= 0 or qty <= 0:
            raise ValueError(f"non-positive price or quantity: {price} x {qty}")
        self._monotonic("trade", symbol, ts_ms)
        payload = MarketTrade(
            venue=VENUE,
            instrument=self._instrument(symbol),
            trade_id=str(d["t"]),
            price=price,
            quantity=qty,
            # `m`: the buyer is the maker, so the seller was the aggressor.
            aggressor_side=Side.SELL if d.get("m") else Side.BUY,
            exchange_ts=datetime.fromtimestamp(ts_ms / 1000, UTC),
        )
        self._count("trade")
        return Parsed(line_no, raw, recv_ns, payload=payload)

    def _quote(self, line_no: int, raw: str, recv_ns: int, d: dict[str, object]) -> Parsed:
        symbol = str(d["s"])
        bid, ask = Decimal(str(d["b"])), Decimal(str(d["a"]))
        if bid <= 0 or ask <= 0:
            raise ValueError(f"non-positive price: bid {bid} ask {ask}")
        # Spot bookTicker has no event time: the capture's receive time stands in.
        self._monotonic("bookTicker", symbol, recv_ns)
        payload = QuoteUpdated(
            venue=VENUE,
            instrument=self._instrument(symbol),
            bid_price=bid,
            bid_quantity=Decimal(str(d["B"])),
            ask_price=ask,
            ask_quantity=Decimal(str(d["A"])),
            update_id=int(str(d["u"])),
            exchange_ts=datetime.fromtimestamp(recv_ns / 1e9, UTC),
        )
        self._count("bookTicker")
        return Parsed(line_no, raw, recv_ns, payload=payload)


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(str(e.get("msg", "")) for e in exc.errors(include_url=False))[:500]
    return str(exc)[:500]


def read_lines(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        yield from fh


def parse_file(
    path: Path, *, instrument: str | None = None, limit: int | None = None
) -> tuple[CaptureParser, Iterator[Parsed]]:
    parser = CaptureParser(instrument_override=instrument)

    def _gen() -> Iterator[Parsed]:
        for n, line in enumerate(read_lines(path), start=1):
            if limit is not None and n > limit:
                return
            yield parser.parse_line(n, line)

    return parser, _gen()
