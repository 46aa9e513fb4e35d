"""faust's lifecycle chatter kept out of an operator's log.

At INFO, `tradetape run streams` printed ~80 lines of faust/mode service lifecycle
("[^--Producer]: Starting...", "Creating topic ...", "Waiting for agents to start...")
before anything of ours, and "producer buffer full size N" warnings several times a
second while catching up: faust's own back-pressure on its changelog buffer, which it
resolves by flushing, nothing an operator can act on (review helper-78). They still show
at DEBUG. Faust's errors, its other warnings and "[^Worker]: Ready" are kept.
"""

from __future__ import annotations

import logging
import re

LIFECYCLE = re.compile(
    r": (Starting|Stopping|Restarting|Shutting down)\.\.\.|"
    r": Waiting for .*\.\.\.|"
    r"Creating topic '|Topic '.*' created\.|"
    r"^producer buffer full size \d+|^producer flush took "
)
"""The messages dropped: service lifecycle steps and the changelog buffer's back-pressure."""


class FaustLifecycleFilter(logging.Filter):
    """Drops `LIFECYCLE` records of the faust and mode loggers at WARNING or below."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.WARNING or not record.name.startswith(("faust", "mode")):
            return True
        return LIFECYCLE.search(record.getMessage()) is None


def quiet_root_handlers(logger: logging.Logger, level: int) -> None:
    """Filter `logger`'s handlers unless the log level is DEBUG (everything shown there)."""
    if level and level <= logging.DEBUG:
        return
    for handler in logger.handlers:
        if not any(isinstance(f, FaustLifecycleFilter) for f in handler.filters):
            handler.addFilter(FaustLifecycleFilter())
