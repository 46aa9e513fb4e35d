"""The thresholds and jurisdictions of the travel-rule check: both sides of each line,
fail-closed valuation, unknown accounts and jurisdictions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import TransferRequested
from schemas.events.transfers import TransferCheckOutcome as O
from streams.travel_rule.rules import (
    DEFAULT_PARS,
    PAR_ONLY,
    AccountFacts,
    ParValuation,
    Regime,
    Rule,
    TravelRuleCheck,
    regime_of,
)

AT = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
PAYLOAD = json.loads(
    (
        Path(__file__).resolve().parents[2].parent
        / "shared/reference/ivms101/identity_payload.json"
    ).read_text()
)
US, DE, GB = (
    AccountFacts("acct-1", "US"),
    AccountFacts("acct-1", "DE"),
    AccountFacts("acct-1", "GB"),
)


def request(amount: str, asset: str = "USDC", **kw: Any) -> TransferRequested:
    return TransferRequested(
        transfer_id="t-1",
        account="acct-1",
        asset=asset,
        amount=Decimal(amount),
        destination_address="bc1qexample",
        **kw,
    )


def outcome(req: TransferRequested, account: AccountFacts | None = US, valuation: Any = PAR_ONLY) -> tuple[O, dict[str, str]]:  # fmt: skip
    checked = TravelRuleCheck().check(req, AT, account, valuation)
    return checked.outcome, {r["rule"]: r["outcome"] for r in checked.rule_results}


@pytest.mark.parametrize(
    ("amount", "expected"), [("2999.99", O.PASS), ("3000", O.REJECT), ("3000.00", O.REJECT)]
)
def test_us_fincen_line_is_3000_usd_inclusive(amount: str, expected: O) -> None:
    got, rules = outcome(request(amount))
    assert got is expected
    assert rules[Rule.US_FINCEN_3000] == expected


def test_us_at_the_line_with_a_valid_payload_passes() -> None:
    assert outcome(request("3000", ivms101=PAYLOAD))[0] is O.PASS
    assert outcome(request("1000000", asset="BTC", ivms101=PAYLOAD))[0] is O.PASS


def test_a_payload_naming_neither_vasp_does_not_pass_a_large_transfer() -> None:
    """An IVMS-101 payload with the VASP objects present but empty identifies no provider:
    it is no payload for FinCEN's rule or the TFR, so 1,000,000 USDC does not pass on it."""
    empty = {**PAYLOAD, "originatingVASP": {}, "beneficiaryVASP": {"beneficiaryVASP": None}}
    for account in (US, DE):
        got, rules = outcome(request("1000000", ivms101=empty), account)
        assert got is O.REJECT and rules[Rule.IVMS101_VALID] == O.REJECT


def test_a_self_hosted_transfers_payload_needs_no_beneficiary_vasp() -> None:
    """To a self-hosted address there is no beneficiary VASP: its payload without one is
    valid (before: MISSING_FIELD, so the EU payload rule REJECTed every such transfer
    unless it named a made-up VASP); between providers one is still required, and one
    given empty is still a finding."""
    alone = {k: v for k, v in PAYLOAD.items() if k != "beneficiaryVASP"}
    got, rules = outcome(request("50000", asset="EURC", self_hosted=True, ivms101=alone,
                                 ownership_proof="sig-1"), DE)  # fmt: skip
    assert (got, rules[Rule.IVMS101_VALID]) == (O.PASS, O.PASS)
    got, rules = outcome(request("50000", asset="EURC", ivms101=alone), DE)
    assert (got, rules[Rule.IVMS101_VALID]) == (O.REJECT, O.REJECT)
    empty = {**alone, "beneficiaryVASP": {"beneficiaryVASP": None}}
    got, _ = outcome(request("5", asset="EURC", self_hosted=True, ivms101=empty,
                             ownership_proof="sig-1"), DE)  # fmt: skip
    assert got is O.REJECT


def test_an_invalid_payload_rejects_whatever_the_amount() -> None:
    bad = json.loads(json.dumps(PAYLOAD))
    bad["beneficiary"]["beneficiaryPersons"][0]["naturalPerson"]["geographicAddress"][0][
        "country"
    ] = "UK"
    got, rules = outcome(request("5", ivms101=bad))
    assert got is O.REJECT and rules[Rule.IVMS101_VALID] == O.REJECT
    checked = TravelRuleCheck().check(request("5", ivms101=bad), AT, US, PAR_ONLY)
    assert "BAD_COUNTRY" in checked.reason


def test_no_price_holds_never_passes() -> None:
    got, rules = outcome(request("0.0001", asset="BTC"))
    assert got is O.HOLD and rules[Rule.US_FINCEN_3000] == O.HOLD
    priced = ParValuation(DEFAULT_PARS, {("BTC", "USD"): Decimal("30000")})
    assert outcome(request("0.0999", asset="BTC"), valuation=priced)[0] is O.PASS
    assert outcome(request("0.1", asset="BTC"), valuation=priced)[0] is O.REJECT


