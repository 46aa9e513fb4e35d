"""The worker fails closed on what used to make it loop, decide on a partial state, trust a
forged reference record or crash (review helper-50, reproductions /tmp/rev54):

- an admin command whose accepted fact is over the producer's record size limit is
  answered with `AdminCommandRejected` (before: abort, rewind, retry for ever, and a kill
  switch queued behind it never took effect);
- a rebuild that is incomplete (timed out) is retried, nothing is decided meanwhile
  (before: a resent intent was decided and traded again on the partial state);
- a record on a topic read in full is folded only if its catalogue lists its type there
  and, on the engine's own topics, the engine wrote it; anything else is dead-lettered,
  live and skipped in a rebuild alike (before: a `ProducerRegistered` on the market-data
  topic registered a key for any account);
- broker errors around a transaction (a commit that times out, a rebuild that cannot
  reach the broker, a lag that cannot be measured) are retried or fail closed (before: the
  worker crashed).
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

import engine.replay as replay
import engine.worker as worker_mod
from deploy.kafka import end_offsets as real_end_offsets
from deploy.kafka import producer_config
from deploy.settings import Settings
from engine import auth
from schemas import Envelope, encode, new_event
from schemas.events import DepositReceived, KillSwitchEngaged, ProducerRegistered
from schemas.topics import Topic
from tests.engine.helpers import intent, produce, quote, read_topic, running_worker, wait_for, world

pytestmark = pytest.mark.integration

DECISIONS = ("RiskDecision", "IntentRejected")


def _decisions(events: list[Envelope[Any]], coid: str | None = None) -> list[Envelope[Any]]:
    return [
        e
        for e in events
        if e.event_type in DECISIONS and (coid is None or e.payload.client_order_id == coid)
    ]


class _Count(logging.Handler):
    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle, self.n = needle, 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.n += 1


def test_an_admin_fact_too_big_to_write_is_rejected_and_what_follows_is_decided(
    env: Settings,
) -> None:
    counter = _Count("transaction failed")
    logging.getLogger("tradetape.engine").addHandler(counter)
    try:
        with running_worker(env, wid="big0"):
            key = world(env, ["ACC1"])
            produce(env, [quote()])
            # The largest deposit command the admin's producer accepts (ivms101 is free-form):
            # the engine's accepted fact is a few dozen bytes larger, over the limit.
            p = Producer(producer_config(env))
            n = 999_900
            while True:
                cmd = new_event(
                    DepositReceived(
                        deposit_id="big-1",
                        account="ACC1",
                        asset="USDC",
                        amount=Decimal("1"),
                        ivms101={"x": "y" * n},
                    ),
                    producer="admin",
                )
                k, v, h = encode(cmd)
                try:
                    p.produce(env.topic(Topic.ADMIN), key=k, value=v, headers=h)
                    break
                except KafkaException:
                    n -= 8
            assert p.flush(30) == 0
            stop = new_event(
                KillSwitchEngaged(scope="ACC1", engaged_by="admin", reason="stop"),
                producer="admin",
            )
            produce(env, [stop], admin=True)
            wait_for(env, Topic.RISK_CONFIG, lambda ev: len(ev) >= 1, timeout=60)
            produce(env, [quote(), intent(key, "ACC1", "after-big")])
            decisions = wait_for(
                env, Topic.DECISIONS, lambda ev: bool(_decisions(ev, "after-big")), timeout=60
            )
    finally:
        logging.getLogger("tradetape.engine").removeHandler(counter)
    rejected = [
        e
        for e in decisions
        if e.event_type == "AdminCommandRejected" and e.payload.command_event_id == cmd.event_id
    ]
    assert len(rejected) == 1, "the oversized command was not answered"
    assert "over the producer's limit" in rejected[0].payload.reason
    (after,) = _decisions(decisions, "after-big")
    assert after.event_type == "RiskDecision" and after.payload.outcome == "REJECTED"
    assert "KILL_SWITCH_ENGAGED" in after.payload.reason_codes, after.payload
    assert counter.n < 3, "the worker retried the same record over and over"
    deposits = [e for e in read_topic(env, Topic.ACCOUNTS) if e.event_type == "DepositReceived"]
    assert deposits and not [e for e in deposits if e.payload.deposit_id == "big-1"]


def test_an_incomplete_rebuild_is_retried_and_decides_nothing_meanwhile(
    env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_worker(env, wid="inc0"):
        key = world(env, ["ACC1"])
        for attempt in range(5):  # the premise is an approved (traded) first intent
            produce(env, [quote()])
            first = intent(key, "ACC1", f"once-{attempt}")
            coid = first.payload.client_order_id
            produce(env, [first])
            seen = wait_for(env, Topic.DECISIONS, lambda ev, c=coid: bool(_decisions(ev, c)), 30)
            (decided,) = _decisions(seen, coid)
            if decided.payload.outcome == "APPROVED":
                break
            # On a loaded machine the quote can age past the freshness bound before the
            # intent is decided; only that may refuse it.
            assert "STALE_STATE" in decided.payload.reason_codes, decided.payload
        else:
            pytest.fail("five intents in a row were refused as stale")

    real_read = replay.read_until_caught_up
    calls = [0]

    def read_timing_out_twice(*args: Any, timeout: float = 90.0) -> bool:
        """The rebuild's own-topic read "times out" (as one taking over 90 s would), twice."""
        calls[0] += 1
        return bool(real_read(*args, timeout=0.0 if calls[0] <= 2 else timeout))

    monkeypatch.setattr(replay, "read_until_caught_up", read_timing_out_twice)
    with running_worker(env, wid="inc0"):
        produce(env, [quote()])
        produce(env, [first])  # the same envelope, resent
        decisions = wait_for(env, Topic.DECISIONS, lambda ev: len(_decisions(ev, coid)) >= 2, 60)
    ds = _decisions(decisions, coid)
    assert len(ds) == 2, "the resend was not answered"
    assert len({d.event_id for d in ds}) == 1, "the resend got a new decision"
    subs = [
        e
        for e in read_topic(env, Topic.ORDERS)
        if e.event_type == "OrderSubmitted" and e.payload.client_order_id == coid
    ]
    assert len(subs) == 1, "the resend was traded twice"
    assert calls[0] >= 3, "the incomplete rebuild was not retried"


