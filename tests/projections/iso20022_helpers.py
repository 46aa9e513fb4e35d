"""Inputs for the ISO 20022 report tests and the XSD check (the XSDs are read from
../shared/reference, never copied into the project)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from lxml import etree

from projections.reports.iso20022 import AUTH016_NS, ENVELOPE_NS, HEAD_NS, ReportConfig
from schemas.events import BeneficialOwner, Fill, Liquidity, OwnerKind, Side
from schemas.events.accounts import lei_checksum_ok

REFERENCE_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "reference"
T0 = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def lei(base: str) -> str:
    """A valid LEI from 18 characters: ISO 17442's MOD 97-10 check digits appended."""
    n = int("".join(str(int(ch, 36)) for ch in base + "00"))
    out = f"{base}{98 - n % 97:02d}"
    assert lei_checksum_ok(out)
    return out


FIRM = lei("5299TRADETAPEFIRM0")
CLIENT = lei("5299CLIENTALPHA000")
CLIENT_B = lei("5299CLIENTBETA0000")
# ETH's is the public registry's (X9J9K872S); the others only follow ISO 24165's pattern.
DTI = {"BTC": "4H95J0R2X", "ETH": "X9J9K872S", "USDC": "HWRGLMT9T"}
CONFIG = ReportConfig(
    firm_lei=FIRM,
    recipient="DE-BAFIN",
    dti=DTI,
    mic={"paper": "XOFF"},
    currency={"USDC": "USD"},
)
OWNERS = {
    "ACC1": BeneficialOwner(owner_id="o1", kind=OwnerKind.LEGAL, name="Alpha", country="DE",
                            lei=CLIENT),
    "ACC2": BeneficialOwner(owner_id="o2", kind=OwnerKind.LEGAL, name="Beta", country="FR",
                            lei=CLIENT_B),
    "NAT1": BeneficialOwner(owner_id="o3", kind=OwnerKind.NATURAL, name="Nat", country="DE"),
}  # fmt: skip


def fill(
    n: int,
    *,
    account: str = "ACC1",
    side: str = "BUY",
    qty: str = "0.5",
    price: str = "65000.25",
    instrument: str = "BTC/USDC",
    at: datetime | None = None,
    venue: str = "paper",
) -> Fill:
    fid = f"f-{n:04d}"
    return Fill(
        fill_id=fid,
        order_id=f"o-{n:04d}",
        account=account,
        instrument=instrument,
        side=Side(side),
        quantity=Decimal(qty),
        price=Decimal(price),
        fee=Decimal("0.1"),
        fee_asset="USDC",
        liquidity=Liquidity.TAKER,
        venue=venue,
        venue_trade_id=f"vt-{n}",
        uti=f"UTI{FIRM}{n:010d}",
        traded_at=at if at is not None else T0 + timedelta(seconds=n),
        leaves_quantity=Decimal(0),
    )


@cache
def _schema(name: str) -> Any:
    path = Path(REFERENCE_DIR) / "iso20022" / name
    return etree.XMLSchema(etree.parse(str(path)))


def validate(report: bytes) -> tuple[Any, Any]:
    """Both parts of a report valid against their XSDs (AssertionError with the schema's
    log otherwise); returns (AppHdr, Document) as lxml elements."""
    root = etree.fromstring(report)
    assert root.tag == f"{{{ENVELOPE_NS}}}BizMsg", root.tag
    header, document = list(root)
    assert header.tag == f"{{{HEAD_NS}}}AppHdr" and document.tag == f"{{{AUTH016_NS}}}Document"
    for part, xsd in ((header, "head.001.001.02.xsd"), (document, "auth.016.001.03.xsd")):
        schema = _schema(xsd)
        alone = etree.ElementTree(copy.deepcopy(part))
        assert schema.validate(alone), f"{xsd}: {schema.error_log}"
    return header, document
