"""Fees not paid in the quote asset: a base-asset fee comes out of the position (as it
comes out of the balance) at the fill price; any other asset is kept per asset."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from deploy.settings import Settings
from projections import query
from projections.core import PROJECTIONS
from projections.framework import State
from projections.store import apply_records
from tests.projections.folding import Tape, fold


def _position(st: State, inst: str = "BTC/USDT") -> tuple[Any, ...]:
    return tuple(st.dirty["positions"][("ACC001", inst)])


def test_base_asset_fee_reduces_the_position_like_the_balance() -> None:
    tape = Tape()
    fills = [
        tape.fill("BUY", "1", "90"),
        tape.fill("BUY", "1", "100", fee="0.01", fee_asset="BTC"),
        tape.fill("SELL", "0.5", "110", fee="1", fee_asset="USDT"),
    ]
    st, bad = fold("positions", fills)
    assert not bad
    row = _position(st)
    qty, avg, realized, fees = row[2], row[3], row[4], row[5]
    bal, bad = fold("balances", fills)
    assert not bad
    balances = {k[1]: v[2] for k, v in bal.dirty["balances"].items()}
    assert qty == balances["BTC"] == Decimal("1.49")
    # the 0.01 BTC left at 100 against an average of 95; the sale realized 0.5 * 15
    assert avg == 95 and realized == Decimal("0.05") + Decimal("7.5")
    assert fees == Decimal("1") + Decimal("0.01") * 100
    # PnL against any mark equals what the balances are worth at that mark
    for mark in (Decimal(80), Decimal(120), Decimal("133.7")):
        pnl = realized - fees + qty * (mark - avg)
        assert pnl == balances["USDT"] + balances["BTC"] * mark


def test_base_asset_fee_on_a_sale_deepens_a_short() -> None:
    tape = Tape()
    fills = [tape.fill("SELL", "1", "100", fee="0.01", fee_asset="BTC")]
    st, _ = fold("positions", fills)
    bal, _ = fold("balances", fills)
    row = _position(st)
    balances = {k[1]: v[2] for k, v in bal.dirty["balances"].items()}
    assert row[2] == balances["BTC"] == Decimal("-1.01")
    mark = Decimal(120)
    assert row[4] - row[5] + row[2] * (mark - row[3]) == balances["USDT"] + balances["BTC"] * mark


def test_other_asset_fees_are_kept_per_asset() -> None:
    tape = Tape()
    fills = [
        tape.fill("BUY", "1", "100", fee="0.5", fee_asset="BNB"),
        tape.fill("SELL", "1", "110", fee="0.25", fee_asset="BNB"),
        tape.fill("BUY", "1", "100", fee="3", fee_asset="EURC"),
    ]
    st, bad = fold("positions", fills)
    assert not bad
    row = _position(st)
    assert row[5] == 0  # not converted: no price for BNB is assumed
    assert json.loads(str(row[9])) == {"BNB": "0.75", "EURC": "3"}


@pytest.mark.integration
def test_fees_other_reach_the_database_and_the_pnl_view(env: Settings) -> None:
    tape = Tape()
    items = [
        tape.fill("BUY", "1", "100", fee="0.5", fee_asset="BNB"),
        tape.fill("BUY", "1", "100", fee="0.01", fee_asset="BTC"),
    ]
    assert len(items) == len(tape.records)
    records = tape.records
    positions = PROJECTIONS["positions"]
    with psycopg.connect(env.dsn) as conn:
        with conn.transaction():
            apply_records(conn, positions, positions.schema, records[:1])
        with conn.transaction():  # the second batch reads the stored row back
            apply_records(conn, positions, positions.schema, records[1:])
    df = query.frame("pnl", env)
    assert df["fees_other"].to_list() == ['{"BNB":"0.5"}']
    assert df["quantity"].to_list() == [Decimal("1.99")]
