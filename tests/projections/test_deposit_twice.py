"""A deposit id is credited once by the balances book, as by the engine's fold: a second
`DepositReceived` of an account's deposit id is quarantined (balances fold version 4).
Until session 20 two engine workers could each accept a deposit command of one id (one
on its account's partition, one sent elsewhere), and the engine's fold counted the
deposit once (`EngineState.apply`) while this book credited it twice."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from deploy.settings import Settings
from engine.state import EngineState
from projections.checksum import checksum
from projections.core import PROJECTIONS
from projections.framework import Located
from projections.rebuild import create_schema
from projections.store import REBUILD_SUFFIX, RawRecord, apply_records, decode_one
from schemas import Envelope, encode, new_event
from schemas.events import DepositReceived
from tests.projections.folding import T0, fold

D = Decimal
DEPOSITS = [
    ("d1", "A1", "100"),
    ("d1", "A1", "100"),  # the same deposit, a second fact
    ("d1", "A1", "250"),  # the id again, another amount
    ("d1", "B2", "7"),  # another account's id of the same name: its own
    ("d2", "A1", "1"),
]


def _log() -> list[Envelope[Any]]:
    return [
        new_event(
            DepositReceived(deposit_id=i, account=a, asset="USDC", amount=D(x)),
            producer="engine",
            occurred_at=T0 + timedelta(seconds=n),
            event_id=uuid.UUID(int=n),
        )
        for n, (i, a, x) in enumerate(DEPOSITS, 1)
    ]


def _records(events: list[Envelope[Any]]) -> list[RawRecord]:
    out = []
    for n, e in enumerate(events):
        _k, v, h = encode(e)
        out.append(RawRecord(str(e.topic), 0, n, v, h))
    return out


def test_a_deposit_id_twice_is_credited_once_as_the_engine_does() -> None:
    assert PROJECTIONS["balances"].fold_version >= 4  # 4: a deposit id is credited once
    events = _log()
    items = [decode_one(r) for r in _records(events)]
    assert all(isinstance(i, Located) for i in items)
    book, bad = fold("balances", [i for i in items if isinstance(i, Located)])
    assert [q.offset for q in bad] == [1, 2]
    assert all("deposit d1 of A1 already credited" in q.error for q in bad), bad
    balances = {k: D(row[2]) for k, row in book.dirty["balances"].items()}
    assert balances == {("A1", "USDC"): D(101), ("B2", "USDC"): D(7)}
    engine = EngineState()
    for e in events:
        engine.apply(e)
    for account in ("A1", "B2"):
        assert engine.account(account).balances["USDC"] == balances[(account, "USDC")]


@pytest.mark.integration
def test_live_batches_and_a_rebuild_credit_it_once(env: Settings) -> None:
    """The second fact in a later batch than the first (the first's row then comes from
    the database) is refused as in one batch; rows and quarantine are the rebuild's."""
    p = PROJECTIONS["balances"]
    records = _records(_log())
    with psycopg.connect(env.dsn) as conn:
        rebuilt = p.schema + REBUILD_SUFFIX
        create_schema(conn, p, rebuilt)
        create_schema(conn, p, "live")
        with conn.transaction():
            apply_records(conn, p, rebuilt, records)
        for batch in ([records[0]], records[1:3], records[3:]):
            with conn.transaction():
                apply_records(conn, p, "live", batch)
        live = checksum(conn, p, "live")
        assert live == checksum(conn, p, rebuilt)
        assert live[1]["projection_quarantine"] == 2
        rows = conn.execute("SELECT account, amount FROM live.balances ORDER BY 1").fetchall()
    assert rows == [("A1", D(101)), ("B2", D(7))]
