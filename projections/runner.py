"""`tradetape run projections`: every projector, one thread each, until SIGTERM/SIGINT.

A projector whose database or broker fails is closed, and reopened after a backoff from
the offsets stored in PostgreSQL; it never skips ahead. The process exits 0 on a signal.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

from deploy.settings import Settings
from projections.core import PROJECTIONS
from projections.framework import Projection
from projections.projector import Projector

log = logging.getLogger("projections.runner")


def run_one(
    settings: Settings, projection: Projection, stop: threading.Event, batch_size: int = 5000
) -> None:
    backoff = 0.5
    while not stop.is_set():
        try:
            with Projector(settings, projection, batch_size=batch_size) as proj:
                backoff = 0.5
                while not stop.is_set():
                    proj.step(0.05)
        except Exception:
            log.exception("projector %s failed; restarting from stored offsets", projection.name)
            stop.wait(backoff)
            backoff = min(backoff * 2, 10.0)


def main(settings: Settings, names: list[str] | None = None) -> int:
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    stop = threading.Event()

    def _stop(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    selected = [PROJECTIONS[n] for n in (names or list(PROJECTIONS))]
    threads = [
        threading.Thread(
            target=run_one, args=(settings, p, stop), name=f"proj-{p.name}", daemon=True
        )
        for p in selected
    ]
    for t in threads:
        t.start()
    log.info("projectors running: %s", ", ".join(p.name for p in selected))
    while not stop.is_set():
        stop.wait(0.5)
    deadline = time.monotonic() + 20
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    return 0
