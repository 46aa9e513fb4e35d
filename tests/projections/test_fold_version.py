"""A fold change reaches a live projection only through a rebuild: a live schema that
holds rows folded by another fold version is refused when a projector opens, until
`tradetape rebuild NAME` swaps in a schema stamped with the code's version."""

from __future__ import annotations

import psycopg
import pytest

from deploy.local.stack import _projection_health
from deploy.settings import Settings
from projections.core import PROJECTIONS
from projections.foldversion import FoldVersionMismatch, stamped_version
from projections.projector import Projector
from projections.rebuild import rebuild
from projections.synthetic import generate
from tests.projections.helpers import produce

pytestmark = pytest.mark.integration


def test_a_live_projection_of_an_older_fold_is_refused_until_rebuilt(env: Settings) -> None:
    orders, decisions = PROJECTIONS["orders"], PROJECTIONS["decisions"]
    assert decisions.fold_version == 1  # (fills was the example until its version 2)
    assert orders.fold_version == 5  # 5: a triggered stop/take child is TRIGGERED
    produce(env, generate(3, 300))
    for p in (orders, decisions):  # fresh schemas: stamped on first open
        with Projector(env, p) as proj:
            proj.catch_up()
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        assert stamped_version(conn, "proj_orders") == 5
        assert stamped_version(conn, "proj_decisions") == 1
        # a database whose projections were folded before stamps existed
        conn.execute("COMMENT ON SCHEMA proj_orders IS NULL")
        conn.execute("COMMENT ON SCHEMA proj_decisions IS NULL")
    health = _projection_health(env.dsn)
    assert health["orders"]["degraded"] and "fold version 1" in health["orders"]["rebuild_needed"]
    assert "rebuild_needed" not in health["decisions"]
    refused = Projector(env, orders)
    try:
        with pytest.raises(FoldVersionMismatch, match="tradetape rebuild orders"):
            refused.open()
    finally:
        refused.close()
    with Projector(env, decisions) as proj:  # version 1, unchanged: carries on, stamped
        proj.catch_up()
    rebuild(env, orders)
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        assert stamped_version(conn, "proj_orders") == 5
        assert stamped_version(conn, "proj_decisions") == 1
    with Projector(env, orders) as proj:
        proj.catch_up()
    assert "rebuild_needed" not in _projection_health(env.dsn).get("orders", {})
