"""The engine's non-validating construction (`engine.trusted`) changes no output byte.

A random stream (the snapshot test's actions plus odd intents: free-text ids with quotes,
controls and non-ASCII, tight limits, IOC/FOK, unknown producers, bad signatures) is run
through the pure processor on the fast path; the very same input envelopes are then run
through a fresh state on the reference path (`trusted.reference_path()`: every model
built by pydantic's validating constructor, as before). Every output must encode to the
same key, value and headers (so the same event ids), every decision the state recorded
must hold the same bytes, and both states must be the same (`canonical_state`).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import tests.engine.pure as pure
from engine import auth, trusted
from engine.processor import Context, process
from engine.snapshot import canonical_state
from engine.state import EngineState
from schemas import derive_event, encode, new_event
from schemas.envelope import Envelope, derived_fields
from schemas.events import (
    OrderIntent,
    OrderType,
    RiskDecision,
    RiskLimits,
    RiskLimitsChanged,
    RuleResult,
    Side,
    TimeInForce,
)
from schemas.events.risk import DecisionOutcome
from schemas.ids import derived_uuid7
from schemas.serde import traceparent
from tests.engine.test_snapshot import ACC, ACTION, SIDE, Log, _harness, part

D = Decimal

ODD = st.one_of(
    st.tuples(
        st.just("odd"),
        ACC,
        SIDE,
        st.text(min_size=1, max_size=12),
        st.sampled_from(list(TimeInForce)),
        st.sampled_from(["0.001", "3", "1000000"]),
        st.integers(-3000, 3000),
    ),
    st.tuples(st.just("stranger"), ACC),
    st.tuples(st.just("forged"), ACC),
    st.tuples(
        st.just("tight"),
        st.sampled_from(["100", "40000"]),
        st.sampled_from(["0.5", "5"]),
        st.integers(0, 3),
    ),
)


DECIDED = ACTION.filter(lambda a: a[0] != "withdraw")
"""Withdrawal steps left out: folded as control facts (`processor.control`), not through
`process`, which the recorder replays; they build no model either."""


class _Recorder:
    """Wraps `process` in the harness: every input envelope and its outputs, in order."""

    def __init__(self) -> None:
        self.inputs: list[Envelope[Any]] = []
        self.outputs: list[list[Any]] = []

    def __call__(self, state: EngineState, event: Envelope[Any], ctx: Context) -> list[Any]:
        out = process(state, event, ctx)
        self.inputs.append(event)
        self.outputs.append(list(out))
        return out


def _play_odd(log: Log, a: tuple[Any, ...]) -> None:
    h, kind = log.h, a[0]
    h.n += 1
    if kind == "odd":
        _, acc, side, coid, tif, qty, off = a
        intent = OrderIntent(
            producer_id="p1",
            strategy_id=coid,
            account=acc,
            client_order_id=f"{coid}{h.n}",
            instrument=pure.INSTRUMENT,
            side=side,
            order_type=OrderType.LIMIT,
            quantity=D(qty),
            limit_price=D(30000 + off),
            time_in_force=tif,
        )
        log.add(h.feed(auth.sign(intent, h.key), producer="p1"))
    elif kind in ("stranger", "forged"):
        intent = OrderIntent(
            producer_id="p1" if kind == "forged" else "nobody",
            strategy_id="s",
            account=a[1],
            client_order_id=f"x{h.n}",
            instrument=pure.INSTRUMENT,
            side=Side.BUY,
            order_type=OrderType.MARKET,
            quantity=D("0.1"),
            signature="00" * 64,
        )
        log.add(h.feed(intent, producer="p1"))
    else:
        _, notional, position, open_orders = a
        log.version += 1
        log.add(
            h.admin(
                RiskLimitsChanged(
                    scope="*",
                    config_version=log.version,
                    limits=RiskLimits(
                        max_order_notional=D(notional),
                        max_position=D(position),
                        max_open_orders=open_orders,
                        price_collar_pct=D("0.05"),
                    ),
                    changed_by="admin",
                )
            )
        )


def _wire(outputs: list[list[Any]]) -> list[list[tuple[Any, Any, Any]]]:
    return [[encode(e) for e in out] for out in outputs]


def _recorded(state: EngineState) -> dict[Any, tuple[Any, Any, Any]]:
    return {k: (r.key, r.value, r.headers) for k, r in state.decisions.recent.items()}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(DECIDED, ODD), min_size=1, max_size=40))
@example([("odd", "A1", Side.BUY, 'q"\\\x00é€😀\u2028', TimeInForce.IOC, "3", 0)])
@example([("tight", "100", "0.5", 0), ("limit", "A1", Side.BUY, "1", 0, True)])
def test_fast_path_outputs_are_byte_identical_to_the_validating_path(
    actions: list[tuple[Any, ...]],
) -> None:
    recorder = _Recorder()
    setattr(pure, "process", recorder)  # noqa: B010 (the harness's module global)
    try:
        h = _harness()
        log = Log(h)
        # Every stream ends with orders, so every run makes decisions.
        tail = [("limit", "A1", Side.BUY, "0.1", 0, True), ("market", "A2", Side.SELL)]
        for a in [*actions, *tail]:
            if a[0] in ("odd", "stranger", "forged", "tight"):
                _play_odd(log, a)
            else:
                log.play(a)
    finally:
        setattr(pure, "process", process)  # noqa: B010
    fast_state = h.state
    assert any(e.event_type == "RiskDecision" for out in recorder.outputs for e in out)

    ref_state = EngineState(partition_of=part)
    ref_state.decisions.max_recent = fast_state.decisions.max_recent
    ref_state.ended.max_recent = fast_state.ended.max_recent
    ctx = Context(event_time_is_arrival=True)
    with trusted.reference_path():
        ref_outputs = [process(ref_state, event, ctx) for event in recorder.inputs]

    assert _wire(recorder.outputs) == _wire(ref_outputs)
    assert recorder.outputs == ref_outputs  # the models too (fields, defaults)
    for fast_out, ref_out in zip(recorder.outputs, ref_outputs, strict=True):
        for a, b in zip(fast_out, ref_out, strict=True):
            # `schemas.encode` calls the serializer directly: the same bytes as ever.
            assert encode(a)[1] == b.model_dump_json().encode()
            assert a.model_fields_set == b.model_fields_set
            assert a.payload.model_fields_set == b.payload.model_fields_set
    assert _recorded(fast_state) == _recorded(ref_state)
    assert canonical_state(fast_state) == canonical_state(ref_state)


def test_derive_event_keeps_its_id_recipe() -> None:
    """`derive_event` (now through `derived_fields`) = the recipe the log was written with:
    UUIDv7 of (cause time; producer, cause id, type, discriminator), validated."""
    h = pure.Harness()
    out = h.order(Side.BUY, D("0.1"), D("1"))
    cause = h.last_intent
    assert cause is not None
    payload = out[0].payload
    eid = derived_uuid7(
        cause.occurred_at, "engine", str(cause.event_id), payload.EVENT_TYPE, "decision"
    )
    old = new_event(
        payload, producer="engine", causation=cause, occurred_at=cause.occurred_at, event_id=eid
    )
    new = derive_event(payload, producer="engine", causation=cause, discriminator="decision")
    assert new == old and encode(new) == encode(old)
    assert out[0] == old and encode(out[0]) == encode(old)
    fields = derived_fields(
        payload, producer="engine", causation=cause, discriminator="decision", cause_id="x"
    )
    assert fields["event_id"] != eid  # the caller's cause id text is what is hashed


def test_builders_refuse_what_a_constructor_refuses() -> None:
    make = trusted.builder(RuleResult)
    with pytest.raises(TypeError):
        make(rule_id="R", passed=True)  # a required field missing
    with pytest.raises(TypeError):
        make(rule_id="R", rule_version=1, passed=True, colour="red")  # extra="forbid"
    with pytest.raises(TypeError, match="validators"):
        trusted.builder(OrderIntent)  # a model-level check: never skipped
    built = make(rule_id="R", rule_version=1, passed=True)
    assert built == RuleResult(rule_id="R", rule_version=1, passed=True)
    assert built.model_fields_set == {"rule_id", "rule_version", "passed"}
    with trusted.reference_path():
        with pytest.raises(ValueError):
            make(rule_id="R", rule_version=0, passed=True)

    class Basket(BaseModel):
        items: list[str] = []

    make_basket = trusted.builder(Basket)
    first, second = make_basket(), make_basket()
    first.items.append("x")  # a mutable default is each instance's own, as in pydantic
    assert second.items == [] and Basket().items == []
    with pytest.raises(ValueError):  # a field missing: the validating constructor says so
        trusted.builder_from_fields(RuleResult)({"rule_id": "R", "passed": True})
    with pytest.raises(TypeError, match="validators"):
        trusted.builder_from_fields(OrderIntent)
    fields: dict[str, Any] = {
        "account": "A1",
        "producer_id": "p",
        "strategy_id": "s",
        "client_order_id": "c",
        "intent_event_id": uuid.UUID(int=1),
        "intent_kind": "ORDER",
        "outcome": DecisionOutcome.APPROVED,
        "risk_config_version": 0,
    }
    decision = trusted.build(RiskDecision, **fields)
    reference = RiskDecision(**fields)  # the defaults filled in the same way
    assert decision == reference and decision.model_dump_json() == reference.model_dump_json()
    assert decision.model_fields_set == reference.model_fields_set


@settings(max_examples=100, deadline=None)
@given(
    st.text(min_size=1, max_size=20),
    st.integers(1, 10),
    st.booleans(),
    st.none() | st.text(max_size=10),
    st.text(max_size=30),
)
def test_positional_builders_are_the_validating_constructor(
    rule_id: str, version: int, passed: bool, code: str | None, detail: str
) -> None:
    short = trusted.positional_builder(RuleResult, ("rule_id", "rule_version", "passed", "detail"))
    full = trusted.positional_builder(
        RuleResult, ("rule_id", "rule_version", "passed", "reason_code", "detail")
    )
    pairs = [
        (
            short(rule_id, version, passed, detail),
            RuleResult(rule_id=rule_id, rule_version=version, passed=passed, detail=detail),
        ),
        (
            full(rule_id, version, passed, code, detail),
            RuleResult(
                rule_id=rule_id,
                rule_version=version,
                passed=passed,
                reason_code=code,
                detail=detail,
            ),
        ),
    ]
    for built, reference in pairs:
        assert built == reference and built.model_fields_set == reference.model_fields_set
        assert built.model_dump_json() == reference.model_dump_json()
        assert list(vars(built)) == list(vars(reference))
    with trusted.reference_path(), pytest.raises(ValueError):
        short(rule_id, 0, passed, detail)  # validates on the reference path
    with pytest.raises(TypeError):
        trusted.positional_builder(RuleResult, ("rule_id", "passed"))  # required one missing
    with pytest.raises(TypeError):
        trusted.positional_builder(RuleResult, ("rule_id", "rule_version", "passed", "colour"))


# ---- schemas speed-ups the engine relies on (byte-identical) ------------------------------


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**48 - 1), st.integers(0, 2**16 - 1), st.integers(0, 2**64 - 1))
def test_assembled_ids_are_the_uuid_module_s(ms: int, rand_a: int, rand_b: int) -> None:
    from schemas.ids import _assemble

    made = _assemble(ms, rand_a, rand_b)
    reference = uuid.UUID(int=made.int)
    assert made == reference and hash(made) == hash(reference)
    assert str(made) == str(reference) and made.bytes == reference.bytes
    assert made.version == 7 and made.is_safe == reference.is_safe
    assert made.int >> 80 == ms


@settings(max_examples=300, deadline=None)
@given(st.lists(st.datetimes(timezones=st.timezones()), min_size=1, max_size=6))
def test_timestamp_text_is_the_same_with_its_memo(times: list[Any]) -> None:
    """`format_timestamp` remembers its last value by identity: the text of every value,
    repeated or interleaved, is exactly what the unmemoised formatter gives."""
    from schemas.types import _format_timestamp, format_timestamp

    for t in [*times, *times, times[0], times[0]]:
        assert format_timestamp(t) == _format_timestamp(t)


def _recipe_id(at: Any, *parts: str) -> uuid.UUID:
    """A derived id as the log has been written: `uuid.UUID(int=...)` of the time's
    milliseconds, the low 12 bits of the digest's first two bytes and the low 62 of its
    next eight, with version 7 and the RFC variant."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    ms = int(at.timestamp() * 1000)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= (int.from_bytes(digest[:2], "big") & 0xFFF) << 64
    value |= 0b10 << 62
    value |= int.from_bytes(digest[2:10], "big") & ((1 << 62) - 1)
    return uuid.UUID(int=value)


