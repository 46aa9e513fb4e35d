"""Two rebuilds of one projection at once: the second is refused while the first runs,
and the first ends with what it built (real broker and database)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest
import typer

import projections.rebuild as rebuild_module
from deploy.settings import Settings
from projections import cli
from projections.checksum import checksum
from projections.cli import _build_schemas
from projections.core import PROJECTIONS
from projections.projector import Projector
from projections.rebuild import (
    RebuildResult,
    create_schema,
    leftover_builds,
    rebuild,
    rebuild_lock,
    rebuild_parallel,
    rebuilding,
)
from projections.store import REBUILD_SUFFIX
from projections.synthetic import generate
from tests.projections.helpers import produce

pytestmark = pytest.mark.integration


def _in_thread(fn: Any, *args: Any, **kwargs: Any) -> tuple[threading.Thread, list[Any]]:
    got: list[Any] = []

    def run() -> None:
        try:
            got.append(fn(*args, **kwargs))
        except BaseException as exc:  # reported by the test
            got.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, got


@pytest.mark.parametrize("second", ["same projection", "--all"])
def test_a_second_rebuild_is_refused_while_one_runs(env: Settings, second: str) -> None:
    """Before: the second rebuild's create_schema dropped the first's build schema (it
    waited for the first's load transaction to end, then dropped the schema the first was
    about to checksum and swap in, or made its own under the same name); nothing stopped
    two rebuilds of one projection, and `rebuild` now also says 'dropping ..., left by a
    rebuild that did not finish' of a rebuild that is running."""
    produce(env, generate(71, 1500))
    first_batch, go_on = threading.Event(), threading.Event()

    def hold(_n: int, _p: Projector) -> None:
        first_batch.set()
        go_on.wait(120)

    first, first_got = _in_thread(
        rebuild, env, PROJECTIONS["positions"], progress=hold, batch_size=100
    )
    try:
        assert first_batch.wait(120), first_got
        # the CLI's "note: dropping ..., left by a rebuild that did not finish" is not
        # said of a rebuild under way
        assert _build_schemas(env, ["positions"]) == {}
        if second == "--all":
            other, other_got = _in_thread(rebuild_parallel, env, list(PROJECTIONS.values()))
        else:
            other, other_got = _in_thread(rebuild, env, PROJECTIONS["positions"])
        other.join(60)  # a bound on the wait, not a speed claim
        assert not other.is_alive(), "the second rebuild waited for the first"
    finally:
        go_on.set()
        first.join(300)
    assert len(other_got) == 1 and isinstance(other_got[0], RuntimeError), other_got
    assert "a rebuild of positions is under way" in str(other_got[0])
    assert len(first_got) == 1 and isinstance(first_got[0], RebuildResult), first_got
    done: RebuildResult = first_got[0]
    with psycopg.connect(env.dsn) as conn:
        assert checksum(conn, PROJECTIONS["positions"]) == (done.checksum, done.counts)
        assert leftover_builds(conn) == {}
    assert sum(done.counts.values()) > 0
    again = rebuild(env, PROJECTIONS["positions"])  # the lock went with the first
    assert (again.checksum, again.counts) == (done.checksum, done.counts)


def test_asking_whether_a_rebuild_runs_refuses_none(env: Settings) -> None:
    """`rebuilding` (the CLI's 'note: dropping ...' check, before a rebuild and after an
    interrupted one) takes no rebuild lock. Before: it asked with a try-lock of each
    name, released at once, and a rebuild starting in between was refused 'a rebuild of
    positions is under way' by the question itself."""
    started: list[str] = []

    class Between:
        """A connection that starts a rebuild (its lock) after each statement."""

        def __init__(self, conn: psycopg.Connection[Any]) -> None:
            self.conn = conn

        def execute(self, *args: Any, **kwargs: Any) -> Any:
            cur = self.conn.execute(*args, **kwargs)
            rows = cur.fetchall()
            with rebuild_lock(env, ["positions"]):
                started.append("positions")
            return _Rows(rows)

    with psycopg.connect(env.dsn, autocommit=True) as conn:
        assert rebuilding(Between(conn), ["positions"]) == set()  # type: ignore[arg-type]
        assert started, "the rebuild never got its lock"
        with rebuild_lock(env, ["positions"]):  # a rebuild under way: seen
            assert rebuilding(conn, ["fills", "positions"]) == {"positions"}
        assert rebuilding(conn, ["fills", "positions"]) == set()
        with rebuild_lock(env, list(PROJECTIONS)):  # keys of either sign
            assert rebuilding(conn, list(PROJECTIONS)) == set(PROJECTIONS)


class _Rows:
    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Any]:
        return self.rows


def test_the_rebuild_lock_gives_up_on_a_database_that_does_not_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its connection has a connect timeout, as the rebuild's others (10 s): without one a
    database host that does not answer hung `tradetape rebuild` before it said anything."""
    asked: list[dict[str, Any]] = []

    def refuse(_dsn: str, **kwargs: Any) -> Any:
        asked.append(kwargs)
        raise psycopg.OperationalError("connection timeout expired")

    monkeypatch.setattr(psycopg, "connect", refuse)
    with pytest.raises(psycopg.OperationalError), rebuild_lock(Settings(), ["fills"]):
        pass
    assert [a.get("connect_timeout") for a in asked] == [10]


def test_the_leftover_note_waits_for_the_rebuild_lock(
    env: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: `tradetape rebuild NAME` said 'note: dropping proj_NAME__rebuild, left by a
    rebuild of NAME that did not finish' before it took the rebuild lock, so when another
    rebuild took the lock in between it said that and then refused 'a rebuild of NAME is
    under way' (and dropped nothing). The note is said once the lock is held."""
    with psycopg.connect(env.dsn, autocommit=False) as conn:
        create_schema(conn, PROJECTIONS["positions"], "proj_positions" + REBUILD_SUFFIX)
    monkeypatch.setattr("deploy.settings.get_settings", lambda: env)
    real = rebuild_module.rebuild_lock
    other = contextlib.ExitStack()

    def another_first(settings: Settings, names: Sequence[str]) -> Any:
        other.enter_context(real(env, ["positions"]))  # another rebuild takes it just now
        return real(settings, names)

    monkeypatch.setattr(rebuild_module, "rebuild_lock", another_first)
    with other, pytest.raises(typer.Exit) as refused:
        cli.rebuild("positions", all_=False, parallel=True)
    err = capsys.readouterr().err
    assert refused.value.exit_code == 1, err
    assert "a rebuild of positions is under way" in err, err
    assert "note: dropping" not in err, err

    monkeypatch.setattr(rebuild_module, "rebuild_lock", real)
    cli.rebuild("positions", all_=False, parallel=True)  # the lock free: said, dropped
    err = capsys.readouterr().err
    assert (
        "note: dropping proj_positions__rebuild, left by a rebuild of positions that did"
        " not finish" in err
    ), err
    assert _build_schemas(env, ["positions"]) == {}
