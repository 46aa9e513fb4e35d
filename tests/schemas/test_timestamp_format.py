"""`format_timestamp` writes `YYYY-MM-DDThh:mm:ss.ffffffZ` for every year (strftime's
text from 1000 on), and what it writes decodes back to the same instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import decode, encode, new_event
from schemas.events import MarketTrade, Side
from schemas.types import TIMESTAMP_FORMAT, format_timestamp
from tests.engine.pure import Harness

zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)


@settings(max_examples=500, deadline=None)
@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones))
def test_the_text_is_strftimes_with_a_four_digit_year(value: datetime) -> None:
    utc = value.astimezone(UTC)
    text = format_timestamp(value)
    assert text[4] == "-" and len(text) == 27
    if utc.year >= 1000:
        assert text == utc.strftime(TIMESTAMP_FORMAT)
    else:  # strftime's %Y does not zero-pad these
        assert text == "0" * (4 - len(str(utc.year))) + utc.strftime(TIMESTAMP_FORMAT)


def _print(at: datetime) -> MarketTrade:
    return MarketTrade(
        venue="v", instrument="BTC/USDC", trade_id="t", price=Decimal("29980"),
        quantity=Decimal(1), aggressor_side=Side.SELL, exchange_ts=at,
    )  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
    )
)
def test_what_is_written_reads_back(at: datetime) -> None:
    """Years 1-999 wrote `1-01-01T...` (strftime), which `_parse_utc` refuses (and
    PostgreSQL reads as 2001): an event written with such a time could not be decoded."""
    event = new_event(_print(at), producer="md", occurred_at=at)
    back = decode(*encode(event)[1:])
    assert back.occurred_at == at and back.payload.exchange_ts == at


def test_a_fill_at_a_print_stamped_at_the_zero_time_reads_back() -> None:
    """A feed's zero time (0001-01-01, a Go or .NET default) is a valid print; the engine
    fills a resting order at it and stamps the fill's `traded_at` with it. That fill
    could not be decoded by anyone, the engine's own fold and every projection included,
    while the engine had counted it."""
    h = Harness()
    h.quote(Decimal("29999"), Decimal("30001"))
    h.order(Side.BUY, Decimal("0.1"), Decimal("29990"))
    out = h.feed(_print(datetime(1, 1, 1, tzinfo=UTC)), "md")
    fills = [e for e in out if e.event_type == "Fill"]
    assert fills
    for e in fills:
        assert decode(*encode(e)[1:]).payload.traded_at == datetime(1, 1, 1, tzinfo=UTC)


def test_whole_seconds_keep_six_digits() -> None:
    assert format_timestamp(datetime(2026, 1, 5, 12, tzinfo=UTC)) == "2026-01-05T12:00:00.000000Z"
    assert format_timestamp(datetime(1, 1, 1, tzinfo=UTC)) == "0001-01-01T00:00:00.000000Z"
