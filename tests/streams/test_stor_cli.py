"""`tradetape stor` reads every topic it drafts from to its end, or drafts nothing; the
venue in section 2 comes from the orders' own events. The broker is a fake Consumer."""

from __future__ import annotations

import json
import types
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from typer.testing import CliRunner

from schemas import Envelope, encode
from schemas.events import SurveillanceAlert
from streams.detectors import all_detectors
from streams.scenario import build_scenario, run_through_engine
from streams.sequencer import sequence_log
from streams.stor import build_stor, render_html
from streams.surveillance_state import Surveillance
from streams.synthetic import Tape


def spoof_on(venue: str) -> tuple[list[Envelope[Any]], Envelope[SurveillanceAlert]]:
    t = Tape()
    t.open_account("A1", "x")
    t.open_account("A2", "x")
    t.quote(0.5, "100.00", "100.10", "2", "2")
    t.submit(1.0, "A1", "big", "BUY", "10", "99.95")
    t.submit(2.0, "A2", "sell", "SELL", "1", "100.10")
    t.fill(2.5, "sell")
    t.cancel(4.0, "big")
    events = []
    for e in t.events:
        if hasattr(e.payload, "venue") and e.topic == "orders.lifecycle":
            e = e.model_copy(update={"payload": e.payload.model_copy(update={"venue": venue})})
        events.append(e)
    [alert] = Surveillance(all_detectors()).process_batch(events)
    return events, alert


class Msg:
    def __init__(self, offset: int, env: Envelope[Any] | None = None) -> None:
        self.off = offset
        self.env = env

    def value(self) -> bytes:
        assert self.env is not None
        return encode(self.env)[1]

    def headers(self) -> Any:
        assert self.env is not None
        return encode(self.env)[2]

    def error(self) -> Any:
        return None if self.env is not None else KafkaError(KafkaError._PARTITION_EOF)

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self.off


def fake_broker(topics: dict[str, tuple[int, list[Msg]]], not_leader: int = 0) -> type:
    """topic suffix -> (high watermark, what one partition delivers, EOF events included);
    the first `not_leader` watermark requests fail as on a topic just created."""
    failures = [not_leader]

    class FakeConsumer:
        def __init__(self, conf: dict[str, Any]) -> None:
            self.name = ""
            self.left: list[Msg] = []

        def _topic(self) -> tuple[int, list[Msg]]:
            [key] = [k for k in topics if self.name.endswith(k)]
            return topics[key]

        def list_topics(self, name: str, timeout: float | None = None) -> Any:
            self.name = name
            part = types.SimpleNamespace(error=None, partitions={0: None})
            return types.SimpleNamespace(topics={name: part})

        def get_watermark_offsets(self, tp: Any, timeout: float | None = None) -> tuple[int, int]:
            if failures[0]:
                failures[0] -= 1
                raise KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION))
            return (0, self._topic()[0])

        def offsets_for_times(self, tps: list[Any], timeout: float | None = None) -> list[Any]:
            return [types.SimpleNamespace(partition=tp.partition, offset=0) for tp in tps]

        def assign(self, parts: list[Any]) -> None:
            self.left = list(self._topic()[1])

        def poll(self, timeout: float) -> Msg | None:
            return self.left.pop(0) if self.left else None

        def close(self) -> None:
            return None

    return FakeConsumer


def run_stor(monkeypatch: pytest.MonkeyPatch, topics: dict[str, tuple[int, list[Msg]]],
             alert: Envelope[SurveillanceAlert], not_leader: int = 0) -> Any:  # fmt: skip
    import confluent_kafka

    import deploy.kafka

    monkeypatch.setattr(confluent_kafka, "Consumer", fake_broker(topics, not_leader))
    monkeypatch.setattr(deploy.kafka, "broker_unreachable", lambda _settings: None)  # fake one
    from deploy.cli import app

    args = ["stor", str(alert.payload.alert_id), "--format", "json", "--timeout", "1"]
    return CliRunner().invoke(app, args)


def logged(events: list[Envelope[Any]]) -> tuple[int, list[Msg]]:
    """A topic's records, then a transaction's commit marker (an offset never delivered),
    then the end of the partition."""
    return len(events) + 1, [*(Msg(i, e) for i, e in enumerate(events)), Msg(len(events) + 1)]


