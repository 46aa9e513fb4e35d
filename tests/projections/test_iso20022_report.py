"""The auth.016.001.03 report builder: valid against both XSDs (../shared/reference), the
same bytes for the same fills in any order, exact decimal text, and a refusal naming what
is missing rather than an invalid report."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.reports.iso20022 import (
    AUTH016_NS,
    HEAD_NS,
    ReportConfig,
    ReportRefused,
    build_report,
    decimal_text,
    report_inputs,
)
from schemas import new_event
from schemas.events import AccountOpened, BeneficialOwner, OwnerKind
from tests.projections.iso20022_helpers import CONFIG, DTI, FIRM, OWNERS, T0, fill, lei, validate

H = f"{{{HEAD_NS}}}"
A = f"{{{AUTH016_NS}}}"


def test_a_report_of_buys_and_sells_validates_against_both_xsds() -> None:
    fills = [
        fill(1),
        fill(2, side="SELL", account="ACC2", qty="12", price="3100.5", instrument="ETH/USDC"),
        fill(3, qty="0.00000000000000001", price="0.0000000000001"),
    ]
    header, document = validate(build_report(fills, OWNERS, CONFIG))
    assert header.findtext(f"{H}MsgDefIdr") == "auth.016.001.03"
    assert header.findtext(f"{H}Fr/{H}OrgId/{H}Id/{H}OrgId/{H}LEI") == FIRM
    news = document.findall(f"{A}FinInstrmRptgTxRpt/{A}Tx/{A}New")
    assert [n.findtext(f"{A}TxId") for n in news] == [f.uti for f in fills]
    # the client is the buyer of a BUY, the seller of a SELL; the venue the other side
    assert news[0].findtext(f"{A}Buyr/{A}AcctOwnr/{A}Id/{A}LEI") == OWNERS["ACC1"].lei
    assert news[0].findtext(f"{A}Sellr/{A}AcctOwnr/{A}Id/{A}MIC") == "XOFF"
    assert news[1].findtext(f"{A}Sellr/{A}AcctOwnr/{A}Id/{A}LEI") == OWNERS["ACC2"].lei
    assert news[1].findtext(f"{A}Tx/{A}DgtlTknQty/{A}Idr") == DTI["ETH"]
    assert news[1].findtext(f"{A}FinInstrm/{A}AltrnId/{A}OthrId/{A}Id") == DTI["ETH"]
    assert news[2].findtext(f"{A}Tx/{A}Qty/{A}Unit") == "0.00000000000000001"
    price = news[2].find(f"{A}Tx/{A}Pric/{A}DgtlTknPric")
    assert price.findtext(f"{A}MntryVal/{A}Amt") == "0.0000000000001"
    assert price.find(f"{A}MntryVal/{A}Amt").get("Ccy") == "USD"
    assert price.findtext(f"{A}DgtlTknQty/{A}Idr") == DTI["USDC"]


def test_the_header_is_dated_by_the_last_fill_not_the_clock() -> None:
    late = T0 + timedelta(days=2, microseconds=7)
    report = build_report([fill(1, at=late), fill(2)], OWNERS, CONFIG)
    header, _ = validate(report)
    assert header.findtext(f"{H}CreDt") == "2026-12-03T09:30:00.000007Z"
    assert b"TradDt>2026-12-03T09:30:00.000007Z<" in report


def test_the_message_id_follows_the_content() -> None:
    one = validate(build_report([fill(1)], OWNERS, CONFIG))[0].findtext(f"{H}BizMsgIdr")
    again = validate(build_report([fill(1)], OWNERS, CONFIG))[0].findtext(f"{H}BizMsgIdr")
    other = validate(build_report([fill(1, qty="0.6")], OWNERS, CONFIG))[0].findtext(
        f"{H}BizMsgIdr"
    )
    assert one == again != other


amounts = st.decimals(
    min_value=Decimal("0.00000000000001"), max_value=Decimal("99999"), places=13
).filter(lambda d: d > 0)


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    specs=st.lists(
        st.tuples(
            st.sampled_from(["ACC1", "ACC2"]),
            st.sampled_from(["BUY", "SELL"]),
            amounts,
            amounts,
            st.sampled_from(["BTC/USDC", "ETH/USDC"]),
            st.integers(0, 5),  # few distinct times: ties are ordered by fill id
        ),
        min_size=1,
        max_size=8,
    ),
)
def test_any_order_of_the_same_fills_gives_the_same_valid_bytes(
    data: st.DataObject, specs: list[tuple[str, str, Decimal, Decimal, str, int]]
) -> None:
    fills = [
        fill(n, account=a, side=s, qty=str(q), price=str(p), instrument=i,
             at=T0 + timedelta(seconds=t))
        for n, (a, s, q, p, i, t) in enumerate(specs)
    ]  # fmt: skip
    shuffled = data.draw(st.permutations(fills))
    report = build_report(fills, OWNERS, CONFIG)
    assert build_report(shuffled, OWNERS, CONFIG) == report
    assert build_report(fills + shuffled, OWNERS, CONFIG) == report  # a fill read twice
    validate(report)


def test_an_asset_without_a_dti_refuses_the_report_naming_it() -> None:
    fills = [fill(1), fill(2, instrument="SOL/USDC"), fill(3, instrument="SOL/EURC")]
    with pytest.raises(ReportRefused) as refused:
        build_report(fills, OWNERS, CONFIG)
    assert refused.value.unmapped_assets == ("EURC", "SOL")
    assert "no DTI for asset(s) EURC, SOL (setting report_dti)" in refused.value.problems
    assert any("currency for quote asset(s) EURC" in p for p in refused.value.problems)


def test_a_venue_without_a_mic_refuses() -> None:
    with pytest.raises(ReportRefused, match="no MIC for venue\\(s\\) binance"):
        build_report([fill(1, venue="binance")], OWNERS, CONFIG)


def test_a_party_without_the_identifier_the_schema_needs_refuses() -> None:
    with pytest.raises(ReportRefused) as refused:
        build_report([fill(1, account="NAT1"), fill(2, account="GHOST")], OWNERS, CONFIG)
    problems = " ".join(refused.value.problems)
    assert "account(s) NAT1 (owner o3) belong to natural persons without an identity" in problems
    assert "no AccountOpened in the log for account(s) GHOST" in problems


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("1E-18", "0.000000000000000001"),
        ("0.000000000000000001", "0.000000000000000001"),
        ("2.50", "2.5"),
        ("1E+2", "100"),
        ("100", "100"),
        ("0.0", "0"),
        ("123456789012345678901234.567890123456", "123456789012345678901234.567890123456"),
    ],
)
def test_decimal_text_is_exact_and_canonical(value: str, text: str) -> None:
    assert decimal_text(Decimal(value)) == text


def test_a_quantity_finer_than_the_quantity_field_refuses_where_the_xsd_would_reject() -> None:
    """Qty/Unit holds 17 digits after the point: 1E-18 (one wei of ETH) is refused by name.
    Written anyway, the XSD rejects the report (the check is not stricter than needed)."""
    with pytest.raises(ReportRefused) as refused:
        build_report([fill(1, qty="0.000000000000000001")], OWNERS, CONFIG)
    [problem] = refused.value.problems
    assert problem.startswith("fill f-0001: quantity 0.000000000000000001 does not fit Qty/Unit")
    report = build_report([fill(1, qty="0.00000000000000001")], OWNERS, CONFIG)
    validate(report)
    forced = report.replace(
        b"<Unit>0.00000000000000001</Unit>", b"<Unit>0.000000000000000001</Unit>"
    )
    with pytest.raises(AssertionError, match=r"auth\.016"):
        validate(forced)


def test_the_same_fill_id_with_other_content_refuses() -> None:
    with pytest.raises(ReportRefused, match="fill f-0001 appears twice with different content"):
        build_report([fill(1), fill(1, qty="2")], OWNERS, CONFIG)


def test_no_fills_is_no_report() -> None:
    with pytest.raises(ReportRefused, match="no fills to report"):
        build_report([], OWNERS, CONFIG)


def test_malformed_identifiers_in_the_configuration_are_refused() -> None:
    with pytest.raises(ReportRefused) as refused:
        ReportConfig(
            firm_lei="5299TRADETAPEFIRM000",  # wrong check digits
            recipient="",
            dti={"BTC": "AEIOUAEIO"},
            mic={"paper": "xoff"},
            currency={"USDC": "usd"},
        )
    assert len(refused.value.problems) == 5, refused.value.problems


def test_report_inputs_take_the_period_and_the_first_account_opening() -> None:
    inside, before, at_end = fill(1), fill(2, at=T0 - timedelta(microseconds=1)), fill(3)
    at_end = fill(3, at=T0 + timedelta(days=1))
    orders = [new_event(f, producer="engine") for f in (inside, before, at_end)]
    first = BeneficialOwner(owner_id="o1", kind=OwnerKind.LEGAL, name="A", country="DE",
                            lei=lei("5299FIRSTOWNER0000"))  # fmt: skip
    second = first.model_copy(update={"name": "B"})
    accounts = [
        new_event(AccountOpened(account="ACC1", beneficial_owner=o, base_currency="USDC"),
                  producer="engine")
        for o in (first, second)
    ]  # fmt: skip
    fills, owners, refused = report_inputs(orders, accounts, T0, T0 + timedelta(days=1))
    assert fills == [inside]
    assert owners == {"ACC1": first}
    assert refused == []


def test_report_inputs_fold_only_what_the_admission_rule_admits() -> None:
    """A Fill or an AccountOpened not written by the engine is not the engine's fact: the
    projections quarantine it, the engine dead-letters it; the report must not state it.
    Each is counted with its reason (the command says so), never reported."""
    forged_fill = new_event(fill(2), producer="mallory")
    forged_owner = BeneficialOwner(owner_id="m", kind=OwnerKind.LEGAL, name="M", country="DE",
                                   lei=lei("5299MALLORY0000000"))  # fmt: skip
    orders = [new_event(fill(1), producer="engine"), forged_fill]
    accounts = [
        new_event(AccountOpened(account="ACC9", beneficial_owner=forged_owner,
                                base_currency="USDC"), producer="mallory"),
        new_event(AccountOpened(account="ACC1", beneficial_owner=OWNERS["ACC1"],
                                base_currency="USDC"), producer="engine"),
    ]  # fmt: skip
    fills, owners, refused = report_inputs(
        orders,
        accounts,
        T0,
        T0 + timedelta(days=1),
        topics=("t.orders.lifecycle", "t.accounts.events"),
    )
    assert [f.fill_id for f in fills] == ["f-0001"]
    assert owners == {"ACC1": OWNERS["ACC1"]}
    assert refused == [
        "Fill on t.orders.lifecycle not written by the engine ('mallory')",
        "AccountOpened on t.accounts.events not written by the engine ('mallory')",
    ]


def test_two_fills_with_one_uti_refuse_rather_than_repeat_a_transaction_id() -> None:
    """TxId identifies the transaction to the authority: two of them alike is a report
    it rejects (or one transaction replacing another)."""
    twin = fill(2).model_copy(update={"uti": fill(1).uti})
    with pytest.raises(ReportRefused, match=f"UTI {fill(1).uti} names fills f-0001, f-0002"):
        build_report([fill(1), twin], OWNERS, CONFIG)


def test_text_xml_cannot_carry_refuses() -> None:
    """A control character has no place in XML 1.0 (NUL, ESC) or does not survive a parser
    (CR is read back as LF): the report would be invalid, or state another id."""
    for text in ("vt\x00", "vt\x1b[0m", "vt\r1"):
        bad = fill(1).model_copy(update={"venue_trade_id": text})
        with pytest.raises(ReportRefused, match="venue_trade_id has characters XML cannot"):
            build_report([bad], OWNERS, CONFIG)
    with pytest.raises(ReportRefused, match="recipient"):
        ReportConfig(firm_lei=FIRM, recipient="DE\x00")
