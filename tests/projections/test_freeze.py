"""`bulkload.freeze` keeps a Decimal as the text COPY would send (`format(d, "f")`,
`store.copy_text`), whatever its exponent and the thread's decimal context."""

from __future__ import annotations

from decimal import Decimal, localcontext

import orjson
from hypothesis import example, given
from hypothesis import strategies as st

from projections.bulkload import freeze


@given(st.decimals(allow_nan=False, allow_infinity=False), st.booleans())
@example(Decimal("1E+2"), True)
@example(Decimal("0E-8"), True)
@example(Decimal("1E-7"), False)
@example(Decimal("-0.000001"), False)
@example(Decimal("-0"), True)
@example(Decimal("123.4500"), True)
def test_a_frozen_decimal_is_its_fixed_point_text(value: Decimal, capitals: bool) -> None:
    with localcontext() as ctx:
        ctx.capitals = int(capitals)  # str() writes `e` for an exponent without capitals
        frozen = freeze(("k", value, None, 3))
    assert orjson.loads(frozen) == ["k", format(value, "f"), None, 3]
