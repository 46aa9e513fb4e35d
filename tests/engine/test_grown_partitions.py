"""Partitions added to the account-keyed engine topics move accounts: fail closed.

Every engine topic is keyed by account (murmur2), and a worker's state is "the accounts on
the partitions it owns". Adding partitions changes `murmur2(account) % n`: ACC1 lies on
partition 0 of 6 and on partition 6 of 12. Its history (the fill that made its position)
stays on partition 0 of `orders.lifecycle`; its new intents land on partition 6 of
`orders.intents`. A worker owning 6 but not 0 rebuilds the accounts of 6 from partition 6
of its own topics, finds no position for ACC1, and before this test's fix approved an
order that breached `max_position` (fail open). Now the worker decides every intent as
STALE_STATE while a keyed topic's partition count differs from the declared one
(`deploy.kafka.partition_count`), and says why.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    NewPartitions,
)

from deploy.kafka import producer_config
from deploy.settings import Settings
from engine.partitioning import partition_for
from schemas import Envelope, encode, new_event
from schemas.envelope import EventPayload
from schemas.events import DepositReceived, KillSwitchEngaged, RiskLimits, RiskLimitsChanged
from schemas.topics import Topic
from tests.engine.helpers import (
    RecordCounter,
    admin,
    admin_answers,
    intent,
    produce,
    quote,
    rejected_stale,
    running_snapshotter,
    running_worker,
    send_admin,
    wait_for,
    world,
)

pytestmark = pytest.mark.integration

GROWN = (Topic.INTENTS, Topic.ADMIN, Topic.DECISIONS, Topic.ORDERS)


def _decision(events: list[Envelope[Any]], coid: str) -> Any:
    for e in events:
        if e.event_type == "RiskDecision" and e.payload.client_order_id == coid:
            return e.payload
    return None


def _decided(settings: Settings, coid: str) -> Any:
    decs = wait_for(
        settings, Topic.DECISIONS, lambda ev: _decision(ev, coid) is not None, timeout=60
    )
    found = _decision(decs, coid)
    assert found is not None, f"no decision for {coid}"
    return found


def test_a_worker_owning_an_accounts_new_partition_does_not_approve_past_its_limits(
    env: Settings,
) -> None:
    settings = env.with_overrides(
        engine_partition_check_seconds=0.5, engine_session_timeout_ms=6000
    )
    assert (partition_for("ACC1", 6), partition_for("ACC1", 12)) == (0, 6)
    with running_worker(settings, "a"):
        key = world(settings, ["ACC1"])
        limits = RiskLimits(max_position=Decimal("1"), max_price_age_seconds=3600)
        produce(
            settings,
            [
                admin(
                    RiskLimitsChanged(
                        scope="*", config_version=1, changed_by="admin", reason="t", limits=limits
                    )
                )
            ],
            admin=True,
        )
        produce(settings, [quote()])
        produce(settings, [intent(key, "ACC1", "fill", qty="1")])
        assert _decided(settings, "fill").outcome == "APPROVED"
        wait_for(settings, Topic.ORDERS, lambda ev: any(e.event_type == "Fill" for e in ev))
        produce(settings, [intent(key, "ACC1", "over-before", qty="0.5")])
        before = _decided(settings, "over-before")
        assert before.outcome == "REJECTED" and "MAX_POSITION" in before.reason_codes

    client = AdminClient({"bootstrap.servers": settings.bootstrap})
    names = [settings.topic(t) for t in GROWN]
    for fut in client.create_partitions([NewPartitions(n, 12) for n in names]).values():
        fut.result(30)

    with running_worker(settings, "a") as a, running_worker(settings, "b") as b:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if (
                a.owned
                and b.owned
                and set(a.owned) | set(b.owned) == set(range(12))
                and a.complete
                and b.complete
                and a.n_own_partitions == b.n_own_partitions == 12
            ):
                break
            time.sleep(0.2)
        owner = a if 6 in a.owned else b
        assert 6 in owner.owned and 0 not in owner.owned, (a.owned, b.owned)
        produce(settings, [quote()])
        produce(settings, [intent(key, "ACC1", "over-after", qty="0.5")])
        after = _decided(settings, "over-after")
        # Fail closed: without the account's history on partition 0 the worker owning
        # partition 6 must not approve (it did: position 0 + 0.5 <= 1).
        assert after.outcome == "REJECTED", after
        assert "STALE_STATE" in after.reason_codes, after
        assert owner.topology, "the worker does not say which topic grew"


def test_an_intent_on_another_partition_than_its_accounts_is_refused(env: Settings) -> None:
    """A producer may pick the partition itself (or set an envelope key that hashes
    elsewhere): the worker owning that partition need not hold the account's state, so
    the intent is refused (`WRONG_PARTITION`; STALE_STATE until session 23), never decided
    on what that worker happens to hold. With one worker owning every partition the code
    before session 15 approved it."""
    assert partition_for("ACC1", 6) == 0
    settings = env
    with running_worker(settings, "a") as worker:
        key = world(settings, ["ACC1"])
        produce(settings, [quote()])
        produce(settings, [intent(key, "ACC1", "home")])
        assert _decided(settings, "home").outcome == "APPROVED"
        k, v, h = encode(intent(key, "ACC1", "away"))
        p = Producer(producer_config(settings))
        p.produce(settings.topic(Topic.INTENTS), key=k, value=v, headers=h, partition=3)
        assert p.flush(30) == 0
        seen = wait_for(settings, Topic.DECISIONS, lambda ev: bool(_answers(ev, "away")), 60)
        assert not worker.topology
    (away,) = _answers(seen, "away")
    assert type(away).__name__ == "IntentRejected" and away.reason == "WRONG_PARTITION", away
    assert "not its account's partition 0" in away.detail, away.detail
    # It names the record it refused: a client tells it from its own record's answer.
    assert away.intent_partition == 3 and away.intent_offset is not None, away


def _answers(events: list[Envelope[Any]], coid: str) -> list[Any]:
    return [
        e.payload
        for e in events
        if e.event_type in ("RiskDecision", "IntentRejected") and e.payload.client_order_id == coid
    ]


def test_an_off_partition_replay_does_not_decide_the_intent_sent_right(env: Settings) -> None:
    """A signed intent copied onto another partition (anyone who can read and write
    orders.intents can) is refused by the worker there, which need not hold the account's
    state. Before session 23 it decided it: a STALE_STATE `RiskDecision`, keyed by the
    account, so on the account's partition of risk.decisions, which the account's worker
    does not read live but folds at its next rebuild. The same intent sent right after
    that rebuild was answered with that refusal, byte for byte (and sent right before it,
    approved live, a resend after a restart was told STALE_STATE while the order stood).
    Now the refusal is `IntentRejected(WRONG_PARTITION)`, decided before the signature is
    checked and never recorded under the intent's key, so the intent is decided on its
    merits wherever and whenever it comes right."""
    assert partition_for("ACC1", 6) == 0
    settings = env
    with running_worker(settings, "a"):
        key = world(settings, ["ACC1"])
        real = intent(key, "ACC1", "twin")
        copy = new_event(real.payload, producer="strat1")
        k, v, h = encode(copy)
        p = Producer(producer_config(settings))
        p.produce(settings.topic(Topic.INTENTS), key=k, value=v, headers=h, partition=3)
        assert p.flush(30) == 0
        seen = wait_for(settings, Topic.DECISIONS, lambda ev: bool(_answers(ev, "twin")), 60)
        (away,) = _answers(seen, "twin")
        assert getattr(away, "outcome", None) != "APPROVED", away
    with running_worker(settings, "b"):  # rebuilt from the log, the copy's answer on it
        produce(settings, [quote(update_id=2)])
        produce(settings, [new_event(real.payload, producer="strat1")])
        seen = wait_for(settings, Topic.DECISIONS, lambda ev: len(_answers(ev, "twin")) > 1, 60)
    first, second = _answers(seen, "twin")
    assert getattr(second, "outcome", None) == "APPROVED", second  # was: the copy's refusal
    assert type(first).__name__ == "IntentRejected" and first.reason == "WRONG_PARTITION", first


def test_the_snapshotter_writes_no_slice_of_a_grown_log(env: Settings) -> None:
    """Before: the snapshotter started over with 12 partitions and sliced what it folded,
    cut by the new count: the slice of partition 0 claimed ACC1's fill's offset on
    partition 0 of orders.lifecycle without ACC1 (whom murmur2 now puts on partition 6).
    Now it holds, as the workers do, and says which topics are off their count."""
    settings = env.with_overrides(engine_snapshot_every=1, engine_snapshot_seconds=0.1)
    with running_worker(settings, "a"):
        key = world(settings, ["ACC1"])
        produce(settings, [quote()])
        produce(settings, [intent(key, "ACC1", "fill", qty="1")])
        assert _decided(settings, "fill").outcome == "APPROVED"
    client = AdminClient({"bootstrap.servers": settings.bootstrap})
    names = [settings.topic(t) for t in GROWN]
    for fut in client.create_partitions([NewPartitions(n, 12) for n in names]).values():
        fut.result(30)
    slices = RecordCounter(settings, Topic.ENGINE_SNAPSHOTS)
    with running_snapshotter(settings) as snap:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not slices.wait(1, 0.3):
            if getattr(snap, "holding", None):
                break
        slices.wait(1, 3.0)  # a round that slices would have written by now
        slices.close()
        assert slices.count == 0, "the snapshotter sliced a grown log"
        assert snap.holding is not None
        assert f"{settings.topic(Topic.ORDERS)} has 12 partitions, declared 6" in snap.holding


def _misrouted_answer(settings: Settings, payload: EventPayload) -> Envelope[Any]:
    """`payload` as an admin command on partition 3 (its key's is 0), sent again while a
    worker refuses it on a possibly stale view of the control topics (not what is tested)."""
    for _ in range(5):
        command = admin(payload)
        k, v, h = encode(command)
        p = Producer(producer_config(settings))
        p.produce(settings.topic(Topic.ADMIN), key=k, value=v, headers=h, partition=3)
        assert p.flush(30) == 0
        answer = admin_answers(settings, [command]).get(command.event_id)
        assert answer is not None, "no answer"
        if not (rejected_stale(answer) and "partition" not in answer.payload.reason):
            return answer
    raise AssertionError("the worker's view stayed stale")


def test_an_admin_command_on_another_partition_than_its_key_is_stale(env: Settings) -> None:
    """Each worker decides the admin commands on its own partitions, and a fact another
    worker wrote in a transaction not yet committed is in no drained view: a deposit
    command sent twice, once on its account's partition and once elsewhere, could be
    accepted by two workers at once and credited twice by the books. So a command on
    another partition than its key's is refused STALE_STATE (it took no effect), unless
    it only tightens (a kill switch is decided wherever it comes). Before session 20 the
    misrouted deposit was accepted."""
    assert partition_for("ACC1", 6) == 0
    settings = env
    with running_worker(settings, "a"):
        world(settings, ["ACC1"])
        deposit = DepositReceived(deposit_id="d-2", account="ACC1", asset="USDC", amount=Decimal(5))
        away = _misrouted_answer(settings, deposit)
        assert away.event_type == "AdminCommandRejected", away
        assert rejected_stale(away), away.payload.reason
        assert "not its key's partition 0" in away.payload.reason
        stop = KillSwitchEngaged(scope="ACC1", engaged_by="admin", reason="misrouted, decided")
        assert _misrouted_answer(settings, stop).event_type == "KillSwitchEngaged"
        home = admin(deposit)
        send_admin(settings, [home])  # on its partition: accepted, the refusal had no effect
        assert admin_answers(settings, [home])[home.event_id].event_type == "DepositReceived"
