"""Decimals travel only in the published plain form, and everything written reads back.

`_parse_decimal` accepted any `Decimal(...)` spelling, exponents included, so an intent
with `"quantity": "1E+999999999"` passed intake and `format_decimal` (signing, encoding)
expanded it into a billion digits inside `process` (MemoryError: dead letter and rebuild).
"""

from __future__ import annotations

import re
from decimal import Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.codec import decode_record
from schemas import MalformedEventError, encode, new_event
from schemas.types import (
    DECIMAL_PATTERN,
    IN_RANGE_TEXT,
    MAX_DECIMAL_ADJUSTED,
    MAX_DECIMAL_TEXT,
    _parse_decimal,
    format_decimal,
)
from tests.schemas.payloads import order_intent

PLAIN = re.compile(DECIMAL_PATTERN)
D = Decimal


@pytest.mark.parametrize(
    "text",
    [
        "1E+3",
        "1e3",
        "1E-7",
        "1E+999999999",
        "0E-8",
        "+1",
        "01",
        ".5",
        "1.",
        " 1",
        "1\n",
        "1_000",
        "NaN",
        "Infinity",
        "-",
        "",
        "\u0663",  # ARABIC-INDIC DIGIT THREE: Decimal() takes it
        "1" * (MAX_DECIMAL_TEXT + 1),
        "1" * MAX_DECIMAL_TEXT,  # 1.1E+255: out of range, as the same Decimal is
        "0." + "0" * 200 + "1",  # 1E-201
    ],
)
def test_anything_but_the_plain_form_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        _parse_decimal(text)


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "-0",
        "0.00000000",
        "-0.5",
        "123.456",
        "1" * IN_RANGE_TEXT,
        "0." + "0" * 10 + "7" * (MAX_DECIMAL_TEXT - 12),  # long, but in range
        "0." + "0" * 199 + "1",  # 1E-200
    ],
)
def test_the_plain_form_is_taken(text: str) -> None:
    assert _parse_decimal(text) == Decimal(text)


@pytest.mark.parametrize("value", [D("1E+201"), D("1E-201"), 10**201, D("NaN"), D("-Inf")])
def test_out_of_range_values_are_refused(value: Decimal | int) -> None:
    with pytest.raises(ValueError):
        _parse_decimal(value)


_values = st.builds(
    lambda digits, exp, neg: Decimal((int(neg), tuple(int(c) for c in str(digits)), exp)),
    st.integers(0, 10**28 - 1),
    st.integers(-MAX_DECIMAL_ADJUSTED, MAX_DECIMAL_ADJUSTED - 27),
    st.booleans(),
).filter(lambda d: not d or -MAX_DECIMAL_ADJUSTED <= d.adjusted() <= MAX_DECIMAL_ADJUSTED)
"""Up to 28 significant digits (the default context's precision) at any accepted scale."""


@given(_values)
def test_what_is_written_reads_back(value: Decimal) -> None:
    """`format_decimal` of any value the engine can hold (arithmetic results like `1E+1`
    or a quantized `0E-8` included) is plain, within bounds, and parses to the same value."""
    assert _parse_decimal(value) == value
    text = format_decimal(value)
    assert PLAIN.match(text) and len(text) <= MAX_DECIMAL_TEXT
    assert _parse_decimal(text) == value


@given(_values, _values)
def test_engine_arithmetic_reads_back(a: Decimal, b: Decimal) -> None:
    for v in (
        a + b,
        a * b if abs((a * b).adjusted()) <= MAX_DECIMAL_ADJUSTED else a,
        a.normalize(),
        (a * b).quantize(D("0.00000001")) if abs(a * b) < D("1e19") else b,
    ):
        if v and abs(v.adjusted()) > MAX_DECIMAL_ADJUSTED:
            continue
        assert _parse_decimal(format_decimal(v)) == v


def test_engine_shaped_values() -> None:
    with localcontext() as ctx:
        ctx.prec = 28
        for v in (D("1E+1"), D("0E-8"), D("-0E-8"), D("10") / 3, D("1") - D("1.00000000")):
            text = format_decimal(v)
            assert PLAIN.match(text) and _parse_decimal(text) == v


@pytest.mark.parametrize("quantity", ["1E+3", "1E+999999999", "1.0E2"])
def test_an_intent_with_an_exponent_is_malformed_on_both_decode_paths(quantity: str) -> None:
    intent = order_intent()  # quantity 1, as the replace below expects
    _k, value, headers = encode(new_event(intent, producer="p1"))
    forged = value.replace(b'"quantity":"1"', b'"quantity":"%s"' % quantity.encode())
    assert forged != value
    with pytest.raises(MalformedEventError):
        decode_record(forged, headers)  # the engine's fast path, then schemas.decode
