"""librdkafka's repeated connection failures: with the broker down each Kafka command
printed ~240 `%3|...|FAIL|rdkafka#...` lines before its one `error:` line (review
helper-57, item 13). Client logs now go through Python logging (deploy.kafka's
`client_logger`), where the first failure of each client is shown and its repeats are
counted, not printed; other records pass."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from deploy.kafka import CLIENT_LOGGER, RepeatedFailures, consumer_config, producer_config
from deploy.settings import Settings
from tests.conftest import free_port
from tests.engine.workers import run_cli


def _record(fac: str, client: str, text: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(
        CLIENT_LOGGER, level, "rdkafka", 0, "%s [%s] %s", (fac, client, text), None
    )


def test_the_first_failure_of_each_client_passes_and_repeats_are_counted() -> None:
    f = RepeatedFailures(every=100, quiet=3600)
    shown = [
        r.getMessage()
        for r in (_record("FAIL", "rdkafka#p-1", "refused") for _ in range(250))
        if f.filter(r)
    ]
    assert shown == [
        "FAIL [rdkafka#p-1] refused",
        "FAIL [rdkafka#p-1] refused (and 99 more like it, not shown)",
        "FAIL [rdkafka#p-1] refused (and 99 more like it, not shown)",
    ]
    # another client, another level, another facility: each shown
    assert f.filter(_record("FAIL", "rdkafka#c-2", "refused"))
    assert f.filter(_record("FAIL", "rdkafka#p-1", "Disconnected", logging.INFO))
    assert all(f.filter(_record("TXNERR", "rdkafka#p-1", "fenced")) for _ in range(3))
    assert f.filter(logging.LogRecord("x", logging.ERROR, "x", 0, "plain %s", ("a",), None))


def test_a_failure_after_a_quiet_spell_is_shown_again() -> None:
    f = RepeatedFailures(every=100, quiet=0.0)  # every failure is after a quiet spell
    assert all(f.filter(_record("FAIL", "rdkafka#p-1", "refused")) for _ in range(3))


def test_every_client_config_routes_its_logs_through_the_filter() -> None:
    s = Settings()
    for conf in (producer_config(s), consumer_config(s, group_id="g")):
        log = conf["logger"]
        assert log.name == CLIENT_LOGGER
        assert sum(isinstance(f, RepeatedFailures) for f in log.filters) == 1


def test_a_command_with_the_broker_down_prints_one_failure_line(tmp_path: Path) -> None:
    env = {"TRADETAPE_KAFKA_PORT": str(free_port()), "TRADETAPE_DATA_DIR": str(tmp_path / "d")}
    done = run_cli(env, "stor", "00000000-0000-7000-8000-000000000001", "--timeout", "5")
    assert done.returncode == 3, done.stderr[-3000:]
    failures = [
        line for line in done.stderr.splitlines() if re.search(r"Connect to .* failed", line)
    ]
    # before: one per reconnect attempt (dozens in 5 s)
    assert len(failures) <= 2, done.stderr[-3000:]
    assert "error: no STOR drafted" in done.stderr
