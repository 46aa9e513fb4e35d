"""Analyst queries: named, parameterised queries and read-only raw SQL, as polars frames.

Named queries take parameters only as bound values (`%(name)s`), never as text spliced
into SQL, so no parameter can change a statement. Raw SQL runs as the read-only role in
a READ ONLY transaction: the database itself refuses any write. Every query is one
statement sent through the extended protocol (which refuses a second one, so no
`COMMIT; ...` can leave the READ ONLY transaction) under a statement and idle timeout,
so an analyst cannot hold a lock the projectors need for longer than that.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import polars as pl
import psycopg
from psycopg import sql
from psycopg.types.json import set_json_loads

from deploy.settings import Settings, get_settings
from projections.core import ORDER_STATUSES
from projections.migrate import READER_TIMEOUT_S


class QueryError(RuntimeError):
    """A query the caller got wrong, or one the database refused (e.g. a write)."""


QUERY_TIMEOUT_S = float(READER_TIMEOUT_S)  # seconds, not money
"""Default limit on one analyst query, and on an idle transaction or a lock wait: a
reader's locks (a table's, or an advisory lock where the role still may take one) can
hold up a projector batch, a rebuild's swap or a migration at most this long."""


MAX_TIMEOUT_S = 2_147_483.647  # seconds, not money
"""The longest time limit PostgreSQL holds (`statement_timeout` is at most 2^31 - 1 ms)."""


def check_timeout(timeout_s: float) -> None:  # seconds, not money
    """A QueryError unless `timeout_s` is a time limit the session can be pinned to: above
    0 and at most `MAX_TIMEOUT_S` (`inf` and `nan` raised out of `int()` with a traceback;
    a larger one was refused by the server at connection)."""
    if not 0 < timeout_s <= MAX_TIMEOUT_S:  # NaN fails every comparison
        raise QueryError(
            f"--timeout: a time limit is seconds above 0 and at most {MAX_TIMEOUT_S:,.3f}"
            f" (PostgreSQL's longest statement_timeout); got {timeout_s!r}"
        )


def _session_options(timeout_s: float) -> str:  # seconds, not money
    """libpq `options` pinning the analyst session: read-only by default, time-limited."""
    ms = max(1, int(timeout_s * 1000))
    return (
        "-c default_transaction_read_only=on"
        f" -c statement_timeout={ms} -c idle_in_transaction_session_timeout={ms}"
        f" -c lock_timeout={ms}"
    )


