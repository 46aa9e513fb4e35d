"""Fast, fail-closed decoding of a record into a plain, JSON-shaped dict.

`schemas.decode` builds pydantic models whose money and time fields run Python
validators (about 10-20 µs per event). Projections only need the values, so for each
(event type, version) this module derives, from the payload model's own pydantic-core
schema, a *lean* validator that runs entirely in Rust and returns a dict:

* models become typed dicts with the same fields, requiredness and `extra="forbid"`;
* str/int/bool/literal leaves keep the model's exact core schema (same lengths, patterns);
* `Dec` / `PositiveDec` / `NonNegativeDec` become strings matching a canonical decimal
  pattern (no exponent, no leading zeros, no `-0`), timestamps become strings matching
  `YYYY-MM-DDThh:mm:ss.ffffffZ` with a valid calendar date, UUIDs become lowercase
  hyphenated strings, enums become their string values;
* a payload model validator is mirrored only where `_AFTER_CHECKS` holds a check on
  the lean payload (QuoteUpdated's crossed-book rule); anything else it cannot mirror
  exactly (other model validators, custom types) makes the whole event type
  ineligible, and it takes the full path.

The lean validator accepts a *subset* of what the models accept, and for that subset
returns exactly `model.model_dump(mode="json")`. A record it does not accept is not
rejected here: `decode_record` falls back to `schemas.decode`, which gives the
canonical verdict (quarantine on failure). So the verdict is always the models' verdict;
the property test in tests/projections/test_lean.py checks both claims.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

from pydantic_core import SchemaValidator, ValidationError, core_schema

from schemas import Envelope, MalformedEventError, decode, payload_class
from schemas import types as schema_types
from schemas.envelope import envelope_class
from schemas.errors import UnknownEventTypeError
from schemas.registry import REGISTRY

Data = dict[str, Any]
"""A decoded event as JSON values: what `Envelope.model_dump(mode="json")` returns."""

DECIMAL_RE = (
    r"^(?:0|[1-9][0-9]*)(?:\.[0-9]+)?$|^-(?:0\.[0-9]*[1-9][0-9]*|[1-9][0-9]*(?:\.[0-9]+)?)$"
)
POSITIVE_RE = r"^(?:0\.[0-9]*[1-9][0-9]*|[1-9][0-9]*(?:\.[0-9]+)?)$"
NON_NEGATIVE_RE = r"^(?:0|[1-9][0-9]*)(?:\.[0-9]+)?$"
UUID_RE = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_YEAR = r"(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
_LEAP = r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_MONTH_DAY = (
    r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    r"|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
_TIME = r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{6}Z"
TIMESTAMP_RE = rf"^(?:{_YEAR}-{_MONTH_DAY}|{_LEAP}-02-29){_TIME}$"
"""Exactly the form `format_timestamp` writes, with a date Python accepts: years
0001-9999, real month lengths, 29 February only in Gregorian leap years."""


class NotLean(Exception):
    """The model has something the lean schema cannot mirror exactly."""


def _before_funcs(annotated: Any) -> list[Callable[..., Any]]:
    return [m.func for m in getattr(annotated, "__metadata__", ()) if hasattr(m, "func")]


_STRING_FORMS: dict[Any, str] = {
    schema_types._parse_decimal: DECIMAL_RE,
    _before_funcs(schema_types.PositiveDec)[-1]: POSITIVE_RE,
    _before_funcs(schema_types.NonNegativeDec)[-1]: NON_NEGATIVE_RE,
    schema_types._parse_utc: TIMESTAMP_RE,
}
"""The Python before-validators of schemas.types, and the strict string form that
replaces each (a subset of what the validator accepts, in canonical spelling)."""

_ANY_SEEN = [False]
"""Set while deriving a schema that holds free JSON (`dict[str, Any]`)."""


def _quote_not_crossed(payload: Data) -> bool:
    return Decimal(payload["bid_price"]) < Decimal(payload["ask_price"])


_AFTER_CHECKS: dict[tuple[str, str], Callable[[Data], bool]] = {
    ("schemas.events.marketdata", "QuoteUpdated._not_crossed"): _quote_not_crossed,
}
"""Payload model validators (mode="after") mirrored as a check on the lean payload.
A record failing the check takes the full path, which gives the canonical verdict, so
a check only has to accept nothing the validator refuses."""

_CHECKS_SEEN: list[Callable[[Data], bool]] = []
"""Collected while deriving a schema: the payload checks its validator must run."""

_PLAIN_LEAVES = {"str", "int", "bool", "literal", "none"}
_MODEL_CONFIG_OK = {"extra_fields_behavior", "title", "str_strip_whitespace"}


def _jsonable_default(value: Any) -> Any:
    """The JSON form `model_dump(mode="json")` gives a field default."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal):
        return schema_types.format_decimal(value)
    if isinstance(value, datetime):
        return schema_types.format_timestamp(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Enum):
        return _jsonable_default(value.value)
    if isinstance(value, tuple | list):
        return [_jsonable_default(v) for v in value]
    raise NotLean(f"default {value!r}")


