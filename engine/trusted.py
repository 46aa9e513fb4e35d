"""Schema model instances built from values the engine already holds validated.

Per intent the engine builds about fifteen `schemas` models from fields that were
validated at intake or computed by its own code: twelve rule results, the decision, the
order, the venue's acknowledgement and their envelopes. pydantic validating them again
was the largest single cost of `process`. `build(cls, **values)` returns the instance
`cls(**values)` would return for those values (the same field values, defaults and
fields-set, so equal and encoded to the same bytes) without validating them.

The shapes stay defined in `schemas/` only: each class's constructor is generated from
its own field declarations (names, defaults, default factories), so a field added there
is built here with it; an unknown or missing field name raises `TypeError`, as a
validating constructor would. Untrusted input never comes through here: intents and
admin commands are validated by `engine.codec` at intake as before.

Inside `reference_path()` every builder validates (`cls(**values)`): the reference path
the property test (`tests/engine/test_trusted.py`) compares the engine's output bytes
with.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

_MODE = [False]
"""[True] inside `reference_path()`: every builder validates."""


@contextmanager
def reference_path() -> Iterator[None]:
    """Build every model through pydantic's validating constructor (tests)."""
    previous = _MODE[0]
    _MODE[0] = True
    try:
        yield
    finally:
        _MODE[0] = previous


def validating() -> bool:
    """True inside `reference_path()` (callers that cache built instances skip the cache)."""
    return _MODE[0]


_UNSET: Any = object()
_SLOTS = vars(BaseModel)
_SETTERS: dict[str, Any] = {
    "_set_dict": _SLOTS["__dict__"].__set__,
    "_set_fields_set": _SLOTS["__pydantic_fields_set__"].__set__,
    "_set_extra": _SLOTS["__pydantic_extra__"].__set__,
    "_set_private": _SLOTS["__pydantic_private__"].__set__,
}
"""BaseModel's own slot setters: what `model_construct` sets, at half the cost of
`object.__setattr__`."""
_BUILDERS: dict[type[BaseModel], Callable[..., Any]] = {}


def _immutable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _compile(cls: type[BaseModel]) -> Callable[..., Any]:
    """A keyword-only constructor for `cls`, generated from its field declarations."""
    decorators = cls.__pydantic_decorators__
    if (
        cls.__pydantic_post_init__ is not None
        or cls.__private_attributes__
        or decorators.model_validators
        or decorators.field_validators
    ):
        # A model-level check is more than "these values are valid": keep validating.
        raise TypeError(f"{cls.__name__} has validators, private attributes or a post-init")
    fields = cls.model_fields
    env: dict[str, Any] = {
        "_new": cls.__new__,
        "_cls": cls,
        "_mode": _MODE,
        "_copy": copy.deepcopy,
        **_SETTERS,
    }
    params: list[str] = []
    body: list[str] = []
    for i, (name, info) in enumerate(fields.items()):
        if info.alias not in (None, name) or not name.isidentifier():
            raise TypeError(f"{cls.__name__}.{name}: aliased fields are not supported")
        if info.is_required():
            params.append(name)
            body.append(f"    fs.add({name!r})")
            continue
        params.append(f"{name}=_UNSET")
        if info.default_factory is not None:
            env[f"_d{i}"] = info.default_factory
            value = f"_d{i}()"
        else:
            env[f"_d{i}"] = info.default
            # A mutable default is copied for each instance, as pydantic copies it.
            value = f"_d{i}" if _immutable(info.default) else f"_copy(_d{i})"
        body.append(f"    if {name} is _UNSET:\n        {name} = {value}")
        body.append(f"    else:\n        fs.add({name!r})")
    env["_UNSET"] = _UNSET
    values = ", ".join(f"{n!r}: {n}" for n in fields)
    src = (
        f"def build(*, {', '.join(params)}):\n"
        "    if _mode[0]:\n"
        f"        return _cls(**{{k: v for k, v in {{{values}}}.items() if v is not _UNSET}})\n"
        "    fs = set()\n"
        + "\n".join(body)
        + "\n"
        + "    o = _new(_cls)\n"
        + f"    _set_dict(o, {{{values}}})\n"
        + "    _set_fields_set(o, fs)\n"
        + "    _set_extra(o, None)\n"
        + "    _set_private(o, None)\n"
        + "    return o\n"
    )
    # The source is generated from the model's own field names, never from input.
    exec(compile(src, f"<trusted {cls.__name__}>", "exec"), env)
    builder: Callable[..., Any] = env["build"]
    return builder


