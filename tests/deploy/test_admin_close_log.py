"""An admin client dropped right after an answer prints no `Purging 1 unserved events
from background queue` (after each `make demo` stage, from the projectors' throwaway
admin clients: `Projector.high_watermarks`).

librdkafka's destroy sets the terminating flag and then puts a TERMINATE op on the
background queue to wake its thread. If that thread is still in confluent-kafka's event
callback then (resolving the futures the caller has just seen resolved), it finds the
flag set when it returns, leaves the loop and reports its own wake-up op as "unserved"
at LOG_INFO. Nothing is lost: the answers were all served. Here the race is made
certain by a future callback that sleeps on the background thread while the caller
drops the client.
"""

from __future__ import annotations

import gc
import threading
import time

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]

from deploy.kafka import admin_client, end_offsets
from deploy.settings import Settings
from schemas.topics import Topic

pytestmark = pytest.mark.integration


def test_an_admin_client_dropped_after_an_answer_prints_nothing(
    env: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    tp = TopicPartition(env.topic(Topic.ORDERS), 0)
    threads: list[str] = []

    def slow(_f: object) -> None:
        threads.append(threading.current_thread().name)
        time.sleep(0.3)  # the caller drops the client meanwhile

    for _ in range(3):
        admin = admin_client(env)
        end_offsets(admin, [tp])  # connected: the next answer comes at once
        futures = admin.list_offsets({tp: OffsetSpec.latest()})  # type: ignore[no-untyped-call]
        for f in futures.values():
            f.add_done_callback(slow)
            f.result(30)
        del admin, futures, f
        gc.collect()
        time.sleep(0.4)
    # a callback ran on librdkafka's background thread (not at once, on this one): raced
    assert set(threads) - {threading.main_thread().name}, threads
    assert "unserved events" not in capfd.readouterr().err