def _lean(schema: Any, defs: dict[str, Any]) -> Any:
    t = schema["type"]
    if t == "definitions":
        for d in schema["definitions"]:
            defs[d["ref"]] = d
        return _lean(schema["schema"], defs)
    if t == "definition-ref":
        return _lean(defs[schema["schema_ref"]], defs)
    if t == "model":
        cfg = schema.get("config") or {}
        if set(cfg) - _MODEL_CONFIG_OK or cfg.get("str_strip_whitespace"):
            raise NotLean(f"model config {cfg}")
        if cfg.get("extra_fields_behavior") != "forbid" or schema.get("custom_init"):
            raise NotLean("model is not extra=forbid")
        if schema.get("post_init") or schema.get("root_model"):
            raise NotLean("model hooks")
        inner = schema["schema"]
        if inner["type"] != "model-fields" or inner.get("computed_fields"):
            raise NotLean(f"model body {inner['type']}")
        fields = {}
        for name, f in inner["fields"].items():
            if f.get("validation_alias") or f.get("frozen") is False:
                raise NotLean(f"field {name} alias")
            fs = f["schema"]
            fields[name] = core_schema.typed_dict_field(
                _lean(fs, defs), required=fs["type"] != "default"
            )
        return core_schema.typed_dict_schema(fields, extra_behavior="forbid")
    if t == "default":
        if "default" not in schema or schema.get("validate_default"):
            raise NotLean("default factory")
        return core_schema.with_default_schema(
            _lean(schema["schema"], defs), default=_jsonable_default(schema["default"])
        )
    if t == "nullable":
        return core_schema.nullable_schema(_lean(schema["schema"], defs))
    if t == "function-after":
        fn = schema["function"]["function"]
        check = _AFTER_CHECKS.get((getattr(fn, "__module__", ""), getattr(fn, "__qualname__", "")))
        if check is None or schema["schema"]["type"] != "model":
            raise NotLean(f"validator {fn}")
        _CHECKS_SEEN.append(check)
        return _lean(schema["schema"], defs)
    if t == "function-before":
        form = _STRING_FORMS.get(schema["function"]["function"])
        if form is None:
            raise NotLean(f"validator {schema['function']['function']}")
        if form == TIMESTAMP_RE:
            return core_schema.str_schema(pattern=form)
        # A decimal string this short is always in the models' range (schemas.types);
        # a longer one takes the models' path, which checks the range: the lean form
        # accepts a subset of what they accept.
        return core_schema.str_schema(pattern=form, max_length=schema_types.IN_RANGE_TEXT)
    if t == "enum":
        if schema.get("sub_type") != "str" or schema.get("missing"):
            raise NotLean("enum")
        return core_schema.literal_schema([m.value for m in schema["members"]])
    if t == "uuid":
        if schema.get("version") is not None:
            raise NotLean("uuid version")
        return core_schema.str_schema(pattern=UUID_RE)
    if t == "tuple":
        items = schema["items_schema"]
        if schema.get("variadic_item_index") != 0 or len(items) != 1:
            raise NotLean("fixed tuple")
        return core_schema.list_schema(
            _lean(items[0], defs),
            min_length=schema.get("min_length"),
            max_length=schema.get("max_length"),
        )
    if t == "dict":
        keys, values = schema.get("keys_schema"), schema.get("values_schema")
        if keys is None or keys["type"] != "str" or set(keys) - {"type"}:
            raise NotLean("dict keys")
        if values is not None and values["type"] == "any":
            _ANY_SEEN[0] = True
            return core_schema.dict_schema(core_schema.str_schema(), core_schema.any_schema())
        return core_schema.dict_schema(core_schema.str_schema(), _lean(values or {}, defs))
    if t in _PLAIN_LEAVES:
        leaf = {k: v for k, v in schema.items() if k not in ("ref", "metadata", "serialization")}
        if t == "literal" and not all(isinstance(v, str | int) for v in leaf["expected"]):
            raise NotLean("literal")
        if t == "literal":
            leaf["expected"] = [v.value if isinstance(v, Enum) else v for v in leaf["expected"]]
        return leaf
    raise NotLean(t)


