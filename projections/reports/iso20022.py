"""ISO 20022 transaction reports (auth.016.001.03 FinInstrmRptgTxRpt) built from fills.

Pure: the same fills, account facts and configuration give the same bytes, whatever order
the fills come in (they are ordered by (traded_at, fill_id)) and whenever it runs (no
clock: the header's creation time is the last reported fill's `traded_at`). A report is
signed and compared byte for byte, so a different byte must mean a different fact.

The file is one `BizMsg` element (this project's envelope, namespace `ENVELOPE_NS`; the
two ISO 20022 XSDs define no element holding both parts) with two children, each in its
own namespace and valid against its own XSD: the Business Application Header (`AppHdr`,
head.001.001.02) and the `Document` (auth.016.001.03), one `Tx/New` per fill.

Fail closed: what the schema needs and the log or the configuration cannot give (a DTI
for an asset, a currency for a quote asset, a MIC for a venue, an account's legal-entity
identifier, a natural person's identity (`persons`), a quantity with more digits than the
field holds) refuses the whole report
(`ReportRefused`, every problem named), rather than write a report that is invalid or says
less than the log does. docs/reports.md maps every field to its source.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from projections.reports.persons import CONCAT, PersonIdentity
from projections.reports.xmltext import Node, el, to_bytes
from schemas.admission import refusal
from schemas.events import AccountOpened, BeneficialOwner, Fill, OwnerKind, Side
from schemas.events.accounts import lei_checksum_ok
from schemas.topics import Topic
from schemas.types import format_timestamp

HEAD_NS = "urn:iso:std:iso:20022:tech:xsd:head.001.001.02"
AUTH016_NS = "urn:iso:std:iso:20022:tech:xsd:auth.016.001.03"
ENVELOPE_NS = "urn:tradetape:xsd:bizmsg.001"
MESSAGE_DEFINITION = "auth.016.001.03"

TRADING_CAPACITY = "AOTC"
"""RegulatoryTradingCapacity1Code: the firm trades for its clients' accounts, neither
matched principal (MTCH) nor on its own account (DEAL)."""

DTI_PATTERN = re.compile(r"[1-9B-DF-HJ-NP-XZ][0-9B-DF-HJ-NP-XZ]{8}")
MIC_PATTERN = re.compile(r"[A-Z0-9]{4}")
CURRENCY_PATTERN = re.compile(r"[A-Z]{3}")
LEI_PATTERN = re.compile(r"[A-Z0-9]{18}[0-9]{2}")
UNWRITABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
"""Characters a report's text may not hold: XML 1.0 forbids most controls and a parser
reads CR back as LF (another id than the log's); tab and LF are refused too (ids have
none), DEL with them."""


@dataclass(frozen=True)
class DecimalField:
    """An XSD decimal type's limits: at most `total` digits, `fraction` after the point."""

    name: str
    total: int
    fraction: int


QUANTITY = DecimalField("Qty/Unit (DecimalNumber)", 18, 17)
TOKEN_AMOUNT = DecimalField("DgtlTknQty/Unit (Max30DecimalNumber)", 30, 29)
PRICE_AMOUNT = DecimalField("DgtlTknPric/MntryVal/Amt (ActiveCurrencyAnd13DecimalAmount)", 18, 13)


def decimal_text(value: Decimal) -> str:
    """The canonical text of a decimal: no exponent, no trailing zeros after the point, no
    point without a fraction (`1E-18` -> `0.000000000000000001`, `2.50` -> `2.5`,
    `1E+2` -> `100`). Exact: no context rounding (`Decimal.normalize` would round to 28
    digits)."""
    if not value.is_finite():
        raise ValueError(f"not a finite decimal: {value}")
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def fits(value: Decimal, spec: DecimalField) -> bool:
    """Whether `value`'s exact text holds in `spec`. Digits are counted the strict way
    (the fraction's leading zeros too), so a value accepted here validates under any
    reading of the XSD's totalDigits."""
    text = decimal_text(value).lstrip("-")
    whole, _, frac = text.partition(".")
    whole = whole.lstrip("0")
    return len(frac) <= spec.fraction and len(whole) + len(frac) <= spec.total


