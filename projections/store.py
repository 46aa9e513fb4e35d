"""One batch into PostgreSQL: decode, de-duplicate, fold, COPY, upsert, offsets.

`apply_prepared` runs inside the caller's transaction, so the rows, the quarantine and
the offsets it writes commit or vanish together. Round trips per batch and projection
are constant: one de-duplication query, one state query per stateful table, one COPY
of the new event ids, and per table either one COPY (history rows keyed on a new event
id cannot conflict) or a COPY into staging plus one INSERT ... ON CONFLICT (current
state, or keys that are not event ids).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from itertools import repeat
from typing import Any, NamedTuple

import orjson
import psycopg
from psycopg import sql
from pydantic_core import ValidationError

from projections.framework import (
    INT4,
    Key,
    Loader,
    Located,
    ManyLoader,
    Projection,
    Quarantined,
    Row,
    State,
    Table,
    WriteMode,
)
from projections.lean import full_decode, header_type, lean_decode, lean_plans
from schemas import MalformedEventError, UnknownEventTypeError

OFFSETS_TABLE = ("public", "projection_offsets")
QUARANTINE_TABLE = ("public", "projection_quarantine")

REBUILD_SUFFIX = "__rebuild"
"""A projection's rebuild builds into the schema `<its schema>__rebuild`."""

BUILD_QUARANTINE = "_quarantine"
"""A rebuild's quarantine table, in its build schema: the swap (`rebuild.swap_in`)
makes it the projection's whole quarantine."""


def quarantine_table(projection: Projection, schema: str) -> tuple[str, str]:
    """Where refused events of `projection` folded into `schema` go: a rebuild's build
    schema keeps its own (`BUILD_QUARANTINE`), anything else writes the shared table."""
    if schema == projection.schema + REBUILD_SUFFIX:
        return (schema, BUILD_QUARANTINE)
    return QUARANTINE_TABLE


Conn = psycopg.Connection[Any]


class RawRecord(NamedTuple):
    """A Kafka record as consumed, before decoding. (A named tuple: built once per
    record, it costs a fifth of a frozen dataclass.)"""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    headers: Sequence[tuple[str, str | bytes | None]] | None = None


@dataclass
class BatchResult:
    consumed: int = 0
    applied: int = 0
    duplicates: int = 0
    quarantined: int = 0
    ignored: int = 0
    rows: dict[str, int] = field(default_factory=dict)

    def add(self, other: BatchResult) -> None:
        self.consumed += other.consumed
        self.applied += other.applied
        self.duplicates += other.duplicates
        self.quarantined += other.quarantined
        self.ignored += other.ignored


@dataclass
class Prepared:
    """One projection's share of a batch: decoded events to fold, records it could not
    use, and how many it knowingly ignored (by the type named in the headers)."""

    items: list[Located] = field(default_factory=list)
    bad: list[Quarantined] = field(default_factory=list)
    ignored: int = 0
    consumed: int = 0


def _storable(value: Any) -> bool:
    """PostgreSQL text holds neither NUL nor lone surrogates (JSON can carry both)."""
    if isinstance(value, str):
        if "\x00" in value:
            return False
        try:
            value.encode()
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_storable(v) for v in value.values())
    if isinstance(value, list):
        return all(_storable(v) for v in value)
    return True


_BACKSLASH = ord("\\")
"""The byte `\\`, to test a record's bytes for it as `_BACKSLASH in value`: an int needle
is one memchr, while a bytes needle (`b"\\\\" in value`) is first tried as an int, which
formats and clears a TypeError: ~1,500 instructions a test, and a two-byte `b"\\\\u"`
search alone scans a record bytewise, ~3,700 (callgrind, session 20: `predecode`'s escape
test cost ~3.5% of an `orders` record's in-process instructions)."""


def decode_one(r: RawRecord, named: tuple[str, int] | None = None) -> Located | Quarantined:
    """Decode a record once (lean, else the models); a failure becomes a quarantine
    entry with the canonical reason. `named`: the headers' type, if already parsed."""
    ev = None
    data = lean_decode(r.value, r.headers, named)
    if data is None:
        try:
            ev, data = full_decode(
                r.value, r.headers, topic=r.topic, partition=r.partition, offset=r.offset
            )
        except UnknownEventTypeError as exc:
            return Quarantined(
                r.topic, r.partition, r.offset, exc.reason, exc.event_type, exc.schema_version,
                r.value,
            )  # fmt: skip
        except MalformedEventError as exc:
            return Quarantined(r.topic, r.partition, r.offset, exc.reason, None, None, r.value)
    # A JSON escape is the only way NUL or a lone surrogate gets in; check only then
    # (a backslash first: one memchr, `_BACKSLASH`).
    value = r.value
    if value is not None and _BACKSLASH in value and b"\\u" in value and not _storable(data):
        return Quarantined(
            r.topic, r.partition, r.offset,
            "text field holds NUL or a lone surrogate, which PostgreSQL cannot store",
            data.get("event_type"), data.get("schema_version"), r.value,
        )  # fmt: skip
    return Located(data, r.topic, r.partition, r.offset, r.value, r.headers, ev)