def lean_schema(event_type: str, version: int) -> Any:
    """The lean core schema of `Envelope[payload]` for one event type and version."""
    envelope: Any = envelope_class(payload_class(event_type, version))
    schema = _lean(envelope.__pydantic_core_schema__, {})
    schema["fields"]["event_type"] = core_schema.typed_dict_field(
        core_schema.literal_schema([event_type])
    )
    # A JSON integer, exactly: a literal 1 would also match `true` (True == 1), which
    # `schemas.decode` refuses (found by the mutation test).
    schema["fields"]["schema_version"] = core_schema.typed_dict_field(
        core_schema.int_schema(strict=True, ge=version, le=version)
    )
    return schema


_VALIDATORS: dict[tuple[str, int], SchemaValidator | None] = {}
_PAYLOAD_CHECKS: dict[tuple[str, int], tuple[Callable[[Data], bool], ...]] = {}
_FREE_JSON: set[tuple[str, int]] = set()
"""Types whose lean output holds free JSON, checked for non-finite floats (which the
models' JSON dump would turn into null)."""


def _finite(value: Any) -> bool:
    if isinstance(value, float):  # a JSON float (NaN/inf rejected), not money: money is never float
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def validator_for(event_type: str, version: int) -> SchemaValidator | None:
    """The lean validator, or None when the type must take the full path."""
    key = (event_type, version)
    if key not in _VALIDATORS:
        if key not in REGISTRY:
            _VALIDATORS[key] = None
        else:
            _ANY_SEEN[0] = False
            _CHECKS_SEEN.clear()
            try:
                # pydantic-core's default string cache (keys and values) stays: caching
                # keys only made `validate_json` 8-20% cheaper alone, but the whole
                # decode-fold-render pipeline no faster (docs/benchmarks.md, session 6).
                _VALIDATORS[key] = SchemaValidator(lean_schema(event_type, version))
            except NotLean:
                _VALIDATORS[key] = None
            if _ANY_SEEN[0]:
                _FREE_JSON.add(key)
            if _CHECKS_SEEN:
                _PAYLOAD_CHECKS[key] = tuple(_CHECKS_SEEN)
    return _VALIDATORS[key]


def eligible_types() -> list[tuple[str, int]]:
    """Every registered (type, version) with a lean validator."""
    return [k for k in REGISTRY if validator_for(*k) is not None]


_NAMED: dict[tuple[Any, Any], tuple[str, int] | None] = {}
"""`header_type` by the raw (event_type, schema_version) header values: a handful of
distinct pairs in any log, so the text decoding and parsing is done once per pair."""
_NAMED_MAX = 4096


