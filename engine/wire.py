"""Compiled canonical JSON layouts of `schemas` models, for signature checks.

Every intent's signature is checked over `canonical_payload_bytes` (`model_dump` to a
dict, then sorted-key `json.dumps`): ~13 us per intent. Here each model's canonical layout
is compiled once, *from the model's own field declarations* (names, types and the
`PlainSerializer` functions of `schemas.types`), into one string-concatenating function
(~4 us). Nothing about an event's shape is defined here: a new field in `schemas/` changes
the compiled layout with it, and a field type the compiler does not know raises
`UnsupportedField`, never renders differently.

(The same approach for the full envelopes was measured slower than pydantic-core's Rust
serializer, so `schemas.encode` stays the wire encoder.)

Equality with `canonical_payload_bytes` is property-tested (tests/engine/test_wire.py).
"""

from __future__ import annotations

import json
import types
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from uuid import UUID

from pydantic import BaseModel, PlainSerializer

from schemas.envelope import EventPayload
from schemas.serde import canonical_payload_bytes

Render = Callable[[Any], str]


class UnsupportedField(TypeError):
    """A field type the layout compiler does not know: use the canonical encoder."""


def json_string(s: str) -> str:
    """A JSON string as both pydantic (serde_json) and `json.dumps(ensure_ascii=False)`
    render it: printable ASCII without quote or backslash verbatim, else escaped."""
    if s.isascii() and s.isprintable() and '"' not in s and "\\" not in s:
        return '"' + s + '"'
    return json.dumps(s, ensure_ascii=False)


def _quoted(func: Callable[[Any], str]) -> Render:
    return lambda v: json_string(func(v))


def _enum_value(v: Any) -> str:
    return json_string(v.value if isinstance(v, Enum) else v)


def _renderer(tp: Any) -> Render:
    origin = get_origin(tp)
    if origin is Annotated:
        base, *meta = get_args(tp)
        for m in meta:
            if isinstance(m, PlainSerializer):
                return _quoted(m.func)  # type: ignore[arg-type]
        return _renderer(base)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        inner_args = [a for a in args if a is not type(None)]
        if len(args) != 2 or len(inner_args) != 1:
            raise UnsupportedField(tp)
        inner = _renderer(inner_args[0])
        return lambda v: "null" if v is None else inner(v)
    if origin is tuple:
        args = get_args(tp)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise UnsupportedField(tp)
        item = _renderer(args[0])
        return lambda v: "[" + ",".join([item(x) for x in v]) + "]"
    if origin is Literal:
        if all(isinstance(a, str) for a in get_args(tp)):
            return _enum_value
        raise UnsupportedField(tp)
    if tp is str:
        return json_string
    if tp is bool:
        return lambda v: "true" if v else "false"
    if tp is int:
        return lambda v: str(int(v))
    if tp is UUID:
        return lambda v: '"' + str(v) + '"'
    if isinstance(tp, type) and issubclass(tp, Enum) and issubclass(tp, str):
        return _enum_value
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return compile_layout(tp)
    raise UnsupportedField(tp)


def _field_type(info: Any) -> Any:
    return Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


_LAYOUTS: dict[tuple[type[BaseModel], frozenset[str]], Render] = {}


def compile_layout(cls: type[BaseModel], *, exclude: frozenset[str] = frozenset()) -> Render:
    """A function rendering an instance of `cls` as
    `canonical_json(model_dump(mode="json", exclude=exclude))` (sorted keys, nested too)."""
    key = (cls, exclude)
    found = _LAYOUTS.get(key)
    if found is not None:
        return found
    if cls.model_computed_fields or cls.model_config.get("ser_json_timedelta") not in (
        None,
        "iso8601",
    ):
        raise UnsupportedField(cls)
    names = sorted(n for n in cls.model_fields if n not in exclude)
    env: dict[str, Any] = {}
    parts: list[str] = []
    for i, name in enumerate(names):
        info = cls.model_fields[name]
        if info.alias not in (None, name) or info.serialization_alias not in (None, name):
            raise UnsupportedField(f"{cls.__name__}.{name} has an alias")
        env[f"r{i}"] = _renderer(_field_type(info))
        sep = "{" if i == 0 else ","
        parts.append(f"{json.dumps(sep + json.dumps(name) + ':')} + r{i}(o.{name})")
    body = " + ".join(parts) + " + '}'" if parts else "'{}'"
    args = ", ".join(f"r{i}=r{i}" for i in range(len(names)))
    src = (
        f"def render(o, {args}):\n    return {body}\n"
        if args
        else f"def render(o):\n    return {body}\n"
    )
    # The source is generated from the model's own field names, never from input.
    exec(compile(src, f"<layout {cls.__name__}>", "exec"), env)
    render: Render = env["render"]
    _LAYOUTS[key] = render
    return render


_CANONICAL_SIGNING: dict[type[BaseModel], Render | None] = {}
_NO_SIGNATURE = frozenset({"signature"})


def signing_bytes(payload: EventPayload) -> bytes:
    """`canonical_payload_bytes(payload, exclude={"signature"})`, compiled per class
    (a class with a field type the compiler does not know keeps the canonical path)."""
    cls = type(payload)
    try:
        render = _CANONICAL_SIGNING[cls]
    except KeyError:
        try:
            render = compile_layout(cls, exclude=_NO_SIGNATURE)
        except UnsupportedField:
            render = None
        _CANONICAL_SIGNING[cls] = render
    if render is None:
        return canonical_payload_bytes(payload, exclude=set(_NO_SIGNATURE))
    return render(payload).encode()
