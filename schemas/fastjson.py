"""A `RiskDecision` envelope's JSON without pydantic-core's serializer: the same bytes.

The engine writes one decision per order intent, and pydantic-core spent ~94k
instructions on each (`to_json`: ~6k per rule result, twelve of them, and ~39k for the
rest), a sixth of the engine's process stage. `risk_decision_json` writes what
`Envelope[RiskDecision].__pydantic_serializer__.to_json(event)` writes, byte for byte:

- keys in each model's `__dict__` order (pydantic's order), which must be the declared
  one; values as pydantic-core writes them: strings escaped as serde_json escapes them
  (`json.encoder.c_encode_basestring`: `"`, `\\`, control characters, the rest as UTF-8;
  checked for every code point by tests/schemas/test_fastjson.py), UUIDs lowercase and
  hyphenated, decimals and timestamps through the schema's own serializers
  (`format_decimal`, `format_timestamp`), the outcome by its value;
- a pass's rule result (the rules build one object per rule, version and detail and
  reuse it: `engine.risk.rules._ok`) is written once and its text reused by identity.

Anything it does not know exactly (a value of another type than the declared one, a
field added to or moved in the schema, a lone surrogate) returns None and the caller uses
pydantic: the fallback is the reference, never a guess. `ENABLED` is False when the
schema's fields are not the ones written here (tests/schemas/test_fastjson.py fails then).
"""

from __future__ import annotations

import json.encoder
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from schemas.envelope import envelope_class
from schemas.events.risk import DecisionOutcome, RiskDecision, RuleResult
from schemas.ids import uuid_text
from schemas.types import Dec, UtcTimestamp, format_decimal, format_timestamp

_escape: Any = getattr(json.encoder, "c_encode_basestring", None)  # None: no C accelerator

_ENVELOPE = envelope_class(RiskDecision)
_ENVELOPE_FIELDS: tuple[tuple[str, Any], ...] = (
    ("event_id", UUID),
    ("event_type", str),
    ("schema_version", int),
    ("occurred_at", UtcTimestamp),
    ("producer", str),
    ("correlation_id", UUID),
    ("causation_id", UUID | None),
    ("key", str),
    ("payload", RiskDecision),
)
_DECISION_FIELDS: tuple[tuple[str, Any], ...] = (
    ("account", str),
    ("producer_id", str),
    ("strategy_id", str),
    ("client_order_id", str),
    ("intent_event_id", UUID),
    ("intent_kind", str),
    ("outcome", DecisionOutcome),
    ("reason_codes", tuple[str, ...]),
    ("rule_results", tuple[RuleResult, ...]),
    ("risk_config_version", int),
    ("order_id", str | None),
    ("equity", Dec | None),
    ("peak_equity", Dec | None),
    ("peak_nav", Dec | None),
    ("intent_digest", str | None),
    ("received_at", UtcTimestamp | None),
)
_RULE_FIELDS: tuple[tuple[str, Any], ...] = (
    ("rule_id", str),
    ("rule_version", int),
    ("passed", bool),
    ("reason_code", str | None),
    ("detail", str),
)
_ENVELOPE_KEYS = tuple(n for n, _t in _ENVELOPE_FIELDS)
_DECISION_KEYS = tuple(n for n, _t in _DECISION_FIELDS)
_RULE_KEYS = tuple(n for n, _t in _RULE_FIELDS)


def _declared(cls: Any, expected: tuple[tuple[str, Any], ...]) -> bool:
    """`cls` declares exactly these fields, in this order, with these types (the
    serializers of `Dec` and `UtcTimestamp` included), no alias and nothing computed."""
    fields = cls.model_fields
    if tuple(fields) != tuple(n for n, _t in expected) or cls.model_computed_fields:
        return False
    if cls.model_config.get("serialize_by_alias"):
        return False
    for name, annotation in expected:
        info = fields[name]
        if info.alias is not None or info.serialization_alias is not None:
            return False
        meta = tuple(info.metadata)
        if hasattr(annotation, "__metadata__"):
            # A required `Annotated` field: pydantic keeps its type and metadata apart.
            if info.annotation != annotation.__origin__ or meta != annotation.__metadata__:
                return False
        elif info.annotation != annotation or any(_serializes(m) for m in meta):
            return False  # another type, or a serializer this module does not apply
    return True


def _serializes(meta: Any) -> bool:
    return type(meta).__name__ in ("PlainSerializer", "WrapSerializer")


ENABLED = (
    _escape is not None
    and _declared(_ENVELOPE, _ENVELOPE_FIELDS)
    and _declared(RiskDecision, _DECISION_FIELDS)
    and _declared(RuleResult, _RULE_FIELDS)
)
"""The fast path's fields are the schema's (tests/schemas/test_fastjson.py asserts it)."""

_OUTCOMES = {o: _escape(o.value) for o in DecisionOutcome} if ENABLED else {}
_TEXTS: dict[int, str] = {}
"""id(rule result) -> its JSON, for the passes (the rules reuse a pass's object)."""
_HELD: list[RuleResult] = []
"""The results in `_TEXTS`, held: an id is never another object's while it is there."""
_KEPT = 4096


