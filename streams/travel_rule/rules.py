"""The travel-rule check of one withdrawal: which regimes apply, one result per rule, and
the outcome (PASS, HOLD, REJECT). Pure: no clock, no I/O; the valuation is given.

Fail closed: an amount the check needs in a currency and cannot value there holds; an
unknown account, or a jurisdiction no rule set is known for, never passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from schemas.events.transfers import TransferChecked, TransferCheckOutcome, TransferRequested
from streams.travel_rule.ivms101 import Ivms101Validator

PASS, HOLD, REJECT = (
    TransferCheckOutcome.PASS,
    TransferCheckOutcome.HOLD,
    TransferCheckOutcome.REJECT,
)

RULES_VERSION = 4
"""Bumped whenever a rule decides differently; every rule result carries it. 2: a
placeOfBirth of more than 70 characters is an IVMS-101 finding (TRISA's limit). 3: a VASP
object without its person (`{}`, or the person null) and a dateOfBirth other than
YYYY-MM-DD (the week date 1975-W08-2) are findings. 4: a transfer to a self-hosted address
needs no beneficiary VASP in its payload (there is none)."""

US_THRESHOLD = Decimal("3000")
"""USD: FinCEN's travel rule (31 CFR 1010.410(f)) applies at 3,000 or more."""
EU_SELF_HOSTED_THRESHOLD = Decimal("1000")
"""EUR: TFR (EU) 2023/1113 art. 14(5)/16(2): more than 1,000 to or from a self-hosted
address needs proof the customer owns or controls it."""

EU_MEMBER_STATES = frozenset(
    "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK".split()
)
"""Where the TFR applies (the 27; the EEA's adoption is not modelled)."""


class Regime(StrEnum):
    US = "US"
    EU = "EU"


def regime_of(country: str | None) -> Regime | None:
    if country == "US":
        return Regime.US
    if country in EU_MEMBER_STATES:
        return Regime.EU
    return None


class Rule(StrEnum):
    ACCOUNT_KNOWN = "ACCOUNT_KNOWN"
    JURISDICTION_KNOWN = "JURISDICTION_KNOWN"
    IVMS101_VALID = "IVMS101_VALID"
    US_FINCEN_3000 = "US_FINCEN_3000"
    EU_TFR_PAYLOAD = "EU_TFR_PAYLOAD"
    EU_TFR_SELF_HOSTED = "EU_TFR_SELF_HOSTED"


@dataclass(frozen=True)
class AccountFacts:
    """What the check needs of the originating account (its `AccountOpened`)."""

    account: str
    jurisdiction: str


class Valuation(Protocol):
    """An amount of an asset in a fiat currency, or None if it cannot be valued."""

    def value(self, asset: str, amount: Decimal, currency: str) -> Decimal | None: ...


DEFAULT_PARS: Mapping[str, str] = {
    "USD": "USD",
    "USDC": "USD",
    "USDT": "USD",
    "PYUSD": "USD",
    "EUR": "EUR",
    "EURC": "EUR",
}
"""Assets worth one unit of a fiat currency: the currency itself and stablecoins redeemable
one for one. A depeg is not seen: a threshold is a legal line, not a mark."""


@dataclass(frozen=True)
class ParValuation:
    """Values at par (`pars`: asset -> currency) and at given prices (`prices`:
    (asset, currency) -> price of one unit). Nothing else: BTC without a price, or a USD
    stablecoin in EUR without a USDC/EUR (or USD/EUR) price, is None (fail closed)."""

    pars: Mapping[str, str]
    prices: Mapping[tuple[str, str], Decimal]

    def value(self, asset: str, amount: Decimal, currency: str) -> Decimal | None:
        if self.pars.get(asset) == currency:
            return amount
        price = self.prices.get((asset, currency))
        if price is None and asset in self.pars:
            price = self.prices.get((self.pars[asset], currency))
        return None if price is None else amount * price


PAR_ONLY = ParValuation(DEFAULT_PARS, {})


@dataclass(frozen=True)
class RuleResult:
    rule: Rule
    outcome: TransferCheckOutcome
    detail: str
    regime: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "rule": self.rule.value,
            "outcome": self.outcome.value,
            "detail": self.detail,
            "regime": self.regime,
            "version": str(RULES_VERSION),
        }


def combine(results: list[RuleResult]) -> TransferCheckOutcome:
    """REJECT if any rule rejects, else HOLD if any holds, else PASS."""
    outcomes = {r.outcome for r in results}
    return REJECT if REJECT in outcomes else HOLD if HOLD in outcomes else PASS


