"""A live batch on the wire: two round trips holding BEGIN and COMMIT, and all or nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

import projections.projector as projector_module
from deploy.settings import Settings
from projections.checksum import checksum
from projections.core import PROJECTIONS
from projections.projector import Projector, Target
from projections.rebuild import rebuild
from projections.synthetic import generate
from schemas.topics import Topic
from tests.projections.helpers import produce

pytestmark = pytest.mark.integration


def _frontend_messages(trace: Path) -> list[str]:
    """The client's protocol messages in a libpq trace: type, plus the SQL of a Parse."""
    out = []
    for line in trace.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) >= 4 and fields[1] == "F":
            kind = fields[3].split()[0]
            out.append(" ".join(fields[3:]) if kind == "Parse" else kind)
    return out


def test_a_small_live_batch_is_two_round_trips_with_its_begin_and_commit(
    env: Settings, tmp_path: Path
) -> None:
    # Two full batches of 40: a batch short of `batch_size` waits out step's 10 s timeout.
    produce(env, [e for e in generate(21, 400) if e.topic == Topic.DECISIONS][:80])
    trace = tmp_path / "libpq.trace"
    with Projector(env, PROJECTIONS["decisions"], batch_size=40, pipelined=False) as proj:
        assert proj.conn is not None
        assert proj.step(10.0) > 0  # the first batch creates nothing lazily any more
        with trace.open("w") as f:
            proj.conn.pgconn.trace(f.fileno())
            consumed = proj.step(10.0)
            proj.conn.pgconn.untrace()
    assert consumed > 0
    sent = _frontend_messages(trace)
    # Two round trips: one Sync each; no simple-protocol Query (a BEGIN or COMMIT of
    # its own) and no COPY for a batch this small.
    assert sent.count("Sync") == 2, sent
    assert "Query" not in sent, sent
    parses = [m for m in sent if m.startswith("Parse")]
    assert '"BEGIN"' in parses[0], parses
    assert '"COMMIT"' in parses[-1], parses
    first_sync = sent.index("Sync")
    assert all('"COMMIT"' not in m for m in sent[:first_sync])


def test_a_groups_writes_and_next_offsets_are_one_statement(env: Settings, tmp_path: Path) -> None:
    # `decisions` and `drawdown` as one live group: each writes two or three tables a
    # batch, and both members' next offsets go to projection_offsets. All of it is one
    # INSERT (data-modifying WITH queries), then the COMMIT: two Executes after the
    # first round trip, not one per table (session 22: ~6 in this group).
    produce(env, [e for e in generate(21, 400) if e.topic == Topic.DECISIONS][:80])
    trace = tmp_path / "libpq.trace"
    targets = [Target.live(PROJECTIONS["decisions"]), Target.live(PROJECTIONS["drawdown"])]
    with Projector(env, targets, batch_size=40, pipelined=False) as proj:
        assert proj.conn is not None
        assert proj.step(10.0) > 0
        with trace.open("w") as f:
            proj.conn.pgconn.trace(f.fileno())
            consumed = proj.step(10.0)
            proj.conn.pgconn.untrace()
        applied = [t.applied for t in proj.totals]
    assert consumed > 0 and all(applied), applied
    sent = _frontend_messages(trace)
    assert sent.count("Sync") == 2, sent
    second = sent[sent.index("Sync") + 1 :]
    assert second.count("Execute") == 2, second
    with psycopg.connect(env.dsn) as conn:
        stored = conn.execute(
            "SELECT projection, sum(next_offset) FROM projection_offsets "
            "WHERE projection IN ('decisions', 'drawdown') GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert [(n, int(o)) for n, o in stored] == [("decisions", 80), ("drawdown", 80)]


def test_a_batch_that_fails_in_its_last_round_trip_leaves_nothing(
    env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = generate(22, 600)
    produce(env, events)
    calls = {"n": 0}
    upsert = getattr(projector_module, "offsets_upsert")  # noqa: B009 - patched below

    def failing_second_time(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            # Queued after the batch's rows, before its COMMIT: the pipeline fails there.
            return (b"SELECT 1/0", [])
        return upsert(*args, **kwargs)

    monkeypatch.setattr(projector_module, "offsets_upsert", failing_second_time)
    with Projector(env, PROJECTIONS["orders"], batch_size=100, pipelined=False) as proj:
        assert proj.conn is not None
        assert proj.step(10.0) > 0
        with psycopg.connect(env.dsn) as conn:
            before = checksum(conn, PROJECTIONS["orders"])
            offsets_before = conn.execute(
                "SELECT topic, partition, next_offset FROM projection_offsets "
                "WHERE projection = 'orders' ORDER BY 1, 2"
            ).fetchall()
        with pytest.raises(psycopg.errors.DivisionByZero):
            while proj.step(10.0) == 0:  # pragma: no cover - a record arrives
                pass
        assert proj.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with psycopg.connect(env.dsn) as conn:
            assert checksum(conn, PROJECTIONS["orders"]) == before
            assert (
                conn.execute(
                    "SELECT topic, partition, next_offset FROM projection_offsets "
                    "WHERE projection = 'orders' ORDER BY 1, 2"
                ).fetchall()
                == offsets_before
            )
    # Reopened from the stored offsets, the projector applies every event exactly once.
    with Projector(env, PROJECTIONS["orders"], batch_size=100) as proj:
        proj.catch_up()
        assert proj.caught_up
    with psycopg.connect(env.dsn) as conn:
        live = checksum(conn, PROJECTIONS["orders"])
    rebuilt = rebuild(env, PROJECTIONS["orders"])
    assert (rebuilt.checksum, rebuilt.counts) == live
    assert rebuilt.counts["order_events"] == sum(1 for e in events if e.topic == Topic.ORDERS)
