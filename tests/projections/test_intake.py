"""The projections admit what the engine admits (`engine.replay.Intake`): an event on a
topic it does not belong to, or one of the engine's facts on a topic only the engine
writes but written by someone else, is quarantined, not folded. Before, a
`DepositReceived` any producer wrote to transfers.events credited the balance the engine
refused to credit, and a `Fill` on marketdata.events moved a position."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest

from deploy.settings import Settings
from engine.replay import Intake
from projections.core import PROJECTIONS
from projections.framework import engine_only, misplaced
from projections.store import RawRecord, decode_one
from schemas import EventPayload, encode, new_event
from schemas.events import DepositReceived
from schemas.registry import REGISTRY, event_types_for
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


@pytest.mark.parametrize("topic", sorted({t for p in PROJECTIONS.values() for t in p.topics}))
@pytest.mark.parametrize("prefix", ["", "t17."])
def test_the_rule_is_the_engines(topic: Topic, prefix: str) -> None:
    """For every topic a projection reads and every event type that could be found on
    it, the projections refuse exactly what the engine's intake refuses."""
    env = Settings().with_overrides(topic_prefix=prefix)
    intake = Intake(env)
    full = env.topic(topic)
    if full not in intake.rules:
        pytest.skip(f"the engine does not read {topic}")
    for event_type in sorted({k[0] for k in REGISTRY}):
        ev: Any = type("E", (), {"event_type": event_type, "producer": "mallory"})()
        engine_says = intake.refusal(full, ev)
        ours = misplaced(full, event_type) or (
            "not written by the engine" if engine_only(full, event_type) else None
        )
        assert (engine_says is None) == (ours is None), (topic, event_type, engine_says, ours)
    assert event_types_for(str(topic))
