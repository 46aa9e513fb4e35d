"""What the travel-rule tests share: the originating account every request names."""

from __future__ import annotations

from schemas import Envelope, new_event
from schemas.events import AccountOpened
from schemas.events.accounts import BeneficialOwner, OwnerKind


def account_opened(account: str = "A1") -> Envelope[AccountOpened]:
    """`account` opened by the engine for a natural person in the US (a new event each
    call: its own id and time)."""
    return new_event(
        AccountOpened(
            account=account,
            beneficial_owner=BeneficialOwner(
                owner_id="o1", kind=OwnerKind.NATURAL, name="Jane Howard", country="US"
            ),
            base_currency="USDC",
            jurisdiction="US",
        ),
        producer="engine",
    )
