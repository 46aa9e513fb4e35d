"""`tradetape run engine` stops promptly on SIGTERM even when the broker cannot be reached.

Before, a worker started against a dead broker sat in `init_transactions(60)` (not
interruptible), so SIGTERM took until that call gave up, ~57 s, and the worker then exited
1 with a traceback. A stop needs nothing from the broker: an open transaction is aborted by
the coordinator (at `transaction.timeout.ms`, or when the worker's id next initialises),
never half-written. The bound asserted here is generous: it catches a hang, it is not a
timing benchmark.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
STOP_BOUND_SECONDS = 15.0
"""Far above the worker's own grace (seconds, not money), far below the 57 s before."""


def _offline_env(tmp_path: Path) -> dict[str, str]:
    """This environment without TRADETAPE_* settings, the data under `tmp_path`, and a
    broker port nothing listens on: every connection is refused."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TRADETAPE_")} | {
        "TRADETAPE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "TRADETAPE_DATA_DIR": str(tmp_path / "data"),
    }


def _run_script(script: str, tmp_path: Path) -> tuple[int, str]:
    """Run `script` (a worker patched to stop some way) offline: its exit code and stderr."""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=_offline_env(tmp_path),
        stderr=subprocess.PIPE,
        timeout=STOP_BOUND_SECONDS + 30,
    )
    return proc.returncode, proc.stderr.decode(errors="replace")


def _start_engine(tmp_path: Path) -> subprocess.Popen[bytes]:
    env = _offline_env(tmp_path) | {"TRADETAPE_ENGINE_WORKER_ID": "stop0"}
    return subprocess.Popen(
        [sys.executable, "-m", "deploy.cli_entry", "run", "engine"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


STARTING = b"engine worker stop0 starting"
"""Logged once its signal handlers are in place (`engine.worker.main`)."""
START_BOUND_SECONDS = 120.0
"""For the import and the clients' creation (seconds; ~1 s quiet, far more at load 25)."""


def stderr_reader(
    proc: subprocess.Popen[bytes], starting: bytes = STARTING
) -> tuple[list[bytes], threading.Event, threading.Thread]:
    """Drain `proc`'s stderr on a thread; the event is set at the `starting` line."""
    lines: list[bytes] = []
    started = threading.Event()

    def _read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if starting in line:
                started.set()

    reader = threading.Thread(target=_read, daemon=True)
    reader.start()
    return lines, started, reader


def test_sigterm_stops_a_worker_that_cannot_reach_the_broker(tmp_path: Path) -> None:
    proc = _start_engine(tmp_path)
    lines, started, reader = stderr_reader(proc)
    try:
        # Not a fixed sleep: at load ~25 the import alone outlasted 4 s, and the SIGTERM
        # came before the handler (exit -15). From the line on, it is inside its clients'
        # start-up, reconnecting to nothing.
        assert started.wait(START_BOUND_SECONDS), b"".join(lines)[-3000:]
        time.sleep(1.0)  # into init_transactions, the call that once held a SIGTERM
        assert proc.poll() is None, b"".join(lines)[-3000:]
        asked = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_BOUND_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(
                f"no exit {STOP_BOUND_SECONDS} s after SIGTERM; stderr tail: "
                f"{b''.join(lines).decode(errors='replace')[-2000:]}"
            ) from None
        took = time.monotonic() - asked
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=30)  # to its EOF: every line the worker wrote
    text = b"".join(lines).decode(errors="replace")
    assert proc.returncode == 0, (proc.returncode, text[-3000:])
    assert "Traceback" not in text, text[-3000:]
    assert "engine worker stop0 stopped" in text, text[-3000:]
    print(f"stopped {took:.1f} s after SIGTERM")


STUCK = """
import sys, time
import engine.worker as w
from deploy.settings import Settings

def stuck(self):  # a broker call that does not return for a signal (a rebuild's, say)
    print("stuck", file=sys.stderr, flush=True)
    time.sleep(600)

w.EngineWorker._serve = stuck
sys.exit(w.main(Settings()))
"""


def test_a_stop_stuck_in_a_broker_call_ends_after_the_grace(tmp_path: Path) -> None:
    """Whatever the loop is inside of, the worker is gone within `STOP_GRACE_SECONDS` of
    SIGTERM (exit 1, saying so), and at once on a second signal."""
    from engine.worker import STOP_GRACE_SECONDS

    env = _offline_env(tmp_path)
    for second_signal in (False, True):
        proc = subprocess.Popen(
            [sys.executable, "-c", STUCK], cwd=ROOT, env=env, stderr=subprocess.PIPE
        )
        try:
            assert proc.stderr is not None
            while (line := proc.stderr.readline()) and line.strip() != b"stuck":
                pass  # librdkafka's lines before it
            assert line, "the worker ended before its loop"
            proc.send_signal(signal.SIGTERM)
            if second_signal:
                time.sleep(0.5)
                proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=STOP_GRACE_SECONDS + STOP_BOUND_SECONDS)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        text = err.decode(errors="replace")
        assert proc.returncode == 1, (proc.returncode, text[-3000:])
        if second_signal:
            assert "asked again to stop; exiting now" in text, text[-3000:]
        else:
            assert "not stopped within" in text, text[-3000:]