@dataclass(frozen=True)
class NamedQuery:
    sql: str
    params: tuple[str, ...]
    """Optional filters; each is `(%(p)s IS NULL OR column = %(p)s)` in `sql`."""
    description: str
    values: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Filters with a closed set of values, and those values: any other is refused (it
    would match nothing, and an empty result would pass for "no such rows")."""


ORDER_STATUS = ("status", ORDER_STATUSES)


def _filters(*cols: tuple[str, str]) -> str:
    return " AND ".join(f"(%({p})s::text IS NULL OR {c} = %({p})s::text)" for p, c in cols)


NAMED: dict[str, NamedQuery] = {
    "positions": NamedQuery(
        "SELECT account, instrument, quantity, avg_cost, cost_basis, realized_pnl, fees_quote, "
        "fees_other, fill_count, updated_at FROM proj_positions.positions WHERE "
        + _filters(("account", "account"), ("instrument", "instrument"))
        + " ORDER BY account, instrument",
        ("account", "instrument"),
        "Position and average cost per account and instrument",
    ),
    "pnl": NamedQuery(
        "SELECT * FROM proj_positions.pnl WHERE "
        + _filters(("account", "account"), ("instrument", "instrument"))
        + " ORDER BY account, instrument",
        ("account", "instrument"),
        "Realized and unrealized PnL against the last mark",
    ),
    "marks": NamedQuery(
        "SELECT * FROM proj_positions.marks WHERE "
        + _filters(("instrument", "instrument"))
        + " ORDER BY instrument",
        ("instrument",),
        "Last mark price per instrument",
    ),
    "orders": NamedQuery(
        "SELECT order_id, account, instrument, side, order_type, quantity, limit_price, status, "
        "filled_quantity, leaves_quantity, CASE WHEN filled_quantity > 0 THEN "
        "filled_notional / filled_quantity END AS avg_fill_price, venue, reason, created_at, "
        "updated_at FROM proj_orders.orders WHERE "
        + _filters(("account", "account"), ("status", "status"), ("instrument", "instrument"))
        + " ORDER BY created_at, order_id",
        ("account", "status", "instrument"),
        "Orders, current state",
        (ORDER_STATUS,),
    ),
    "order_history": NamedQuery(
        "SELECT * FROM proj_orders.order_events WHERE "
        + _filters(("order_id", "order_id"), ("account", "account"))
        + " ORDER BY occurred_at, event_id",
        ("order_id", "account"),
        "Every lifecycle event of orders",
    ),
    "fills": NamedQuery(
        "SELECT * FROM proj_fills.fills WHERE "
        + _filters(("account", "account"), ("instrument", "instrument"), ("order_id", "order_id"))
        + " ORDER BY traded_at, event_id",
        ("account", "instrument", "order_id"),
        "Executions",
    ),
    "balances": NamedQuery(
        "SELECT account, asset, amount, movement_count FROM proj_balances.balances "
        "WHERE "
        + _filters(("account", "account"), ("asset", "asset"))
        + " ORDER BY account, asset",
        ("account", "asset"),
        "Balance per account and asset",
    ),
    "decisions": NamedQuery(
        "SELECT * FROM proj_decisions.decisions WHERE "
        + _filters(("account", "account"), ("outcome", "outcome"))
        + " ORDER BY occurred_at, event_id",
        ("account", "outcome"),
        "Risk decisions and rejections",
        (("outcome", ("APPROVED", "REJECTED", "INTENT_REJECTED", "ADMIN_REJECTED")),),
    ),
    "rule_results": NamedQuery(
        "SELECT d.account, d.client_order_id, d.outcome, r.* FROM proj_decisions.rule_results r "
        "JOIN proj_decisions.decisions d USING (event_id) WHERE "
        + _filters(("account", "d.account"), ("rule_id", "r.rule_id"))
        + " ORDER BY d.occurred_at, r.event_id, r.ordinal",
        ("account", "rule_id"),
        "Every rule's result of every decision",
    ),
    "drawdown": NamedQuery(
        "SELECT a.account, a.drawdown, a.lost_in_full, a.nav, a.peak_nav, a.units, a.equity, "
        "a.peak_equity, a.unit_nav, a.valued_at, a.valued_by, a.units_changed_at, "
        "a.peak_changed_at, a.wiped_at, r.released_at AS peak_reset_at, a.brake_result, "
        "a.brake_detail, "
        "k.engaged AS kill_switch, k.actor AS kill_switch_by, k.reason AS kill_switch_reason, "
        "k.changed_at AS kill_switch_at FROM proj_drawdown.drawdowns a "
        "LEFT JOIN proj_drawdown.releases r ON r.account = a.account "
        "LEFT JOIN proj_risk_config.kill_switches k ON k.scope = a.account WHERE "
        + _filters(("account", "a.account"))
        + " ORDER BY a.account",
        ("account",),
        "Drawdown per account as the brake measures it (NAV per unit vs. its peak, or the "
        "whole peak lost: 1), units, the last release and its kill switch",
    ),
    "drawdown_history": NamedQuery(
        "SELECT occurred_at, event_id, account, event_type, change, flows, units, unit_nav, "
        "equity, nav, peak_before, peak_nav, peak_equity, drawdown, lost_in_full, "
        "NULL::text AS actor, NULL::text AS reason FROM proj_drawdown.drawdown_events WHERE "
        + _filters(("account", "account"))
        + " UNION ALL SELECT occurred_at, event_id, scope, event_type, "
        "CASE event_type WHEN 'KillSwitchEngaged' THEN 'KILL_SWITCH_ENGAGED' "
        "ELSE 'KILL_SWITCH_RELEASED' END, NULL, NULL, NULL, (detail->>'equity')::numeric, "
        "NULL, NULL, NULL, (detail->>'peak_equity')::numeric, "
        "(detail->>'drawdown')::numeric, NULL, actor, reason FROM proj_risk_config.config_events "
        "WHERE event_type IN ('KillSwitchEngaged', 'KillSwitchReleased') AND scope <> '*' "
        "AND " + _filters(("account", "scope")) + " ORDER BY occurred_at, event_id",
        ("account",),
        "Unit changes, peak moves and the account's kill switch (a brake's drawdown, peak "
        "and equity), in time order",
    ),
    "risk_config": NamedQuery(
        "SELECT * FROM proj_risk_config.config_events WHERE "
        + _filters(("scope", "scope"))
        + " ORDER BY occurred_at, event_id",
        ("scope",),
        "Risk limits and kill-switch history",
    ),
    "kill_switches": NamedQuery(
        "SELECT * FROM proj_risk_config.kill_switches ORDER BY scope", (), "Kill-switch state"
    ),
    "deadletters": NamedQuery(
        "SELECT event_id, source_topic, source_partition, source_offset, error_type, error, "
        "stage, producer, occurred_at, original_value_bytes, original_value_sha256, "
        "original_truncated FROM proj_deadletters.deadletters WHERE "
        + _filters(("source_topic", "source_topic"), ("stage", "stage"))
        + " ORDER BY occurred_at, event_id",
        ("source_topic", "stage"),
        "The dead-letter browser",
    ),
    "accounts": NamedQuery(
        "SELECT account, status, owner_id, owner_kind, owner_name, owner_country, owner_lei, "
        "base_currency, jurisdiction, wallet_id, kyc_level, kyc_verified_by, kyc_verified_at, "
        "open_aml_flags, opened_at, updated_at FROM proj_accounts.accounts WHERE "
        + _filters(("account", "account"), ("owner_id", "owner_id"), ("status", "status"))
        + " ORDER BY account",
        ("account", "owner_id", "status"),
        "Account state: beneficial owner, KYC, AML hold",
        (("status", ("ACTIVE", "KYC_PENDING", "AML_HOLD")),),
    ),
    "aml_flags": NamedQuery(
        "SELECT * FROM proj_accounts.aml_flags WHERE "
        + _filters(("account", "account"), ("open", "open::text"))
        + " ORDER BY account, flag_id",
        ("account", "open"),
        "AML flags, open (open=true) and cleared",
        (("open", ("true", "false")),),
    ),
    "alerts": NamedQuery(
        "SELECT alert_id, pattern, detector, detector_version, account, beneficial_owner, "
        "instrument, score, window_start, window_end, summary FROM proj_alerts.alerts WHERE "
        + _filters(("account", "account"), ("pattern", "pattern"), ("detector", "detector"))
        + " ORDER BY window_end, alert_id",
        ("account", "pattern", "detector"),
        "Surveillance alerts, oldest first (`tradetape stor ALERT_ID` drafts a STOR)",
    ),
    "producers": NamedQuery(
        "SELECT * FROM proj_accounts.producers WHERE "
        + _filters(("producer_id", "producer_id"))
        + " ORDER BY producer_id",
        ("producer_id",),
        "Registered strategy producers: key, entitled accounts, status (ACTIVE or REVOKED), rotations",
    ),
    "tax_lots": NamedQuery(
        "SELECT account, asset, lot_id, kind, ref, acquired_at, quantity, basis_usd, covered, "
        "remaining_quantity, remaining_basis_usd, basis_reason FROM proj_tax_lots.lots WHERE "
        "remaining_quantity > 0 AND "
        + _filters(("account", "account"), ("asset", "asset"))
        + " ORDER BY account, asset, acquired_at, event_id, leg",
        ("account", "asset"),
        "Open tax lots per wallet (account) and asset, first in first out (USD basis)",
    ),
    "tax_disposals": NamedQuery(
        "SELECT account, asset, kind, "
        "to_char(disposed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') "
        "AS disposed_at, event_id, leg, ref, quantity, proceeds_usd, proceeds_reason, "
        "unmatched_quantity, slices FROM proj_tax_lots.disposals WHERE "
        + _filters(("account", "account"), ("asset", "asset"))
        + " ORDER BY account, disposed_at, event_id, leg",
        ("account", "asset"),
        "Disposals with their FIFO lot slices (`tradetape tax form8949` prints the form)",
    ),
    "quarantine": NamedQuery(
        'SELECT projection, topic, partition, "offset", event_type, schema_version, error '
        "FROM projection_quarantine WHERE "
        + _filters(("projection", "projection"))
        + ' ORDER BY projection, topic, partition, "offset"',
        ("projection",),
        "Events a projection could not understand",
    ),
}


def _cell(v: Any) -> Any:
    """UUIDs as text and JSON/arrays as canonical JSON text; Decimal stays Decimal (never
    float)."""
    if isinstance(v, UUID):
        return str(v)
    if isinstance(v, dict | list):
        return _json_text(v)
    return v


def _json_int(text: str) -> int | Decimal:
    """A JSON integer: an int, or a Decimal past what `int()` parses (4,300 digits; a jsonb
    number may have 131,072), which raised a ValueError out of the query."""
    return int(text) if len(text) <= _INT_DIGITS else Decimal(text)


_INT_DIGITS = 4000
_load_json = functools.partial(json.loads, parse_float=Decimal, parse_int=_json_int)
"""jsonb/json as the database wrote it: a number with a fraction or exponent is a Decimal
(psycopg's default json.loads makes it a float: 0.1000000000000000055 became 0.1)."""


def _json_text(v: Any) -> str:
    """Canonical JSON text (sorted keys, no spaces) of a jsonb value or an array, exact:
    a Decimal is written as its digits (`format(d, "f")`, as PostgreSQL prints a
    numeric), NaN/Infinity (a numeric array may hold them; JSON has no such number) as a
    string, a time as its ISO text. Anything else (a range, a composite...) has no exact
    JSON form and is a QueryError."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Decimal):
        return format(v, "f") if v.is_finite() else json.dumps(str(v))
    if isinstance(v, int | str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, float):  # a float8[] element: the database's own float, not money
        return json.dumps(v) if math.isfinite(v) else json.dumps(repr(v))
    if isinstance(v, UUID | datetime | date | time):
        return json.dumps(str(v) if isinstance(v, UUID) else v.isoformat())
    if isinstance(v, timedelta):
        return json.dumps(str(v))
    if isinstance(v, dict):
        items = sorted(v.items())
        return "{" + ",".join(f"{_json_text(str(k))}:{_json_text(x)}" for k, x in items) + "}"
    if isinstance(v, list | tuple):
        return "[" + ",".join(_json_text(x) for x in v) + "]"
    raise QueryError(
        f"cannot render a {type(v).__name__} inside an array or JSON value exactly; "
        "cast it to text in the SQL (e.g. col::text)"
    )


POLARS_DECIMAL_DIGITS = 38
"""What a polars Decimal column holds: integer digits plus the column's (largest) scale."""


def _fit(values: list[Any]) -> list[Any]:
    """A column polars can hold exactly: Decimals that a Decimal(38, s) column cannot (too
    many digits at the column's scale, or NaN/Infinity) become their exact text instead of
    an Object column that no output format can write. Ints count too (a jsonb number
    without a fraction is an int of any size): beside Decimals, or past int64, they are
    held as Decimal(38, 0) digits, or all the column's numbers as text past 38; polars
    made an int a Decimal column cannot hold null, a column of ints past int128 all
    null, and an int just past it another number, without a word."""
    ints = scale = 0
    decimals = wide = False
    for v in values:
        if isinstance(v, Decimal):
            if not v.is_finite():
                break
            t = v.as_tuple()
            exp = int(t.exponent)
            ints, scale = max(ints, len(t.digits) + exp), max(scale, -exp)
            decimals = True
        elif isinstance(v, int) and not isinstance(v, bool):
            ints = max(ints, len(str(abs(v))))
            wide = wide or not _INT64[0] <= v <= _INT64[1]
    else:
        if not wide and (not decimals or ints + scale <= POLARS_DECIMAL_DIGITS):
            return values  # int64 ints alone, or what a Decimal(38, s) column holds
        if ints + scale <= POLARS_DECIMAL_DIGITS:
            return [Decimal(v) if _is_int(v) else v for v in values]
    return [
        format(v, "f") if isinstance(v, Decimal) else str(v) if _is_int(v) else v for v in values
    ]


_INT64 = (-(2**63), 2**63 - 1)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_TEXT_OIDS = frozenset({19, 25, 114, 1042, 1043, 2950, 3802})
"""name, text, json, bpchar, varchar, uuid, jsonb: what `_cell` hands polars as str."""
_INT_OIDS = frozenset({20, 21, 23})
_BOOL, _FLOAT4, _FLOAT8, _DATE, _TIMESTAMP, _TIMESTAMPTZ, _NUMERIC = (
    16, 700, 701, 1082, 1114, 1184, 1700
)  # fmt: skip


def _null_type(column: Any, zone: str) -> Any:
    """The polars type of a result column that holds no value (no rows, or NULL in every
    row), from its PostgreSQL type; None to leave polars its Null column. A column with
    values gets what polars infers from them (numeric: `Decimal(38, s)` at their scale)."""
    oid = column.type_code
    if oid in _TEXT_OIDS:
        return pl.String
    if oid in _INT_OIDS:
        return pl.Int64
    if oid == _NUMERIC:
        return pl.Decimal(POLARS_DECIMAL_DIGITS, column.scale or 0)
    if oid == _BOOL:
        return pl.Boolean
    if oid in (_FLOAT4, _FLOAT8):
        return pl.Float64
    if oid == _TIMESTAMPTZ:
        return pl.Datetime("us", zone)
    if oid == _TIMESTAMP:
        return pl.Datetime("us")
    if oid == _DATE:
        return pl.Date
    return None


def _frame(cur: psycopg.Cursor[Any]) -> pl.DataFrame:
    description = cur.description or []
    cols = [d.name for d in description]
    rows = cur.fetchall()
    data = {c: _fit([_cell(r[i]) for r in rows]) for i, c in enumerate(cols)}
    zone = getattr(cur.connection.info.timezone, "key", "UTC")
    try:
        if not cols:
            return pl.DataFrame()
        df = pl.DataFrame(data, strict=False)
        typed = []
        for d in description:  # no value to infer a type from: the column's own type
            dtype = _null_type(d, zone) if df.schema[d.name] == pl.Null else None
            if dtype is not None:
                typed.append(pl.col(d.name).cast(dtype))
        return df.with_columns(typed) if typed else df
    except (pl.exceptions.PolarsError, TypeError, ValueError, OverflowError) as exc:
        raise QueryError(f"cannot hold the result as a table: {exc}") from exc


def named(name: str, params: dict[str, str | None]) -> tuple[str, dict[str, str | None]]:
    """The SQL and bound parameters of a named query; unknown filters are refused."""
    if name not in NAMED:
        raise QueryError(f"unknown query {name!r}; known: {', '.join(sorted(NAMED))}")
    q = NAMED[name]
    unknown = set(params) - set(q.params)
    if unknown:
        raise QueryError(
            f"{name} takes {', '.join(q.params) or 'no parameters'};"
            f" got {', '.join(sorted(unknown))}"
        )
    for p, v in params.items():
        if v is not None:
            _utf8(v, f"filter {p}")
    for p, allowed in q.values:
        v = params.get(p)
        if v is not None and v not in allowed:
            raise QueryError(f"{name}: {p} is one of {', '.join(allowed)}; got {v!r}")
    return q.sql, {p: params.get(p) for p in q.params}


def _utf8(text: str, what: str) -> None:
    """A QueryError unless `text` can be sent to the database (UTF-8): a lone surrogate,
    what Python makes of argv bytes that are not UTF-8, raised a UnicodeEncodeError out of
    the query (a traceback in the CLI)."""
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise QueryError(
            f"{what} is not valid UTF-8 text (character {exc.start}: {text[exc.start]!r})"
        ) from None


def frame(
    name: str,
    settings: Settings | None = None,
    timeout_s: float = QUERY_TIMEOUT_S,  # seconds, not money
    /,
    **params: str | None,
) -> pl.DataFrame:
    """A named query as a polars DataFrame, e.g. `frame("positions", account="A1")`.

    Runs as the read-only role too: analysts never hold a connection that can write.
    """
    s = settings or get_settings()
    text, bound = named(name, params)
    return _run(s.readonly_dsn, text, bound, timeout_s)


def raw(
    text: str,
    settings: Settings | None = None,
    *,
    timeout_s: float = QUERY_TIMEOUT_S,  # seconds, not money
) -> pl.DataFrame:
    """One SQL statement as the read-only role in a READ ONLY transaction."""
    _utf8(text, "the SQL")
    s = settings or get_settings()
    return _run(s.readonly_dsn, text, None, timeout_s)


def _run(
    dsn: str,
    text: str,
    params: dict[str, str | None] | None,
    timeout_s: float,  # seconds, not money
) -> pl.DataFrame:
    check_timeout(timeout_s)
    try:
        with psycopg.connect(dsn, autocommit=False, options=_session_options(timeout_s)) as conn:
            conn.read_only = True
            set_json_loads(_load_json, conn)
            with conn.cursor() as cur:
                # prepare=True: Parse/Bind/Execute even without parameters. The simple
                # protocol would run "COMMIT; <anything>" as two statements, the second
                # outside the READ ONLY transaction; Parse takes exactly one.
                cur.execute(sql.SQL(text) if params is None else text, params, prepare=True)
                out = _frame(cur)
            conn.rollback()
            return out
    except psycopg.errors.SyntaxError as exc:
        if "multiple commands" in str(exc):
            raise QueryError(
                "refused: one SQL statement per query (no ';'-separated statements)"
            ) from exc
        raise QueryError(f"query failed: {exc}") from exc
    except psycopg.errors.QueryCanceled as exc:
        raise QueryError(
            f"refused: the query ran longer than its time limit of {timeout_s:g} s ({exc})"
        ) from exc
    except psycopg.errors.ReadOnlySqlTransaction as exc:
        raise QueryError(
            f"refused: the query tries to write, and analyst SQL is read-only ({exc})"
        ) from exc
    except psycopg.errors.InsufficientPrivilege as exc:
        raise QueryError(f"refused: the read-only role may not do that ({exc})") from exc
    except psycopg.Error as exc:
        raise QueryError(f"query failed: {exc}") from exc


FORMATS = ("table", "csv", "json", "parquet")
"""What `write` renders; parquet only to a file."""


def check_format(fmt: str, out: str | None) -> None:
    """A QueryError if `write` could not render `fmt` to `out`: the CLI checks before it
    runs the query (a usage error, exit 2), not after."""
    if fmt not in FORMATS:
        raise QueryError(f"unknown format {fmt!r}: {', '.join(FORMATS[:-1])} or {FORMATS[-1]}")
    if fmt == "parquet" and not out:
        raise QueryError("--format parquet needs --out FILE")


def write(df: pl.DataFrame, fmt: str, out: str | None) -> str | None:
    """Render `df` as table/csv/json/parquet to `out` (or return the text for stdout).

    A polars or file error is a QueryError, so the CLI reports it rather than a traceback.
    """
    try:
        return _write(df, fmt, out)
    except pl.exceptions.PolarsError as exc:
        raise QueryError(f"cannot write the result as {fmt}: {exc}") from exc
    except OSError as exc:
        raise QueryError(f"cannot write {out}: {exc}") from exc


def _write(df: pl.DataFrame, fmt: str, out: str | None) -> str | None:
    if fmt == "parquet":
        if not out:
            raise QueryError("--format parquet needs --out FILE")
        df.write_parquet(out)
        return None
    text = _to_text(df, fmt, full=bool(out))
    if out:
        # UTF-8, not the locale's encoding (an ASCII or Latin-1 locale raised on `€`,
        # or wrote the same result as other bytes)
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(text)
        return None
    return text


def _jsonable(df: pl.DataFrame) -> pl.DataFrame:
    """Decimals and timestamps as strings: money never becomes a float on the way out."""
    casts = [
        pl.col(c).cast(pl.String)
        for c, t in df.schema.items()
        if t == pl.Object or isinstance(t, pl.Decimal | pl.Datetime | pl.Date)
    ]
    return df.with_columns(casts) if casts else df


TABLE_ROWS, TABLE_COLS, TABLE_STR = 200, 30, 40
"""What a table printed to stdout shows at most: rows (the first and last half), columns,
characters of a string. A table written to a file (--out) shows everything. A number is
always shown whole, also one held as text (`_fit`), and no cell is folded over lines:
the table is as wide as its values (it was cut to 200 characters, and polars then folded
a 28-digit decimal over two lines)."""


def _table(df: pl.DataFrame, full: bool) -> str:
    """The table as polars prints it. `full` (a file): every row, column and character.
    Else cut to TABLE_*, with a last line naming what was cut, never silently."""
    strs = [c for c, t in df.schema.items() if t == pl.String]
    if full:
        lengths = df.select(pl.col(c).str.len_chars().max() for c in strs).row(0) if strs else ()
        longest = max((n or 0 for n in lengths), default=0)
        with pl.Config(
            tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=max(1, longest), tbl_width_chars=-1
        ):
            return str(df)
    # Strings are cut here rather than by polars' fmt_str_lengths, which cut numbers
    # held as text too; what is left, numbers whole, polars then prints in full.
    too_long = [
        (pl.col(c).str.len_chars() > TABLE_STR) & ~pl.col(c).str.contains(A_NUMBER) for c in strs
    ]
    long_strings = bool(strs) and any(df.select(x.any() for x in too_long).row(0))
    if long_strings:
        df = df.with_columns(
            pl.when(cond).then(pl.col(c).str.slice(0, TABLE_STR) + "…").otherwise(pl.col(c))
            for c, cond in zip(strs, too_long, strict=True)
        )
    lengths = df.select(pl.col(c).str.len_chars().max() for c in strs).row(0) if strs else ()
    longest = max((n or 0 for n in lengths), default=0)
    with pl.Config(
        tbl_rows=TABLE_ROWS,
        tbl_cols=TABLE_COLS,
        fmt_str_lengths=max(TABLE_STR, longest),
        tbl_width_chars=-1,
    ):
        text = str(df)
    cut = []
    if df.height > TABLE_ROWS:
        half = TABLE_ROWS // 2
        cut.append(f"{TABLE_ROWS} of {df.height} rows (the first and last {half})")
    if df.width > TABLE_COLS:
        cut.append(f"{TABLE_COLS} of {df.width} columns")
    if long_strings:
        cut.append(f"strings cut at {TABLE_STR} characters")
    if not cut:
        return text
    note = f"showing {', '.join(cut)}; use --format csv or --out FILE for all of it"
    return f"{text}\n{note}"


FORMULA_START = r"^[=+\-@\t\r]"
"""What a spreadsheet runs as a formula when a CSV cell starts with it (OWASP "CSV
injection"): = + - @, tab, carriage return."""
A_NUMBER = r"^[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|Infinity|NaN|sNaN)$"
"""A number written as text (a wide decimal, `query._fit`): it starts with - or + but is
no formula, and is not guarded."""


def _csv_safe(df: pl.DataFrame) -> pl.DataFrame:
    """Text cells that a spreadsheet would run as a formula get a leading `'`, so they
    open as the text they are (a dead letter's error, a producer name: text an attacker
    may choose). Only String columns of the result, never a number: -5 stays -5."""
    guards = []
    for c, t in df.schema.items():
        if t != pl.String:
            continue
        col = pl.col(c)
        formula = col.str.contains(FORMULA_START) & ~col.str.contains(A_NUMBER)
        guards.append(pl.when(formula).then(pl.lit("'") + col).otherwise(col).alias(c))
    return df.with_columns(guards) if guards else df


def _to_text(df: pl.DataFrame, fmt: str, full: bool) -> str:
    if fmt == "csv":
        return _jsonable(_csv_safe(df)).write_csv()
    if fmt == "json":
        return _jsonable(df).write_json()
    if fmt == "table":
        return _table(df, full)
    raise QueryError(f"unknown format {fmt!r}: table, csv, json or parquet")
