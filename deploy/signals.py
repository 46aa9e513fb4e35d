"""The stop signals of a component's `main`, handled for its run and then given back."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

StopHandler = Callable[[int, FrameType | None], Any]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def handling_stop(handler: StopHandler) -> Iterator[None]:
    """`handler` for SIGINT and SIGTERM inside the block; what was there before after it,
    also when the block raises. A component's `main` run in-process (by a test, or by a
    caller that goes on) otherwise left its handler behind for good: a later Ctrl-C only
    set a finished component's stop flag and raised no KeyboardInterrupt (session 24's
    `test_rebuild_interrupt` failed on one left by an earlier test in its xdist worker)."""
    before = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in before.items():
            signal.signal(s, h)
