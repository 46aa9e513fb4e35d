"""`tradetape tax form8949` and `tradetape tax 1099da`: US tax forms from `tax_lots`.

Read as the read-only role through the named queries (`projections.query`). Fail closed:
a form is printed only from a projection that has folded every record on its topics, is
not degraded and has quarantined nothing of the account asked for, nor anything whose
account cannot be told (`account_of`); otherwise the command says why and exits 1 rather
than print a form with sales missing. A quarantined event of another account leaves this
account's form whole (every table of `tax_lots` is per account): until session 26 any
quarantined event refused every account's form.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from projections.tax.forms import (
    Disposal,
    Exception_,
    Form1099DaRow,
    Form8949Row,
    exceptions,
    form1099da,
    form8949,
    totals,
)
from schemas.types import format_decimal

if TYPE_CHECKING:
    import psycopg

    from deploy.settings import Settings

NAME = "tax_lots"
FORMATS = ("table", "csv", "json")

tax_app = typer.Typer(
    help="US tax forms (Form 8949, Form 1099-DA) from the tax_lots projection: FIFO per "
    "wallet, USD and USDC at par. See docs/projections.md (tax lots).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(tax_app, name="tax")


class Refused(RuntimeError):
    """The projection cannot be trusted to hold every sale: no form is printed."""


class _Duplicate(ValueError):
    """A JSON object names one key twice: which one a reader takes is the reader's."""


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _Duplicate(sorted(k for k, _ in pairs))
    return out


def account_of(raw: bytes | None) -> str | None:
    """The account a quarantined record concerns (`projection_quarantine.raw_value`, the
    record's value as read: the event's JSON): its payload's `account`; None when that
    cannot be told, so that it may be any account's (fail closed): no value, not JSON, an
    object naming a key twice, no payload object, no account text in it, or an envelope
    `key` that is another account. `tax_lots` keys every table by that account."""
    if raw is None:
        return None
    try:
        # numbers as text: only the account is read, and no float is made (not money)
        doc = json.loads(raw, object_pairs_hook=_unique, parse_float=str, parse_int=str)
    except (ValueError, RecursionError):  # not UTF-8 or JSON, a key twice, too deep
        return None
    payload = doc.get("payload") if isinstance(doc, dict) else None
    account = payload.get("account") if isinstance(payload, dict) else None
    if not isinstance(account, str) or not account:
        return None
    key = doc.get("key")
    if key is not None and key != account:
        return None
    return account


def concerning(raws: Iterable[bytes | None], account: str | None) -> tuple[int, int]:
    """Of the quarantined records `raws`: how many are `account`'s (every account's if
    None), and how many are of no account that can be told (each may be `account`'s)."""
    ours = unknown = 0
    for raw in raws:
        found = account_of(raw)
        if found is None:
            unknown += 1
        elif account is None or found == account:
            ours += 1
    return ours, unknown


def refusal(
    lag: Mapping[str, Any], quarantined: int, unknown: int = 0, account: str = ""
) -> str | None:
    """Why no form of `account` may be printed from a projection in this state (None: it
    may). `quarantined`: its quarantined events of that account; `unknown`: those whose
    account cannot be told (`concerning`)."""
    if lag.get("degraded"):
        why = lag.get("offsets_out_of_range") or lag.get("partitions_changed") or "degraded"
        return f"the {NAME} projection is degraded ({why}); `tradetape rebuild {NAME}`"
    if int(lag.get("lag", 0)) > 0:
        return (
            f"the {NAME} projection is {lag['lag']} records behind the log; wait until it "
            "has caught up (`tradetape status`; it runs in `tradetape run projections`)"
        )
    if lag.get("unread_partitions"):
        parts = ", ".join(lag["unread_partitions"])
        return f"the {NAME} projection has not read {parts}"
    look = f"`tradetape query quarantine -p projection={NAME}`"
    of = f" of account {account}" if account else ""
    if quarantined:
        return (
            f"the {NAME} projection quarantined {quarantined} events{of}, which a form would "
            f"leave out ({look})"
        )
    if unknown:
        return (
            f"the {NAME} projection quarantined {unknown} events whose account cannot be "
            f"told (not readable as an event of one account): a form{of} could leave them "
            f"out ({look})"
        )
    return None


QUARANTINE_PAGE = 1000
"""How many quarantined records `check_ready` holds at a time: it reads `tax_lots`'
quarantine through a server-side cursor a page at a time, so a quarantine of any size is
counted without being loaded whole (until session 27 every row was fetched at once)."""