def test_stor_fails_rather_than_draft_from_a_partial_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Review helper-45 (r10): the accounts topic not read to its end within the 10 s
    deadline, the draft said "no AccountOpened event for the account on the log" (it is
    on the log), exit 0."""
    events, alert = spoof_on("paper")
    accounts = [e for e in events if e.topic == "accounts.events"]
    orders = [e for e in events if e.topic == "orders.lifecycle"]
    slow: tuple[int, list[Msg]] = (len(accounts), [])  # the broker delivers nothing in time
    r = run_stor(
        monkeypatch,
        {"alerts": logged([alert]), "accounts.events": slow, "orders.lifecycle": logged(orders)},
        alert,
    )
    assert r.exit_code == 3, r.output
    assert "not read to its end" in r.stderr and "partition 0 at offset 0 of 2" in r.stderr
    assert r.stdout == ""


def test_stor_reads_past_a_transaction_marker_and_names_the_orders_venue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Review helper-45 (r11): section 2's venue was "paper" whatever venue the orders were
    on. A topic whose last offset is a commit marker is read to its end (end of partition
    at the high watermark), not taken for a partial read."""
    events, alert = spoof_on("kraken")
    accounts = [e for e in events if e.topic == "accounts.events"]
    orders = [e for e in events if e.topic == "orders.lifecycle"]
    r = run_stor(
        monkeypatch,
        {
            "alerts": logged([alert]),
            "accounts.events": logged(accounts),
            "orders.lifecycle": logged(orders),
        },
        alert,
    )
    assert r.exit_code == 0, r.output
    draft = json.loads(r.stdout)
    assert draft["section_4_identity_of_suspected_person"]["name"] == "x"
    s2 = draft["section_2_transactions_orders"]
    assert s2["venue"] == "kraken"
    assert {row["venue"] for row in s2["orders_and_transactions"]} == {"kraken"}


def test_stor_venue_is_na_with_the_reason_when_not_known() -> None:
    _, alert = spoof_on("kraken")
    draft = build_stor(alert.payload, {}, reporting_entity="op")
    venue = draft["section_2_transactions_orders"]["venue"]
    assert venue["value"] == "NA" and "not looked up" in venue["reason"]
    partial = build_stor(alert.payload, {}, reporting_entity="op", venues={"big": "kraken"})
    venue = partial["section_2_transactions_orders"]["venue"]
    assert venue["value"] == "NA" and "sell" in venue["reason"], venue
    assert "NA — no OrderSubmitted or Fill" in render_html(partial)


def test_stor_drafts_every_pattern_of_the_scenario() -> None:
    """An order-to-trade alert's evidence has counts, not order lists: its draft raised
    TypeError ('int' object is not iterable)."""
    released, _ = sequence_log(run_through_engine(build_scenario(1, 2)))
    alerts = [a.payload for a in Surveillance(all_detectors()).process_batch(released)]
    patterns = set()
    for a in alerts:
        assert isinstance(a, SurveillanceAlert)
        draft = build_stor(a, {}, reporting_entity="op", venues={})
        assert "<svg" in render_html(draft) or "No priced orders" in render_html(draft)
        patterns.add(a.pattern)
    assert "ORDER_TO_TRADE" in patterns and len(patterns) == 5


@pytest.mark.integration
def test_stor_on_the_broker_reads_transactional_topics_to_their_end(
    env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a real broker: accounts and orders written in (committed and aborted)
    transactions end in markers the consumer never sees; the read still completes (end of
    partition at the fetch position) and the draft holds the owner and the venue."""
    import confluent_kafka  # the real one

    import streams.cli
    from deploy.cli import app
    from deploy.kafka import producer_config

    events, alert = spoof_on("kraken")
    p = confluent_kafka.Producer(producer_config(env, transactional_id=f"stor-{env.topic_prefix}"))
    p.init_transactions(30)
    for commit in (True, False, True):
        p.begin_transaction()
        for e in events if commit else events[:2]:
            key, value, headers = encode(e)
            p.produce(env.topic(e.topic), key=key, value=value, headers=headers)
        p.commit_transaction(30) if commit else p.abort_transaction(30)
    key, value, headers = encode(alert)
    p.begin_transaction()
    p.produce(env.topic(alert.topic), key=key, value=value, headers=headers)
    p.commit_transaction(30)

    monkeypatch.setattr(streams.cli, "get_settings", lambda: env)
    args = ["stor", str(alert.payload.alert_id), "--format", "json", "--timeout", "20"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    draft = json.loads(r.stdout)
    assert draft["section_4_identity_of_suspected_person"]["name"] == "x"
    assert draft["section_2_transactions_orders"]["venue"] == "kraken"


@pytest.mark.parametrize("not_leader", [2, 10**6])
def test_stor_retries_metadata_until_its_deadline_then_fails_closed(
    monkeypatch: pytest.MonkeyPatch, not_leader: int
) -> None:
    """NOT_LEADER_FOR_PARTITION on a watermark request (a topic just created) raised out of
    the command (exit 1, a traceback): it is retried, and past the deadline it is an
    incomplete read (exit 3)."""
    events, alert = spoof_on("kraken")
    topics = {
        "alerts": logged([alert]),
        "accounts.events": logged([e for e in events if e.topic == "accounts.events"]),
        "orders.lifecycle": logged([e for e in events if e.topic == "orders.lifecycle"]),
    }
    r = run_stor(monkeypatch, topics, alert, not_leader=not_leader)
    if not_leader == 2:
        assert r.exit_code == 0, r.output
    else:
        assert r.exit_code == 3, r.output
        assert "Not leader" in r.stderr or "NOT_LEADER" in r.stderr, r.stderr
