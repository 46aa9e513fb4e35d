"""Free text in what admins and strategies send is bounded (review helper-50: an
`AmlFlagRaised` with a ~1 MB reason was accepted and its re-published fact was over the
engine producer's record size limit, a poison pill; see docs/engine.md, *Intake*)."""

from __future__ import annotations

import types
import typing
from typing import Any

import pytest
from annotated_types import MaxLen
from pydantic import ValidationError

from schemas.events import AmlFlagRaised, CancelIntent, OrderIntent
from schemas.events.admin import ADMIN_COMMAND_TYPES
from schemas.registry import REGISTRY
from schemas.types import MAX_TEXT


def _is_str(annotation: Any) -> bool:
    if annotation is str:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_str(a) for a in typing.get_args(annotation))
    return False


def _bounded(field: Any) -> bool:
    return any(isinstance(m, MaxLen) for m in field.metadata) or any(
        getattr(m, "pattern", None) for m in field.metadata
    )


@pytest.mark.parametrize(
    "cls",
    [c for (t, _v), c in REGISTRY.items() if t in ADMIN_COMMAND_TYPES]
    + [OrderIntent, CancelIntent],
    ids=lambda c: c.__name__,
)
def test_every_text_field_of_commands_and_intents_is_bounded(cls: Any) -> None:
    unbounded = [
        name
        for name, field in cls.model_fields.items()
        if _is_str(field.annotation) and not _bounded(field)
    ]
    assert not unbounded, f"{cls.__name__}: unbounded text fields {unbounded}"


def test_a_reason_over_the_bound_is_refused() -> None:
    AmlFlagRaised(account="A1", flag_id="f", reason="r" * MAX_TEXT, raised_by="admin")
    with pytest.raises(ValidationError):
        AmlFlagRaised(account="A1", flag_id="f", reason="r" * (MAX_TEXT + 1), raised_by="admin")
