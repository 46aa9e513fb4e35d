"""Money arithmetic in the folds and the checksum's rendering are exact and do not
depend on the thread's ambient decimal context."""

from __future__ import annotations

import decimal
from collections.abc import Iterator
from decimal import Decimal

import pytest

from projections.checksum import render
from projections.core import apply_fill
from tests.projections.folding import Tape, fold

EXACT = decimal.Context(prec=500)
Q, P = "1.123456789012345678", "12345.123456789012345678"


@pytest.fixture(params=[28, 34, 6])
def ambient(request: pytest.FixtureRequest) -> Iterator[int]:
    """The thread's context set as some library might have left it."""
    with decimal.localcontext() as ctx:
        ctx.prec = request.param
        yield request.param


def test_fill_notional_orders_and_balances_are_exact(ambient: int) -> None:
    exact = EXACT.multiply(Decimal(Q), Decimal(P))
    assert len(exact.as_tuple().digits) > 28
    tape = Tape()
    fill = tape.fill("BUY", Q, P, inst="ETH/USDT")
    st, bad = fold("fills", [fill])
    assert not bad and next(iter(st.inserts["fills"].values()))[8] == exact
    st, bad = fold("balances", [fill])
    assert not bad
    balances = {k[1]: v[2] for k, v in st.dirty["balances"].items()}
    assert balances == {"ETH": Decimal(Q), "USDT": exact.copy_negate()}


def test_order_filled_notional_is_exact(ambient: int) -> None:
    from schemas.events import OrderSubmitted
    from schemas.events.orders import OrderType, Side

    tape = Tape()
    sub = tape.ev(
        OrderSubmitted(
            order_id="o1",
            account="ACC001",
            producer_id="p",
            strategy_id="s",
            client_order_id="c1",
            instrument="ETH/USDT",
            side=Side.BUY,
            order_type=OrderType.MARKET,
            quantity=Decimal(2),
            venue="paper",
        )
    )
    st, bad = fold("orders", [sub, tape.fill("BUY", Q, P, inst="ETH/USDT", leaves="0.5")])
    assert not bad
    row = st.dirty["orders"][("o1",)]
    assert row[17] == EXACT.multiply(Decimal(Q), Decimal(P))


def test_realized_pnl_is_exact(ambient: int) -> None:
    qty, avg, realized = apply_fill(Decimal(0), Decimal(0), Decimal(0), Decimal(Q), Decimal(P))
    sell = Decimal("12399.000000000000000000000001")
    qty, avg, realized = apply_fill(qty, avg, realized, Decimal("-" + Q), sell)
    assert qty == 0
    assert realized == EXACT.multiply(Decimal(Q), EXACT.subtract(sell, Decimal(P)))


def test_quote_mid_is_exact(ambient: int) -> None:
    bid, ask = "12345.12345678901234567890123457", "12345.12345678901234567890123460"
    tape = Tape()
    st, bad = fold("positions", [tape.quote("ETH/USDT", bid, ask)])
    assert not bad
    mid = st.dirty["marks"][("ETH/USDT",)][1]
    assert mid == EXACT.divide(EXACT.add(Decimal(bid), Decimal(ask)), 2)


def test_checksum_render_is_exact(ambient: int) -> None:
    a = Decimal("1234.56789012345678901234567891")
    b = Decimal("1234.56789012345678901234567899")
    assert render(a) == "1234.56789012345678901234567891"
    assert render(b) == "1234.56789012345678901234567899"
    assert render(Decimal("1.2300E+5")) == "123000"
    assert (
        render(Decimal("-0.000000000000000000000000000000100"))
        == "-0.0000000000000000000000000000001"
    )
