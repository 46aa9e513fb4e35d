"""A rebuild swapping several projections in takes their locks in the order a live group
takes them (by name), so a live batch waits for the swap instead of deadlocking with it
(real broker and database)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from deploy.settings import Settings
from projections.checksum import checksum
from projections.core import PROJECTIONS
from projections.projector import Projector, Target
from projections.rebuild import rebuild_many
from projections.synthetic import generate
from schemas.topics import Topic
from tests.projections.helpers import produce

pytestmark = pytest.mark.integration


def _wait(what: str, done: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout  # a bound on the wait, not a speed claim
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _waiting(settings: Settings, where: str) -> bool:
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        row = conn.execute(
            f"SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND {where}"
        ).fetchone()
    return bool(row and row[0])


def test_a_live_group_batch_waits_for_a_swap_of_its_members(env: Settings) -> None:
    """`rebuild_many` (`rebuild --all --one-consumer`) swapped in the order it was given
    (orders, then fills), a live `fills+orders` batch locks fills, then orders: the batch
    took fills and waited for orders, which the swap held while it waited for fills.
    Before: PostgreSQL broke the deadlock by failing the live batch (DeadlockDetected out
    of `step`, a group restart), or the swap, and with it the whole rebuild."""
    events = [e for e in generate(81, 1600) if e.topic == Topic.ORDERS]
    produce(env, events[:600])
    group = [Target.live(PROJECTIONS["fills"]), Target.live(PROJECTIONS["orders"])]
    live = Projector(env, group, batch_size=100)
    live.open()
    failures: list[BaseException] = []
    rebuilt: list[Any] = []
    try:
        live.catch_up()
        # A reader holds the live orders table, so the swap, past the orders lock, waits
        # in its DROP of the old schema.
        reader = psycopg.connect(env.dsn)
        reader.execute("SELECT count(*) FROM proj_orders.orders").fetchone()

        def build() -> None:
            try:
                rebuilt.extend(rebuild_many(env, [PROJECTIONS["orders"], PROJECTIONS["fills"]]))
            except BaseException as exc:
                failures.append(exc)

        builder = threading.Thread(target=build, daemon=True)
        builder.start()
        _wait("the swap to wait for the reader", lambda: _waiting(env, "query LIKE 'DROP SCHEMA%'"))
        produce(env, events[600:])  # a live batch to apply meanwhile
        stop = threading.Event()

        def follow() -> None:
            try:
                while not stop.is_set():
                    live.step(0.2)
            except BaseException as exc:
                failures.append(exc)

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        _wait(
            "the live batch to wait for a projection lock",
            lambda: _waiting(env, "application_name LIKE 'tradetape-projector-fills+orders%'"),
        )
        reader.close()  # the swap goes on
        builder.join(300)
        assert not builder.is_alive()
        with psycopg.connect(env.dsn) as conn:
            stored: dict[str, int] = dict(
                conn.execute(
                    "SELECT projection, sum(next_offset) FROM projection_offsets GROUP BY 1"
                ).fetchall()
            )

        def caught_up() -> bool:
            with psycopg.connect(env.dsn) as conn:
                n = conn.execute(
                    "SELECT sum(next_offset) FROM projection_offsets WHERE projection = 'orders'"
                ).fetchone()
            return bool(failures) or (n is not None and n[0] >= len(events))

        _wait("the live group to apply the rest", caught_up)
        stop.set()
        follower.join(30)
    finally:
        live.close()
    assert not failures, failures
    assert len(rebuilt) == 2 and stored["orders"] >= 600
    with psycopg.connect(env.dsn) as conn:
        after = {n: checksum(conn, PROJECTIONS[n]) for n in ("orders", "fills")}
    again = {r.name: (r.checksum, r.counts) for r in rebuild_many(
        env, [PROJECTIONS["orders"], PROJECTIONS["fills"]], swap=False
    )}  # fmt: skip
    assert after == again
