"""`EngineWorker._renew_clients` closes the fenced producer only once the committer thread
is out of it (review helper-60: 7d1770d closed it while a commit could be in flight on
the committer thread; destroying a librdkafka handle another thread is inside of is a
native crash)."""

from __future__ import annotations

import threading
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from deploy.settings import Settings
from engine.worker import EngineWorker


class _Producer:
    """Stands in for the fenced producer: records whether a call was still inside it when
    it was closed."""

    def __init__(self) -> None:
        self.inside = threading.Event()
        self.closed_while_inside: bool | None = None

    def commit_transaction(self, *_args: Any) -> None:
        self.inside.set()
        time.sleep(0.5)
        self.inside.clear()
        raise KafkaException(KafkaError(KafkaError._FENCED, "fenced", fatal=True))

    def close(self) -> None:
        self.closed_while_inside = self.inside.is_set()


def test_the_fenced_producer_is_closed_after_the_commit_in_flight(monkeypatch: Any) -> None:
    w = EngineWorker(Settings(kafka_port=1, topic_prefix="unit."), wid="rc")
    real = w.producer
    try:
        fake = _Producer()
        w.producer = fake  # type: ignore[assignment]
        w.pending = w.committer.submit(fake.commit_transaction)
        assert fake.inside.wait(5)
        monkeypatch.setattr("engine.worker.time.sleep", lambda _s: None)
        w._renew_clients(KafkaException(KafkaError(KafkaError._FENCED, "x", fatal=True)))
        assert fake.closed_while_inside is False
        assert w.pending is None and w.producer is not fake
    finally:
        real.close()
        w.close()
        w.committer.shutdown(wait=True)