class ReportRefused(ValueError):
    """The report cannot be written as the schema requires; `problems` says each reason,
    `unmapped_assets` the assets that have no DTI."""

    def __init__(self, problems: Sequence[str], unmapped_assets: Sequence[str] = ()) -> None:
        self.problems = tuple(problems)
        self.unmapped_assets = tuple(unmapped_assets)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class ReportConfig:
    """Who reports to whom, and the identifiers the log does not hold. Checked when made:
    a malformed identifier would otherwise surface as an invalid report."""

    firm_lei: str
    recipient: str
    dti: Mapping[str, str] = field(default_factory=dict)
    """asset code -> its ISO 24165 Digital Token Identifier"""
    mic: Mapping[str, str] = field(default_factory=dict)
    """venue name (Fill.venue) -> ISO 10383 MIC (`XOFF`: off venue)"""
    currency: Mapping[str, str] = field(default_factory=dict)
    """quote asset -> the ISO 4217 currency its prices are monetary values in"""

    def __post_init__(self) -> None:
        bad = []
        if not (LEI_PATTERN.fullmatch(self.firm_lei) and lei_checksum_ok(self.firm_lei)):
            bad.append(f"reporting firm LEI {self.firm_lei!r} is not a valid LEI (ISO 17442)")
        if not 1 <= len(self.recipient) <= 35 or UNWRITABLE.search(self.recipient):
            bad.append(f"recipient {self.recipient!r} must be 1 to 35 printable characters")
        bad += [
            f"DTI {v!r} of {k} is not a DTI (ISO 24165: 9 characters, no vowels)"
            for k, v in sorted(self.dti.items())
            if not DTI_PATTERN.fullmatch(v)
        ]
        bad += [
            f"MIC {v!r} of venue {k} is not a MIC (4 capitals or digits)"
            for k, v in sorted(self.mic.items())
            if not MIC_PATTERN.fullmatch(v)
        ]
        bad += [
            f"currency {v!r} of {k} is not an ISO 4217 code"
            for k, v in sorted(self.currency.items())
            if not CURRENCY_PATTERN.fullmatch(v)
        ]
        if bad:
            raise ReportRefused(bad)


def report_inputs(
    order_events: Iterable[Any],
    account_events: Iterable[Any],
    start: datetime,
    end: datetime,
    *,
    topics: tuple[str, str] = (Topic.ORDERS.value, Topic.ACCOUNTS.value),
) -> tuple[list[Fill], dict[str, BeneficialOwner], list[str]]:
    """From envelopes as read from the log (the orders and the accounts topic, full names
    in `topics`): the fills traded in [start, end), each account's beneficial owner (its
    first AccountOpened in log order: the engine refuses a second), and why each record
    the admission rule refuses was left out (`schemas.admission`: a Fill or AccountOpened
    not written by the engine is no fact of the engine's; the projections quarantine it)."""
    refused: list[str] = []

    def admitted(e: Any, topic: str) -> bool:
        why = refusal(topic, e.event_type, e.producer)
        if why is not None:
            refused.append(why)
        return why is None

    fills = [
        e.payload
        for e in order_events
        if isinstance(e.payload, Fill)
        and start <= e.payload.traded_at < end
        and admitted(e, topics[0])
    ]
    owners: dict[str, BeneficialOwner] = {}
    for e in account_events:
        if isinstance(e.payload, AccountOpened) and admitted(e, topics[1]):
            owners.setdefault(e.payload.account, e.payload.beneficial_owner)
    return fills, owners, refused


def iso_datetime(value: datetime) -> str:
    """ISODateTime as MiCA's records want it: UTC, microseconds, `...ss.ffffffZ`."""
    return format_timestamp(value)


def _ordered(fills: Iterable[Fill]) -> tuple[list[Fill], list[str]]:
    """Each fill once, by (traded_at, fill_id); a fill id seen twice with different
    content is a problem (which one would the report state?)."""
    seen: dict[str, Fill] = {}
    problems = []
    for f in fills:
        kept = seen.setdefault(f.fill_id, f)
        if kept is not f and kept != f:
            problems.append(f"fill {f.fill_id} appears twice with different content")
    return sorted(seen.values(), key=lambda f: (f.traded_at, f.fill_id)), sorted(set(problems))


