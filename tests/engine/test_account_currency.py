"""An account's valuation currency (`AccountOpened.base_currency`) is decided at open time.

Before session 23 the engine checked only that an `AccountOpened` named one: an account
opened in USDT (a stablecoin the default allow-list, USDC and EURC, does not permit under
MiCA / the GENIUS Act) or in DOGE (no listed asset) was accepted, and every one of its
orders was then refused, the equity unmeasured (`NO_MARK`) or the pair not permitted,
with nothing said to the operator who opened it. The command is now refused with the
allow-list rule's reason; a permitted stablecoin or a listed crypto asset is accepted.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.processor import process
from schemas import new_event
from schemas.events import AccountOpened, BeneficialOwner, OwnerKind, RiskLimits, RiskLimitsChanged
from tests.engine.pure import Harness

_OWNER = BeneficialOwner(owner_id="o", kind=OwnerKind.NATURAL, name="O", country="DE")


def _open(h: Harness, account: str, currency: str) -> list[str]:
    out = h.admin(AccountOpened(account=account, beneficial_owner=_OWNER, base_currency=currency))
    return [e.event_type for e in out]


@pytest.mark.parametrize(
    ("currency", "code"),
    [("USDT", "STABLECOIN_NOT_PERMITTED"), ("DOGE", "ASSET_NOT_PERMITTED"), ("USD", "ASSET_NOT")],
)
def test_an_account_in_a_currency_the_limits_do_not_permit_is_refused(
    currency: str, code: str
) -> None:
    h = Harness()
    out = h.admin(AccountOpened(account="A9", beneficial_owner=_OWNER, base_currency=currency))
    assert [e.event_type for e in out] == ["AdminCommandRejected"], out
    reason = out[0].payload.reason
    assert reason.startswith(f"base_currency {currency} "), reason
    assert code in reason, reason
    assert not h.state.account("A9").opened


@pytest.mark.parametrize("currency", ["USDC", "EURC", "BTC"])
def test_a_permitted_stablecoin_or_listed_crypto_asset_is_accepted(currency: str) -> None:
    h = Harness()
    assert _open(h, "A9", currency) == ["AccountOpened"]
    assert h.state.account("A9").base_currency == currency


def test_the_limits_in_force_decide_which_currencies_an_account_may_be_opened_in() -> None:
    """USDT once the global limits permit it (an operator's choice, outside the EU say),
    refused again once they no longer do."""
    usdt = RiskLimits(allowed_stablecoins=("USDC", "USDT"))
    h = Harness(usdt)
    assert _open(h, "A8", "USDT") == ["AccountOpened"]
    h.admin(RiskLimitsChanged(scope="*", config_version=2, limits=RiskLimits(), changed_by="a"))
    assert _open(h, "A9", "USDT") == ["AdminCommandRejected"]


def test_a_replay_of_the_refused_command_stays_refused_once_the_currency_is_permitted() -> None:
    """The refusal is remembered like any other (`rejected_commands`): the same envelope
    after the limits changed is not a new command."""
    h = Harness()
    command = new_event(
        AccountOpened(account="A9", beneficial_owner=_OWNER, base_currency="USDT"),
        producer="admin",
        occurred_at=h.tick(),
    )
    assert [e.event_type for e in process(h.state, command, h.ctx)] == ["AdminCommandRejected"]
    usdt = RiskLimits(allowed_stablecoins=("USDC", "USDT"), max_position=Decimal("5"))
    h.admin(RiskLimitsChanged(scope="*", config_version=1, limits=usdt, changed_by="a"))
    out = process(h.state, command, h.ctx)
    assert [e.event_type for e in out] == ["AdminCommandRejected"]
    assert "already decided" in out[0].payload.reason


def test_an_account_never_opened_is_valued_in_no_currency() -> None:
    """`AccountState.base_currency` of an account no `AccountOpened` named was "USDT"
    (v1's default) until session 23, and the decisions of intents on such an account
    (rejected ACCOUNT_NOT_OPEN) said so: "no mark values USDC in USDT, the limit's
    currency", as if it were valued in a stablecoin the allow-list does not permit. It is
    now a placeholder no asset code can equal, and the decision names no currency."""
    import re

    from engine import auth
    from engine.state import NOT_OPEN_CURRENCY, AccountState
    from schemas.events import ProducerRegistered, Side
    from tests.engine.pure import decision

    assert re.fullmatch(r"[A-Z0-9]+", NOT_OPEN_CURRENCY) is None  # not an AssetCode
    assert AccountState("B9").base_currency == NOT_OPEN_CURRENCY
    h = Harness()
    h.admin(
        ProducerRegistered(
            producer_id="p1",
            public_key=auth.public_hex(h.key),
            accounts=("A1", "B9"),
            registered_by="admin",
        )
    )
    h.quote(Decimal("30000"), Decimal("30001"))
    d = decision(h.order(Side.BUY, Decimal("1"), Decimal("30001"), account="B9"))
    assert d.outcome == "REJECTED" and "ACCOUNT_NOT_OPEN" in d.reason_codes, d
    assert not any("USDT" in r.detail for r in d.rule_results), d.rule_results
    assert h.state.account("B9").base_currency == NOT_OPEN_CURRENCY
    assert _open(h, "B9", "EURC") == ["AccountOpened"]
    assert h.state.account("B9").base_currency == "EURC"
