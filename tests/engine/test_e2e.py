"""The engine on the real broker: intents in, decisions, orders and fills out."""

from __future__ import annotations

import gc
import time
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import Producer

from deploy.kafka import producer_config
from deploy.settings import Settings
from engine import auth
from engine.state import EngineState
from engine.worker import EngineWorker
from schemas import Envelope, encode, new_event
from schemas.events import KycVerified, Side, TransferChecked, TransferRequested
from schemas.events.transfers import TransferCheckOutcome
from schemas.registry import ENGINE_PRODUCER
from schemas.topics import Topic
from tests.engine.helpers import (
    intent,
    produce,
    quote,
    read_topic,
    running_worker,
    trade,
    wait_for,
    world,
)

pytestmark = pytest.mark.integration


def _decisions(events: list[Envelope[Any]]) -> list[Envelope[Any]]:
    return [e for e in events if e.event_type in ("RiskDecision", "IntentRejected")]


def _kept_state_is_frozen(worker: EngineWorker) -> bool:
    """Whether the order states the batches kept alive are out of the generations the
    automatic garbage collector scans (engine.heap: frozen after every batch)."""
    orders = list(worker.state.orders.values())
    scanned = {id(o) for o in gc.get_objects()}
    return bool(orders) and not any(id(o) in scanned for o in orders)


