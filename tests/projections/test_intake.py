"""The projections admit what the engine admits (both apply `schemas.admission.refusal`,
`engine.replay.Intake` and `Projection._admit`): an event on a
topic it does not belong to, or one of the engine's facts on a topic only the engine
writes but written by someone else, is quarantined, not folded. Before, a
`DepositReceived` any producer wrote to transfers.events credited the balance the engine
refused to credit (and until session 22 one that claimed the engine did, everywhere), and a `Fill` on marketdata.events moved a position. Every type the
schemas make the engine's alone (`engine_written`: also `OrderAccepted`,
`CancelRequested`, `AdminCommandRejected`, which only the books fold) is refused from
anyone else, by the engine and the books alike."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from deploy.settings import Settings
from engine.processor import ENGINE_PRODUCER
from engine.replay import ENGINE_WRITTEN, Intake
from projections.core import _STATUS, PROJECTIONS
from projections.framework import Located
from projections.store import RawRecord, decode_one
from schemas import EventPayload, decode, encode, new_event
from schemas.admission import refusal
from schemas.events import (
    CancelRequested,
    DepositReceived,
    OrderAccepted,
    OrderSubmitted,
    TransferChecked,
    TransferRequested,
)
from schemas.events.orders import OrderType, Side, TimeInForce
from schemas.events.transfers import TransferCheckOutcome
from schemas.registry import (
    REGISTRY,
    TRAVELRULE_PRODUCER,
    engine_written,
    event_types_for,
    sole_writers,
)
from schemas.topics import Topic
from tests.projections.folding import Tape, fold


def _record(payload: EventPayload, producer: str, topic: str | None = None) -> Any:
    e = new_event(payload, producer=producer, event_id=uuid.UUID(int=7))
    _k, v, h = encode(e)
    d = decode_one(RawRecord(topic or str(e.topic), 0, 1, v, h))
    assert not hasattr(d, "error"), d
    return d


def test_a_deposit_not_written_by_the_engine_credits_nothing() -> None:
    dep = DepositReceived(deposit_id="d1", account="ACC001", asset="USDT", amount=Decimal(10**6))
    st, bad = fold("balances", [_record(dep, "mallory")])
    assert not st.dirty.get("balances") and not st.inserts.get("movements")
    assert len(bad) == 1 and "not written by the engine" in bad[0].error
    st, bad = fold("balances", [_record(dep, "engine")])
    assert not bad and st.dirty["balances"][("ACC001", "USDT")][2] == 10**6


def test_a_deposit_on_the_transfer_services_topic_credits_nothing() -> None:
    """A `DepositReceived` on transfers.events claiming the engine: the transfer
    service's principal may write that topic, so the claim proves nothing and the book
    quarantines it (until session 22 it credited the balance, as the engine did); an
    old deployment's genuine deposits there too (docs/operations.md)."""
    dep = DepositReceived(deposit_id="d1", account="ACC001", asset="USDT", amount=Decimal(10**6))
    for prefix in ("", "t17."):
        forged = _record(dep, "engine", topic=f"{prefix}{Topic.TRANSFERS}")
        st, bad = fold("balances", [forged])
        assert not st.dirty and not st.inserts
        assert [q.error for q in bad] == [f"DepositReceived does not belong on {forged.topic}"]
    assert _record(dep, "engine").topic == str(Topic.ACCOUNTS)


def test_a_fill_on_the_market_data_topic_moves_no_position() -> None:
    t = Tape()
    t.fill("BUY", "1", "100")
    r = t.records[-1]
    item = decode_one(RawRecord(str(Topic.MARKETDATA), 0, 9, r.value, r.headers))
    st, bad = fold("positions", [item])  # type: ignore[list-item]
    assert not st.dirty.get("positions")
    assert len(bad) == 1 and "does not belong on" in bad[0].error


def test_a_fill_not_written_by_the_engine_is_quarantined_everywhere() -> None:
    t = Tape()
    fill = t.fill("BUY", "1", "100")
    fill.data["producer"] = "mallory"
    for name in ("fills", "positions", "balances"):
        st, bad = fold(name, [fill])
        assert not st.dirty and not st.inserts and len(bad) == 1, name


_READ_BY_BOTH = sorted(
    {t for p in PROJECTIONS.values() for t in p.topics} & {*ENGINE_WRITTEN, Topic.MARKETDATA}
)


