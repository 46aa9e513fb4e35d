"""A rebuild interrupted (Ctrl-C) drops its half-built `proj_NAME__rebuild` schema, and
one that finds such a schema left behind (a rebuild killed outright) says it drops it;
`status` names one it sees. Before: a Ctrl-C during `tradetape rebuild orders` exited 130
with the half-built schema still there, the next rebuild dropped it without a word, and
`status` did not show it (real broker and database)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from deploy.settings import Settings
from projections.core import PROJECTIONS
from projections.projector import Projector
from projections.rebuild import create_schema, rebuild, rebuild_many
from projections.store import REBUILD_SUFFIX
from projections.synthetic import generate
from tests.engine.workers import REPO, cli_env, run_cli
from tests.projections.helpers import produce

pytestmark = pytest.mark.integration


def _build_schemas(settings: Settings) -> list[str]:
    with psycopg.connect(settings.dsn) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE right(nspname, %s) = %s ORDER BY 1",
            (len(REBUILD_SUFFIX), REBUILD_SUFFIX),
        ).fetchall()
    return [str(r[0]) for r in rows]


def _sigint(_n: int, _p: Projector) -> None:
    """A Ctrl-C in the middle of the build: the signal, not a raised exception."""
    os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt here, as in a shell: a test worker's disposition
    is not a terminal's (an earlier test in the same xdist worker may have left SIGINT
    ignored or handled, and then the signal raised nothing)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.mark.parametrize(
    "names",
    [["orders"], ["positions"], ["orders", "positions"]],
    ids=["split in two halves", "one consumer", "--all --one-consumer"],
)
@pytest.mark.usefixtures("ctrl_c_raises")
def test_a_ctrl_c_drops_the_half_built_schemas(env: Settings, names: list[str]) -> None:
    produce(env, generate(61, 600))
    with pytest.raises(KeyboardInterrupt):
        rebuild_many(env, [PROJECTIONS[n] for n in names], progress=_sigint, batch_size=100)
    assert _build_schemas(env) == []
    rebuilt = rebuild(env, PROJECTIONS[names[0]], batch_size=100)  # and it builds again
    assert rebuilt.events > 0


def test_the_cli_says_what_an_interrupted_rebuild_left(env: Settings) -> None:
    """Ctrl-C under the progress bar: exit 130, the usual line, and a line saying the
    build schema is gone and the live projection is as it was."""
    produce(env, generate(67, 600))
    script = (
        "import os, signal, sys\n"
        # SIGINT as a shell leaves it: a child inherits an ignored SIGINT from its parent,
        # and Python then installs no KeyboardInterrupt handler.
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import rich.progress\n"
        "update = rich.progress.Progress.update\n"
        "def interrupting(self, *a, **k):\n"
        "    update(self, *a, **k)\n"
        "    if k.get('completed'):\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "rich.progress.Progress.update = interrupting\n"
        "from deploy.cli import main\n"
        "sys.argv = ['tradetape', 'rebuild', 'positions']\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={
            **os.environ,
            "PYTHONPATH": str(REPO),
            **cli_env(env),
            "TRADETAPE_POSTGRES_DSN": env.dsn,
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 130, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    assert lines[-1] == "error: interrupted (Ctrl-C)", done.stderr[-3000:]
    assert (
        "rebuild interrupted: dropped the half-built proj_positions__rebuild;"
        " the live projection is as it was" in lines
    ), done.stderr[-3000:]
    assert _build_schemas(env) == []


def test_a_schema_left_behind_is_shown_and_dropped_with_a_note(env: Settings) -> None:
    """A rebuild killed outright (SIGKILL, a crash) cleans nothing: `status` names its
    schema and the next rebuild says it drops it."""
    produce(env, generate(71, 300))
    with psycopg.connect(env.dsn, autocommit=False) as conn:
        create_schema(conn, PROJECTIONS["positions"], "proj_positions" + REBUILD_SUFFIX)
    cli = {**cli_env(env), "TRADETAPE_POSTGRES_DSN": env.dsn}
    status = run_cli(cli, "status", "--json")
    got: dict[str, Any] = json.loads(status.stdout)
    assert got["projections"]["positions"]["build_schema"] == "proj_positions__rebuild", got
    table = run_cli(cli, "status")
    assert "build schema proj_positions__rebuild (a rebuild under way, or left" in table.stdout, (
        table.stdout
    )
    done = run_cli(cli, "rebuild", "positions", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (
        "note: dropping proj_positions__rebuild, left by a rebuild of positions that did"
        " not finish" in done.stderr
    ), done.stderr[-3000:]
    assert _build_schemas(env) == []