def prepare(
    records: Sequence[RawRecord],
    projections: Sequence[Projection],
    skip_below: Sequence[Mapping[tuple[str, int], int]] | None = None,
    topics: Sequence[Collection[str]] | None = None,
    decoded: Sequence[Located | Quarantined | None] | None = None,
    names: Sequence[tuple[str, int] | None] | None = None,
) -> list[Prepared]:
    """Split a batch between projections, decoding each record at most once.

    `topics[i]` names the (full) topics projection i reads; without it every record is
    for every projection. A record whose headers name a type a projection knowingly
    ignores is not decoded for it. `skip_below[i]` holds projection i's next offsets:
    records before them were already applied there (a group resumes from its slowest
    member). `decoded[k]`, when given, is record k already decoded (see `predecode`),
    and `names[k]`, if given too, its `header_type`.
    """
    if decoded is not None:
        # One projection: `predecode` decoded exactly what it needs, so no type check.
        if names is None and len(projections) > 1:
            names = [header_type(r.headers) for r in records]
        return [
            _prepare_share(
                records,
                p,
                None if topics is None else topics[i],
                None if skip_below is None else skip_below[i],
                decoded,
                names if len(projections) > 1 else None,
            )
            for i, p in enumerate(projections)
        ]
    out = [Prepared() for _ in projections]
    verdicts: list[dict[tuple[str, int], bool | None]] = [{} for _ in projections]
    for r in records:
        named = header_type(r.headers)
        done: Located | Quarantined | None = None
        for i, p in enumerate(projections):
            if topics is not None and r.topic not in topics[i]:
                continue
            if skip_below is not None and r.offset < skip_below[i].get((r.topic, r.partition), 0):
                continue
            share = out[i]
            share.consumed += 1
            if named is not None:
                known = verdicts[i]
                verdict = (
                    known[named] if named in known else known.setdefault(named, p.accepts(*named))
                )
                if verdict is False:
                    share.ignored += 1
                    continue
            if done is None:
                done = decode_one(r, named)
            if isinstance(done, Located):
                share.items.append(done)
            else:
                share.bad.append(dataclasses.replace(done))
    return out


def _prepare_share(
    records: Sequence[RawRecord],
    projection: Projection,
    topics: Collection[str] | None,
    below: Mapping[tuple[str, int], int] | None,
    decoded: Sequence[Located | Quarantined | None],
    names: Sequence[tuple[str, int] | None] | None,
) -> Prepared:
    """`prepare`'s share of one projection whose records `predecode` decoded: one pass
    over locals. `predecode` decoded every record some projection of the batch needs, so
    a None is one every projection reading its topic ignores by its headers' type. For a
    group, `names` holds each record's header type, parsed once for the group (the
    record-by-member loop parsed them again, ~2.3 us a record for a live
    `orders.lifecycle` group of two, session 19), and a member skips what it ignores; a
    projection alone (`names` None) needs no such check."""
    share = Prepared()
    items, bad = share.items, share.bad
    consumed = ignored = 0
    known: dict[tuple[str, int], bool | None] = {}
    accepts = projection.accepts
    for r, done, named in zip(
        records, decoded, names if names is not None else repeat(None, len(records)), strict=True
    ):
        if topics is not None and r.topic not in topics:
            continue
        if below and r.offset < below.get((r.topic, r.partition), 0):
            continue
        consumed += 1
        if done is None:
            ignored += 1
            continue
        if named is not None:  # a group's member: what the others need, it may ignore
            verdict = known.get(named, _UNKNOWN)
            if verdict is _UNKNOWN:
                verdict = known[named] = accepts(*named)
            if verdict is False:
                ignored += 1
                continue
        if isinstance(done, Located):
            items.append(done)
        else:
            bad.append(dataclasses.replace(done))
    share.consumed, share.ignored = consumed, ignored
    return share


_UNKNOWN: Any = object()


def predecode(
    records: Sequence[RawRecord],
    projections: Sequence[Projection],
    topics: Sequence[Collection[str]],
    names: list[tuple[str, int] | None] | None = None,
) -> list[Located | Quarantined | None]:
    """Decode, ahead of `prepare`, every record some projection will need (None for the
    rest). Depends only on the records, so it can run while the previous batch is
    being written. `names`, if given, gets each record's `header_type` appended (for
    `prepare` of a group, which would parse the headers again)."""
    out: list[Located | Quarantined | None] = []
    append = out.append
    name = names.append if names is not None else None
    verdicts: dict[tuple[str, tuple[str, int]], bool] = {}
    plans = lean_plans()
    for r in records:
        named = header_type(r.headers)
        if name is not None:
            name(named)
        if named is not None:
            key = (r.topic, named)
            need = verdicts.get(key)
            if need is None:
                need = verdicts[key] = any(
                    r.topic in topics[i] and p.accepts(*named) is not False
                    for i, p in enumerate(projections)
                )
            if not need:
                append(None)
                continue
            # `decode_one`'s common case inlined (a type with a lean plan and no payload
            # checks or free JSON, the record valid and storable): ~0.5 us a record of
            # calls and lookups in the reader thread, a rebuild's busiest (session 15).
            # Anything else takes `decode_one`, which gives the verdict.
            plan = plans.get(named)
            value = r.value
            if plan is not None and value is not None and not plan[1] and not plan[2]:
                try:
                    data = plan[0].validate_json(value)
                except ValidationError:
                    data = None
                # No backslash, no escape: one memchr (`_BACKSLASH`, an int).
                if data is not None and (_BACKSLASH not in value or b"\\u" not in value):
                    append(Located(data, r.topic, r.partition, r.offset, value, r.headers))
                    continue
        append(decode_one(r, named))
    return out


