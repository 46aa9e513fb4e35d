"""Surveillance must not run on a clock the surveilled party controls.

The engine stamped an order's events (orders.lifecycle) with their intents' `occurred_at`,
which the producer chooses: an order intent within FRESHNESS's skew window (5 s behind,
1 s ahead of the broker's append time), a cancel intent without any bound. Through the
engine's pure processor, stamping the spoofing and layering episodes' cancels 3 s early
hid all 4 spoofs of the dense scenario, 10 s late every spoof. Now the engine
stamps the order events it writes for an intent at the intent's append time
(`received_at`, the broker's, which the producer does not control; session 23 let a stamp
ahead stand up to `max_intent_ahead_ms`, 1 s, which session 24 took away unless the limits'
`order_events_ahead_ms` allow it, as a simulation's do: `engine.processor.order_events_at`);
the intent's own time stays on its decision.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from engine.processor import Context, process
from engine.state import EngineState
from schemas import Envelope
from schemas.events import (
    CancelIntent,
    OrderIntent,
    RiskLimits,
    RiskLimitsChanged,
    SurveillanceAlert,
)
from schemas.topics import Topic
from streams.app import SOURCES
from streams.detectors import all_detectors
from streams.scenario import build_scenario, score
from streams.sequencer import sequence_log
from streams.surveillance_state import Surveillance

AHEAD_MS = RiskLimits().max_intent_ahead_ms
ABUSIVE = ("sp", "ly")
"""The scenario's spoofing and layering strategies."""


def _skewed(event: Envelope[Any], cancel_s: float, order_s: float) -> Envelope[Any]:
    """The abusive strategies' intents as their producer stamps them: cancels `cancel_s`
    off, orders `order_s` off (the signature binds the payload, not `occurred_at`)."""
    p = event.payload
    if not isinstance(p, OrderIntent | CancelIntent) or p.strategy_id not in ABUSIVE:
        return event
    shift = cancel_s if isinstance(p, CancelIntent) else order_s
    return event.model_copy(update={"occurred_at": event.occurred_at + timedelta(seconds=shift)})


def _run(cancel_s: float, order_s: float) -> tuple[list[Envelope[Any]], dict[Any, Any]]:
    """The dense scenario through the engine, each intent appended by the broker at its
    scenario time (`received_at`) but stamped by its producer as `_skewed` says."""
    sc = build_scenario(1, 2, dense=True)
    state, ctx = EngineState(), Context()
    out: list[Envelope[Any]] = []
    received: dict[Any, Any] = {}
    for event in sc.inputs:
        if event.topic == Topic.SURVEILLANCE_CONFIG:
            out.append(event)
            continue
        if isinstance(event.payload, RiskLimitsChanged):
            # The scenario lets its producers run a day ahead (`publish_scenario` runs
            # scenario time ahead of the broker's); here the broker's time is the
            # scenario's, so the production defaults hold.
            limits = event.payload.limits.model_copy(update={
                "max_intent_ahead_ms": AHEAD_MS,
                "order_events_ahead_ms": RiskLimits().order_events_ahead_ms,
            })  # fmt: skip
            event = event.model_copy(update={"payload": event.payload.model_copy(
                update={"limits": limits})})  # fmt: skip
        sent = _skewed(event, cancel_s, order_s)
        out.append(sent)
        arrived = event.occurred_at if event.topic == Topic.INTENTS else None
        if arrived is not None:
            received[event.event_id] = arrived
        out.extend(process(state, sent, ctx, arrived))
    return out, {"labels": sc.labels, "received": received}


def _alerts(events: list[Envelope[Any]]) -> list[SurveillanceAlert]:
    """What the app reads (`streams.app.SOURCES`: not the intents, not the decisions)."""
    released, _ = sequence_log([e for e in events if e.topic in SOURCES])
    return [a.payload for a in Surveillance(all_detectors()).process_batch(released)]


@pytest.mark.parametrize(
    ("cancel_s", "order_s"),
    [
        (-3.0, 0.0),  # cancels 3 s early: hid all 4 spoofs and 3 ladders
        (-3.0, -4.0),  # and orders backdated within FRESHNESS's 5 s
        (10.0, 0.0),  # cancels 10 s late (never bounded): hid every spoof
        (0.9, 0.0),  # cancels 0.9 s ahead (FRESHNESS's tolerance of a fast clock)
        (0.9, 0.9),  # and orders too
    ],
)
def test_an_abusers_skewed_stamps_do_not_move_its_order_events_or_hide_the_pattern(
    cancel_s: float, order_s: float
) -> None:
    events, meta = _run(cancel_s, order_s)
    decided = [e for e in events if e.event_type in ("RiskDecision", "IntentRejected")]
    assert decided and all(e.payload.outcome == "APPROVED" for e in decided
                           if e.event_type == "RiskDecision")  # fmt: skip
    assert not [e for e in decided if e.event_type == "IntentRejected"]
    scores = score(meta["labels"], _alerts(events))
    for pattern in ("SPOOFING", "LAYERING"):
        s = scores[pattern]
        assert s.episodes >= 2, s
        assert s.detected == s.episodes, s
    by_id = {e.event_id: e for e in events}
    moved = 0
    for e in events:
        cause = e.causation_id
        if e.topic != Topic.ORDERS or cause is None or cause not in meta["received"]:
            continue
        # Every order event an intent caused: when the broker had the intent ...
        arrived, stamped = meta["received"][cause], by_id[cause].occurred_at
        assert e.occurred_at == arrived, e
        moved += stamped != e.occurred_at
    assert moved > 20, "the abusive intents were stamped off their append time"
    for e in decided:  # ... its decision keeps the intent's own stamp, and records both
        assert e.causation_id is not None
        assert e.occurred_at == by_id[e.causation_id].occurred_at
        assert e.payload.received_at == meta["received"][e.causation_id]


def test_a_cancel_without_a_broker_time_keeps_its_own_stamp() -> None:
    """Without an append time (no broker; a topic not on LogAppendTime) the order events
    keep the intent's stamp: order intents are refused CLOCK_SKEW there anyway."""
    sc = build_scenario(1, 1, dense=True)
    state, ctx = EngineState(), Context(event_time_is_arrival=True)
    for event in sc.inputs:
        if event.topic == Topic.SURVEILLANCE_CONFIG:
            continue
        for out in process(state, event, ctx):
            if out.topic == Topic.ORDERS:
                assert out.occurred_at == event.occurred_at