def test_topics_read_in_full_take_only_their_catalogue_from_their_writer(env: Settings) -> None:
    mallory_key, mallory_pub = auth.new_keypair()

    def registration(producer: str) -> Envelope[Any]:
        return new_event(
            ProducerRegistered(
                producer_id="mallory",
                public_key=mallory_pub,
                accounts=("ACC1",),
                registered_by="admin",
            ),
            producer=producer,
        )

    def forge(topic: Topic, ev: Envelope[Any]) -> None:
        k, v, h = encode(ev)
        p = Producer(producer_config(env))
        p.produce(env.topic(topic), key=k, value=v, headers=h)
        assert p.flush(10) == 0

    # A deposit claiming the engine on transfers.events, which the transfer service
    # writes too: credited until session 22 (deposits are on accounts.events now).
    forged_deposit = new_event(
        DepositReceived(deposit_id="forged", account="ACC1", asset="USDC", amount=Decimal(10**6)),
        producer="engine",
    )
    with running_worker(env, wid="in0") as w0:
        world(env, ["ACC1"])
        produce(env, [quote()])
        funded = w0.state.account("ACC1").balances.get("USDC")
        forge(Topic.MARKETDATA, registration("md"))  # not a market-data event
        forge(Topic.ACCOUNTS, registration("admin"))  # the right topic, not by the engine
        forge(Topic.MARKETDATA, new_event(KillSwitchEngaged(scope="ACC1", engaged_by="x",
                                                            reason="x"), producer="md"))  # fmt: skip
        forge(Topic.TRANSFERS, forged_deposit)
        dead = wait_for(env, Topic.DEADLETTER, lambda ev: len(ev) >= 4, timeout=30)
        produce(env, [quote(), intent(mallory_key, "ACC1", "m-1", producer_id="mallory")])
        live = wait_for(env, Topic.DECISIONS, lambda ev: bool(_decisions(ev, "m-1")), 30)
    reasons = sorted(d.payload.error for d in dead)
    assert len(dead) == 4, reasons
    assert any(
        r.endswith(f"DepositReceived does not belong on {env.topic(Topic.TRANSFERS)}")
        for r in reasons
    ), reasons
    assert any("does not belong on" in r for r in reasons), reasons
    assert any("not written by the engine" in r for r in reasons), reasons
    (d1,) = _decisions(live, "m-1")
    assert d1.event_type == "IntentRejected" and d1.payload.reason == "UNKNOWN_PRODUCER"

    # A rebuild folds the same: mallory is still unknown, no kill switch from market data.
    with running_worker(env, wid="in0") as w:
        produce(env, [quote(), intent(mallory_key, "ACC1", "m-2", producer_id="mallory")])
        rebuilt = wait_for(env, Topic.DECISIONS, lambda ev: bool(_decisions(ev, "m-2")), 30)
        assert "mallory" not in w.state.producers
        assert "ACC1" not in w.state.kill_switches
        assert "forged" not in w.state.account("ACC1").deposits
        assert w.state.account("ACC1").balances.get("USDC") == funded
    (d2,) = _decisions(rebuilt, "m-2")
    assert d2.event_type == "IntentRejected" and d2.payload.reason == "UNKNOWN_PRODUCER"
    assert len(read_topic(env, Topic.DEADLETTER)) == 4, "a rebuild dead-lettered again"


