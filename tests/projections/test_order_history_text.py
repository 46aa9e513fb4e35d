"""`orders.order_events.detail` is json since 0125 (it was jsonb, whose input parsed and
re-encoded every payload on a rebuild's COPY): the payload's text as the fold writes it,
the same bytes from a live batch (its rows as one JSON parameter) and from a rebuild (a
COPY), and the checksum it always had."""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
import pytest

from deploy.settings import Settings
from projections.checksum import checksum
from projections.core import PROJECTIONS
from projections.projector import Projector
from projections.rebuild import rebuild
from projections.synthetic import generate
from schemas.topics import Topic
from tests.projections.helpers import produce

pytestmark = pytest.mark.integration

HISTORY = (
    "SELECT event_id::text, detail::text, pg_typeof(detail)::text "
    "FROM proj_orders.order_events ORDER BY event_id"
)


def _history(env: Settings) -> list[tuple[Any, ...]]:
    with psycopg.connect(env.dsn) as conn:
        return conn.execute(HISTORY).fetchall()


def test_the_history_detail_is_the_payloads_text_live_and_rebuilt(env: Settings) -> None:
    orders = PROJECTIONS["orders"]
    events = [e for e in generate(25, 600) if e.topic == Topic.ORDERS]
    produce(env, events)
    # Batches of 50: each batch's history rows go as one JSON parameter (below
    # store.PIPELINE_ROWS), the live path a rebuild's COPY must agree with.
    with Projector(env, orders, batch_size=50) as proj:
        proj.catch_up()
    live = _history(env)
    assert len(live) == len(events)
    payloads = {str(e.event_id): e.model_dump(mode="json")["payload"] for e in events}
    for event_id, text, kind in live:
        assert kind == "json"
        # The payload's own JSON text (orjson's: keys in the model's order, no spaces),
        # not jsonb's rendering of it (keys by length, `": "`).
        assert text == orjson.dumps(payloads[event_id]).decode()
    with psycopg.connect(env.dsn) as conn:
        live_sum = checksum(conn, orders)
    rebuilt = rebuild(env, orders)
    assert (rebuilt.checksum, rebuilt.counts) == live_sum
    assert _history(env) == live
