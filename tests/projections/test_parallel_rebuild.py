"""`rebuild --all` in parallel (one process per topic group): the same projections as one
consumer gives, swapped in together, or nothing at all (real broker and database)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from deploy.settings import Settings
from projections.checksum import checksum
from projections.core import PROJECTIONS
from projections.projector import BulkProjector
from projections.rebuild import rebuild_many, rebuild_parallel, start_order
from projections.runner import topic_groups
from projections.synthetic import generate
from tests.projections.helpers import produce

pytestmark = pytest.mark.integration


def _state(
    settings: Settings,
) -> tuple[dict[str, tuple[str, dict[str, int]]], list[Any], list[str]]:
    with psycopg.connect(settings.dsn) as conn:
        sums = {n: checksum(conn, p) for n, p in PROJECTIONS.items()}
        offsets = conn.execute(
            "SELECT projection, topic, partition, next_offset FROM projection_offsets "
            "ORDER BY 1, 2, 3"
        ).fetchall()
        schemas = [
            r[0]
            for r in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'proj\\_%' ORDER BY 1"
            )
        ]
    return sums, offsets, schemas


def test_parallel_rebuild_equals_one_consumer_and_is_all_or_nothing(
    env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    produce(env, generate(31, 1500))
    one = rebuild_many(env, list(PROJECTIONS.values()))
    before = _state(env)
    for name in ("orders", "fills", "positions", "balances", "decisions", "risk_config"):
        assert sum(before[0][name][1].values()) > 0, name

    groups = topic_groups(list(PROJECTIONS.values()))
    assert len(groups) > 1
    par = rebuild_parallel(env, list(PROJECTIONS.values()))
    assert [r.name for r in par] == list(PROJECTIONS)
    assert {r.name: (r.checksum, r.counts) for r in par} == {
        r.name: (r.checksum, r.counts) for r in one
    }
    assert {r.name: r.events for r in par} == {r.name: r.events for r in one}
    assert {r.group for r in par} == {"+".join(p.name for p in g) for g in groups}
    assert _state(env) == before  # same rows, offsets and schemas after the swap

    # One group at a time (the others wait for a slot): the same result.
    one_by_one = rebuild_parallel(env, list(PROJECTIONS.values()), jobs=1)
    assert {r.name: (r.checksum, r.counts, r.events) for r in one_by_one} == {
        r.name: (r.checksum, r.counts, r.events) for r in par
    }
    assert _state(env) == before

    # One group fails at its very end: nothing is swapped in, no build schema is left.
    real_finish = BulkProjector.finish

    def failing_finish(self: BulkProjector) -> None:
        if "decisions" in self.name.split("+"):
            raise RuntimeError("injected failure")
        real_finish(self)

    monkeypatch.setattr(BulkProjector, "finish", failing_finish)
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        conn.execute(
            "DELETE FROM proj_fills.fills WHERE ctid IN (SELECT ctid FROM proj_fills.fills LIMIT 1)"
        )
    damaged = _state(env)
    assert damaged[0]["fills"] != before[0]["fills"]
    with pytest.raises(RuntimeError, match=r"decisions.*injected failure"):
        rebuild_parallel(env, list(PROJECTIONS.values()))
    assert _state(env) == damaged  # the other groups' finished builds were not swapped in


def test_start_order_heaviest_groups_first() -> None:
    groups = topic_groups(list(PROJECTIONS.values()))
    order = [[p.name for p in groups[i]] for i in start_order(groups)]
    assert sorted(map(tuple, order)) == sorted(tuple(p.name for p in g) for g in groups)
    assert "orders" in order[0] and "balances" in order[1] and "decisions" in order[2]
