"""librdkafka's repeated connection failures: with the broker down each Kafka command
printed ~240 `%3|...|FAIL|rdkafka#...` lines before its one `error:` line (review
helper-57, item 13). Client logs now go through Python logging (deploy.kafka's
`client_logger`), where the first failure of each client is shown and its repeats are
counted, not printed; other records pass."""

from __future__ import annotations

import logging
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from deploy import kafka
from deploy.kafka import CLIENT_LOGGER, RepeatedFailures, consumer_config, producer_config
from deploy.settings import Settings
from tests.conftest import free_port
from tests.engine.workers import REPO, run_cli


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
    # 1 since session 24 (41ba3a5): `stor` asks for the broker first and stops at once
    # with one line naming it; before, it read for its timeout and exited 3
    assert done.returncode == 1, done.stderr[-3000:]
    failures = [
        line for line in done.stderr.splitlines() if re.search(r"Connect to .* failed", line)
    ]
    # before: one per reconnect attempt (dozens in 5 s)
    assert len(failures) <= 2, done.stderr[-3000:]
    assert "error: no STOR drafted" in done.stderr


# -- review helper-60, item 6 ------------------------------------------------------------


def test_another_kind_of_failure_of_the_same_client_is_shown() -> None:
    """Before: the key was (client, level), so after one broker's refused connection a
    SASL or SSL failure, or another broker's, was suppressed."""
    f = RepeatedFailures(every=100, quiet=3600)
    b1 = "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection refused"
    b2 = "127.0.0.1:9093/2: Connect to ipv4#127.0.0.1:9093 failed: Connection refused"
    kinds = [
        f"{b1} (after 0ms in state CONNECT)",
        "127.0.0.1:9092/1: SASL authentication error: Authentication failed during"
        " authentication due to invalid credentials with SASL mechanism PLAIN (after 3ms"
        " in state AUTH_REQ)",
        "127.0.0.1:9092/1: SSL handshake failed: ssl/record/ssl3_record.c:331: wrong version"
        " number (after 2ms in state SSL_HANDSHAKE)",
        f"{b2} (after 0ms in state CONNECT)",
    ]
    assert [f.filter(_record("FAIL", "rdkafka#p-1", k)) for k in kinds] == [True] * 4
    # the same failures again, other timings and librdkafka's own repeat counts: repeats
    again = [
        f"{b1} (after 12ms in state CONNECT)",
        f"{b1} (after 1ms in state CONNECT, 4 identical error(s) suppressed)",
        f"{b2} (after 7ms in state CONNECT)",
    ]
    assert [f.filter(_record("FAIL", "rdkafka#p-1", k)) for k in again] == [False] * 3


def test_suppressed_repeats_do_not_extend_the_quiet_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before: each suppressed record restarted the 60 s window, so a continuing outage
    (a failure every few seconds) showed only every 100th record. Now the window counts
    from the last record shown: one line a minute, with the count suppressed."""
    now = [1000.0]
    monkeypatch.setattr(kafka, "time", SimpleNamespace(monotonic=lambda: now[0]))
    f = RepeatedFailures(every=100, quiet=60)
    text = "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection refused"
    shown = []
    for t in range(0, 130, 10):  # one failure every 10 s for two minutes
        now[0] = 1000.0 + t
        r = _record("FAIL", "rdkafka#p-1", f"{text} (after {t % 7}ms in state CONNECT)")
        if f.filter(r):
            shown.append((t, r.getMessage()))
    assert [t for t, _ in shown] == [0, 60, 120]
    assert shown[1][1].endswith("(and 5 more like it, not shown)")
    assert shown[2][1].endswith("(and 5 more like it, not shown)")


def test_transactional_and_debug_clients_keep_librdkafkas_stderr_logging() -> None:
    """Before: every config got the logger. A transactional producer is polled only inside
    a transaction (the engine's: an idle or holding worker, the broker-outage case, showed
    none of its logs), and a client with `debug` on is exposed to librdkafka #5325 through
    the log queue (poll(0) may block)."""
    s = Settings()
    assert "logger" not in producer_config(s, transactional_id="engine-1")
    assert "logger" not in producer_config(s, debug="eos,protocol")
    assert "logger" not in consumer_config(s, group_id="g", debug="consumer")
    # the others still go through the filter
    assert producer_config(s)["logger"].name == CLIENT_LOGGER
    assert consumer_config(s, group_id="g")["logger"].name == CLIENT_LOGGER


def test_an_unpolled_transactional_producer_still_shows_its_failures() -> None:
    """The engine's producer between transactions: created, never polled. Its connection
    failure reaches stderr from librdkafka's own thread (before: queued for a poll that
    never came; nothing was printed)."""
    script = (
        "import sys, time\n"
        "from confluent_kafka import Producer\n"
        "from deploy.kafka import producer_config\n"
        "from deploy.settings import Settings\n"
        "p = Producer(producer_config(Settings(), transactional_id='engine-idle'))\n"
        "time.sleep(120)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADETAPE_")}
    env.update(PYTHONPATH=str(REPO), TRADETAPE_KAFKA_PORT=str(free_port()))
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 30  # a bound on a hang, not a measurement
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stderr], [], [], 1.0)
            if ready:
                line = proc.stderr.readline()
                if not line:
                    break
                seen.append(line)
                if re.search(r"FAIL\|.*Connect to .* failed", line):
                    break
    finally:
        proc.kill()
        proc.wait()
    assert any(re.search(r"FAIL\|.*Connect to .* failed", line) for line in seen), seen


def test_the_first_refused_connection_says_how_to_start_the_stack() -> None:
    """A component started before the stack said only "Connection refused" and waited
    (demo16): the first refusal a process shows names `tradetape status` and `up`; the
    repeats and other failures are left as they are."""
    f = RepeatedFailures(every=2, quiet=3600)
    refused = (
        "127.0.0.1:39092/bootstrap: Connect to ipv4#127.0.0.1:39092 failed: Connection refused"
    )
    shown = [
        r.getMessage()
        for r in (_record("FAIL", f"rdkafka#p-{i % 2}", refused) for i in range(6))
        if f.filter(r)
    ]
    assert sum("tradetape up" in m for m in shown) == 1, shown
    assert "tradetape up" in shown[0] and len(shown) > 2, shown
    other = _record("FAIL", "rdkafka#p-9", "SSL handshake failed")
    assert f.filter(other) and "tradetape up" not in other.getMessage()
