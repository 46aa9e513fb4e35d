"""What every benchmark does the same way: a throwaway stack's settings, a process's CPU,
percentiles."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from deploy.settings import Settings


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on now (for a throwaway stack)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stack_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a throwaway local stack on free ports, so a benchmark never meets a
    running stack (or another benchmark's)."""
    ports = {
        "kafka_port": free_port(),
        "kafka_controller_port": free_port(),
        "postgres_port": free_port(),
    }
    return Settings(data_dir=data_dir, **{**ports, **overrides})


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used (contention-independent effort);
    0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(xs: list[float], q: float) -> float:
    """The `q` quantile (0..1) by nearest rank; NaN for no samples. Latencies, not money."""
    if not xs:
        return float("nan")
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