def test_a_usd_stablecoin_has_no_eur_value_without_a_rate() -> None:
    req = request("10", self_hosted=True, ivms101=PAYLOAD)
    got, rules = outcome(req, DE)
    assert got is O.HOLD and rules[Rule.EU_TFR_SELF_HOSTED] == O.HOLD
    rated = ParValuation(DEFAULT_PARS, {("USD", "EUR"): Decimal("0.9")})
    assert outcome(req, DE, rated)[0] is O.PASS


@pytest.mark.parametrize(
    ("amount", "expected"), [("1000", O.PASS), ("1000.00", O.PASS), ("1000.01", O.HOLD)]
)
def test_eu_self_hosted_line_is_more_than_1000_eur(amount: str, expected: O) -> None:
    got, rules = outcome(request(amount, asset="EURC", self_hosted=True, ivms101=PAYLOAD), DE)
    assert got is expected
    assert rules[Rule.EU_TFR_SELF_HOSTED] == expected


def test_eu_self_hosted_with_proof_passes() -> None:
    req = request("50000", asset="EURC", self_hosted=True, ivms101=PAYLOAD, ownership_proof="sig-1")
    assert outcome(req, DE)[0] is O.PASS
    unvalued = request("5", asset="BTC", self_hosted=True, ivms101=PAYLOAD, ownership_proof="s")
    assert outcome(unvalued, DE)[0] is O.PASS  # nothing needed valuing


def test_eu_between_casps_has_no_threshold() -> None:
    got, rules = outcome(request("0.01", asset="EURC"), DE)
    assert got is O.REJECT and rules[Rule.EU_TFR_PAYLOAD] == O.REJECT
    assert outcome(request("0.01", asset="EURC", ivms101=PAYLOAD), DE)[0] is O.PASS


def test_the_destinations_regime_applies_too() -> None:
    got, rules = outcome(request("10", destination_country="FR"))
    assert got is O.REJECT and rules[Rule.EU_TFR_PAYLOAD] == O.REJECT
    assert rules[Rule.US_FINCEN_3000] == O.PASS
    assert outcome(request("10", destination_country="GB"))[0] is O.PASS


def test_an_unknown_account_rejects() -> None:
    checked = TravelRuleCheck().check(request("1"), AT, None, PAR_ONLY)
    assert checked.outcome is O.REJECT
    assert [r["rule"] for r in checked.rule_results] == [Rule.ACCOUNT_KNOWN]


def test_a_jurisdiction_without_a_known_regime_holds() -> None:
    got, rules = outcome(request("1", ivms101=PAYLOAD), GB)
    assert got is O.HOLD and rules[Rule.JURISDICTION_KNOWN] == O.HOLD


def test_every_rule_result_names_its_rule_version_and_the_jurisdiction_is_the_accounts() -> None:
    checked = TravelRuleCheck().check(request("1", destination_country="DE"), AT, US, PAR_ONLY)
    assert checked.jurisdiction == "US"
    assert all(
        set(r) == {"rule", "outcome", "detail", "regime", "version"} for r in checked.rule_results
    )
    assert [r["rule"] for r in checked.rule_results] == [
        Rule.IVMS101_VALID,
        Rule.US_FINCEN_3000,
        Rule.EU_TFR_PAYLOAD,
    ]


class _Nothing:
    """A valuation that can value nothing."""

    def value(self, asset: str, amount: Decimal, currency: str) -> Decimal | None:
        return None


@given(
    amount=st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("1E12"), places=8),
    jurisdiction=st.sampled_from(["US", "DE", "FR", "GB", "JP"]),
    destination=st.sampled_from([None, "US", "DE", "GB"]),
    self_hosted=st.booleans(),
    payload=st.booleans(),
    proof=st.sampled_from([None, "sig-1"]),
)
def test_without_a_valuation_nothing_passes_that_needed_one(
    amount: Decimal,
    jurisdiction: str,
    destination: str | None,
    self_hosted: bool,
    payload: bool,
    proof: str | None,
) -> None:
    """Fail closed: when nothing can be valued, a PASS is only one no rule needed a value
    for (a valid payload for the US rule; a proof, or no self-hosted address, for the
    EU's), and each regime that applies has its rule in the results."""
    req = request(
        str(amount),
        asset="BTC",
        destination_country=destination,
        self_hosted=self_hosted,
        ivms101=PAYLOAD if payload else None,
        ownership_proof=proof,
    )
    account = AccountFacts("acct-1", jurisdiction)
    checked = TravelRuleCheck().check(req, AT, account, _Nothing())
    rules = {r["rule"]: r["outcome"] for r in checked.rule_results}
    regimes = {regime_of(jurisdiction), regime_of(destination)} - {None}
    if checked.outcome is O.PASS:
        assert payload and regimes
        assert not (self_hosted and Regime.EU in regimes and proof is None)
    if Regime.US in regimes:
        assert rules[Rule.US_FINCEN_3000] == (O.PASS if payload else O.HOLD)
    if Regime.EU in regimes:
        assert rules[Rule.EU_TFR_PAYLOAD] == (O.PASS if payload else O.REJECT)
        if self_hosted:
            assert rules[Rule.EU_TFR_SELF_HOSTED] == (O.PASS if proof else O.HOLD)
    if regime_of(jurisdiction) is None:
        assert checked.outcome is not O.PASS