class _FailingCommit:
    """The worker's producer, whose next commit raises `error` before committing."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.errors: list[KafkaError] = []
        self.on_raise: Any = lambda: None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def commit_transaction(self, *args: Any) -> Any:
        if self.errors:
            self.on_raise()
            raise KafkaException(self.errors.pop(0))
        return self._real.commit_transaction(*args)


def _timed_out() -> KafkaError:
    return KafkaError(KafkaError._TIMED_OUT, "injected: broker stalled", retriable=True)


def test_a_commit_that_times_out_is_retried_without_an_abort(env: Settings) -> None:
    counter = _Count("transaction failed")
    logging.getLogger("tradetape.engine").addHandler(counter)
    try:
        with running_worker(env, wid="ct0") as w:
            key = world(env, ["ACC1"])
            produce(env, [quote()])
            w.producer = proxy = _FailingCommit(w.producer)  # type: ignore[assignment]
            proxy.errors = [_timed_out(), _timed_out()]
            produce(env, [intent(key, "ACC1", "ct-1")])
            decisions = wait_for(env, Topic.DECISIONS, lambda ev: bool(_decisions(ev)), 60)
            assert not proxy.errors
    finally:
        logging.getLogger("tradetape.engine").removeHandler(counter)
    assert [d.payload.client_order_id for d in _decisions(decisions)] == ["ct-1"]
    assert counter.n == 0, "a retriable commit error aborted the transaction"


def test_broker_errors_in_recovery_hold_the_worker_instead_of_crashing(
    env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures = [0]

    def end_offsets(*args: Any, **kwargs: Any) -> Any:
        if failures[0] > 0:
            failures[0] -= 1
            raise KafkaException(_timed_out())
        return real_end_offsets(*args, **kwargs)

    monkeypatch.setattr(worker_mod, "end_offsets", end_offsets)
    with running_worker(env, wid="rc0") as w:
        key = world(env, ["ACC1"])
        produce(env, [quote()])
        w.producer = proxy = _FailingCommit(w.producer)  # type: ignore[assignment]
        # An abortable commit failure, then the rebuild that follows cannot reach the broker
        # twice (before: the exception left the loop and the worker died).
        proxy.errors = [KafkaError(KafkaError._STATE, "injected", txn_requires_abort=True)]
        proxy.on_raise = lambda: failures.__setitem__(0, 2)
        produce(env, [intent(key, "ACC1", "rc-1")])
        decisions = wait_for(env, Topic.DECISIONS, lambda ev: bool(_decisions(ev)), 60)
        assert failures[0] == 0 and not proxy.errors
        # A lag that cannot be measured: the batch is decided as stale (before: a crash).
        real_lag = w.consumer_lag
        failing = [True]

        def consumer_lag() -> int:
            if failing[0]:
                raise KafkaException(_timed_out())
            return real_lag()

        w.consumer_lag = consumer_lag  # type: ignore[method-assign]
        produce(env, [quote(), intent(key, "ACC1", "rc-2")])
        decisions = wait_for(env, Topic.DECISIONS, lambda ev: bool(_decisions(ev, "rc-2")), 60)
        failing[0] = False
    assert [d.payload.client_order_id for d in _decisions(decisions)] == ["rc-1", "rc-2"]
    (stale,) = _decisions(decisions, "rc-2")
    assert "STALE_STATE" in str(stale.payload.reason_codes), stale.payload


def test_a_fatal_producer_error_renews_the_clients_instead_of_ending_the_worker(
    env: Settings,
) -> None:
    """A broker stall longer than the transaction timeout fences the producer (the
    coordinator aborts the transaction and bumps the epoch): a fatal error. The worker
    starts its clients afresh, as a restart would, instead of exiting (before: it died, and
    `tradetape run` stopped the whole group with it)."""
    with running_worker(env, wid="fz0") as w:
        key = world(env, ["ACC1"])
        produce(env, [quote()])
        w.producer = proxy = _FailingCommit(w.producer)  # type: ignore[assignment]
        proxy.errors = [KafkaError(KafkaError._FENCED, "injected: fenced", fatal=True)]
        produce(env, [intent(key, "ACC1", "fz-1")])
        wait_for(env, Topic.DECISIONS, lambda ev: bool(_decisions(ev, "fz-1")), 60)
        produce(env, [quote(), intent(key, "ACC1", "fz-2")])
        decisions = wait_for(env, Topic.DECISIONS, lambda ev: bool(_decisions(ev, "fz-2")), 60)
        assert w.producer is not proxy  # type: ignore[comparison-overlap]
    # The replaced producer is closed by the worker (it lived on, reconnecting, for the
    # life of the process).
    with pytest.raises(RuntimeError, match="closed"):
        proxy._real.poll(0)
    assert [d.payload.client_order_id for d in _decisions(decisions)] == ["fz-1", "fz-2"]
    subs = [e for e in read_topic(env, Topic.ORDERS) if e.event_type == "OrderSubmitted"]
    assert len(subs) == 2