class _Unknown(Exception):
    """A value this module does not write exactly as pydantic does: use pydantic."""


def _rule(r: Any) -> str:
    """A rule result's JSON (remembered for a pass, which recurs as the same object)."""
    if type(r) is not RuleResult:
        raise _Unknown
    d = r.__dict__
    passed, version, code = d["passed"], d["rule_version"], d["reason_code"]
    if tuple(d) != _RULE_KEYS or type(passed) is not bool or type(version) is not int:
        raise _Unknown
    text = '{"rule_id":%s,"rule_version":%d,"passed":%s,"reason_code":%s,"detail":%s}' % (  # noqa: UP031
        _escape(d["rule_id"]),
        version,
        "true" if passed else "false",
        "null" if code is None else _escape(code),
        _escape(d["detail"]),
    )
    if passed:
        if len(_HELD) >= _KEPT:
            _TEXTS.clear()
            _HELD.clear()
        _TEXTS[id(r)] = text
        _HELD.append(r)
    return text


def risk_decision_json(event: Any) -> bytes | None:
    """`type(event).__pydantic_serializer__.to_json(event)` of an `Envelope[RiskDecision]`,
    or None for anything else or anything not written exactly here (use pydantic).

    One function with few calls: each Python call or lookup costs about what
    pydantic-core spends on a whole field."""
    if type(event) is not _ENVELOPE or not ENABLED:
        return None
    e = event.__dict__
    d = e["payload"].__dict__
    if (
        type(e["payload"]) is not RiskDecision
        or tuple(e) != _ENVELOPE_KEYS
        or tuple(d) != _DECISION_KEYS
    ):
        return None
    event_id, event_type, version, occurred, producer, correlation, cause, key, _p = e.values()
    (account, producer_id, strategy_id, client_order_id, intent_id, kind, outcome, codes,
     results, risk_version, order_id, equity, peak_equity, peak_nav, digest, received,
     ) = d.values()  # fmt: skip
    if (
        type(event_id) is not UUID
        or type(correlation) is not UUID
        or type(intent_id) is not UUID
        or (cause is not None and type(cause) is not UUID)
        or type(occurred) is not datetime
        or (received is not None and type(received) is not datetime)
        or type(version) is not int
        or type(risk_version) is not int
        or type(outcome) is not DecisionOutcome
        or type(codes) is not tuple
        or type(results) is not tuple
        or (equity is not None and type(equity) is not Decimal)
        or (peak_equity is not None and type(peak_equity) is not Decimal)
        or (peak_nav is not None and type(peak_nav) is not Decimal)
    ):
        return None
    # A pass's text by the result's id (held in `_HELD`, so the id is its own).
    texts: list[Any] = list(map(_TEXTS.get, map(id, results)))
    esc = _escape
    try:
        if None in texts:
            texts = [_rule(r) if t is None else t for r, t in zip(results, texts, strict=True)]
        intent_text = uuid_text(intent_id)
        causation = (
            "null"
            if cause is None
            else f'"{intent_text if cause is intent_id else uuid_text(cause)}"'
        )
        # ids, times and decimals: nothing in them to escape.
        equity_text = "null" if equity is None else '"' + format_decimal(equity) + '"'
        peak_text = "null" if peak_equity is None else '"' + format_decimal(peak_equity) + '"'
        nav_text = "null" if peak_nav is None else '"' + format_decimal(peak_nav) + '"'
        received_text = "null" if received is None else '"' + format_timestamp(received) + '"'
        text = (
            f'{{"event_id":"{uuid_text(event_id)}","event_type":{esc(event_type)},'
            f'"schema_version":{version},"occurred_at":"{format_timestamp(occurred)}",'
            f'"producer":{esc(producer)},"correlation_id":"{uuid_text(correlation)}",'
            f'"causation_id":{causation},"key":{esc(key)},"payload":'
            f'{{"account":{esc(account)},"producer_id":{esc(producer_id)},'
            f'"strategy_id":{esc(strategy_id)},"client_order_id":{esc(client_order_id)},'
            f'"intent_event_id":"{intent_text}","intent_kind":{esc(kind)},'
            f'"outcome":{_OUTCOMES[outcome]},"reason_codes":[{",".join(map(esc, codes))}],'
            f'"rule_results":[{",".join(texts)}],"risk_config_version":{risk_version},'
            f'"order_id":{"null" if order_id is None else esc(order_id)},'
            f'"equity":{equity_text},"peak_equity":{peak_text},"peak_nav":{nav_text},'
            f'"intent_digest":{"null" if digest is None else esc(digest)},'
            f'"received_at":{received_text}}}}}'
        )
        return text.encode()
    except (_Unknown, TypeError, UnicodeEncodeError):
        # TypeError: a string field holding something else (`c_encode_basestring`).
        return None