PART = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=20)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.datetimes(timezones=st.timezones()), st.lists(PART, min_size=1, max_size=5)),
        min_size=1,
        max_size=6,
    )
)
@example([(datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC), ["engine", "x"])])
def test_derived_ids_keep_their_recipe(cases: list[tuple[Any, list[str]]]) -> None:
    """`derived_uuid7` (one conversion of time and digest, the time's milliseconds
    remembered by identity) gives the id the recipe gives, for any time (before 1970 too),
    repeated or interleaved."""
    for at, parts in [*cases, *cases, cases[0]]:
        made, reference = derived_uuid7(at, *parts), _recipe_id(at, *parts)
        assert made == reference and hash(made) == hash(reference)
        assert str(made) == str(reference) and made.is_safe == reference.is_safe


@settings(max_examples=300, deadline=None)
@given(st.uuids(), st.uuids())
def test_traceparent_is_the_hex_recipe(correlation_id: uuid.UUID, event_id: uuid.UUID) -> None:
    assert traceparent(correlation_id, event_id) == (
        f"00-{correlation_id.hex}-{event_id.hex[16:]}-01"
    )


def test_a_repeated_pass_is_one_result_equal_to_a_built_one() -> None:
    """A rule's pass with a detail it gave before is that same (immutable) result, equal
    to what the validating constructor builds; the memo is bounded, and the reference
    path still builds (and validates) each."""
    from engine.risk import rules

    first = rules._ok("MAX_OPEN_ORDERS", 1, "0 open")
    assert rules._ok("MAX_OPEN_ORDERS", 1, "0 open") is first
    assert rules._ok("MAX_OPEN_ORDERS", 2, "0 open") is not first
    reference = RuleResult(rule_id="MAX_OPEN_ORDERS", rule_version=1, passed=True, detail="0 open")
    assert first == reference and first.model_fields_set == reference.model_fields_set
    assert first.model_dump_json() == reference.model_dump_json()
    for i in range(rules._OK_KEPT + 1):
        rules._ok("MAX_OPEN_ORDERS", 1, f"{i} open")
    assert len(rules._OK) <= rules._OK_KEPT
    with trusted.reference_path():
        built = rules._ok("MAX_OPEN_ORDERS", 1, "0 open")
        assert built is not rules._ok("MAX_OPEN_ORDERS", 1, "0 open") and built == reference
        with pytest.raises(ValueError):
            rules._ok("MAX_OPEN_ORDERS", 0, "0 open")


def _exact_enough_by_digits(value: Decimal) -> bool:
    """`exact_enough` as written before its fast path: from the digits alone."""
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    if exponent >= -8 and len(digits) <= 28:
        return True
    zeros = 0
    for d in reversed(digits):
        if d:
            break
        zeros += 1
    if zeros == len(digits):
        return True
    return exponent + zeros >= -8 and len(digits) - zeros <= 28


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.decimals(allow_nan=False, allow_infinity=False),
        st.builds(
            lambda c, e: Decimal(c).scaleb(e),
            st.integers(-(10**35), 10**35),
            st.integers(-14, 12),
        ),
    )
)
@example(Decimal("99999999999.99999999"))
@example(Decimal("100000000000000000000"))
@example(Decimal("1.000000000000000000000000000000"))
@example(Decimal("-0E-30"))
def test_exact_enough_is_read_from_the_digits(value: Decimal) -> None:
    from engine.state import exact_enough

    assert exact_enough(value) == _exact_enough_by_digits(value)
