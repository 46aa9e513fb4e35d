"""A redelivered copy of a refused event is tried again, whatever the batch cuts: in the
refusing batch as in a later one, live and in the bulk rebuild (the seen set holds only
folded events, so a later batch always tried it; within a batch, the first copy's
refusal used to drop the later copy as its duplicate)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from deploy.settings import Settings
from projections import store
from projections.bulkload import BulkBuild
from projections.checksum import checksum
from projections.core import PROJECTIONS
from projections.rebuild import create_schema
from projections.store import RawRecord, apply_records
from schemas import encode, new_event
from schemas.events import OrderSubmitted
from schemas.events.orders import OrderType, Side
from schemas.topics import Topic
from tests.projections.folding import T0, Tape

pytestmark = pytest.mark.integration


def _rec(topic: str, offset: int, payload: Any, n: int) -> RawRecord:
    e = new_event(
        payload, producer="engine", occurred_at=T0 + timedelta(seconds=n), event_id=uuid.UUID(int=n)
    )
    _k, v, h = encode(e)
    return RawRecord(topic, 0, offset, v, h)


def test_a_redelivered_refused_fill_folds_whatever_the_batch_cuts(env: Settings) -> None:
    topic = env.topic(Topic.ORDERS)
    sub = OrderSubmitted(
        order_id="o1", account="ACC001", producer_id="p", strategy_id="s",
        client_order_id="c1", instrument="BTC/USDT", side=Side.BUY,
        order_type=OrderType.LIMIT, quantity=Decimal("2"), limit_price=Decimal("200"),
        venue="paper",
    )  # fmt: skip
    fill = Tape().fill("BUY", "0.5", "100", leaves="1.5").event.payload
    f = _rec(topic, 0, fill, 7)  # refused: the order is not known yet
    copy = RawRecord(topic, 0, 2, f.value, f.headers)  # the same event, redelivered
    records = [f, _rec(topic, 1, sub, 8), copy]
    cuts = {"one batch": [records], "two batches": [records[:2], records[2:]]}
    sums: dict[tuple[str, str, str], str] = {}
    with psycopg.connect(env.dsn) as conn:
        for name in ("orders", "positions", "fills", "balances"):
            p = PROJECTIONS[name]
            for label, batches in cuts.items():
                live, bulk = f"l{len(batches)}_{name}", f"b{len(batches)}_{name}"
                create_schema(conn, p, live)
                create_schema(conn, p, bulk)
                for b in batches:
                    with conn.transaction():
                        apply_records(conn, p, live, b)
                with BulkBuild(env.dsn, [(p, bulk)]) as build:
                    for b in batches:
                        build.apply(store.prepare(b, [p], None, [frozenset({topic})]))
                    build.finish([])
                sums[(name, label, "live")] = checksum(conn, p, live)[0]
                sums[(name, label, "bulk")] = checksum(conn, p, bulk)[0]
            assert len({v for k, v in sums.items() if k[0] == name}) == 1, (name, sums)
        row = conn.execute("SELECT status, filled_quantity FROM l1_orders.orders").fetchone()
        assert row == ("PARTIALLY_FILLED", Decimal("0.5"))