def decode_records(
    records: Sequence[RawRecord],
) -> tuple[list[Located], list[Quarantined]]:
    """Every record decoded (tests and tools)."""
    good: list[Located] = []
    bad: list[Quarantined] = []
    for r in records:
        d = decode_one(r)
        (good if isinstance(d, Located) else bad).append(d)  # type: ignore[arg-type]
    return good, bad


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(value: Any) -> str:
    """One value in COPY text format."""
    t = type(value)
    if t is str:
        if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
            return value.translate(_ESCAPES)  # type: ignore[no-any-return]
        return value  # type: ignore[no-any-return]
    if value is None:
        return "\\N"
    if t is bool:
        return "t" if value else "f"
    if t is int:
        return str(value)
    if t is Decimal:
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False).translate(_ESCAPES)
    return str(value).translate(_ESCAPES)


def copy_block(rows: Sequence[Row]) -> str:
    """Rows as one COPY text block, exactly as `copy_block_escaped` renders them.

    Fast path: every `str` value goes in as-is (a rebuild renders millions of values,
    and a `copy_text` call each was a third of the writer thread's time). That is its
    COPY text unless it holds a backslash, tab, newline or CR; every other value is
    escaped by `copy_text`, and only a NULL's `\\N` holds a backslash. So if the block
    holds no CR and no more newlines, tabs and backslashes than its rows, separators and
    NULLs account for, no value needed escaping; otherwise it is rendered value by value.

    The NULLs are counted as they are rendered (by identity: `count(None)` would also
    take a value equal to None), on the path only non-`str` values take: a second pass
    over every value to count them was a quarter of the rendering (session 14).
    """
    if rows and len(rows[0]) == 1:
        column = _one_column(rows)
        if column is not None:
            return column
    nulls: list[None] = []
    null = nulls.append
    text = "".join(
        [
            "\t".join(
                [
                    v
                    if type(v) is str
                    else (null(v) or "\\N")
                    if v is None
                    else str(v)  # copy_text's int, inlined: digits need no escape
                    if type(v) is int
                    else copy_text(v)
                    for v in row
                ]
            )
            + "\n"
            for row in rows
        ]
    )
    if (
        "\r" not in text
        and text.count("\n") == len(rows)
        and text.count("\t") == sum(map(len, rows)) - len(rows)
        and text.count("\\") == len(nulls)
    ):
        return text
    return copy_block_escaped(rows)


def _one_column(rows: Sequence[Row]) -> str | None:
    """Rows of one `str` value each (a `_seen` table's event ids, one row per folded
    event) as one join, or None when any row is otherwise or a value needs escaping:
    `copy_block`'s per-row join and counts cost ~0.5 us a row (session 23)."""
    try:
        values = [v for (v,) in rows]
    except (TypeError, ValueError):  # a row of another length
        return None
    if set(map(type, values)) != {str}:
        return None
    text = "\n".join(values) + "\n"
    if "\\" in text or "\t" in text or "\r" in text or text.count("\n") != len(rows):
        return None
    return text


def copy_block_escaped(rows: Sequence[Row]) -> str:
    """Rows as one COPY text block, each value through `copy_text`."""
    return "".join("\t".join([copy_text(v) for v in row]) + "\n" for row in rows)


def _ident(schema: str, table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


_STAGED: weakref.WeakKeyDictionary[Conn, set[str]] = weakref.WeakKeyDictionary()


def _staging(conn: Conn, schema: str, table: str) -> sql.Identifier:
    """A session temp table shaped like `schema.table`, emptied at every commit."""
    name = f"_stg_{schema}_{table}"[:63]
    made = _STAGED.setdefault(conn, set())
    if name not in made:
        conn.execute(
            sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}) ON COMMIT DELETE ROWS").format(
                sql.Identifier(name), _ident(schema, table)
            )
        )
        made.add(name)
    return sql.Identifier(name)


def _copy(conn: Conn, target: sql.Composable, columns: Sequence[str], rows: Sequence[Row]) -> None:
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    with conn.cursor() as cur:
        with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(target, cols)) as cp:
            cp.write(copy_block(rows))


