"""faust's lifecycle lines and buffer back-pressure warnings are kept out of the log at
INFO (review helper-78: ~80 startup lines, "producer buffer full" several a second)."""

from __future__ import annotations

import io
import logging

from streams.quiet_logs import FaustLifecycleFilter, quiet_root_handlers


def _record(name: str, level: int, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 0, msg, None, None)


def test_lifecycle_and_back_pressure_lines_are_dropped_the_rest_kept() -> None:
    f = FaustLifecycleFilter()
    dropped = [
        ("mode.services", logging.INFO, "[^--Producer]: Starting..."),
        ("faust.worker", logging.INFO, "[^Worker]: Stopping..."),
        (
            "faust.transport.consumer",
            logging.INFO,
            "[^---Conductor]: Waiting for agents to start...",
        ),
        ("faust.transport.producer", logging.INFO, "[^--Producer]: Creating topic 'x-changelog'"),
        ("faust.transport.producer", logging.INFO, "[^--Producer]: Topic 'x-changelog' created."),
        ("faust.transport.producer", logging.WARNING, "producer buffer full size 137"),
        ("faust.transport.producer", logging.INFO, "producer flush took 0.02"),
    ]
    kept = [
        ("faust.worker", logging.INFO, "[^Worker]: Ready"),
        ("mode.timers", logging.WARNING, "Timer tick is overlapping (interval=0.05 runtime=0.1)"),
        ("faust.transport.producer", logging.ERROR, "[^--Producer]: Starting..."),
        ("tradetape.streams", logging.INFO, "[^--Producer]: Starting..."),
        ("faust.app.base", logging.WARNING, "consumer lagging"),
    ]
    assert [m for n, lv, m in dropped if f.filter(_record(n, lv, m))] == []
    assert [m for n, lv, m in kept if f.filter(_record(n, lv, m))] == [m for _, _, m in kept]


def test_the_root_handlers_are_filtered_except_at_debug() -> None:
    for level, shown in ((logging.INFO, False), (logging.DEBUG, True)):
        out = io.StringIO()
        logger = logging.Logger("root-under-test")
        logger.addHandler(logging.StreamHandler(out))
        quiet_root_handlers(logger, level)
        quiet_root_handlers(logger, level)  # idempotent: one filter
        assert len(logger.handlers[0].filters) == (0 if shown else 1)
        logger.handle(_record("mode.services", logging.INFO, "[^--Producer]: Starting..."))
        logger.handle(_record("faust.worker", logging.INFO, "[^Worker]: Ready"))
        assert ("Starting..." in out.getvalue()) is shown
        assert "Ready" in out.getvalue()
