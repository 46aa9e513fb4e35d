"""`format_timestamp`'s fast path renders exactly what the strftime format does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.types import TIMESTAMP_FORMAT, format_timestamp

zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)


@settings(max_examples=500, deadline=None)
@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones))
def test_fast_path_equals_strftime(value: datetime) -> None:
    assert format_timestamp(value) == value.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def test_whole_seconds_keep_six_digits() -> None:
    assert format_timestamp(datetime(2026, 1, 5, 12, tzinfo=UTC)) == "2026-01-05T12:00:00.000000Z"