def test_intents_to_decisions_orders_and_fills(env: Settings) -> None:
    with running_worker(env) as worker:
        key = world(env, ["ACC1", "ACC2"])
        buy = intent(key, "ACC1", "c-1", qty="0.5")
        rest = intent(key, "ACC2", "c-2", side=Side.BUY, qty="0.2", limit="59990")
        produce(env, [quote()])
        produce(env, [buy, rest])
        decs = wait_for(env, Topic.DECISIONS, lambda ev: len(_decisions(ev)) >= 2)
        deadline = time.monotonic() + 10
        while not _kept_state_is_frozen(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _kept_state_is_frozen(worker), "the batch's kept state is still scanned by gc"
        produce(env, [trade("59980", qty="1")])
        orders = wait_for(
            env, Topic.ORDERS, lambda ev: sum(e.event_type == "Fill" for e in ev) >= 2
        )
    by_coid = {d.payload.client_order_id: d for d in _decisions(decs)}
    assert by_coid["c-1"].payload.outcome == "APPROVED", by_coid["c-1"].payload.reason_codes
    assert by_coid["c-2"].payload.outcome == "APPROVED", by_coid["c-2"].payload.rule_results
    assert {r.rule_id for r in by_coid["c-1"].payload.rule_results} >= {
        "FRESHNESS",
        "PRICE_COLLAR",
        "BALANCE",
        "KILL_SWITCH",
        "ASSET_ALLOW_LIST",
    }
    fills = [e for e in orders if e.event_type == "Fill"]
    taker = next(f for f in fills if f.payload.account == "ACC1")
    maker = next(f for f in fills if f.payload.account == "ACC2")
    assert taker.payload.liquidity == "TAKER" and str(taker.payload.price) == "60001"
    assert maker.payload.liquidity == "MAKER" and str(maker.payload.price) == "59990"
    assert taker.payload.uti.startswith("TTPAPER")
    types = [e.event_type for e in orders if e.payload.account == "ACC1"]
    assert types[:3] == ["OrderSubmitted", "OrderAccepted", "Fill"]
    accounts = read_topic(env, Topic.ACCOUNTS)
    assert {e.event_type for e in accounts} >= {
        "AccountOpened",
        "KycVerified",
        "ProducerRegistered",
    }


def test_a_print_while_no_worker_ran_fills_the_resting_order_at_restart(env: Settings) -> None:
    """The print is in the log; the restarted worker's rebuild keeps it and matches the
    resting order against it (`PaperVenue.catch_up`) — and not against the print the
    account's other order took in full before the stop."""

    def fills() -> list[Any]:
        return [e.payload for e in read_topic(env, Topic.ORDERS) if e.event_type == "Fill"]

    with running_worker(env):
        key = world(env, ["ACC1"])
        produce(env, [quote()])
        produce(env, [intent(key, "ACC1", "c-first", side=Side.BUY, qty="0.2", limit="59990")])
        produce(env, [intent(key, "ACC1", "c-second", side=Side.BUY, qty="0.2", limit="59985")])
        wait_for(env, Topic.DECISIONS, lambda ev: len(_decisions(ev)) >= 2)
        taken = trade("59980", qty="0.2")  # stamped after the orders
        produce(env, [taken])  # fills c-first in full (the higher bid first)
        wait_for(env, Topic.ORDERS, lambda ev: any(e.event_type == "Fill" for e in ev))
    missed = trade("59980", qty="0.2")
    produce(env, [missed])  # no worker is running
    time.sleep(1)
    assert len(fills()) == 1
    with running_worker(env) as worker:
        wait_for(env, Topic.ORDERS, lambda ev: sum(e.event_type == "Fill" for e in ev) >= 2, 60)
        deadline = time.monotonic() + 5
        while worker.stats["transactions"] < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # a later step must not fill anything again
    got = sorted((str(f.price), f.traded_at, f.liquidity) for f in fills())
    assert got == [
        ("59985", missed.payload.exchange_ts, "MAKER"),
        ("59990", taken.payload.exchange_ts, "MAKER"),
    ], got


def test_a_stop_hit_with_nothing_left_sells_after_a_restart(env: Settings) -> None:
    """A print through ACC1's stop that its resting sell takes in full leaves the stop
    nothing, but the stop was hit: the worker writes `OrderTriggered`, and a worker
    restarted from the log (its rebuild folds the event) sells the long at the next
    print, although that print is back above the stop. Before, nothing recorded the
    trigger and the restarted worker's stop waited for 59,000 again."""

    def events() -> list[Any]:
        return [e for e in read_topic(env, Topic.ORDERS) if e.payload.account == "ACC1"]

    with running_worker(env):
        key = world(env, ["ACC1"])
        produce(env, [quote()])
        buy = intent(key, "ACC1", "c-buy", qty="0.1", stop_loss=Decimal("59000"),
                     take_profit=Decimal("61000"))  # fmt: skip
        produce(env, [buy])  # fills 0.1 at 60,001; arms the stop and the take-profit
        wait_for(env, Topic.ORDERS, lambda ev: any(e.event_type == "Fill" for e in ev))
        produce(env, [quote(bid="58900", ask="58950", update_id=2)])
        produce(env, [intent(key, "ACC1", "c-sell", side=Side.SELL, qty="0.02", limit="58950")])
        wait_for(env, Topic.DECISIONS, lambda ev: len(_decisions(ev)) >= 2)
        produce(env, [trade("58960", qty="0.02")])  # the sell takes it all; the stop is hit
        wait_for(
            env, Topic.ORDERS, lambda ev: any(e.event_type == "OrderTriggered" for e in ev), 30
        )
    with running_worker(env):
        produce(env, [trade("60000", qty="1")])
        wait_for(env, Topic.ORDERS, lambda ev: sum(e.event_type == "Fill" for e in ev) >= 3, 60)
    sold = [(str(e.payload.quantity), str(e.payload.price)) for e in events()
            if e.event_type == "Fill" and e.payload.side is Side.SELL]  # fmt: skip
    assert sold == [("0.02", "58950"), ("0.08", "60000")], sold


def test_a_failed_catch_up_rebuilds_before_deciding(
    env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catch-up that fails half-way may have folded fills no transaction will carry:
    the worker rebuilds before it decides anything, turns the catch-up off, and goes on
    refusing every intent STALE_STATE until a restart: what the catch-up owed (a kill
    switch's, a hold's or a limits change's cancels) is not done, so an approval would be
    made past it, and would later read as proof that it was (fail closed)."""

    def half_done(state: EngineState, *_: Any) -> list[Any]:
        state.account("ACC1").balances["XRP"] = Decimal("99")  # what a phantom fill moved
        raise RuntimeError("catch-up failed half-way")

    monkeypatch.setattr("engine.worker.catch_up", half_done)
    with running_worker(env) as worker:
        key = world(env, ["ACC1"])
        produce(env, [quote()])
        produce(env, [intent(key, "ACC1", "c-after", qty="0.1")])
        decs = wait_for(env, Topic.DECISIONS, lambda ev: len(_decisions(ev)) >= 1)
        assert not worker.catch_up_enabled
        assert "XRP" not in worker.state.account("ACC1").balances
    # Refused, every one: the set-up's registrations and account opening (they do not
    # tighten) with the reason, so the intent too (its producer unknown to this worker).
    refused = [e.payload for e in decs if e.event_type == "AdminCommandRejected"]
    assert refused and all("catch-up after an assignment failed" in r.reason for r in refused)
    assert not [e for e in decs if getattr(e.payload, "outcome", None) == "APPROVED"]
    assert [e.event_type for e in _decisions(decs)] == ["IntentRejected"]


def test_resend_dedup_bad_signature_and_garbage(env: Settings) -> None:
    other_key, _ = auth.new_keypair()
    with running_worker(env) as worker:
        key = world(env, ["ACC1"])
        produce(env, [quote()])
        first = intent(key, "ACC1", "dup-1", qty="0.1")
        produce(env, [first])
        wait_for(env, Topic.DECISIONS, lambda ev: len(_decisions(ev)) >= 1)
        resent = intent(key, "ACC1", "dup-1", qty="0.1")  # same client order id, new event
        forged = intent(other_key, "ACC1", "forged-1")
        unknown = intent(other_key, "ACC1", "who-1", producer_id="nobody")
        p = Producer(producer_config(env))
        p.produce(env.topic(Topic.INTENTS), key=b"ACC1", value=b"\x00\xffnot json")
        p.flush(10)
        # A well-formed event of the wrong kind on the intents topic is refused too.
        wrong_key, wrong_value, wrong_headers = encode(
            new_event(KycVerified(account="ACC1", verified_by="x"), producer="x")
        )
        p.produce(env.topic(Topic.INTENTS), key=wrong_key, value=wrong_value, headers=wrong_headers)
        p.flush(10)
        produce(env, [first, resent, forged, unknown])
        decs = wait_for(env, Topic.DECISIONS, lambda ev: len(_decisions(ev)) >= 5)
        # A check the travel rule did not write (session 26): dead-lettered, the hold
        # its REJECT would free stays.
        request = TransferRequested(
            transfer_id="w-1", account="ACC1", asset="USDT", amount=Decimal(7),
            destination_address="0xabc",
        )  # fmt: skip
        reject = TransferChecked(
            transfer_id="w-1", account="ACC1", outcome=TransferCheckOutcome.REJECT,
            jurisdiction="EU",
        )  # fmt: skip
        produce(env, [new_event(request, producer="transfers")])
        produce(env, [new_event(reject, producer=ENGINE_PRODUCER)])
        dls = wait_for(env, Topic.DEADLETTER, lambda ev: len(ev) >= 3)
        held = worker.state.account("ACC1").held.get("USDT")
        orders = read_topic(env, Topic.ORDERS)
    assert held == Decimal(7)
    ds = _decisions(decs)
    dup = [d for d in ds if d.payload.client_order_id == "dup-1"]
    assert len({d.event_id for d in dup}) == 1, "a resend got a new decision"
    assert len(dup) == 3  # the original plus two identical answers
    assert sum(e.event_type == "OrderSubmitted" for e in orders) == 1
    reasons = {
        d.payload.client_order_id: d.payload.reason for d in ds if d.event_type == "IntentRejected"
    }
    assert reasons == {"forged-1": "BAD_SIGNATURE", "who-1": "UNKNOWN_PRODUCER"}
    assert all(d.payload.stage == "engine" for d in dls)
    assert all(d.payload.error_type == "MalformedEventError" for d in dls)
    errors = [d.payload.error for d in dls]
    assert any("not JSON" in e for e in errors)
    assert any("KycVerified is not an intent" in e for e in errors)
    assert any("not written by the travel rule ('engine')" in e for e in errors)


def test_stale_price_is_rejected(env: Settings) -> None:
    from datetime import UTC, datetime, timedelta

    with running_worker(env):
        key = world(env, ["ACC1"])
        produce(env, [quote(at=datetime.now(UTC) - timedelta(minutes=5))])
        produce(env, [intent(key, "ACC1", "late-1")])
        decs = wait_for(env, Topic.DECISIONS, lambda ev: len(_decisions(ev)) >= 1)
    d = _decisions(decs)[0].payload
    assert d.outcome == "REJECTED" and "STALE_STATE" in d.reason_codes
