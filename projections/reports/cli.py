"""`tradetape export auth016`: an ISO 20022 transaction report replayed from the log.

It reads the engine's output topics (fills on the orders topic, account facts on the
accounts topic) from their beginning to their ends as of the read's start, read_committed,
never a projection: the report is a function of the log, the report settings and the
persons file alone (natural persons' identities: personal data, kept off the log), so
running it again gives the same bytes (and the same signature digest)."""

from __future__ import annotations

import io
import os
from contextlib import redirect_stdout
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from schemas.topics import Topic

if TYPE_CHECKING:
    from collections.abc import Callable

    from deploy.settings import Settings
    from projections.reports.iso20022 import ReportConfig

READ_TIMEOUT_S = 600.0
"""How long the export may take to read each topic to its end (seconds)."""
REPORT_TOPICS = (Topic.ORDERS, Topic.ACCOUNTS)
"""What the export reads (the Fills; the AccountOpened facts), and all the reporter role
may read (deploy/acls.py)."""

export_app = typer.Typer(
    help="Regulatory reports replayed from the log (docs/reports.md).", no_args_is_help=True
)


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        _fail(f"{option} must be a date, YYYY-MM-DD: {text!r}", 2)


def period(start: date, end: date) -> tuple[datetime, datetime]:
    """Both days included, in UTC: [start 00:00Z, the day after end 00:00Z)."""
    return (
        datetime.combine(start, time(), UTC),
        datetime.combine(end + timedelta(days=1), time(), UTC),
    )


@export_app.command("auth016")
def auth016(
    from_day: Annotated[
        str, typer.Option("--from", help="First trading day reported (UTC), YYYY-MM-DD")
    ],
    to_day: Annotated[
        str, typer.Option("--to", help="Last trading day reported (UTC, included), YYYY-MM-DD")
    ],
    out: Annotated[Path, typer.Option("--out", help="The report file to write (XML)")],
    persons: Annotated[
        Path | None,
        typer.Option(
            "--persons",
            help="The natural persons' identities (CSV from the KYC system: owner_id,"
            "first_name,surname,birth_date,nationality,scheme,identifier; docs/reports.md)."
            " Without it an account of a natural person refuses the report",
        ),
    ] = None,
    sign: Annotated[
        bool,
        typer.Option(
            "--sign",
            help="Then sign it with the FROST signer group as `tradetape sign FILE` does,"
            " writing what that prints to FILE.sig.json (signer processes must be running)",
        ),
    ] = False,
    key_dir: Annotated[
        Path | None,
        typer.Option(
            "--key-dir",
            help="With --sign: directory holding group.json (default <data>/signers)",
        ),
    ] = None,
    requester: Annotated[
        str,
        typer.Option("--requester", help="With --sign: the registered producer that asks"),
    ] = "signing-coordinator",
    requester_key: Annotated[
        Path | None,
        typer.Option(
            "--requester-key",
            help="With --sign: its private key file (default <data>/keys/<requester>.ed25519)",
        ),
    ] = None,
    timeout: Annotated[
        float,  # seconds, not money
        typer.Option(help="Seconds to read each topic to its end"),
    ] = READ_TIMEOUT_S,
) -> None:
    """Write an ISO 20022 auth.016.001.03 transaction report (with its head.001.001.02 header) of the fills traded from --from to --to, both days included, replayed from the log.

    Every fill on the orders topic and every AccountOpened on the accounts topic is read from the log's start to its end as of the read (read_committed); the same log, settings and --persons file give the same bytes. The report settings (TRADETAPE_REPORT_LEI, _RECIPIENT, _DTI, _MIC, _CURRENCY; docs/operations.md) name the firm, the recipient and the identifiers the log does not hold; --persons the natural persons' identities, which the log does not hold either (personal data).

    Exits 1 with every reason if the report cannot be written as the schema requires (an asset without a DTI, a natural person's account without an identity in --persons, ...: nothing is written), if a record on the orders topic that may be a fill cannot be read (a report without it could leave a transaction out), if no broker answers, or if signing fails (the report is then written, unsigned); 3 if a topic was not read to its end in --timeout; 2 on bad arguments, report settings missing or not valid (no TRADETAPE_REPORT_LEI or _RECIPIENT, an LEI, DTI, MIC or currency code that is not one), an --out that cannot be written or a --persons file that cannot be read or has a bad line, before anything is read. A period without fills writes nothing and exits 0.

    Example: tradetape export auth016 --from 2026-12-01 --to 2026-12-07 --out tx.xml --persons persons.csv --sign
    """
    from deploy.kafka import broker_unreachable
    from deploy.progress import EVERY_SECONDS, Ticker
    from deploy.settings import get_settings
    from projections.reports.iso20022 import (
        ReportRefused,
        build_report,
        report_inputs,
    )
    from projections.reports.persons import PersonError, read_persons
    from streams.cli import IncompleteRead, unwritable

    first, last = _day(from_day, "--from"), _day(to_day, "--to")
    if last < first:
        _fail(f"--to {last} is before --from {first}", 2)
    start, end = period(first, last)
    if (why := unwritable(out)) is not None:
        _fail(f"cannot write --out: {why}", 2)
    identities = {}
    if persons is not None:
        try:
            identities = read_persons(persons.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"cannot read --persons {persons}: {exc}", 2)
        except PersonError as exc:
            lines = "\n".join(f"  - {p}" for p in exc.problems)
            _fail(f"no report written: --persons {persons} has bad lines:\n{lines}", 2)
    settings = get_settings()
    missing = [
        name  # written out whole: the settings test scans the code for the variables it reads
        for name, value in (
            ("TRADETAPE_REPORT_LEI", settings.report_lei),
            ("TRADETAPE_REPORT_RECIPIENT", settings.report_recipient),
        )
        if value is None
    ]
    if missing:
        _fail(f"no report written: set {' and '.join(missing)} (docs/operations.md)", 2)
    try:
        config = report_config(settings)
    except ReportRefused as exc:
        _fail(f"no report written: {exc}", 2)
    if (why := broker_unreachable(settings)) is not None:
        _fail(f"no report written: {why}")
    typer.echo(
        f"export auth016: fills traded {start:%Y-%m-%d %H:%M}Z to {end:%Y-%m-%d %H:%M}Z"
        f" (excluded), read from the log's start; a progress line every {EVERY_SECONDS:g} s",
        err=True,
    )
    ticker = Ticker(lambda topic, n, total: f"export auth016: {topic}: {n:,} of ~{total:,} read")
    maybe_fills: list[str] = []
    try:
        orders, accounts = read_inputs(settings, start, end, timeout, ticker, maybe_fills)
    except IncompleteRead as exc:
        _fail(f"no report written: {exc} (retry, or raise --timeout)", 3)
    if maybe_fills:
        # fail closed: a report without them could leave out transactions, unseen
        _fail(
            f"no report written: {len(maybe_fills)} record(s) on the orders topic that may be"
            f" fills could not be read, the first: {maybe_fills[0]}"
        )
    names = (settings.topic(REPORT_TOPICS[0]), settings.topic(REPORT_TOPICS[1]))
    fills, owners, refused = report_inputs(orders, accounts, start, end, topics=names)
    if refused:
        typer.echo(
            f"warning: {len(refused)} records left out as the admission rule refuses them"
            f" (the projections quarantine them), the first: {refused[0]}",
            err=True,
        )
    if not fills:
        typer.echo(f"no fills traded from {first} to {last}: nothing written", err=True)
        return
    try:
        report = build_report(fills, owners, config, identities)
    except ReportRefused as exc:
        lines = "\n".join(f"  - {p}" for p in exc.problems)
        _fail(f"no report written for {len(fills)} fills:\n{lines}")
    _write(out, report)
    n = len(fills)
    typer.echo(
        f"wrote {out}: {n} transaction{'' if n == 1 else 's'}, {len(report):,} bytes", err=True
    )
    if sign:
        _sign(out, key_dir, requester, requester_key)


