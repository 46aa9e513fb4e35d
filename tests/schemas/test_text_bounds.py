"""Text bounds: what strategies send is bounded; what is already on the log always decodes.

Intents are input only (never folded back from a fact topic), so their signature is
bounded. Admin commands are re-published by the engine as its facts, the same v1 types,
which a rebuild must read whatever their length (review helper-53: bounds added to them
made an older `KillSwitchEngaged` with a long reason unreadable, and a rebuild dropped
the kill switch). A command too big to re-publish is the worker's to reject
(`tests/engine/test_worker_fail_closed.py`)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas import decode, encode, new_event
from schemas.events import AmlFlagRaised, KillSwitchEngaged, OrderType
from schemas.types import MAX_SIGNATURE
from tests.schemas.payloads import order_intent


def test_an_intents_signature_over_the_bound_is_refused() -> None:
    market = {"order_type": OrderType.MARKET, "limit_price": None}
    order_intent(**market, signature="a" * MAX_SIGNATURE)
    with pytest.raises(ValidationError):
        order_intent(**market, signature="a" * (MAX_SIGNATURE + 1))


@pytest.mark.parametrize(
    "payload",
    [
        AmlFlagRaised(account="A1", flag_id="f1", reason="x" * 2500, raised_by="admin"),
        KillSwitchEngaged(scope="*", engaged_by="admin", reason="y" * 2500),
    ],
    ids=lambda p: p.EVENT_TYPE,
)
def test_a_fact_with_long_text_on_the_log_decodes(payload: object) -> None:
    """Failed with the bounds of 1139213 (2,000 characters): the rebuild skipped it."""
    event = new_event(payload, producer="engine")  # type: ignore[type-var]
    _key, value, headers = encode(event)
    assert decode(value, headers).payload == payload