def _named(et: Any, ver: Any) -> tuple[str, int] | None:
    et = et.decode(errors="replace") if isinstance(et, bytes) else et
    ver = ver.decode(errors="replace") if isinstance(ver, bytes) else ver
    if not isinstance(et, str) or not isinstance(ver, str) or not ver.isdecimal():
        return None
    try:
        return et, int(ver)
    except ValueError:  # more digits than int() parses (4,300): no version of any type
        return None


def header_type(headers: Sequence[tuple[str, Any]] | None) -> tuple[str, int] | None:
    """(event_type, schema_version) named by the record headers, if well formed."""
    if not headers:
        return None
    et = ver = None
    for k, v in headers:
        if k == "event_type":
            et = v
        elif k == "schema_version":
            ver = v
    pair = (et, ver)
    try:
        return _NAMED[pair]
    except KeyError:
        named = _named(et, ver)
        if len(_NAMED) < _NAMED_MAX:  # bounded: headers are input, not trusted
            _NAMED[pair] = named
        return named
    except TypeError:  # an unhashable header value
        return _named(et, ver)


_PLANS: dict[tuple[str, int], tuple[SchemaValidator, bool, tuple[Callable[[Data], bool], ...]]] = {}
"""Per lean-eligible (type, version): its validator, whether its output holds free JSON
(`_FREE_JSON`) and its payload checks, in one lookup per record (three lookups and a
call before). Only registered types get one, so it stays as small as the registry."""


def lean_plans() -> dict[
    tuple[str, int], tuple[SchemaValidator, bool, tuple[Callable[[Data], bool], ...]]
]:
    """The (type, version) -> (validator, free JSON, payload checks) map `lean_decode`
    fills as it meets types (for a caller that inlines its common case)."""
    return _PLANS


def lean_decode(
    value: bytes | None,
    headers: Sequence[tuple[str, Any]] | None,
    named: tuple[str, int] | None = None,
) -> Data | None:
    """The record as JSON values via the lean validator, or None (take the full path).
    `named` is `header_type(headers)` when the caller already has it."""
    if value is None:
        return None
    if named is None:
        named = header_type(headers)
        if named is None:
            return None
    plan = _PLANS.get(named)
    if plan is None:
        if len(named[0]) > 64:
            return None
        v = validator_for(*named)
        if v is None:
            return None
        plan = _PLANS[named] = (v, named in _FREE_JSON, _PAYLOAD_CHECKS.get(named, ()))
    v, free_json, checks = plan
    try:
        out: Data = v.validate_json(value)
    except ValidationError:
        return None
    if free_json and not _finite(out):
        return None
    if checks and not all(c(out["payload"]) for c in checks):
        return None
    return out


def full_decode(
    value: bytes | None,
    headers: Sequence[tuple[str, Any]] | None,
    *,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
) -> tuple[Envelope[Any], Data]:
    """`schemas.decode` (raises `MalformedEventError`), and its JSON values.

    Exactly `schemas.decode`, the canonical verdict. (A first try with the model's own
    `model_validate_json` was faster but accepted `"schema_version": true`, which
    `schemas.decode` refuses; the mutation test found it.)"""
    ev = decode(value, headers, topic=topic, partition=partition, offset=offset)
    return ev, ev.model_dump(mode="json")


def decode_record(
    value: bytes | None,
    headers: Sequence[tuple[str, Any]] | None,
    *,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
) -> Data:
    """Lean first, the models otherwise. Raises `MalformedEventError` (or its subclass
    `UnknownEventTypeError`) exactly when `schemas.decode` does."""
    data = lean_decode(value, headers)
    if data is not None:
        return data
    return full_decode(value, headers, topic=topic, partition=partition, offset=offset)[1]


__all__ = [
    "Data",
    "MalformedEventError",
    "NotLean",
    "UnknownEventTypeError",
    "decode_record",
    "eligible_types",
    "full_decode",
    "lean_decode",
    "lean_schema",
    "validator_for",
]
