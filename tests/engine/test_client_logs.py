"""The engine worker's own Kafka clients log through `tradetape.kafka`, where a repeated
connection failure is shown once per kind (`deploy.kafka.RepeatedFailures`), also while
the worker holds: its admin client and transactional producer (before: librdkafka wrote
to stderr, one line per reconnect: ~80 and ~180 lines in 56 s against a dead broker) and
its control and market-data consumers (before: not read while holding, so their lines
came in a burst after the outage). Each client is named (`client.id`) in its lines."""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException

from deploy.kafka import CLIENT_LOGGER, failure_kind
from deploy.settings import Settings
from engine.worker import EngineWorker
from tests.conftest import free_port


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_holding_workers_clients_log_each_connection_failure_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(
        data_dir=tmp_path, kafka_bootstrap=f"127.0.0.1:{free_port()}"
    )  # nothing listens: every connection is refused
    handler = _Records()
    logger = logging.getLogger(CLIENT_LOGGER)
    logger.addHandler(handler)
    w = EngineWorker(settings, wid="logs0")
    try:
        # A worker whose rebuild cannot reach the broker holds (decides nothing).
        def rebuild(*_args: object, **_kwargs: object) -> None:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "injected: broker down"))

        monkeypatch.setattr(w, "rebuild", rebuild)
        w.complete = False
        deadline = time.monotonic() + 8.0
        while time.monotonic() < deadline:
            w.step()
    finally:
        w.close()
        logger.removeHandler(handler)
    fails = [r for r in handler.records if isinstance(r.args, tuple) and r.args[0] == "FAIL"]
    by_client = Counter(str(r.args[1]).split("#")[0] for r in fails if isinstance(r.args, tuple))
    for client in (
        "engine-logs0-admin",
        "engine-logs0-txn",
        "engine-logs0-group",
        "engine-logs0-ctl",
        "engine-logs0-md",
    ):
        assert by_client[client] >= 1, (client, by_client)
    kinds = Counter(
        (str(r.args[1]), failure_kind(str(r.args[2]))) for r in fails if isinstance(r.args, tuple)
    )
    assert kinds and max(kinds.values()) == 1, kinds
