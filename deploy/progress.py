"""Progress lines on stderr for commands that run for minutes (`simulate surveillance`,
`marketdata load` and `marketdata simulate` paced in real time): one line every
`EVERY_SECONDS` of wall time, so an operator sees the work move. Until session 24 the
README's `simulate surveillance --minutes 5` ran five minutes without a word, and a
capture replayed at its own pace (the default) about six."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

EVERY_SECONDS = 10.0
"""Wall seconds between two progress lines (read when a `Ticker` is made)."""


class Ticker:
    """Called for every record sent; writes `line(*args)` on stderr when `EVERY_SECONDS`
    have passed since the last line (or the start)."""

    def __init__(self, line: Callable[..., str]) -> None:
        self.line = line
        self.every = EVERY_SECONDS
        self.due = time.monotonic() + self.every

    def __call__(self, *args: Any) -> None:
        now = time.monotonic()
        if now >= self.due:
            self.due = now + self.every
            sys.stderr.write(self.line(*args) + "\n")
            sys.stderr.flush()


def duration(seconds: float) -> str:
    """`seconds` for a person: `45 s`, `5.0 min`, `1.5 h`."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def clock(seconds: float) -> str:
    """`seconds` as m:ss (or h:mm:ss): a position in a stream's own time."""
    whole = int(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
