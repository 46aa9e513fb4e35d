"""The venue interface. A venue turns approved orders and market events into lifecycle events.

Venues never write to Kafka: they call `emit(payload, discriminator)`, and the processor
stamps a derived event, folds it into the state and collects it for the transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from engine.state import EngineState, OrderState
from schemas import Envelope
from schemas.envelope import EventPayload

Emit = Callable[[EventPayload, str], None]


class Venue(Protocol):
    name: str
    taker_fee: Any

    def submit(self, state: EngineState, order: OrderState, emit: Emit) -> None:
        """Acknowledge a just-submitted order and execute what can execute now."""

    def cancel(self, state: EngineState, order: OrderState, reason: str, emit: Emit) -> None:
        """Cancel the rest of an open order."""

    def on_market(self, state: EngineState, event: Envelope[Any], emit: Emit) -> None:
        """Match resting and triggered orders against a public trade or quote."""