def quarantine_concerning(conn: psycopg.Connection[Any], account: str | None) -> tuple[int, int]:
    """`concerning` over `tax_lots`' quarantined records as stored, read `QUARANTINE_PAGE`
    at a time (a named, server-side cursor, inside the connection's transaction). Which
    account a record concerns is `account_of`'s, in Python: PostgreSQL 15 has no test of
    a value's UTF-8 or JSON that does not raise, nor one that sees a key named twice."""
    ours = unknown = 0
    with conn.cursor(name="tax_lots_quarantine") as cur:
        cur.execute("SELECT raw_value FROM projection_quarantine WHERE projection = %s", (NAME,))
        while rows := cur.fetchmany(QUARANTINE_PAGE):
            page = (None if r[0] is None else bytes(r[0]) for r in rows)
            more_ours, more_unknown = concerning(page, account)
            ours, unknown = ours + more_ours, unknown + more_unknown
    return ours, unknown


def check_ready(settings: Settings, account: str | None = None) -> None:
    """Refused unless `tax_lots` is caught up with the log, not degraded and has no
    quarantined events of `account` (of any account if None: the demo's check) or of an
    account it cannot tell. An error in checking is a refusal too (fail closed)."""
    import psycopg

    from projections.core import PROJECTIONS
    from projections.lag import projection_lag
    from projections.store import OFFSETS_TABLE, issue_offsets_query, offsets_of

    try:
        with psycopg.connect(settings.readonly_dsn, connect_timeout=10) as conn:
            stored = offsets_of(issue_offsets_query(conn, [NAME], OFFSETS_TABLE), [NAME])
            ours, unknown = quarantine_concerning(conn, account)
        lag = projection_lag(settings, [PROJECTIONS[NAME]], stored)[NAME]
    except Exception as exc:  # any failure to check refuses (fail closed)
        raise Refused(f"cannot tell whether {NAME} is complete: {exc}") from exc
    why = refusal(lag, ours, unknown, account or "")
    if why is not None:
        raise Refused(why)


def load(settings: Settings, account: str) -> list[Disposal]:
    """The account's disposals, as the read-only role."""
    from projections.query import frame

    df = frame("tax_disposals", settings, account=account)
    return [
        Disposal(
            r["account"],
            r["asset"],
            r["kind"],
            r["disposed_at"],
            r["event_id"],
            r["leg"],
            r["ref"],
            tuple(json.loads(r["slices"])),
        )
        for r in df.iter_rows(named=True)
    ]


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "X" if v else ""
    if isinstance(v, Decimal):
        return format_decimal(v)  # positional: str() writes 0.0000005 as 5E-7
    return str(v)