class TravelRuleCheck:
    """`check(request, occurred_at, account, valuation)` -> the `TransferChecked` payload.

    The rules of the originating account's jurisdiction apply, and those of the
    destination's (`destination_country`) when it names a regime the check knows: the
    beneficiary's provider asks for what its own law requires."""

    def check(
        self,
        request: TransferRequested,
        occurred_at: datetime,
        account: AccountFacts | None,
        valuation: Valuation,
    ) -> TransferChecked:
        results = self.results(request, occurred_at, account, valuation)
        outcome = combine(results)
        reason = "; ".join(
            f"{r.rule}: {r.detail}"
            for r in results
            if r.outcome is not PASS and r.outcome == outcome
        )
        return TransferChecked(
            transfer_id=request.transfer_id,
            account=request.account,
            outcome=outcome,
            jurisdiction=account.jurisdiction if account is not None else "",
            rule_results=tuple(r.as_dict() for r in results),
            reason=reason[:2000],
        )

    def results(
        self,
        request: TransferRequested,
        occurred_at: datetime,
        account: AccountFacts | None,
        valuation: Valuation,
    ) -> list[RuleResult]:
        if account is None:
            return [
                RuleResult(
                    Rule.ACCOUNT_KNOWN,
                    REJECT,
                    f"no AccountOpened for {request.account} on the log",
                )
            ]
        regimes: list[Regime] = []
        home = regime_of(account.jurisdiction)
        out: list[RuleResult] = []
        if home is None:
            out.append(
                RuleResult(
                    Rule.JURISDICTION_KNOWN,
                    HOLD,
                    f"no travel-rule regime known for jurisdiction {account.jurisdiction}",
                )
            )
        else:
            regimes.append(home)
        away = regime_of(request.destination_country)
        if away is not None and away not in regimes:
            regimes.append(away)
        out.append(self._ivms101(request, occurred_at))
        payload_ok = out[-1].outcome is PASS and request.ivms101 is not None
        for regime in regimes:
            if regime is Regime.US:
                out.append(self._us(request, payload_ok, valuation))
            else:
                out.append(self._eu_payload(request, payload_ok))
                if request.self_hosted:
                    out.append(self._eu_self_hosted(request, valuation))
        return out

    @staticmethod
    def _ivms101(request: TransferRequested, occurred_at: datetime) -> RuleResult:
        if request.ivms101 is None:
            return RuleResult(Rule.IVMS101_VALID, PASS, "no IVMS-101 payload given")
        validator = Ivms101Validator(occurred_at.date(), self_hosted=request.self_hosted)
        findings = validator.validate(request.ivms101)
        if not findings:
            return RuleResult(Rule.IVMS101_VALID, PASS, "valid")
        shown = "; ".join(f.line() for f in findings[:5])
        more = f" (and {len(findings) - 5} more)" if len(findings) > 5 else ""
        return RuleResult(Rule.IVMS101_VALID, REJECT, f"{len(findings)} finding(s): {shown}{more}")

    @staticmethod
    def _us(request: TransferRequested, payload_ok: bool, valuation: Valuation) -> RuleResult:
        if payload_ok:
            return RuleResult(Rule.US_FINCEN_3000, PASS, "IVMS-101 payload given", "US")
        usd = valuation.value(request.asset, request.amount, "USD")
        if usd is None:
            return RuleResult(
                Rule.US_FINCEN_3000,
                HOLD,
                f"{request.amount} {request.asset} cannot be valued in USD and no IVMS-101"
                " payload was given",
                "US",
            )
        if usd >= US_THRESHOLD:
            return RuleResult(
                Rule.US_FINCEN_3000,
                REJECT,
                f"{usd} USD is at or above {US_THRESHOLD}: an IVMS-101 payload is required",
                "US",
            )
        return RuleResult(Rule.US_FINCEN_3000, PASS, f"{usd} USD is below {US_THRESHOLD}", "US")

    @staticmethod
    def _eu_payload(request: TransferRequested, payload_ok: bool) -> RuleResult:
        if payload_ok:
            return RuleResult(Rule.EU_TFR_PAYLOAD, PASS, "IVMS-101 payload given", "EU")
        return RuleResult(
            Rule.EU_TFR_PAYLOAD,
            REJECT,
            "an IVMS-101 payload is required for every transfer (no threshold)",
            "EU",
        )

    @staticmethod
    def _eu_self_hosted(request: TransferRequested, valuation: Valuation) -> RuleResult:
        if request.ownership_proof:
            return RuleResult(
                Rule.EU_TFR_SELF_HOSTED,
                PASS,
                f"proof of ownership or control given ({request.ownership_proof})",
                "EU",
            )
        eur = valuation.value(request.asset, request.amount, "EUR")
        if eur is None:
            return RuleResult(
                Rule.EU_TFR_SELF_HOSTED,
                HOLD,
                f"{request.amount} {request.asset} cannot be valued in EUR and no proof of"
                " ownership of the self-hosted address was given",
                "EU",
            )
        if eur > EU_SELF_HOSTED_THRESHOLD:
            return RuleResult(
                Rule.EU_TFR_SELF_HOSTED,
                HOLD,
                f"{eur} EUR to a self-hosted address is above {EU_SELF_HOSTED_THRESHOLD}:"
                " held until proof of ownership or control is given",
                "EU",
            )
        return RuleResult(
            Rule.EU_TFR_SELF_HOSTED,
            PASS,
            f"{eur} EUR is not above {EU_SELF_HOSTED_THRESHOLD}",
            "EU",
        )