def _check(
    fills: Sequence[Fill],
    owners: Mapping[str, BeneficialOwner],
    config: ReportConfig,
    persons: Mapping[str, PersonIdentity],
) -> None:
    problems: list[str] = []
    no_dti: set[str] = set()
    no_currency: set[str] = set()
    no_mic: set[str] = set()
    no_owner: set[str] = set()
    natural: set[str] = set()
    no_lei: set[str] = set()
    by_uti: dict[str, list[str]] = {}
    for f in fills:
        base, quote = f.instrument.split("/")
        no_dti |= {a for a in (base, quote) if a not in config.dti}
        if quote not in config.currency:
            no_currency.add(quote)
        if f.venue not in config.mic:
            no_mic.add(f.venue)
        owner = owners.get(f.account)
        if owner is None:
            no_owner.add(f.account)
        elif _is_person(owner):
            person = persons.get(owner.owner_id)
            if person is None:
                natural.add(f"{f.account} (owner {owner.owner_id})")
            elif person.birth_date > f.traded_at.date():
                problems.append(
                    f"fill {f.fill_id}: owner {owner.owner_id} of account {f.account} has a"
                    " birth date after the trade"
                )
        elif owner.lei is None:  # BeneficialOwner refuses it; never write "None"
            no_lei.add(f.account)
        for what, value, spec in (
            ("quantity", f.quantity, QUANTITY),
            ("quantity", f.quantity, TOKEN_AMOUNT),
            ("price", f.price, PRICE_AMOUNT),
            ("price", f.price, TOKEN_AMOUNT),
        ):
            if not fits(value, spec):
                problems.append(
                    f"fill {f.fill_id}: {what} {decimal_text(value)} does not fit {spec.name}:"
                    f" at most {spec.total} digits, {spec.fraction} after the point"
                )
        if len(f.venue_trade_id) > 52:
            problems.append(
                f"fill {f.fill_id}: venue_trade_id longer than TradPlcMtchgId's 52 characters"
            )
        for name in ("uti", "venue_trade_id"):
            if UNWRITABLE.search(getattr(f, name)):
                problems.append(f"fill {f.fill_id}: {name} has characters XML cannot carry")
        by_uti.setdefault(f.uti, []).append(f.fill_id)
    problems += [
        f"UTI {uti} names fills {', '.join(ids)}: TxId must be one transaction's"
        for uti, ids in by_uti.items()
        if len(ids) > 1
    ]
    unmapped = sorted(no_dti)
    head = []
    if unmapped:
        head.append(f"no DTI for asset(s) {', '.join(unmapped)} (setting report_dti)")
    if no_currency:
        head.append(
            f"no ISO 4217 currency for quote asset(s) {', '.join(sorted(no_currency))}"
            " (setting report_currency)"
        )
    if no_mic:
        head.append(f"no MIC for venue(s) {', '.join(sorted(no_mic))} (setting report_mic)")
    if no_owner:
        head.append(f"no AccountOpened in the log for account(s) {', '.join(sorted(no_owner))}")
    if natural:
        head.append(
            f"account(s) {', '.join(sorted(natural))} belong to natural persons without an"
            " identity in the persons file: auth.016 identifies one by first name, surname,"
            " birth date and national identifier (PersonIdentification10), which the log"
            " does not carry (--persons, docs/reports.md)"
        )
    if no_lei:
        head.append(f"account(s) {', '.join(sorted(no_lei))}: a legal person without an LEI")
    if head or problems:
        raise ReportRefused(head + problems, unmapped)


def _token(dti: str, amount: Decimal, asset: str) -> list[Node]:
    return [el("Idr", text=dti), el("Unit", text=decimal_text(amount)), el("Desc", text=asset)]


def _party(identifier: Node) -> Node:
    return el("AcctOwnr", el("Id", identifier))


def _is_person(owner: BeneficialOwner) -> bool:
    """Reported by PersonIdentification10 (a legal person by its LEI)."""
    return owner.kind is OwnerKind.NATURAL


def _person(p: PersonIdentity) -> Node:
    """PersonIdentification10. NIDN and CCPT are ISO codes (SchmeNm/Cd); CONCAT, ESMA's,
    is longer than Cd's 4 characters and goes in SchmeNm/Prtry."""
    scheme = el("Prtry", text=p.scheme) if p.scheme == CONCAT else el("Cd", text=p.scheme)
    return el(
        "Prsn",
        el("FrstNm", text=p.first_name),
        el("Nm", text=p.surname),
        el("BirthDt", text=p.birth_date.isoformat()),
        el("Othr", el("Id", text=p.identifier), el("SchmeNm", scheme)),
    )


