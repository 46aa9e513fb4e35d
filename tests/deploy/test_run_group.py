"""`tradetape run engine snapshotter`: components as one supervised process group."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from deploy.settings import Settings
from tests.engine.workers import spawn

pytestmark = pytest.mark.integration

STARTED = ("engine worker 0 started", "engine snapshotter started")


def _group(env: Settings, log: Path) -> subprocess.Popen[bytes]:
    """The supervisor of an engine and a snapshotter, in a session of its own."""
    return spawn(env, "0", log, components=("engine", "snapshotter"), session=True)


def _wait_for(
    proc: subprocess.Popen[bytes], log: Path, pred: Callable[[str], bool], timeout: float = 60
) -> str:
    """The group's log once `pred` holds for it; fails if the supervisor exits first."""
    deadline = time.monotonic() + timeout
    while True:
        text = log.read_text(errors="replace")
        if pred(text):
            return text
        assert proc.poll() is None, text[-3000:]
        assert time.monotonic() < deadline, text[-3000:]
        time.sleep(0.3)


def _started(proc: subprocess.Popen[bytes], log: Path) -> list[int]:
    """Wait for both components to start; their pids, as the supervisor printed them."""
    text = _wait_for(proc, log, lambda t: all(w in t for w in STARTED))
    pids = re.search(r"running engine, snapshotter \(pids (\d+), (\d+)\)", text)
    assert pids is not None, text[-3000:]
    return [int(p) for p in pids.groups()]


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """After a failed test: the supervisor (its children get SIGTERM when it dies)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def test_a_group_starts_each_component_and_stops_cleanly(env: Settings, tmp_path: Path) -> None:
    log = tmp_path / "group.log"
    proc = _group(env, log)
    try:
        _started(proc, log)
        proc.send_signal(signal.SIGTERM)  # the supervisor stops every child
        assert proc.wait(60) == 0, _tail(log)
        text = log.read_text(errors="replace")
        assert "engine worker 0 stopped" in text and "engine snapshotter stopped" in text, text[
            -3000:
        ]
    finally:
        _kill_group(proc)


def test_a_component_that_dies_is_restarted_and_the_group_goes_on(
    env: Settings, tmp_path: Path
) -> None:
    """Before: the first child to die stopped the whole group (the engine after a broker
    stall took the projections and surveillance down with it)."""
    log = tmp_path / "group.log"
    proc = _group(env, log)
    try:
        engine, _snapshotter = _started(proc, log)
        os.kill(engine, signal.SIGKILL)
        text = _wait_for(proc, log, lambda t: t.count("engine worker 0 started") == 2)
        assert "engine exited with -9; restarting in 1 s" in text
        assert "engine restarted (pid " in text
        assert "snapshotter stopped" not in text  # the rest of the group ran on
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, _tail(log)
    finally:
        _kill_group(proc)


def test_ctrl_c_on_the_group_stops_every_child_cleanly(env: Settings, tmp_path: Path) -> None:
    """A terminal's Ctrl-C signals the whole foreground process group. Before, the engine
    got that SIGINT and then the supervisor's SIGTERM: a second signal, which exits at
    once (os._exit(1), no clean stop, no state written). Review helper-74."""
    log = tmp_path / "group.log"
    proc = _group(env, log)
    try:
        children = _started(proc, log)
        # Outside the terminal's foreground group, so Ctrl-C reaches only the supervisor.
        assert all(os.getpgid(pid) != proc.pid for pid in children)
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        assert proc.wait(60) == 0, _tail(log)
        text = log.read_text(errors="replace")
        assert "engine worker 0 stopped" in text, text[-3000:]
        assert "asked again to stop" not in text, text[-3000:]  # one signal only
        assert "while stopping" not in text and "killed" not in text, text[-3000:]
    finally:
        _kill_group(proc)


def test_children_stop_when_the_supervisor_is_killed(env: Settings, tmp_path: Path) -> None:
    """Each child is in its own process group (above), so killing the supervisor's group
    no longer reaches them: they get SIGTERM when the supervisor dies instead, and stop."""
    log = tmp_path / "group.log"
    proc = _group(env, log)
    children: list[int] = []
    try:
        children = _started(proc, log)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 40
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert not any(_alive(pid) for pid in children), _tail(log)
        assert "engine worker 0 stopped" in log.read_text(errors="replace")
    finally:
        _kill_group(proc)
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Running, not a zombie (an orphan is reaped by init, but not at once)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