def copy_rows(
    conn: Conn, schema: str, table: Table, rows: Sequence[Row], *, fresh: bool = False
) -> int:
    """Write rows idempotently. `fresh` says every row belongs to an event id this
    schema has never folded (checked under the projection lock): history rows keyed on
    that id then go straight in with one COPY. Otherwise COPY into staging and one
    set-based INSERT ... ON CONFLICT."""
    if not rows:
        return 0
    if fresh and table.mode is WriteMode.INSERT and "event_id" in table.pk:
        _copy(conn, _ident(schema, table.name), table.columns, rows)
        return len(rows)
    stg = _staging(conn, schema, table.name)
    _copy(conn, stg, table.columns, rows)
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in table.columns)
    pk = sql.SQL(", ").join(sql.Identifier(c) for c in table.pk)
    if table.mode is WriteMode.UPSERT:
        rest = [c for c in table.columns if c not in table.pk]
        action = sql.SQL("DO UPDATE SET {}").format(
            sql.SQL(", ").join(
                sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c))
                for c in rest
            )
        )
    else:
        action = sql.Composed([sql.SQL("DO NOTHING")])
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) {}").format(
                _ident(schema, table.name), cols, cols, stg, pk, action
            )
        )
        return cur.rowcount


def _json_list(values: Sequence[str]) -> str:
    """A list of strings as one JSON parameter: psycopg dumps a Python list element by
    element (slow for 20,000 ids); one string is one copy."""
    return orjson.dumps(values).decode()


SEEN_QUERY = (
    "SELECT s.event_id::text FROM jsonb_array_elements_text(%s::jsonb) AS k(id) "
    "CROSS JOIN LATERAL (SELECT event_id FROM {} s WHERE s.event_id = k.id::uuid OFFSET 0) AS s"
)
"""Which of a batch's event ids a schema has folded already: one primary-key probe per
id. As a plain join the planner hashed the batch's ids and scanned the whole table
whenever its statistics were behind (always, on a table growing at thousands of rows a
second): the live lag bench spent half of PostgreSQL's execution time in this query
(2.7 ms a call, growing with the table). `OFFSET 0` keeps the subquery from being
flattened back into that join, so the plan is a nested loop of index probes whatever
the statistics say."""


def _load_query(schema: str, table: Table, keys: set[Key]) -> tuple[bytes, list[str]]:
    """The query for the current rows of `keys` (text keys as JSON arrays, zipped): an
    index probe per key, for the reason given at `SEEN_QUERY`. The key columns of a
    stateful table are text (a test checks the migrations), so `::text` on them is a
    no-op the index still serves."""
    ordered = sorted(keys)
    arrays = [_json_list([k[i] for k in ordered]) for i in range(len(table.pk))]
    return _load_sql(schema, table), arrays


@functools.lru_cache(maxsize=1024)
def _load_sql(schema: str, table: Table) -> bytes:
    cols = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in table.columns)
    names = [sql.Identifier(f"k{i}") for i in range(len(table.pk))]
    on = sql.SQL(" AND ").join(
        sql.SQL("t.{}::text = k.{}").format(sql.Identifier(c), n)
        for c, n in zip(table.pk, names, strict=True)
    )
    return (
        sql.SQL(
            "SELECT {} FROM ROWS FROM ({}) AS k({}) "
            "CROSS JOIN LATERAL (SELECT * FROM {} t WHERE {} OFFSET 0) AS t"
        )
        .format(
            cols,
            sql.SQL(", ").join(sql.SQL("jsonb_array_elements_text(%s::jsonb)") for _ in names),
            sql.SQL(", ").join(names),
            _ident(schema, table.name),
            on,
        )
        .as_bytes(None)
    )


@functools.lru_cache(maxsize=1024)
def _render(template: str, schema: str, table: str) -> bytes:
    """`template` with its `{}` (or each `{0}`) the table, rendered once (psycopg renders a
    `Composed` again at every execute, which cost more than some batches' folds)."""
    return sql.SQL(template).format(_ident(schema, table)).as_bytes(None)


def _seen_sql(schema: str, table: str) -> bytes:
    return _render(SEEN_QUERY, schema, table)


def load_rows(conn: Conn, schema: str, table: Table, keys: set[Key]) -> dict[Key, Row]:
    """Current rows for `keys`, in one query."""
    if not keys:
        return {}
    out: dict[Key, Row] = {}
    for row in conn.execute(*_load_query(schema, table, keys)):
        out[table.key_of(row)] = tuple(row)
    return out


def _int4(value: int | None) -> bool:
    return value is None or INT4[0] <= value <= INT4[1]


def _pg_text(value: str | None) -> str | None:
    """`value` as PostgreSQL text can hold it: NUL and lone surrogates as U+FFFD (an
    unknown type's name is the sender's text; stored as it was, it failed the batch)."""
    if value is None:
        return None
    try:
        value.encode()
    except UnicodeEncodeError:
        value = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in value)
    return value.replace("\x00", "\ufffd")


def write_quarantine(
    conn: Conn,
    projection: str,
    bad: Sequence[Quarantined],
    table: tuple[str, str] = QUARANTINE_TABLE,
) -> None:
    """Quarantine entries into `table` (the shared one, or a split rebuild's own until
    its build commits); an entry already there is kept. A schema version its `integer`
    column cannot hold is stored NULL (the error names it), and text NUL or a lone
    surrogate as U+FFFD: each failed the whole batch."""
    if not bad:
        return
    with conn.cursor() as cur:
        cur.executemany(
            _render(
                "INSERT INTO {} (projection, topic, partition, \"offset\", event_type, "
                "schema_version, error, raw_value) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                *table,
            ),
            [
                (projection, q.topic, q.partition, q.offset, _pg_text(q.event_type),
                 q.schema_version if _int4(q.schema_version) else None,
                 _pg_text(q.error[:4000]), q.raw_value)
                for q in bad
            ],
        )  # fmt: skip