def builder(cls: type[M]) -> Callable[..., M]:
    """The non-validating constructor of `cls` (keyword arguments only)."""
    found = _BUILDERS.get(cls)
    if found is None:
        found = _BUILDERS[cls] = _compile(cls)
    return found


def build(cls: type[M], /, **values: Any) -> M:
    """`cls(**values)` for values already valid, without validating them again."""
    found = _BUILDERS.get(cls)
    if found is None:
        found = _BUILDERS[cls] = _compile(cls)
    result: M = found(**values)
    return result


def builder_from_fields(cls: type[M]) -> Callable[[dict[str, Any]], M]:
    """A constructor of `cls` from a dict giving every field (in declaration order):
    that dict becomes the instance's own (the caller hands it over). A dict missing a
    field or holding another is built by the validating constructor, which says why."""
    names = tuple(cls.model_fields)
    new = cls.__new__
    set_dict, set_fs = _SETTERS["_set_dict"], _SETTERS["_set_fields_set"]
    set_extra, set_private = _SETTERS["_set_extra"], _SETTERS["_set_private"]
    builder(cls)  # refuses classes with validators, aliases or private attributes

    def build_from(fields: dict[str, Any]) -> M:
        if _MODE[0] or tuple(fields) != names:
            return cls(**fields)
        obj = new(cls)
        set_dict(obj, fields)
        set_fs(obj, set(names))
        set_extra(obj, None)
        set_private(obj, None)
        return obj

    return build_from


def positional_builder(cls: type[M], given: tuple[str, ...]) -> Callable[..., M]:
    """A constructor of `cls` taking exactly the fields `given`, positionally and in that
    order, every other field at its default: what `builder(cls)(**dict(zip(given, args)))`
    returns (same values, defaults and fields-set), for a call site that always passes the
    same fields (a rule's verdict), at about two thirds of its cost. Only immutable
    defaults (a mutable one is refused: it would be shared)."""
    builder(cls)  # refuses classes with validators, aliases or private attributes
    fields = cls.model_fields
    unknown = [n for n in given if n not in fields]
    if not given or unknown or len(set(given)) != len(given):
        raise TypeError(f"{cls.__name__}: unknown or repeated fields {given}")
    env: dict[str, Any] = {"_new": cls.__new__, "_cls": cls, "_mode": _MODE, **_SETTERS}
    items: list[str] = []
    for i, (name, info) in enumerate(fields.items()):
        if name in given:
            items.append(f"{name!r}: {name}")
            continue
        if info.is_required():
            raise TypeError(f"{cls.__name__}.{name} is required but not given")
        if info.default_factory is not None or not _immutable(info.default):
            raise TypeError(f"{cls.__name__}.{name}: a mutable default")
        env[f"_d{i}"] = info.default
        items.append(f"{name!r}: _d{i}")
    passed = ", ".join(f"{n!r}: {n}" for n in given)
    src = (
        f"def build({', '.join(given)}):\n"
        "    if _mode[0]:\n"
        f"        return _cls(**{{{passed}}})\n"
        "    o = _new(_cls)\n"
        f"    _set_dict(o, {{{', '.join(items)}}})\n"
        f"    _set_fields_set(o, {{{', '.join(repr(n) for n in given)}}})\n"
        "    _set_extra(o, None)\n"
        "    _set_private(o, None)\n"
        "    return o\n"
    )
    # The source is generated from the model's own field names, never from input.
    exec(compile(src, f"<positional {cls.__name__}>", "exec"), env)
    build_it: Callable[..., M] = env["build"]
    return build_it
