"""Strict scalar types shared by every event.

Money and quantities are `Decimal` and travel as strings so no float ever touches
a price. Timestamps are UTC with microseconds, rendered as `YYYY-MM-DDThh:mm:ss.ffffffZ`
(the MiCA order-book record format).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PlainSerializer, WithJsonSchema

DECIMAL_PATTERN = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$"
MAX_DECIMAL_TEXT = 256
"""Longest decimal string accepted: far above any price, quantity or amount (28 significant
digits at any scale from 1e-200 to 1e200 fit), and it keeps a value's cost bounded."""
MAX_DECIMAL_ADJUSTED = 200
"""Largest magnitude of a decimal's adjusted exponent (`Decimal.adjusted`) accepted from a
`Decimal` or `int`: such a value with up to 28 significant digits formats within
`MAX_DECIMAL_TEXT` characters, so what the engine writes it reads back."""
IN_RANGE_TEXT = MAX_DECIMAL_ADJUSTED + 1
"""A plain decimal string this short cannot be out of range (201 integer digits are
1E+200; `0.` and 198 zeros before a digit is 1E-199): longer ones are checked, so a
string and the same value as a `Decimal` get the same verdict."""
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
MAX_SIGNATURE = 256
"""Longest signature text on an intent (an Ed25519 signature is 128 hex characters).

Admin commands have no such bounds on their text: the engine re-publishes each accepted
one as its own fact, the same v1 type, and a fact already on the log must always decode
(a bound added later made older kill switches and AML flags unreadable, so a rebuild
dropped them: review helper-53). A command too big for the engine to re-publish is
rejected by the worker instead (`AdminCommandRejected`, docs/engine.md, *Intake*)."""

_DECIMAL_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
"""`DECIMAL_PATTERN` for `fullmatch` (no `$`, which would let a trailing newline through)."""


def _in_range(value: Decimal) -> bool:
    return -MAX_DECIMAL_ADJUSTED <= value.adjusted() <= MAX_DECIMAL_ADJUSTED


def _parse_decimal(value: Any) -> Decimal:
    """The published form only: plain digits, optional sign and point, at most
    `MAX_DECIMAL_TEXT` characters. An exponent (`1E+999999999`) would be expanded by
    `format_decimal` and signing, i.e. memory chosen by the sender; the schema forbids it."""
    if isinstance(value, str):
        if len(value) > MAX_DECIMAL_TEXT or _DECIMAL_TEXT.fullmatch(value) is None:
            raise ValueError(
                f"not a plain decimal string (digits, optional sign and point, at most "
                f"{MAX_DECIMAL_TEXT} characters): {value[:40]!r}"
            )
        result = Decimal(value)
        if len(value) > IN_RANGE_TEXT and result and not _in_range(result):
            raise ValueError(f"decimal out of range (|exponent| > {MAX_DECIMAL_ADJUSTED})")
        return result
    if isinstance(value, float | bool):  # a float or bool is not money: refused
        raise ValueError("money must be a decimal string, never a float or bool")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    else:
        raise ValueError(f"expected a decimal string, got {type(value).__name__}")
    if not result.is_finite():
        raise ValueError("decimal must be finite")
    if result and not _in_range(result):
        raise ValueError(f"decimal out of range (|exponent| > {MAX_DECIMAL_ADJUSTED})")
    return result


def format_decimal(value: Decimal) -> str:
    """Plain positional notation, so `1E-18` travels as `0.000000000000000001`."""
    # `str` is that notation already unless it writes an exponent (exponent > 0 or
    # adjusted < -6) or the value is not finite, at half the cost of `format(value, "f")`
    # (every decimal field of every event written; tests/schemas/test_fastjson.py
    # compares the two ways).
    text = str(value)
    if "E" in text or "N" in text or "I" in text:  # exponent, NaN, Infinity
        text = format(value, "f")
        return text[1:] if value == 0 and text.startswith("-") else text
    return text[1:] if text[0] == "-" and not value else text  # "-0.00": "0.00"


Dec = Annotated[
    Decimal,
    BeforeValidator(_parse_decimal),
    PlainSerializer(format_decimal, return_type=str, when_used="always"),
    WithJsonSchema({"type": "string", "pattern": DECIMAL_PATTERN, "maxLength": MAX_DECIMAL_TEXT}),
]
"""Any decimal amount: price, quantity, fee, notional, ratio."""


def _positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError("must be positive")
    return value


def _non_negative(value: Decimal) -> Decimal:
    if value < 0:
        raise ValueError("must not be negative")
    return value


PositiveDec = Annotated[Dec, BeforeValidator(lambda v: _positive(_parse_decimal(v)))]
NonNegativeDec = Annotated[Dec, BeforeValidator(lambda v: _non_negative(_parse_decimal(v)))]


def _parse_utc(value: Any) -> datetime:
    if isinstance(value, str):
        text = value[:-1] + "+00:00" if value.endswith("Z") else value
        try:
            value = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"not an ISO 8601 timestamp: {value!r}") from exc
    if not isinstance(value, datetime):
        raise ValueError("expected a timestamp")
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a UTC offset")
    return value.astimezone(UTC)


def _format_timestamp(value: datetime) -> str:
    utc = value.astimezone(UTC)
    # strftime's text (TIMESTAMP_FORMAT), ~10x cheaper (this runs for every event written;
    # `%` formatting of the fields costs two thirds of `isoformat(timespec=...)`, an
    # f-string of them more than it), and with the year in four digits below 1000 too:
    # there strftime's %Y wrote `1-01-01T...`, which `_parse_utc` refuses (PostgreSQL
    # reads it as 2001), so an event stamped so (a fill at a print of a feed's zero time,
    # 0001-01-01) could be written but never read back.
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031
        utc.year,
        utc.month,
        utc.day,
        utc.hour,
        utc.minute,
        utc.second,
        utc.microsecond,
    )


_last_timestamp: tuple[datetime | None, str, datetime | None, str] = (None, "", None, "")
"""The last two timestamps formatted and their texts: an engine input's outputs all carry
the input's own `occurred_at` object, and a decision also the intent's `received_at` (the
worker then encodes the order's events at `occurred_at` again). Keyed by identity (a
datetime is immutable); one tuple, replaced whole, so another thread never pairs a time
with another's text."""


def format_timestamp(value: datetime) -> str:
    global _last_timestamp
    last = _last_timestamp
    if last[0] is value:
        return last[1]
    if last[2] is value:
        return last[3]
    text = _format_timestamp(value)
    _last_timestamp = (value, text, last[0], last[1])
    return text


UtcTimestamp = Annotated[
    datetime,
    BeforeValidator(_parse_utc),
    PlainSerializer(format_timestamp, return_type=str, when_used="always"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$",
            "description": "UTC, microseconds, YYYY-MM-DDThh:mm:ss.ffffffZ",
        }
    ),
]


def utc_now() -> datetime:
    """The one sanctioned wall-clock read, for stamping events as they happen."""
    return datetime.now(UTC)


AccountId = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
]
ProducerId = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
]
Instrument = Annotated[str, Field(min_length=3, max_length=32, pattern=r"^[A-Z0-9]+/[A-Z0-9]+$")]
"""A spot pair in ccxt's unified `BASE/QUOTE` form, e.g. `BTC/USDT`."""
AssetCode = Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[A-Z0-9]+$")]
Lei = Annotated[str, Field(pattern=r"^[A-Z0-9]{18}[0-9]{2}$")]
"""ISO 17442 Legal Entity Identifier (check digits validated where it is used)."""
CountryCode = Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