SECOND_SIGNAL_MID_DUMP = """
import json, os, signal, sys
import engine.worker as w
from deploy.settings import Settings

settings = Settings()
path = settings.resolved_data_dir / "engine" / f"state-{settings.topic_prefix}{w.worker_id()}.json"
path.parent.mkdir(parents=True, exist_ok=True)
path.write_text(json.dumps({"worker": "the previous run"}))
dump = w.EngineWorker.dump_state

def second_signal_mid_write(self):  # e.g. Ctrl-C, then the supervisor's SIGTERM
    def hook(frame, event, arg):
        if event == "c_call" and getattr(arg, "__name__", "") == "write":
            sys.setprofile(None)
            os.kill(os.getpid(), signal.SIGINT)
    sys.setprofile(hook)
    return dump(self)

w.EngineWorker.dump_state = second_signal_mid_write
w.EngineWorker._serve = lambda self: os.kill(os.getpid(), signal.SIGTERM)
print(path, file=sys.stderr, flush=True)
sys.exit(w.main(settings))
"""


def test_a_second_signal_while_the_state_is_written_leaves_no_torn_file(tmp_path: Path) -> None:
    """The state file is whole after any exit: the previous one, or the new one."""
    code, text = _run_script(SECOND_SIGNAL_MID_DUMP, tmp_path)
    assert code == 1, (code, text[-3000:])
    assert "asked again to stop; exiting now" in text, text[-3000:]
    path = Path(text.splitlines()[0])
    assert json.loads(path.read_text()) == {"worker": "the previous run"}


SLOW_EXIT_AFTER_A_CLEAN_STOP = """
import os, signal, sys, time
import engine.worker as w
from deploy.settings import Settings

w.STOP_GRACE_SECONDS = 0.5
dump = w.EngineWorker.dump_state

def dump_then_signal(self):  # the signal comes as the clean stop ends
    path = dump(self)
    os.kill(os.getpid(), signal.SIGTERM)  # handled here, before run() returns
    return path

w.EngineWorker.dump_state = dump_then_signal
w.EngineWorker._serve = lambda self: None
code = w.main(Settings())
print("main returned", code, file=sys.stderr, flush=True)
time.sleep(w.STOP_GRACE_SECONDS * 6)  # the rest of the shutdown, slow (a profile's dump, say)
sys.exit(code)
"""


def test_a_clean_stop_exits_with_its_code_however_long_the_rest_takes(tmp_path: Path) -> None:
    """The grace bounds the stop, not the process: once the worker has stopped cleanly (its
    state written), the exit code is its own, not the grace's 1 (review of session 16)."""
    code, text = _run_script(SLOW_EXIT_AFTER_A_CLEAN_STOP, tmp_path)
    assert "main returned 0" in text, text[-3000:]
    assert "not stopped within" not in text, text[-3000:]
    assert code == 0, (code, text[-3000:])


STUCK_WITH_STDERR_FULL = """
import fcntl, os, signal, sys, time
import engine.worker as w
from deploy.settings import Settings

w.STOP_GRACE_SECONDS = 0.5 if sys.argv[1] == "grace" else 600.0

def fill_stderr_then_stop(self):
    flags = fcntl.fcntl(2, fcntl.F_GETFL)
    fcntl.fcntl(2, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    try:
        for chunk in (b"x" * 4096, b"x"):  # the pipe full to the last byte
            while True:
                os.write(2, chunk)
    except BlockingIOError:
        pass
    finally:
        fcntl.fcntl(2, fcntl.F_SETFL, flags)
    os.kill(os.getpid(), signal.SIGTERM)
    if sys.argv[1] == "second signal":
        os.kill(os.getpid(), signal.SIGINT)
    time.sleep(600)  # a broker call that does not return for a signal

w.EngineWorker._serve = fill_stderr_then_stop
sys.exit(w.main(Settings()))
"""


@pytest.mark.parametrize("exit_by", ["grace", "second signal"])
def test_the_hard_exit_does_not_wait_on_a_full_stderr(tmp_path: Path, exit_by: str) -> None:
    """A worker whose stderr is a pipe nobody reads (full) still exits 1, after the grace or
    at a second signal: its last log line is written on a bounded path. Before, the exit
    waited on that line for ever."""
    env = _offline_env(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-c", STUCK_WITH_STDERR_FULL, exit_by],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,  # not read until the worker has exited
    )
    try:
        code = proc.wait(timeout=STOP_BOUND_SECONDS + 30)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        if proc.poll() is None:
            proc.kill()
        _out, err = proc.communicate()
    assert code == 1, (code, err.decode(errors="replace").lstrip("x")[-3000:])
