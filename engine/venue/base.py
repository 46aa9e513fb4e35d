"""The venue interface. A venue turns approved orders and market events into lifecycle events.

Venues never write to Kafka: they call `emit(payload, discriminator)`, and the processor
stamps a derived event, folds it into the state and collects it for the transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from engine.state import EngineState, OrderState
from schemas import Envelope
from schemas.envelope import EventPayload

Emit = Callable[[EventPayload, str], None]


class Venue(Protocol):
    name: str
    taker_fee: Any

    def submit(self, state: EngineState, order: OrderState, emit: Emit) -> None:
        """Acknowledge a just-submitted order and execute what can execute now, against
        the book in force at its `submitted_at` (what the risk rules valued it at)."""

    def cancel(self, state: EngineState, order: OrderState, reason: str, emit: Emit) -> None:
        """Cancel the rest of an open order; of a done one, its armed stop/take children."""

    def on_market(
        self,
        state: EngineState,
        event: Envelope[Any],
        emit: Emit,
        owns: Callable[[str], bool] | None = None,
    ) -> None:
        """Match resting and triggered orders (of the accounts `owns`, default all) against
        a public trade or quote."""

    def catch_up(
        self,
        state: EngineState,
        owns: Callable[[str], bool],
        emit_for: Callable[[Envelope[Any]], Emit],
    ) -> None:
        """After a hand-over: match the owned resting orders against the kept prints the
        log does not show as matched (`emit_for(print)` emits as caused by that print)."""

    def halt(self, state: EngineState, account: str, emit: Emit) -> None:
        """Cancel at once the account's open orders its open AML flag or the kill switch
        over it stops (see `PaperVenue.halt`); nothing if neither is in force."""

    def revoke(
        self,
        state: EngineState,
        revocation: Envelope[Any],
        owns: Callable[[str], bool] | None,
        emit: Emit,
        among: Iterable[OrderState] | None = None,
    ) -> None:
        """Cancel at once the open orders of this venue that `revocation` (a folded
        `ProducerRevoked`) cancels, on the accounts `owns` (default all; see
        `PaperVenue.revoke`); of `among` only, if given (default: every order)."""
