"""`tradetape status` of a data directory whose stack is not running says whether its
ports answer anyway (the newcomer's audit, helper-132). Run from another directory,
`status` finds another data directory (the nearest .tradetape/) and said `kafka DOWN`,
`postgres DOWN` of a stack that was up, with no word of why; with nothing at all on the
ports it now says how to start one. No broker: plain sockets listen on the ports."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import free_port
from tests.engine.workers import run_cli


@contextmanager
def _listening() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


def _status(tmp_path: Path, kafka_port: int, pg_port: int) -> tuple[int, list[str]]:
    env = {
        "TRADETAPE_KAFKA_PORT": str(kafka_port),
        "TRADETAPE_POSTGRES_PORT": str(pg_port),
        "TRADETAPE_DATA_DIR": str(tmp_path / "data"),
    }
    done = run_cli(env, "status", timeout=120)
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    return done.returncode, done.stdout.splitlines()


def test_ports_held_by_another_stack_are_named(tmp_path: Path) -> None:
    with _listening() as kafka_port, _listening() as pg_port:
        rc, lines = _status(tmp_path, kafka_port, pg_port)
    assert rc == 1, lines
    kafka = next(x for x in lines if x.startswith("kafka "))
    postgres = next(x for x in lines if x.startswith("postgres "))
    for line, port in ((kafka, kafka_port), (postgres, pg_port)):
        assert "DOWN" in line, line
        assert f"127.0.0.1:{port} answers, but not a server of this data directory" in line
    assert not any("tradetape up" in x for x in lines), lines


def test_nothing_on_the_ports_says_how_to_start(tmp_path: Path) -> None:
    rc, lines = _status(tmp_path, free_port(), free_port())
    assert rc == 1, lines
    assert lines[-1] == "(nothing runs for this data directory: `tradetape up` starts it)"
    assert not any("answers" in x for x in lines), lines