_SEEN = Table("_seen", ("event_id",), ("event_id",))


PIPELINE_ROWS = 2000
"""Below this many rows a table's rows travel as one JSON parameter inside a pipeline
(all of a batch's small writes in one network round trip); above it, COPY."""

_JSONB: dict[tuple[str, str], tuple[frozenset[str], bool]] = {}


def _jsonb_columns(conn: Conn, schema: str, table: str) -> tuple[frozenset[str], bool]:
    """The table's jsonb and json columns (their values are JSON text, embedded as JSON),
    and whether one of them is json (`_json_insert`: its text is then kept as written)."""
    key = (schema, table)
    if key not in _JSONB:
        rows = conn.execute(
            "SELECT attname, atttypid = 'json'::regtype FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
            "AND atttypid IN ('jsonb'::regtype, 'json'::regtype)",
            (f'"{schema}"."{table}"',),
        ).fetchall()
        _JSONB[key] = (frozenset(str(r[0]) for r in rows), any(r[1] for r in rows))
    return _JSONB[key]


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)  # UUID


def _rows_json(table: Table, rows: Sequence[Row], jsonb: frozenset[str]) -> str:
    cols = table.columns
    jidx = [i for i, c in enumerate(cols) if c in jsonb]
    objs = []
    for row in rows:
        values = list(row)
        for i in jidx:
            v = values[i]
            if isinstance(v, str):
                values[i] = orjson.Fragment(v)
        objs.append(dict(zip(cols, values, strict=True)))
    return orjson.dumps(objs, default=_json_default).decode()


@functools.lru_cache(maxsize=1024)
def _json_insert(schema: str, table: Table, text: bool = False) -> bytes:
    """Rendered once per table, as `_render`. `text`: the table has a json column, whose
    value `json_populate_recordset` takes as the parameter's own text (the same bytes a
    COPY writes); from a jsonb parameter it would be jsonb's rendering of it (keys
    reordered, spaces added)."""
    populate = (
        "json_populate_recordset(NULL::{t}, %s::json)"
        if text
        else ("jsonb_populate_recordset(NULL::{t}, %s::jsonb)")
    )
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in table.columns)
    pk = sql.SQL(", ").join(sql.Identifier(c) for c in table.pk)
    action: sql.Composable
    if table.mode is WriteMode.UPSERT:
        action = sql.SQL("DO UPDATE SET {}").format(
            sql.SQL(", ").join(
                sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c))
                for c in table.columns
                if c not in table.pk
            )
        )
    else:
        action = sql.SQL("DO NOTHING")
    return (
        sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM " + populate + " ON CONFLICT ({pk}) {a}")
        .format(t=_ident(schema, table.name), c=cols, pk=pk, a=action)
        .as_bytes(None)
    )


@dataclass
class _Member:
    projection: Projection
    schema: str
    share: Prepared
    result: BatchResult = field(default_factory=BatchResult)
    bad: list[Quarantined] = field(default_factory=list)
    first: dict[str, Located] = field(default_factory=dict)
    fresh: list[Located] = field(default_factory=list)
    ordered: list[Located] | None = None
    """The batch's unseen events, copies included, when it holds copies of an id."""
    state: State = field(default_factory=State)
    writes: list[tuple[Table, list[Row]]] = field(default_factory=list)


def fold_retrying(
    projection: Projection, state: State, ordered: Sequence[Located]
) -> tuple[list[Quarantined], list[Located]]:
    """Fold `ordered` (a batch's events not folded before, copies of one event id
    included, in log order): a copy is skipped once an earlier one folded, and tried
    again if every earlier one was refused, as it is when it comes in a later batch
    (the seen set holds only folded events). Returns (quarantined, the events folded)."""
    bad: list[Quarantined] = []
    folded: list[Located] = []
    ok: set[str] = set()
    run: list[Located] = []
    in_run: set[str] = set()

    def flush() -> None:
        got = projection.fold(state, run)
        failed = {(q.topic, q.partition, q.offset) for q in got}
        ok.update(i.data["event_id"] for i in run if (i.topic, i.partition, i.offset) not in failed)
        bad.extend(got)
        folded.extend(run)
        run.clear()
        in_run.clear()

    for item in ordered:
        eid = item.data["event_id"]
        if eid in in_run:  # its outcome decides this copy's
            flush()
        if eid in ok:
            continue
        run.append(item)
        in_run.add(eid)
    if run:
        flush()
    return bad, folded