def _csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows([[_cell(c) for c in r] for r in rows])
    return buf.getvalue()


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [list(header)] + [[_cell(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def _jsonable(v: Any) -> Any:
    if isinstance(v, Decimal):
        return format_decimal(v)
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


F8949_HEADER = (
    "box", "(a) description", "(b) date acquired", "(c) date sold", "(d) proceeds",
    "(e) cost basis", "(f) code", "(g) adjustment", "(h) gain or loss",
)  # fmt: skip
F1099_HEADER = (
    "1a DTI", "1b asset", "1c units", "1d acquired", "1e sold", "1f proceeds", "1g cost basis",
    "2 basis reported", "6 term", "9 noncovered",
)  # fmt: skip
EX_HEADER = ("date sold", "asset", "units", "date acquired", "fill", "reason")


def _f8949_cells(r: Form8949Row) -> list[Any]:
    return [r.box, r.description, r.date_acquired, r.date_sold, r.proceeds, r.cost_basis,
            r.code, r.adjustment, r.gain]  # fmt: skip


def _f1099_cells(r: Form1099DaRow) -> list[Any]:
    return [r.box_1a_dti, r.box_1b_asset, r.box_1c_units, r.box_1d_acquired, r.box_1e_sold,
            r.box_1f_proceeds, r.box_1g_basis, r.box_2_basis_reported, r.box_6_term,
            r.box_9_noncovered]  # fmt: skip


def _ex_cells(e: Exception_) -> list[Any]:
    return [e.date_sold, e.asset, e.units, e.date_acquired, e.ref, e.reason]


def render(
    form: str, fmt: str, account: str, year: int, disposals: list[Disposal]
) -> tuple[str, int]:
    """The form's text in `fmt`, and how many slices went on no form (listed apart)."""
    ex = exceptions(disposals, year)
    head: Sequence[str]
    if form == "8949":
        rows8949 = form8949(disposals, year)
        head, cells = F8949_HEADER, [_f8949_cells(r) for r in rows8949]
        objs: list[Any] = rows8949
        sums: dict[str, Any] = totals(rows8949)
    else:
        rows1099 = form1099da(disposals, year)
        head, cells = F1099_HEADER, [_f1099_cells(r) for r in rows1099]
        objs, sums = rows1099, {}
    if fmt == "json":
        doc: dict[str, Any] = {
            "form": "8949" if form == "8949" else "1099-DA", "account": account, "year": year,
            "rows": [asdict(o) for o in objs], "exceptions": [asdict(e) for e in ex],
        }  # fmt: skip
        if sums:
            doc["totals"] = sums
        return json.dumps(_jsonable(doc), indent=2) + "\n", len(ex)
    if fmt == "csv":
        return _csv(head, cells), len(ex)
    title = "Form 8949" if form == "8949" else "Form 1099-DA"
    out = [
        f"{title}: account {account}, tax year {year} (USD; FIFO per wallet)\n",
        _table(head, cells),
    ]
    if sums:
        out.append("\nTotals per box\n")
        out.append(_table(("box", "proceeds", "cost basis", "gain or loss"),
                          [[b, t["proceeds"], t["cost_basis"], t["gain"]] for b, t in sums.items()]))  # fmt: skip
    if ex:
        out.append(f"\nOn no form ({len(ex)}): give these by hand\n")
        out.append(_table(EX_HEADER, [_ex_cells(e) for e in ex]))
    return "".join(out), len(ex)


AccountOpt = Annotated[str, typer.Option("--account", help="The wallet (account id)")]
YearOpt = Annotated[int, typer.Option("--year", help="Tax year (by date sold, UTC)")]
FormatOpt = Annotated[str, typer.Option("--format", help="table, csv or json")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Write to FILE, not stdout")]


def _run(form: str, account: str, year: int, fmt: str, out: Path | None) -> None:
    from deploy.settings import get_settings
    from projections.query import QueryError

    def fail(msg: str, code: int) -> None:
        typer.echo(f"error: {msg}", err=True)
        raise typer.Exit(code)

    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}", 2)
    if not 2000 <= year <= 9999:
        fail(f"--year must be a year from 2000 to 9999, not {year}", 2)
    if not account:
        fail("--account must not be empty", 2)
    if out is not None and (why := _unwritable(out)) is not None:
        fail(f"cannot write --out: {why}", 2)
    settings = get_settings()
    try:
        check_ready(settings, account)
        disposals = load(settings, account)
    except Refused as exc:
        fail(f"refused: {exc}", 1)
    except QueryError as exc:
        fail(str(exc), 1)
    text, n_ex = render(form, fmt, account, year, disposals)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
    if n_ex:
        typer.echo(
            f"warning: {n_ex} disposal slices of {year} are on no form (unknown USD proceeds "
            "or sold beyond the wallet's lots); they are listed as exceptions",
            err=True,
        )


def _unwritable(path: Path) -> str | None:
    if path.is_dir():
        return f"{path} is a directory"
    if path.exists():
        return None if os.access(path, os.W_OK) else f"{path} is not writable"
    if not path.parent.is_dir():
        return f"directory {path.parent} does not exist"
    return None if os.access(path.parent, os.W_OK | os.X_OK) else f"{path.parent} is not writable"


@tax_app.command("form8949")
def form_8949(
    account: AccountOpt, year: YearOpt, fmt: FormatOpt = "table", out: OutOpt = None
) -> None:
    """Form 8949 (digital assets, boxes G/H short term, J/K long term) for one wallet.

    One row per FIFO lot slice sold in the year (UTC dates), in dollars and cents; a row's gain is its rounded proceeds less its rounded basis. Box H/K rows of deposited lots have no cost basis (not known to the broker): fill it in. Sales whose proceeds have no USD value (e.g. against EURC) or beyond the wallet's lots are on no form: listed as exceptions (table, json) and warned about on stderr.

    Refuses (exit 1) while the tax_lots projection lags behind the log, is degraded, has quarantined events of this account or of an account it cannot tell (another account's do not refuse), or cannot be checked; exit 2 on bad arguments.

    Example: tradetape tax form8949 --account ACC001 --year 2026 --format csv --out 8949.csv
    """
    _run("8949", account, year, fmt, out)


@tax_app.command("1099da")
def form_1099da(
    account: AccountOpt, year: YearOpt, fmt: FormatOpt = "table", out: OutOpt = None
) -> None:
    """Form 1099-DA rows (boxes 1a-1g, 2, 6, 9) for one wallet and tax year.

    Box 1g (cost basis) and box 2 for covered lots only (bought in the account from 2026-01-01 with a known basis); box 9 marks the noncovered. Box 1a (DTI) is empty: the log carries no DTIs and none is made up. Exceptions as for form8949.

    Refuses (exit 1) while the tax_lots projection lags behind the log, is degraded, has quarantined events of this account or of an account it cannot tell (another account's do not refuse), or cannot be checked; exit 2 on bad arguments.

    Example: tradetape tax 1099da --account ACC001 --year 2026 --format json
    """
    _run("1099da", account, year, fmt, out)
