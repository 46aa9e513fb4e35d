"""`tradetape run travelrule` stops cleanly on SIGTERM when the broker cannot be reached.

Before (session 25), the processor sat in one `init_transactions(30)` call, which does not
return for a signal: a SIGTERM took until the call gave up (~30 s), and then it exited 1
with the broker's error. Now the call is made in slices of `INIT_SLICE_S` and the stop is
seen between them: exit 0. The bound is the engine's (`tests/engine/test_stop.py`): it
catches a hang, it is not a timing benchmark."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.engine.test_stop import (
    ROOT,
    START_BOUND_SECONDS,
    STOP_BOUND_SECONDS,
    _offline_env,
    stderr_reader,
)

STARTING = b"travel rule starting"
"""Logged once its signal handlers are in place (`streams.travel_rule.processor.main`)."""


def _stops_on_sigterm(cmd: list[str], tmp_path: Path, waiting: bytes, said: str) -> None:
    """Run `cmd` offline, SIGTERM it a second after its line `waiting`: it exits 0 within
    `STOP_BOUND_SECONDS`, without a traceback, having logged `said`."""
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=_offline_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    lines, started, reader = stderr_reader(proc, waiting)
    try:
        assert started.wait(START_BOUND_SECONDS), b"".join(lines)[-3000:]
        time.sleep(1.0)  # into the broker call, reconnecting to nothing
        assert proc.poll() is None, b"".join(lines)[-3000:]
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_BOUND_SECONDS)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"no exit {STOP_BOUND_SECONDS} s after SIGTERM; stderr tail: "
                f"{b''.join(lines).decode(errors='replace')[-2000:]}"
            ) from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=30)
    text = b"".join(lines).decode(errors="replace")
    assert proc.returncode == 0, (proc.returncode, text[-3000:])
    assert "Traceback" not in text, text[-3000:]
    assert said in text, text[-3000:]


def test_sigterm_stops_the_travel_rule_that_cannot_reach_the_broker(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "deploy.cli_entry", "run", "travelrule"]
    _stops_on_sigterm(cmd, tmp_path, STARTING, "travel rule: stopped while initialising")


ASKING_ENDS = """
import sys
import streams.travel_rule.processor as p
from deploy.settings import Settings

real = p.end_offsets

def asking(*args, **kwargs):  # the broker went away after the transactions' start
    print("asking the ends", file=sys.stderr, flush=True)
    return real(*args, **kwargs)

p.TravelRuleProcessor._init_transactions = lambda self: None
p.partitions_of = lambda *args, **kwargs: [0, 1, 2]
p.end_offsets = asking
sys.exit(p.main(Settings()))
"""


def test_sigterm_stops_the_travel_rule_waiting_on_its_end_offsets(tmp_path: Path) -> None:
    """The rebuild's `end_offsets` against a broker that does not answer: before session
    27 one request waited its 10 s and was asked again up to 30 s, the SIGTERM held all
    that time, then exit 1; now the stop is looked at while it waits (`stopping`)."""
    cmd = [sys.executable, "-c", ASKING_ENDS]
    _stops_on_sigterm(cmd, tmp_path, b"asking the ends", "travel rule: stopped while asking")