def fold_fresh(
    projection: Projection,
    state: State,
    fresh: Sequence[Located],
    ordered: Sequence[Located] | None = None,
) -> tuple[list[Quarantined], int, list[tuple[Table, list[Row]]]]:
    """Fold events not folded before: (quarantined, applied, rows to write per table).

    The rows are the batch's final row per key of each UPSERT table, the history rows
    of each INSERT table (none from an event whose handler failed) and, for a
    projection with a `_seen` table, the folded event ids. Shared by live batches and
    the in-memory rebuild, so both write the same rows. `ordered`: given when the batch
    holds copies of an event id (`fresh` then has the first of each), see
    `fold_retrying`."""
    if ordered is not None:
        folded_bad, folded = fold_retrying(projection, state, ordered)
        return _written(projection, state, folded, folded_bad)
    folded_bad = projection.fold(state, fresh)
    if folded_bad:
        raw = {(i.topic, i.partition, i.offset): i.raw for i in fresh}
        for q in folded_bad:
            q.raw_value = raw.get((q.topic, q.partition, q.offset))
    failed = {(q.topic, q.partition, q.offset) for q in folded_bad}
    failed_ids = (
        {str(i.data["event_id"]) for i in fresh if (i.topic, i.partition, i.offset) in failed}
        if failed  # else a tuple per event for nothing (~0.2 us each in a rebuild)
        else set()
    )
    writes: list[tuple[Table, list[Row]]] = []
    if projection.seen_table == _SEEN.name:
        writes.append(
            (
                _SEEN,
                [
                    (i.data["event_id"],)
                    for i in fresh
                    if not failed or (i.topic, i.partition, i.offset) not in failed
                ],
            )
        )
    writes.extend(_table_rows(projection, state, failed_ids))
    return folded_bad, len(fresh) - len(failed), writes


def _table_rows(
    projection: Projection, state: State, failed_ids: set[str]
) -> Iterator[tuple[Table, list[Row]]]:
    """Each table's rows to write: the batch's final row per key of an UPSERT table, the
    history rows of an INSERT table, less those of the events in `failed_ids` (rows a
    failed handler wrote before it raised are not kept)."""
    for table in projection.tables:
        source = state.dirty if table.mode is WriteMode.UPSERT else state.inserts
        rows = list(source.get(table.name, {}).values())
        if failed_ids and "event_id" in table.pk:
            at = table.columns.index("event_id")
            rows = [r for r in rows if str(r[at]) not in failed_ids]
        yield table, rows


def _written(
    projection: Projection,
    state: State,
    folded: Sequence[Located],
    folded_bad: list[Quarantined],
) -> tuple[list[Quarantined], int, list[tuple[Table, list[Row]]]]:
    """`fold_fresh`'s result for `fold_retrying`'s events: an event refused, then folded
    from a later copy, is folded (`done`: the ids folded), its refusal quarantined."""
    raw = {(i.topic, i.partition, i.offset): i.raw for i in folded}
    for q in folded_bad:
        q.raw_value = raw.get((q.topic, q.partition, q.offset))
    failed = {(q.topic, q.partition, q.offset) for q in folded_bad}
    done = {i.data["event_id"] for i in folded if (i.topic, i.partition, i.offset) not in failed}
    failed_ids = {
        str(i.data["event_id"])
        for i in folded
        if (i.topic, i.partition, i.offset) in failed and i.data["event_id"] not in done
    }
    writes: list[tuple[Table, list[Row]]] = []
    if projection.seen_table == _SEEN.name:
        kept = dict.fromkeys(i.data["event_id"] for i in folded if i.data["event_id"] in done)
        writes.append((_SEEN, [(e,) for e in kept]))
    writes.extend(_table_rows(projection, state, failed_ids))
    return folded_bad, len(folded) - len(failed), writes


