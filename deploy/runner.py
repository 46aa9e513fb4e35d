"""`tradetape run`: one component in the foreground, or several as a supervised group."""

from __future__ import annotations

import ctypes
import importlib
import os
import signal
import subprocess
import sys
import time

from deploy.settings import Settings
from deploy.signals import handling_stop

COMPONENTS: dict[str, str] = {
    "engine": "engine.worker:main",
    "snapshotter": "engine.snapshotter:main",
    "projections": "projections.runner:main",
    "streams": "streams.app:main",
    "travelrule": "streams.travel_rule.processor:main",
}
"""Component name -> `module:function(settings) -> int`. `signer` needs an id: not default."""

EXTRA_COMPONENTS: dict[str, str] = {"signer": "signer_ffi.participant:main"}


def _available(name: str) -> bool:
    target = {**COMPONENTS, **EXTRA_COMPONENTS}[name]
    module = target.split(":")[0]
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            return False
        raise
    return True


def run_components(names: list[str], settings: Settings) -> int:
    known = {**COMPONENTS, **EXTRA_COMPONENTS}
    unknown = [n for n in names if n not in known]
    if unknown:
        print(
            f"error: unknown component(s): {', '.join(unknown)}; known: {', '.join(known)}",
            file=sys.stderr,
        )
        return 2
    if len(names) == 1:
        module, func = known[names[0]].split(":")
        return int(getattr(importlib.import_module(module), func)(settings))
    selected = names or [n for n in COMPONENTS if _available(n)]
    return supervise(selected)


RESTART_BACKOFF = (1.0, 30.0)
"""Seconds before restarting a component that died: the first wait, and the cap it doubles
up to. Every component recovers from the log (the engine rebuilds its state, projectors
resume from their stored offsets, the surveillance app from its changelogs), so a
restart is safe; what it must not do is spin."""
STEADY_SECONDS = 60.0
"""A component that ran this long before dying starts its backoff afresh."""
USAGE_ERROR = 2
"""An exit code a restart cannot cure (bad settings or arguments, a signer with no key
group): the group stops. Every child is `tradetape run NAME`, so a setting that does not
validate exits 2 there as it does in the supervisor."""


PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal a child gets when its parent dies (Linux)."""


def _child_setup(parent: int) -> None:
    """Run in each child between fork and exec.

    Its own process group: a terminal's Ctrl-C (SIGINT to the foreground group) reaches
    only the supervisor, which stops each child with one SIGTERM. Before, a child got the
    SIGINT and then the supervisor's SIGTERM, and an engine worker takes a second signal as
    "exit now" (os._exit, no clean stop). SIGTERM on the supervisor's death: a child is
    not left running alone when the supervisor is killed.
    """
    os.setpgid(0, 0)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the group's stop still works
        return
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        os._exit(1)


def supervise(names: list[str]) -> int:
    """Start each component as a child; restart one that dies, after a backoff; stop all
    on SIGINT/SIGTERM, or if a component exits with a usage error (2)."""
    supervisor = os.getpid()

    def start(name: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "deploy.cli_entry", "run", name],
            preexec_fn=lambda: _child_setup(supervisor),  # the supervisor has one thread
        )

    children = {n: start(n) for n in names}
    started = {n: time.monotonic() for n in names}
    backoff = {n: RESTART_BACKOFF[0] for n in names}  # seconds
    restart_at: dict[str, float] = {}  # monotonic seconds
    print(
        f"running {', '.join(names)} (pids {', '.join(str(p.pid) for p in children.values())})",
        file=sys.stderr,
    )
    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    with handling_stop(_stop):
        rc = 0
        while not stopping:
            now = time.monotonic()
            for name, proc in children.items():
                if name in restart_at:
                    if now >= restart_at[name]:
                        del restart_at[name]
                        children[name], started[name] = start(name), now
                        print(f"{name} restarted (pid {children[name].pid})", file=sys.stderr)
                    continue
                code = proc.poll()
                if code is None:
                    continue
                if code == USAGE_ERROR:
                    print(
                        f"{name} exited with {code} (bad settings or arguments); stopping the group",
                        file=sys.stderr,
                    )
                    rc, stopping = code, True
                    break
                if now - started[name] >= STEADY_SECONDS:
                    backoff[name] = RESTART_BACKOFF[0]
                wait = backoff[name]
                backoff[name] = min(wait * 2, RESTART_BACKOFF[1])
                restart_at[name] = now + wait
                print(f"{name} exited with {code}; restarting in {wait:.0f} s", file=sys.stderr)
            time.sleep(0.5)
        for proc in children.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for name, proc in children.items():
            try:
                code = proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                print(f"{name} did not stop within 30 s: killed", file=sys.stderr)
                continue
            if code not in (0, USAGE_ERROR) and name not in restart_at:
                print(f"{name} exited with {code} while stopping", file=sys.stderr)
        return rc