def report_config(settings: Settings) -> ReportConfig:
    """The report's firm, recipient and identifiers from the report settings (their LEI and
    recipient set: `TRADETAPE_REPORT_LEI`, `TRADETAPE_REPORT_RECIPIENT`); `ReportRefused`
    names each malformed one."""
    from projections.reports.iso20022 import ReportConfig

    assert settings.report_lei is not None and settings.report_recipient is not None
    return ReportConfig(
        firm_lei=settings.report_lei,
        recipient=settings.report_recipient,
        dti=settings.report_dti,
        mic=settings.report_mic,
        currency=settings.report_currency,
    )


def read_inputs(
    settings: Settings,
    start: datetime,
    end: datetime,
    timeout: float,  # seconds, not money
    progress: Callable[[str, int, int], None] | None = None,
    maybe_fills: list[str] | None = None,
) -> tuple[list[Any], list[Any]]:
    """The fills traded in [start, end) and the AccountOpened facts, as envelopes, each
    topic read to its end as of the read (`streams.cli.read_topic`), in the reporter's own
    consumer group: with ACLs on, the export runs as the reporter role, which may read
    these two topics and nothing else (deploy/acls.py). `maybe_fills` is given why each
    record of the orders topic that is not an event and may be a Fill (its event-type
    header says Fill, or there is none) could not be read."""
    from time import monotonic_ns

    from deploy import groups
    from deploy.groups import group_id
    from schemas.events import AccountOpened, Fill
    from schemas.serde import HEADER_EVENT_TYPE
    from streams.cli import read_topic

    group = group_id(settings.topic_prefix, groups.REPORTER, str(monotonic_ns()))
    orders_topic, accounts_topic = REPORT_TOPICS

    def unreadable(msg: Any, exc: Exception) -> None:
        said = dict(msg.headers() or ()).get(HEADER_EVENT_TYPE)
        if maybe_fills is not None and said in (None, b"Fill"):
            maybe_fills.append(str(exc))

    orders = read_topic(
        settings,
        orders_topic,
        timeout,
        keep=lambda e: isinstance(e.payload, Fill) and start <= e.payload.traded_at < end,
        progress=progress,
        group=group,
        unreadable=unreadable,
    )
    accounts = read_topic(
        settings,
        accounts_topic,
        timeout,
        keep=lambda e: isinstance(e.payload, AccountOpened),
        progress=progress,
        group=group,
    )
    return orders, accounts


def _write(path: Path, data: bytes) -> None:
    """Whole or not at all: a reader (or a signer) never sees half a report."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    except OSError as exc:  # changed since the check
        partial.unlink(missing_ok=True)
        _fail(f"cannot write {path}: {exc.strerror or exc}")


def _sign(
    path: Path, key_dir: Path | None, requester: str, requester_key: Path | None = None
) -> None:
    """`tradetape sign FILE` itself (its checks, its messages, its exit codes), its JSON
    line kept in FILE.sig.json."""
    from signer_ffi.cli import sign_file

    printed = io.StringIO()
    try:
        with redirect_stdout(printed):
            sign_file(
                path,
                key_dir=key_dir,
                purpose="iso20022-auth016",
                requester=requester,
                requester_key=requester_key,
            )
    except typer.Exit as exc:
        typer.echo(f"error: {path} written, not signed", err=True)
        raise typer.Exit(exc.exit_code or 1) from exc
    signature = path.with_name(path.name + ".sig.json")
    _write(signature, printed.getvalue().encode())
    typer.echo(f"signed: {signature}", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")