def apply_members(
    conn: Conn,
    members: Sequence[tuple[Projection, str, Prepared]],
    *,
    prelude: Callable[[], Callable[[], None]] | None = None,
    epilogue: Callable[[], Sequence[Statement]] | None = None,
    transaction: bool = False,
) -> list[BatchResult]:
    """Fold several projections' shares of one batch, in the caller's transaction.

    Two round trips for all members (psycopg pipeline mode), plus one COPY per large
    table: first which events each schema has already folded and the current rows of
    the keys the batch touches; then, after the pure folds, every small write.
    `prelude` issues the caller's own statements at the head of the first round trip
    (the projector's lock and fence query) and returns a check run on their results
    before anything is folded; `epilogue` gives the INSERTs that end the second (the
    next offsets), which travel as one statement with the batch's small writes
    (`one_statement`). `transaction`: the connection is in autocommit mode and idle,
    and the batch is one whole transaction: its BEGIN travels in the first round trip
    and its COMMIT in the second, instead of a round trip each (psycopg's implicit
    BEGIN is synced on its own; every round trip is a wake-up of both processes, which
    on a loaded machine waits its turn for a CPU). On an error the caller rolls back."""
    ms = [_Member(p, schema, share) for p, schema, share in members]
    for m in ms:
        m.result = BatchResult(consumed=m.share.consumed, ignored=m.share.ignored)
        m.bad = list(m.share.bad)
        # De-duplicate on event id: within the batch (first occurrence wins) and
        # against every event this schema has already folded.
        for item in m.share.items:
            m.first.setdefault(item.data["event_id"], item)
    cursors: list[Any] = []
    loads: list[tuple[_Member, Table, set[Key], Any]] = []
    check: Callable[[], None] | None = None
    with conn.pipeline():
        if transaction:
            conn.execute("BEGIN")
        if prelude is not None:
            check = prelude()
        for m in ms:
            cursors.append(
                conn.execute(
                    _seen_sql(m.schema, m.projection.seen_table),
                    (_json_list(list(m.first)),),
                )
                if m.first
                else None
            )
            # The keys of every event in the batch, duplicates too (loading a row a
            # duplicate names is harmless), so this shares the round trip above.
            m.state = State(loader=_loader(conn, m.schema), many=_many(conn, m.schema))
            for tname, keys in m.projection.state_keys(list(m.first.values())).items():
                m.state.rows[tname] = {}
                if keys:
                    t = m.projection.table(tname)
                    loads.append((m, t, keys, conn.execute(*_load_query(m.schema, t, keys))))
    if check is not None:
        check()
    for m, cur in zip(ms, cursors, strict=True):
        seen = {r[0] for r in cur.fetchall()} if cur is not None else set()
        m.fresh = (
            [i for e, i in m.first.items() if e not in seen] if seen else list(m.first.values())
        )
        if len(m.share.items) > len(m.first):  # copies of an event id in the batch
            m.ordered = [i for i in m.share.items if i.data["event_id"] not in seen]
        m.result.duplicates = len(m.share.items) - len(m.fresh)
    for m, t, keys, cur in loads:
        found = {t.key_of(row): tuple(row) for row in cur.fetchall()}
        m.state.rows[t.name] = {k: found.get(k) for k in keys}
    for m in ms:
        folded_bad, m.result.applied, m.writes = fold_fresh(
            m.projection, m.state, m.fresh, m.ordered
        )
        if m.ordered is not None:
            m.result.duplicates = len(m.share.items) - m.result.applied - len(folded_bad)
        m.bad.extend(folded_bad)
        for table, rows in m.writes:
            if table.name != _SEEN.name:
                m.result.rows[table.name] = len(rows)
        m.result.quarantined = len(m.bad)
    small: list[tuple[_Member, Table, list[Row], tuple[frozenset[str], bool]]] = []
    for m in ms:
        for table, rows in m.writes:
            if len(rows) >= PIPELINE_ROWS:
                copy_rows(conn, m.schema, table, rows, fresh=True)
            elif rows:
                small.append((m, table, rows, _jsonb_columns(conn, m.schema, table.name)))
    if small or any(m.bad for m in ms) or epilogue is not None or transaction:
        with conn.pipeline():
            for m in ms:
                write_quarantine(
                    conn, m.projection.name, m.bad, quarantine_table(m.projection, m.schema)
                )
            writes: list[Statement] = [
                (_json_insert(m.schema, table, text), [_rows_json(table, rows, jsonb)])
                for m, table, rows, (jsonb, text) in small
            ]
            for stmt in one_statement([*writes, *(epilogue() if epilogue is not None else ())]):
                conn.execute(*stmt)
            if transaction:
                conn.execute("COMMIT")  # behind the writes, in the same round trip
    return [m.result for m in ms]


def _loader(conn: Conn, schema: str) -> Loader:
    def load(table: Table, key: Key) -> Row | None:
        return load_rows(conn, schema, table, {key}).get(key)

    return load


def _many(conn: Conn, schema: str) -> ManyLoader:
    def load(table: Table, keys: set[Key]) -> dict[Key, Row]:
        return load_rows(conn, schema, table, keys)

    return load


def apply_prepared(conn: Conn, projection: Projection, schema: str, share: Prepared) -> BatchResult:
    """Fold one projection's share of a batch into `schema`, in the caller's transaction."""
    return apply_members(conn, [(projection, schema, share)])[0]


def apply_records(
    conn: Conn, projection: Projection, schema: str, records: Sequence[RawRecord]
) -> BatchResult:
    """Decode and fold a batch for one projection, in the caller's transaction."""
    return apply_prepared(conn, projection, schema, prepare(records, [projection])[0])


def load_offsets(
    conn: Conn, projection: str, table: tuple[str, str] = OFFSETS_TABLE
) -> dict[tuple[str, int], int]:
    q = sql.SQL("SELECT topic, partition, next_offset FROM {} WHERE projection = %s").format(
        _ident(*table)
    )
    return {(t, int(p)): int(o) for t, p, o in conn.execute(q, (projection,))}


def save_offsets(
    conn: Conn,
    projection: str,
    offsets: dict[tuple[str, int], int],
    table: tuple[str, str] = OFFSETS_TABLE,
) -> None:
    if not offsets:
        return
    q = sql.SQL(
        "INSERT INTO {} (projection, topic, partition, next_offset) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (projection, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset"
    ).format(_ident(*table))
    with conn.cursor() as cur:
        cur.executemany(q, [(projection, t, p, o) for (t, p), o in sorted(offsets.items())])


