"""`tradetape run`: one component in the foreground, or several as a supervised group."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time

from deploy.settings import Settings

COMPONENTS: dict[str, str] = {
    "engine": "engine.worker:main",
    "snapshotter": "engine.snapshotter:main",
    "projections": "projections.runner:main",
    "streams": "streams.app:main",
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
            f"unknown component(s): {', '.join(unknown)}; known: {', '.join(known)}",
            file=sys.stderr,
        )
        return 2
    if len(names) == 1:
        module, func = known[names[0]].split(":")
        return int(getattr(importlib.import_module(module), func)(settings))
    selected = names or [n for n in COMPONENTS if _available(n)]
    return supervise(selected)


def supervise(names: list[str]) -> int:
    """Start each component as a child; stop all if one dies or on SIGINT/SIGTERM."""
    children = {
        n: subprocess.Popen([sys.executable, "-m", "deploy.cli_entry", "run", n]) for n in names
    }
    print(
        f"running {', '.join(names)} (pids {', '.join(str(p.pid) for p in children.values())})",
        file=sys.stderr,
    )
    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    rc = 0
    while not stopping:
        for name, proc in children.items():
            code = proc.poll()
            if code is not None:
                print(f"{name} exited with {code}; stopping the group", file=sys.stderr)
                rc = code or 1
                stopping = True
        time.sleep(0.5)
    for proc in children.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    for proc in children.values():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
    return rc
