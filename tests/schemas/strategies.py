"""Hypothesis strategies for any pydantic event model, derived from its annotations.

Constraints (patterns, lengths, bounds) come from the field metadata; model-level
validators (crossed book, LEI check digits, price-vs-type) are honoured by filtering.
"""

from __future__ import annotations

import types
import typing
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

import annotated_types
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from schemas.types import NonNegativeDec, PositiveDec

_JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.text(max_size=8))
_JSON = st.recursive(
    _JSON_LEAF,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=6,
)

_DECIMALS = st.decimals(
    min_value=Decimal("-1e12"),
    max_value=Decimal("1e12"),
    allow_nan=False,
    allow_infinity=False,
    places=8,
)
# The sign checks are validators, not field constraints: drawn from all decimals, half of
# each such field was refused, and a model with five (`RiskLimits`) kept one draw in ~40
# (its round-trip test took 20 s of the suite).
_POSITIVE, _NON_NEGATIVE = typing.get_args(PositiveDec)[-1], typing.get_args(NonNegativeDec)[-1]
_SIGNED = {
    id(_POSITIVE): st.decimals(
        min_value=Decimal("1e-8"), max_value=Decimal("1e12"), allow_nan=False, places=8
    ),
    id(_NON_NEGATIVE): st.decimals(
        min_value=Decimal(0), max_value=Decimal("1e12"), allow_nan=False, places=8
    ),
}
_TIMES = st.datetimes(
    min_value=datetime(2009, 1, 3), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


def _constraints(metadata: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in metadata:
        for attr in ("min_length", "max_length", "ge", "gt", "le", "lt", "pattern"):
            value = getattr(m, attr, None)
            if value is not None:
                out[attr] = value
        if isinstance(m, annotated_types.Len):
            out["min_length"], out["max_length"] = m.min_length, m.max_length
    return out


def for_type(tp: Any, metadata: list[Any] | None = None) -> st.SearchStrategy[Any]:
    metadata = list(metadata or [])
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(tp)
        return for_type(base, metadata + list(extra))
    c = _constraints(metadata)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(for_type(a, metadata) for a in typing.get_args(tp)))
    if origin is typing.Literal:
        return st.sampled_from(typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(for_type(args[0]), max_size=3).map(tuple)
        return st.tuples(*(for_type(a) for a in args))
    if origin is dict:
        return st.dictionaries(
            st.text(min_size=1, max_size=6),
            _JSON if typing.get_args(tp)[1] is Any else for_type(typing.get_args(tp)[1]),
            max_size=3,
        )
    if origin is list:
        return st.lists(for_type(typing.get_args(tp)[0]), max_size=3)
    if tp is type(None):
        return st.none()
    if isinstance(tp, type) and issubclass(tp, Enum):
        return st.sampled_from(list(tp))
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return model_strategy(tp)
    if tp is Decimal:
        signed = [_SIGNED[id(m)] for m in metadata if id(m) in _SIGNED]
        return signed[0] if signed else _DECIMALS
    if tp is datetime:
        return _TIMES
    if tp is UUID:
        return st.uuids()
    if tp is bool:
        return st.booleans()
    if tp is int:
        lo = c.get("ge", c.get("gt", -(10**6) - 1) + 1 if "gt" in c else -(10**6))
        return st.integers(min_value=lo, max_value=10**6)
    if tp is str:
        if "pattern" in c:
            s = st.from_regex(c["pattern"], fullmatch=True)
        else:
            s = st.text(
                st.characters(codec="utf-8", exclude_categories=["Cs"]),
                min_size=c.get("min_length", 0),
                max_size=min(c.get("max_length", 20), 20),
            )
        lo, hi = c.get("min_length", 0), c.get("max_length", 10**6)
        return s.filter(lambda v: lo <= len(v) <= hi)
    if tp is Any:
        return _JSON
    raise NotImplementedError(f"no strategy for {tp!r}")


def _field_strategy(info: FieldInfo) -> st.SearchStrategy[Any]:
    return for_type(info.annotation, list(info.metadata))


def model_strategy(cls: type[BaseModel]) -> st.SearchStrategy[Any]:
    fields = {name: _field_strategy(info) for name, info in cls.model_fields.items()}

    def build(values: dict[str, Any]) -> BaseModel | None:
        try:
            return cls.model_validate(values)
        except ValidationError:
            return None

    return st.fixed_dictionaries(fields).map(build).filter(lambda m: m is not None)