@pytest.mark.parametrize("topic", _READ_BY_BOTH)
@pytest.mark.parametrize("prefix", ["", "t17."])
def test_the_rule_is_the_engines(topic: Topic, prefix: str) -> None:
    """Both readers apply the one rule (`schemas.admission.refusal`, its property tests
    in tests/schemas/test_admission.py): for every topic both the engine and a projection
    read, every type a projection of it folds and every producer, the engine's intake
    and the projection give the same verdict with the same reason. Until session 17 the
    engine passed (and ignored) a foreign `OrderAccepted`, `CancelRequested` or
    `AdminCommandRejected` that the books quarantined; until session 18 each had its own
    copy of the rule."""
    env = Settings().with_overrides(topic_prefix=prefix)
    intake = Intake(env)
    full = env.topic(topic)
    assert full in intake.topics, topic
    readers = [p for p in PROJECTIONS.values() if topic in p.topics]
    assert readers, topic
    checked = 0
    for event_type in sorted({k[0] for k in REGISTRY}):
        for producer in (ENGINE_PRODUCER, "mallory"):
            ev: Any = type("E", (), {"event_type": event_type, "producer": producer})()
            engine_says = intake.refusal(full, ev)
            assert engine_says == refusal(full, event_type, producer), (topic, event_type)
            for p in readers:
                if p.accepts(event_type, 1) is not True:
                    continue
                ours = p._admit(full, event_type, 1, producer)
                assert (engine_says is None and ours is True) or ours == engine_says, (
                    p.name, topic, event_type, producer, engine_says, ours,
                )  # fmt: skip
                checked += 1
            if event_type in engine_written(str(topic)):
                assert (engine_says is None) == (producer == ENGINE_PRODUCER), event_type
    assert checked and event_types_for(str(topic))


def test_the_engine_reads_every_topic_it_writes_and_market_data() -> None:
    """What `_READ_BY_BOTH` leaves out is only topics the engine does not read."""
    read = set(Intake(Settings()).topics)
    projected = {t for p in PROJECTIONS.values() for t in p.topics}
    assert {Settings().topic(t) for t in _READ_BY_BOTH} == read & {
        Settings().topic(t) for t in projected
    }


SAMPLES = Path(__file__).parents[1] / "schemas" / "samples"


def _sample(event_type: str, producer: str) -> Located:
    """The schema sample of `event_type` (tests/schemas/samples), written by `producer`
    to its own topic."""
    e = decode(*_as_record(json.loads((SAMPLES / f"{event_type}.v1.json").read_text())))
    e = e.model_copy(update={"producer": producer})
    _k, v, h = encode(e)
    d = decode_one(RawRecord(f"t17.{e.topic}", 0, 1, v, h))
    assert isinstance(d, Located), d
    return d


def _as_record(body: dict[str, Any]) -> tuple[bytes, list[tuple[str, bytes]]]:
    headers = [("event_type", body["event_type"].encode()), ("schema_version", b"1")]
    return json.dumps(body).encode(), headers


HANDLED = sorted(
    (name, h.split("/")[0]) for name, p in PROJECTIONS.items() for h in p.handles
)  # fmt: skip


@pytest.mark.parametrize(("name", "event_type"), HANDLED)
def test_every_handled_type_from_an_engine_topic_is_the_engines_alone(
    name: str, event_type: str
) -> None:
    """Each type a projection folds, written by another producer to its own topic: on a
    topic only the engine writes it to (the schemas say which) it is quarantined with
    the reason and changes nothing; any other (a market trade, the transfer service's
    steps, a dead letter, an alert) is not refused for its producer."""
    foreign = _sample(event_type, "mallory")
    only = sole_writers(_topic_of(event_type))
    st, bad = fold(name, [foreign])
    refused = [q for q in bad if "not written by" in q.error]
    if event_type in only:  # the engine's, or the travel rule's `TransferChecked`
        assert refused and len(bad) == 1, (name, event_type, bad)
        assert not st.dirty and not st.inserts, (name, event_type)
    else:
        assert not refused, (name, event_type, bad)


def _topic_of(event_type: str) -> str:
    return str(REGISTRY[(event_type, 1)].TOPIC)


