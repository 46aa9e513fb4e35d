"""Pid files and process control: stop only what we started, by pid."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def owned_process(pid_file: Path, marker: str) -> psutil.Process | None:
    """The live process named in `pid_file`, if its command line still contains `marker`.

    The marker check protects against a recycled pid: we never signal a stranger.
    """
    pid = read_pid(pid_file)
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if marker in " ".join(proc.cmdline()):
            return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return None


def stop_process(proc: psutil.Process, timeout: float = 30.0) -> bool:
    """SIGTERM, then SIGKILL after `timeout` seconds; True if it had to be killed."""
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout)
    except psutil.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        return True
    except psutil.NoSuchProcess:
        pass
    return False


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"(no log at {path})"


def wait_until(predicate: object, timeout: float, interval: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        time.sleep(interval)
    return False


def ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """A cheap TCP probe, so clients are not pointed at a port nobody listens on."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def any_port_open(servers: str, timeout: float = 0.5) -> bool:
    """Whether any `host:port` of a comma-separated bootstrap list accepts a connection."""
    from deploy.kafka import bootstrap_addresses

    return any(port_open(host, port, timeout) for host, port in bootstrap_addresses(servers))