def lock_projection(conn: Conn, projection: str) -> None:
    """Serialise batches, rebuild swaps and fencing checks of one projection."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 7478202))", (projection,))


def lock_projections(conn: Conn, projections: Sequence[str]) -> None:
    """`lock_projection` for several, in one round trip, always in name order."""
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(n, 7478202)) "
        "FROM (SELECT n FROM unnest(%s::text[]) AS n ORDER BY n) AS s",
        (sorted(projections),),
    )


def load_offsets_many(
    conn: Conn, projections: Sequence[str], table: tuple[str, str] = OFFSETS_TABLE
) -> dict[str, dict[tuple[str, int], int]]:
    """`load_offsets` for several projections stored in one table, in one query."""
    return offsets_of(issue_offsets_query(conn, projections, table), projections)


_OFFSETS_SELECT = (
    "SELECT projection, topic, partition, next_offset FROM {} WHERE projection = ANY(%s)"
)
_OFFSETS_UPSERT = (
    "INSERT INTO {0} (projection, topic, partition, next_offset, topic_id) "
    "SELECT * FROM unnest(%s::text[], %s::text[], %s::int[], %s::bigint[], %s::text[]) "
    "ON CONFLICT (projection, topic, partition) DO UPDATE SET next_offset = "
    "EXCLUDED.next_offset, topic_id = COALESCE(EXCLUDED.topic_id, {0}.topic_id)"
)
"""An offset is stored with the id of the topic it was read from (`deploy.kafka.topic_ids`)
when the writer knows it (a live projector, from its (re)assignment's check); without
one a row keeps the id it has."""


def issue_offsets_query(
    conn: Conn, projections: Sequence[str], table: tuple[str, str] = OFFSETS_TABLE
) -> psycopg.Cursor[Any]:
    """Send `load_offsets_many`'s query (inside a pipeline: without waiting)."""
    return conn.execute(_render(_OFFSETS_SELECT, *table), (list(projections),))


def offsets_of(
    cur: psycopg.Cursor[Any], projections: Sequence[str]
) -> dict[str, dict[tuple[str, int], int]]:
    """The result of `issue_offsets_query`."""
    out: dict[str, dict[tuple[str, int], int]] = {p: {} for p in projections}
    for name, t, p, o in cur.fetchall():
        out[name][(t, int(p))] = int(o)
    return out


def save_offsets_many(
    conn: Conn,
    offsets: Mapping[str, Mapping[tuple[str, int], int]],
    table: tuple[str, str] = OFFSETS_TABLE,
) -> None:
    """`save_offsets` for several projections stored in one table, in one statement."""
    stmt = offsets_upsert(offsets, table)
    if stmt is not None:
        conn.execute(*stmt)


Statement = tuple[bytes, list[Any]]
"""A rendered statement and its parameters (`%s` placeholders)."""


def offsets_upsert(
    offsets: Mapping[str, Mapping[tuple[str, int], int]],
    table: tuple[str, str] = OFFSETS_TABLE,
    ids: Mapping[str, str] | None = None,
) -> Statement | None:
    """`save_offsets_many`'s statement, not sent (None: nothing to store); `ids`: the
    topic id (by full topic name) to store with each offset (`_OFFSETS_UPSERT`)."""
    rows = sorted(
        (n, t, p, o, (ids or {}).get(t))
        for n, offs in offsets.items()
        for (t, p), o in offs.items()
    )
    if not rows:
        return None
    return _render(_OFFSETS_UPSERT, *table), [list(c) for c in zip(*rows, strict=True)]


def record_topic_ids(
    conn: Conn,
    projections: Sequence[str],
    ids: Mapping[str, str],
    table: tuple[str, str] = OFFSETS_TABLE,
) -> None:
    """Give the offsets of `projections` stored without a topic id (before migration 0124)
    the id each topic has now (`ids`, by full name)."""
    q = _render(
        "UPDATE {} SET topic_id = %s WHERE projection = ANY(%s) AND topic = %s "
        "AND topic_id IS NULL",
        *table,
    )
    for topic, tid in sorted(ids.items()):
        conn.execute(q, (tid, list(projections), topic))


def issue_topic_ids_query(
    conn: Conn, projections: Sequence[str], table: tuple[str, str] = OFFSETS_TABLE
) -> psycopg.Cursor[Any]:
    """The topic id stored with each offset of `projections` (NULL: stored before ids were)."""
    return conn.execute(
        _render(
            "SELECT projection, topic, partition, topic_id FROM {} WHERE projection = ANY(%s)",
            *table,
        ),
        (list(projections),),
    )


def one_statement(stmts: Sequence[Statement]) -> list[Statement]:
    """`stmts` (INSERTs, each into a table of its own) as one statement: all but the last
    as data-modifying WITH queries of the last. PostgreSQL runs each exactly once, on the
    statement's one snapshot; none of them reads what another writes, so the rows are
    those of the statements one by one, for one statement's fixed cost (a live batch's
    writes and next offsets: ~6 statements a batch in a group of two, session 23).
    Statements that share a target table stay apart (an `ON CONFLICT DO UPDATE` may not
    touch a row twice in one statement)."""
    targets = [_insert_target(q) for q, _p in stmts]
    if len(stmts) < 2 or None in targets or len(set(targets)) < len(targets):
        return list(stmts)
    head = b", ".join(b"w%d AS (%s)" % (i, q) for i, (q, _p) in enumerate(stmts[:-1]))
    return [(b"WITH " + head + b" " + stmts[-1][0], [v for _q, p in stmts for v in p])]


def _insert_target(query: bytes) -> bytes | None:
    """The table an `INSERT INTO <table> ...` writes (None: not such a statement)."""
    if not query.startswith(b"INSERT INTO "):
        return None
    return query[len(b"INSERT INTO ") :].split(b" (", 1)[0]