def _new(
    f: Fill, owner: BeneficialOwner, config: ReportConfig, persons: Mapping[str, PersonIdentity]
) -> Node:
    base, quote = f.instrument.split("/")
    mic = config.mic[f.venue]
    if _is_person(owner):
        client = _party(_person(persons[owner.owner_id]))
    else:
        client = _party(el("LEI", text=str(owner.lei)))
    venue = _party(el("MIC", text=mic))
    buyer, seller = (client, venue) if f.side is Side.BUY else (venue, client)
    price = el(
        "DgtlTknPric",
        el("MntryVal", el("Amt", text=decimal_text(f.price), Ccy=config.currency[quote])),
        el("DgtlTknQty", *_token(config.dti[quote], f.price, quote)),
    )
    tx = el(
        "Tx",
        el("TradDt", text=iso_datetime(f.traded_at)),
        el("TradgCpcty", text=TRADING_CAPACITY),
        el("Qty", el("Unit", text=decimal_text(f.quantity))),
        el("DgtlTknQty", *_token(config.dti[base], f.quantity, base)),
        el("Pric", price),
        el("TradVn", text=mic),
        el("TradPlcMtchgId", text=f.venue_trade_id),
    )
    instrument = el(
        "AltrnId",
        el("OthrId", el("Id", text=config.dti[base]), el("Tp", el("Prtry", text="DTI"))),
        el("Desc", text=f.instrument),
    )
    return el(
        "New",
        el("TxId", text=f.uti),
        el("ExctgPty", text=config.firm_lei),
        el("InvstmtPtyInd", text="false"),
        el("SubmitgPty", text=config.firm_lei),
        el("Buyr", buyer),
        el("Sellr", seller),
        el("OrdrTrnsmssn", el("TrnsmssnInd", text="false")),
        tx,
        el("FinInstrm", instrument),
        el("ExctgPrsn", el("Clnt", text="NORE")),
        el("AddtlAttrbts", el("SctiesFincgTxInd", text="false")),
    )


def _org(identifier: str) -> Node:
    """A Party44Choice: by LEI if `identifier` is one, else by another identifier."""
    if LEI_PATTERN.fullmatch(identifier) and lei_checksum_ok(identifier):
        inner = el("LEI", text=identifier)
    else:
        inner = el("Othr", el("Id", text=identifier))
    return el("OrgId", el("Id", el("OrgId", inner)))


def build_document(
    fills: Iterable[Fill],
    owners: Mapping[str, BeneficialOwner],
    config: ReportConfig,
    persons: Mapping[str, PersonIdentity] | None = None,
) -> tuple[Node, list[Fill]]:
    """The auth.016.001.03 Document and the fills it reports, in report order. `persons`:
    beneficial owner id -> identity, for the accounts natural persons own."""
    persons = persons or {}
    ordered, problems = _ordered(fills)
    if problems:
        raise ReportRefused(problems)
    if not ordered:
        raise ReportRefused(["no fills to report (auth.016 needs at least one transaction)"])
    _check(ordered, owners, config, persons)
    txs = [el("Tx", _new(f, owners[f.account], config, persons)) for f in ordered]
    return el("Document", el("FinInstrmRptgTxRpt", *txs), xmlns=AUTH016_NS), ordered


def build_header(document: Node, created: datetime, config: ReportConfig) -> Node:
    """The head.001.001.02 AppHdr. Its BizMsgIdr is derived from the Document's bytes
    (written alone by `to_bytes`): another content, another id; the same, the same id."""
    digest = hashlib.sha256(to_bytes(document)).hexdigest()
    return el(
        "AppHdr",
        el("Fr", _org(config.firm_lei)),
        el("To", _org(config.recipient)),
        el("BizMsgIdr", text=f"tt-{digest[:32]}"),
        el("MsgDefIdr", text=MESSAGE_DEFINITION),
        el("CreDt", text=iso_datetime(created)),
        xmlns=HEAD_NS,
    )


def build_report(
    fills: Iterable[Fill],
    owners: Mapping[str, BeneficialOwner],
    config: ReportConfig,
    persons: Mapping[str, PersonIdentity] | None = None,
) -> bytes:
    """The whole file: `BizMsg` holding the `AppHdr` and the `Document`. Raises
    `ReportRefused` with every problem found."""
    document, ordered = build_document(fills, owners, config, persons)
    header = build_header(document, ordered[-1].traded_at, config)
    return to_bytes(el("BizMsg", header, document, xmlns=ENVELOPE_NS))