def test_the_engines_facts_the_engine_ignores_are_its_alone() -> None:
    """Not a rule that reads itself back: the types named in the review are the
    engine's, the transfer service's steps are not."""
    assert {"OrderAccepted", "CancelRequested"} <= engine_written(str(Topic.ORDERS))
    assert "AdminCommandRejected" in engine_written(str(Topic.DECISIONS))
    # The transfer service writes transfers.events: nothing there is the engine's alone
    # (its deposits are on accounts.events since session 22).
    assert engine_written(str(Topic.TRANSFERS)) == frozenset()
    assert "DepositReceived" in engine_written(str(Topic.ACCOUNTS))
    handled = {t for _n, t in HANDLED}
    assert {"OrderAccepted", "CancelRequested", "AdminCommandRejected"} <= handled


def test_a_foreign_venue_ack_or_cancel_request_moves_no_order() -> None:
    """An `OrderAccepted` or `CancelRequested` someone other than the engine wrote to
    orders.lifecycle: the order stays SUBMITTED (it became ACCEPTED / PENDING_CANCEL)."""
    t = Tape()
    sub = t.ev(
        OrderSubmitted(
            order_id="o1", account="ACC001", producer_id="p", strategy_id="s",
            client_order_id="c1", instrument="BTC/USDT", side=Side.BUY,
            order_type=OrderType.LIMIT, quantity=Decimal(1), limit_price=Decimal(100),
            time_in_force=TimeInForce.GTC, venue="paper", decision_event_id=uuid.UUID(int=1),
        )
    )  # fmt: skip
    ack = t.ev(OrderAccepted(order_id="o1", account="ACC001", venue="paper", venue_order_id="v"))
    cancel = t.ev(CancelRequested(order_id="o1", account="ACC001", reason="CLIENT"))
    for forged in (ack, cancel):
        forged.data["producer"] = "mallory"
        st, bad = fold("orders", [sub, forged])
        assert st.dirty["orders"][("o1",)][_STATUS] == "SUBMITTED", forged.event_type
        assert len(bad) == 1 and "not written by the engine" in bad[0].error


def _withdrawal_and_reject(t: Tape) -> tuple[Located, TransferChecked]:
    """A withdrawal of 500 USDC (its request, on the tape) and a REJECT check of it."""
    request = t.ev(
        TransferRequested(
            transfer_id="w1", account="ACC001", asset="USDC", amount=Decimal(500),
            destination_address="0xabc",
        )
    )  # fmt: skip
    check = TransferChecked(
        transfer_id="w1", account="ACC001", outcome=TransferCheckOutcome.REJECT,
        jurisdiction="EU",
    )  # fmt: skip
    return request, check


@pytest.mark.parametrize("forger", [ENGINE_PRODUCER, "strat1", "transfers"])
def test_a_transfer_check_not_written_by_the_travel_rule_frees_no_hold(forger: str) -> None:
    """A `REJECT` check frees what its withdrawal held: one the engine, a strategy or the
    transfer service wrote (the travel rule's producer is `travelrule`) is quarantined
    with the reason and the withdrawal stays held; the travel rule's own frees it. Until
    session 26 any producer's check was folded (the engine's too: `tests/engine/
    test_forged_check.py`)."""
    t = Tape()
    request, check = _withdrawal_and_reject(t)
    genuine = t.ev(check)
    assert genuine.data["producer"] == "travelrule"
    forged = _record(check, forger)
    st, bad = fold("balances", [request, forged])
    assert [q.error for q in bad] == [
        f"TransferChecked on {Topic.TRANSFER_CHECKS} not written by the travel rule ({forger!r})"
    ]
    assert [row[4] for row in st.dirty["transfers"].values()] == ["REQUESTED"]
    st, bad = fold("balances", [request, genuine])
    assert not bad and [row[4] for row in st.dirty["transfers"].values()] == ["CHECKED_REJECT"]


@pytest.mark.parametrize("forger", [TRAVELRULE_PRODUCER, "transfers"])
def test_a_transfer_check_on_transfers_events_frees_no_hold(forger: str) -> None:
    """The transfer service's principal may write transfers.events, and could write a
    check there claiming the travel rule: one read there is quarantined whoever it
    claims (balances fold version 7), before or after its request, and the withdrawal
    stays REQUESTED. Until session 27 the one claiming `travelrule` set CHECKED_REJECT."""
    t = Tape()
    request, check = _withdrawal_and_reject(t)
    forged = _record(check, forger, str(Topic.TRANSFERS))
    for items in ([request, forged], [forged, request]):
        st, bad = fold("balances", items)
        assert [q.error for q in bad] == [f"TransferChecked does not belong on {Topic.TRANSFERS}"]
        assert [row[4] for row in st.dirty["transfers"].values()] == ["REQUESTED"]
        assert not st.dirty.get("transfer_checks")
