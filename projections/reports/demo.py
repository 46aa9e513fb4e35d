"""`make demo` stage: the engine stage's fills as an ISO 20022 auth.016 transaction report
(docs/reports.md), written to the demo's data directory.

What `tradetape export auth016 --persons FILE` does, in-process, with the demo's own
report settings (`SETTINGS`: a made-up firm LEI with valid check digits, a recipient,
DTIs for its assets, USD for its quote asset) and a persons file it writes for its
account owners (natural persons: `deploy.demo.PERSONS`). Only the last engine stage's
accounts are reported, so the count matches its fills on a stack the demo ran on before.
The signer stage that follows signs the file (`REPORT`, `signer_ffi.demo`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import time
from datetime import UTC, datetime
from pathlib import Path

from deploy.demo import FIRM_LEI, PERSONS, latest_demo_accounts
from deploy.settings import Settings
from projections.reports.cli import REPORT_TOPICS, read_inputs, report_config
from projections.reports.iso20022 import build_report, report_inputs
from projections.reports.persons import COLUMNS, read_persons

REPORT = "demo-auth016.xml"
"""The report's file name in the data directory (the signer stage signs it)."""
PERSONS_FILE = "demo-persons.csv"
READ_TIMEOUT_S = 60.0  # seconds, not money

SETTINGS = {
    "report_lei": FIRM_LEI,
    "report_recipient": "DEMO-NCA",
    # Placeholders in the DTI's form (9 characters, no vowels), not the DTI Foundation's
    # registry entries: a deployment sets its own (docs/operations.md).
    "report_dti": {"BTC": "TTDMBTC01", "USDC": "TTDMSDC01"},
    "report_mic": {"paper": "XOFF"},
    "report_currency": {"USDC": "USD"},
}
"""The report settings the demo runs with (the export reads them as TRADETAPE_REPORT_LEI,
_RECIPIENT, _DTI, _MIC and _CURRENCY; docs/operations.md)."""


def report_path(settings: Settings) -> Path:
    return settings.resolved_data_dir / REPORT


def persons_csv(owners: list[tuple[str, str]]) -> str:
    """The persons file for (owner id, account number) pairs: German nationals, so the
    identifier is the CONCAT code, left empty for the export to derive."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for owner_id, n in owners:
        first, surname, born = PERSONS[n]
        writer.writerow([owner_id, first, surname, born, "DE", "CONCAT", ""])
    return out.getvalue()


def run(settings: Settings) -> list[str]:
    started = time.monotonic()
    settings = settings.with_overrides(**SETTINGS)
    config = report_config(settings)
    start, end = datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)
    maybe_fills: list[str] = []
    orders, opened = read_inputs(settings, start, end, READ_TIMEOUT_S, None, maybe_fills)
    if maybe_fills:  # as the export: a report without them could leave transactions out
        raise RuntimeError(
            f"report: {len(maybe_fills)} record(s) on the orders topic that may be fills could"
            f" not be read, the first: {maybe_fills[0]}"
        )
    names = (settings.topic(REPORT_TOPICS[0]), settings.topic(REPORT_TOPICS[1]))
    fills, owners, refused = report_inputs(orders, opened, start, end, topics=names)
    accounts = {a.account for a in latest_demo_accounts(opened)}
    fills = [f for f in fills if f.account in accounts]
    if not fills:
        raise RuntimeError("report: the engine stage's fills are not on the orders topic")
    persons = settings.resolved_data_dir / PERSONS_FILE
    persons.write_text(
        persons_csv(sorted((owners[a].owner_id, a[-1]) for a in accounts)), encoding="utf-8"
    )
    identities = read_persons(persons.read_text(encoding="utf-8"))
    report = build_report(fills, owners, config, identities)
    out = report_path(settings)
    out.write_bytes(report)
    days = sorted({f.traded_at.date() for f in fills})
    return [
        f"report: ISO 20022 auth.016.001.03 of the engine stage's {len(fills)} fills "
        f"({len(fills)} transactions; {len({f.account for f in fills})} accounts, their owners"
        f" natural persons identified from {persons.name}) -> {out}",
        f"report: sha256 {hashlib.sha256(report).hexdigest()}, {len(report):,} bytes"
        + (f"; {len(refused)} records refused by the admission rule" if refused else ""),
        f"report: firm LEI {config.firm_lei}, to {config.recipient}, DTIs "
        + ", ".join(f"{k}={v}" for k, v in sorted(config.dti.items()))
        + " (placeholders); from the command line: TRADETAPE_REPORT_LEI=... tradetape export"
        f" auth016 --from {days[0]} --to {days[-1]} --out FILE --persons {persons}"
        f"; stage took {time.monotonic() - started:.1f}s",
    ]
