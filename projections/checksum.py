"""A deterministic checksum of a projection: sha256 over its rows in primary-key order,
then over its quarantine entries, if it has any (`_digest_quarantine`, since session 20).

Values are rendered canonically so the hash depends only on what the rows mean:
NUMERIC without trailing zeros (`1.50` and `1.5` are one amount), timestamps in UTC ISO
form, JSON with sorted keys, NULL as `\\N`, and tabs/newlines/backslashes escaped.
Keys sort with the "C" collation, so the order does not depend on the server locale.

Distinct contents render distinctly. Escaped text never holds a backslash followed by
anything but `\\`, `t`, `n` or `r`, so text (any text) can always be told from `\\N`.
A jsonb value is loaded by `load_jsonb`: an object or array renders as its JSON, a
top-level scalar as the text of the Python value (a string as itself, `17`, `t`/`f`),
which made a JSON `null` render as SQL NULL and the string `"t"` as `true` (and `"17"`
as `17`, `"{}"` as `{}`). Since session 17 a top-level JSON `null` renders `\\J`, and a
top-level string that renders as some other jsonb value would (`_posing`) is prefixed by
`\\"`; no other value's text moved, so no other checksum did.

A json column (`orders.order_events.detail`, since 0125) renders as the jsonb value
its text is: its value, not its text, is what the row means, and the digest is the one
the same values in a jsonb column gave. Its text is rendered in Python when that is
exact (`_json_plain`: an object or array with no number, as every payload is), else
the table is read again with it cast to jsonb (`_as_jsonb`).

`render` is the definition. `checksum` streams each table as `COPY ... TO STDOUT` with
numerics and timestamps already rendered by PostgreSQL (on the server's core) and
re-sorts jsonb with orjson; a value these might render otherwise than `render` is sent
marked and rendered by `render` itself. `tests/projections/test_checksum.py`
compares it with the row-by-row definition on generated rows.
"""

from __future__ import annotations

import hashlib
import json
import re
import select as _select
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from typing import Any

import orjson
import psycopg
from psycopg import pq, sql
from psycopg.types.json import set_json_loads

from projections.framework import Projection, Table

_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)
"""`normalize` only strips trailing zeros at this precision: under the ambient context
(28 digits by default) it rounded, so two values could render alike and the text
depended on the thread's context."""


class _JsonNull:
    """A top-level JSON `null` in a jsonb column, as `load_jsonb` loads it (psycopg's
    own loader gives None, which is SQL NULL's value)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "JSON_NULL"


JSON_NULL = _JsonNull()


class JsonString(str):
    """A top-level JSON string in a jsonb column, as `load_jsonb` loads it."""

    __slots__ = ()


def load_jsonb(data: bytes | bytearray | memoryview | str) -> Any:
    """The value of a jsonb column's text for `render`: `json.loads` (psycopg's default),
    except that a top-level `null` is `JSON_NULL` and a top-level string a `JsonString`.
    Register it (`psycopg.types.json.set_json_loads(load_jsonb, cursor)`) on a cursor
    whose rows `render_row` renders."""
    value = json.loads(bytes(data) if isinstance(data, memoryview) else data)
    if value is None:
        return JSON_NULL
    if isinstance(value, str):
        return JsonString(value)
    return value


def _json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# A jsonb number beyond a float's range loads as an infinity (and dumps as `Infinity`).
# Not money: jsonb numbers are only recognised here, to tell a string posing as one.
_CONSTANTS = {"Infinity": float("inf"), "-Infinity": float("-inf")}  # jsonb's infinities, not money


def _posing(text: str) -> bool:
    """Whether a top-level jsonb string's text is what another (non-string) jsonb value
    renders as: `t`/`f`, a number's `str` (`inf` for one beyond a float's range), an
    object's or array's JSON text."""
    if text in ("t", "f", "inf", "-inf"):
        return True
    if not text or text[0] not in "-0123456789[{":
        return False
    try:
        value = json.loads(text, parse_constant=_CONSTANTS.__getitem__)
    except (ValueError, KeyError, RecursionError):  # not JSON, NaN (no jsonb holds it), deep
        return False
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return False
    if isinstance(value, dict | list):
        return _json_text(value) == text
    return str(value) == text


def render(value: Any) -> str:
    """The canonical text of one column value (a jsonb value as `load_jsonb` loads it)."""
    if value is None:
        return "\\N"
    if value is JSON_NULL:
        return "\\J"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, Decimal):
        if value == 0:
            return "0"
        text = format(value.normalize(_EXACT), "f")
        return text
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, dict | list):
        text = _json_text(value)
    else:
        text = str(value)
    text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    if isinstance(value, JsonString) and _posing(value):
        return '\\"' + text
    return text


def render_row(row: Iterable[Any]) -> bytes:
    return ("\t".join(render(v) for v in row) + "\n").encode()


# Type OIDs whose COPY text is `render`'s text, up to COPY's own escapes of \b \f \v
# (bool t/f, integers, text, varchar, lowercase hyphenated uuid).
NUMERIC, TIMESTAMPTZ, JSONB, UUID, JSON = 1700, 1184, 3802, 2950, 114
_AS_COPIED = {16, 20, 21, 23, 25, 1043, UUID}

# A value PostgreSQL does not render is sent as chr(1) + its own text. COPY passes chr(1)
# unescaped, and no rendered numeric, timestamp or jsonb text starts with it.
_MARK = b"\x01"
# The marker and the backslash as byte values: `int in bytes` is one memchr, while a
# bytes needle is first tried as an int, which formats and clears a TypeError (~1,500
# instructions a test, twice per jsonb value here; callgrind, session 20).
_MARK_BYTE, _BACKSLASH = _MARK[0], ord("\\")
# trim_scale's text is `render`'s, at any length: both strip trailing zeros exactly
# (`render` normalizes in `_EXACT`). Until session 23 a text longer than 28 characters
# was sent marked and rendered in Python, a limit left from when `normalize` rounded to
# the ambient 28 digits (60a7616): `drawdown_events`' NAV and drawdown (~60 digits) took
# that path twice a row, ~half of its checksum's client CPU.
_NUMERIC_SQL = "trim_scale({c})::text"
# isoformat() drops a zero fraction; the range keeps to years a datetime holds, in any
# session time zone (outside it `render`'s loader decides, as it always did).
_TIMESTAMPTZ_SQL = (
    "CASE WHEN {c} >= '0001-01-03 00:00:00+00' AND {c} < '9999-12-29 00:00:00+00' "
    "THEN replace(to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), "
    "'.000000', '') || '+00:00' ELSE chr(1) || {c}::text END"
)
# orjson with sorted keys writes json.dumps' bytes for objects and arrays of strings,
# booleans and nulls; a number could be a float (whose text the two encoders need not
# share), and a scalar is rendered by str(), so both are sent marked.
_JSONB_SQL = (
    "CASE WHEN jsonb_typeof({c}) IN ('object', 'array') AND NOT jsonb_path_exists("
    "{c}, 'strict $.** ? (@.type() == \"number\")') THEN {c}::text ELSE chr(1) || {c}::text END"
)
_SQL = {NUMERIC: _NUMERIC_SQL, TIMESTAMPTZ: _TIMESTAMPTZ_SQL, JSONB: _JSONB_SQL}

# COPY escapes \b \f \v, which `render` leaves as they are; pairs are matched left to
# right, so an escaped backslash followed by "b" stays what it is.
_COPY_BFV = re.compile(rb"\\[bfv]")
_COPY_PAIR = re.compile(rb"\\(.)", re.DOTALL)
_UNESCAPE = {b"b": b"\x08", b"f": b"\x0c", b"v": b"\x0b"}


def _copy_to_render(m: re.Match[bytes]) -> bytes:
    return _UNESCAPE.get(m.group(1), m.group(0))


def _json_fast(field: bytes) -> bytes:
    """A jsonb object or array without numbers, as COPY sent it, rendered."""
    text = field.replace(b"\\\\", b"\\") if _BACKSLASH in field else field
    out = orjson.dumps(orjson.loads(text), option=orjson.OPT_SORT_KEYS)
    return out.replace(b"\\", b"\\\\") if _BACKSLASH in out else out


def _wait_readable(pgconn: pq.abc.PGconn) -> None:
    """Block until the server has sent more (releasing the interpreter lock), and read it."""
    _select.select([pgconn.socket], [], [])
    pgconn.consume_input()


def _copy_data(conn: psycopg.Connection[Any]) -> Iterator[memoryview | bytes]:
    """The data of the `COPY ... TO STDOUT` just started on `conn` (inside its
    `cursor.copy` block, which still handles an exception), as libpq hands it over: one
    row a call. `Copy.read` takes a row through psycopg's generator and wait machinery,
    ~1.2 us of CPU a row; this loop over libpq's buffer ~0.5 (session 23: `decisions`'
    ~620k rows). At the end it reads the COPY's own result, as `Copy.read` does, and
    raises the server's error if it failed."""
    pgconn = conn.pgconn
    get = pgconn.get_copy_data
    while True:
        nbytes, data = get(1)
        if nbytes > 0:
            yield data
        elif nbytes == 0:  # nothing buffered: wait for the server
            _wait_readable(pgconn)
        elif nbytes == -1:  # the end of the data
            break
        else:
            raise psycopg.OperationalError(
                pgconn.get_error_message(conn.info.encoding) or "COPY failed"
            )
    failed = None  # raised once every result is read: the connection is then idle again
    while True:
        while pgconn.is_busy():
            _wait_readable(pgconn)
        res = pgconn.get_result()
        if res is None:
            break
        if res.status != pq.ExecStatus.COMMAND_OK and failed is None:
            failed = res
    if failed is not None:
        raise psycopg.errors.error_from_result(failed, encoding=conn.info.encoding)


def _lines(copy: Iterable[memoryview | bytes]) -> Iterator[bytes]:
    """COPY text rows, each with its newline (a newline in a value is escaped)."""
    pending = b""
    for data in copy:
        chunk = pending + bytes(data)
        if chunk.endswith(b"\n") and chunk.count(b"\n") == 1:
            pending = b""
            yield chunk
            continue
        *lines, pending = chunk.split(b"\n")
        for line in lines:
            yield line + b"\n"
    if pending:
        raise RuntimeError("COPY ended inside a row")


def _digest_copy(
    conn: psycopg.Connection[Any],
    cur: psycopg.Cursor[Any],
    digest: Any,
    source: sql.Composable,
    table: Table,
    oids: list[int],
    order: sql.Composable,
) -> int | None:
    """Feed `table`'s rendered rows to `digest` through one COPY; the row count. A json
    column's text comes as stored and is rendered here if it is an object or array
    with no number and no escape (`_json_plain`, all of `order_events.detail`'s);
    at the first other one nothing more is fed and None is returned: the caller takes
    the table again with its json columns cast to jsonb (`_as_jsonb`)."""
    select = sql.SQL(", ").join(
        sql.SQL(_SQL[o]).format(c=sql.Identifier(c)) if o in _SQL else sql.Identifier(c)
        for c, o in zip(table.columns, oids, strict=True)
    )
    query = sql.SQL("COPY (SELECT {} FROM {} ORDER BY {}) TO STDOUT WITH (ENCODING 'UTF8')")
    loaders: dict[int, Callable[[bytes], Any]] = {}
    for i, o in enumerate(oids):
        if o == JSONB:
            loaders[i] = load_jsonb
        elif o in _SQL:
            cls = conn.adapters.get_loader(o, pq.Format.TEXT)
            assert cls is not None
            loaders[i] = cls(o, conn).load
    jsonb = [i for i, o in enumerate(oids) if o == JSONB]
    text = [i for i, o in enumerate(oids) if o == JSON]

    def slow(i: int, raw: bytes) -> bytes:
        if i in jsonb:
            raw = raw.replace(b"\\\\", b"\\")
        return render(loaders[i](raw)).encode()

    n = 0
    plain = True
    with cur.copy(query.format(select, source, order)):
        for line in _lines(_copy_data(conn)):
            n += 1
            if not plain:
                continue  # read to the end: the COPY is left complete, the rows unused
            if _COPY_BFV.search(line):
                line = _COPY_PAIR.sub(_copy_to_render, line)
            if jsonb or text or _MARK_BYTE in line:
                fields = line[:-1].split(b"\t")
                for i in text:
                    if fields[i] != b"\\N":
                        rendered = _json_plain(fields[i])
                        if rendered is None:
                            plain = False
                            break
                        fields[i] = rendered
                if not plain:
                    continue
                for i in loaders:
                    f = fields[i]
                    if f[:1] == _MARK:
                        fields[i] = slow(i, f[1:])
                    elif i in jsonb and f != b"\\N":
                        try:
                            fields[i] = _json_fast(f)
                        except (orjson.JSONDecodeError, orjson.JSONEncodeError):
                            fields[i] = slow(i, f)  # nested deeper than orjson goes
                line = b"\t".join(fields) + b"\n"
            digest.update(line)
    return n if plain else None


_PLAIN = frozenset((str, bool, type(None)))
"""What a JSON value may hold for `_json_fast`'s text to be its jsonb rendering's."""


def _no_number(value: dict[str, Any] | list[Any]) -> bool:
    """Whether a loaded JSON object or array holds no number at any depth."""
    values = value.values() if type(value) is dict else value
    kinds = set(map(type, values))
    if kinds <= _PLAIN:
        return True
    if int in kinds or float in kinds:  # a JSON number's Python type, not money
        return False
    return all(_no_number(v) for v in values if type(v) is dict or type(v) is list)


def _json_plain(field: bytes) -> bytes | None:
    """A json column's COPY text rendered as its jsonb value would be (as `_json_fast`
    renders jsonb's text), if it is an object or array with no number and no backslash
    (an escape in a string, or whitespace COPY escaped); None for any other: a number's
    jsonb text is PostgreSQL's numeric, which only the cast gives."""
    if field[:1] not in (b"{", b"[") or _BACKSLASH in field:
        return None
    try:
        value = orjson.loads(field)
        if not _no_number(value):
            return None
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, RecursionError):
        return None  # nested deeper than orjson or the interpreter goes


class SnapshotMoved(RuntimeError):
    """The schema was swapped (a rebuild) while a checksum read it, every attempt."""


@dataclass(frozen=True)
class Snapshot:
    """A checksum and the log position it describes: the projection's stored offsets
    (`next_offset` per topic and partition) read in the same snapshot as its rows."""

    digest: str
    counts: dict[str, int]
    offsets: dict[tuple[str, int], int]


def offsets_line(offsets: dict[tuple[str, int], int]) -> str:
    """`topic[partition]=next_offset ...` in topic and partition order ("none": none)."""
    return " ".join(f"{t}[{p}]={o}" for (t, p), o in sorted(offsets.items())) or "none"


def checksum_snapshot(
    conn: psycopg.Connection[Any],
    projection: Projection,
    schema: str | None = None,
    offsets_table: tuple[str, str] = ("public", "projection_offsets"),
    *,
    attempts: int = 3,
) -> Snapshot:
    """`checksum` of every table of the projection and its stored offsets, all read in
    one REPEATABLE READ, READ ONLY transaction: one state of the projection, the one a
    projector's batch (rows and offsets in one transaction) left, whatever it writes
    meanwhile. `conn` must not be in a transaction.

    A table name is resolved when it is read, not at the snapshot: a rebuild's swap
    (which renames schemas) committed meanwhile would send later reads to the new
    schema. So the schema's oid at the snapshot is compared with the one its name
    resolves to after the last read, and the checksum taken again if they differ."""
    schema = schema or projection.schema
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise ValueError("checksum_snapshot needs a connection outside a transaction")
    for _ in range(attempts):
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            at = conn.execute(  # the first statement: takes the snapshot
                "SELECT oid FROM pg_namespace WHERE nspname = %s", (schema,)
            ).fetchone()
            rows = conn.execute(
                sql.SQL(
                    "SELECT topic, partition, next_offset FROM {}.{} WHERE projection = %s"
                ).format(*(sql.Identifier(x) for x in offsets_table)),
                (projection.name,),
            ).fetchall()
            digest, counts = checksum(conn, projection, schema)
            now = conn.execute("SELECT to_regnamespace(%s)::oid", (schema,)).fetchone()
        if at is not None and now is not None and at[0] == now[0]:
            offsets = {(str(t), int(p)): int(o) for t, p, o in rows}
            return Snapshot(digest, counts, offsets)
    raise SnapshotMoved(f"{schema} was swapped while its checksum was read, {attempts} times")


QUARANTINE_SECTION = b"\\Q projection_quarantine\n"
"""What precedes a projection's quarantine entries in its checksum, after its tables. No
rendered row starts with a backslash followed by `Q` (escaped text's backslashes are
doubled; `\\N`, `\\J` and `\\"` are the only others), so it cannot pose as rows."""
QUARANTINE_COUNT = "projection_quarantine"
"""The quarantine's key in a checksum's counts (present only when it holds entries)."""
QUARANTINE_COLUMNS = (
    "topic", "partition", "offset", "event_type", "schema_version", "error", "raw_sha256",
)  # fmt: skip
"""The quarantine entry's fields a checksum covers: all of them (they are functions of
the record and the fold; there is no clock column), the raw value as its SHA-256."""


class _Section:
    """A digest that writes `header` before the first row it is given, if any."""

    def __init__(self, digest: Any, header: bytes) -> None:
        self.digest, self.header = digest, header

    def update(self, data: bytes) -> None:
        if self.header:
            self.digest.update(self.header)
            self.header = b""
        self.digest.update(data)


def _digest_quarantine(
    conn: psycopg.Connection[Any], digest: Any, projection: Projection, table: tuple[str, str]
) -> int:
    """Feed the projection's quarantine entries in `table` to `digest`, in (topic,
    partition, offset) order after `QUARANTINE_SECTION`, each rendered as a row of
    `QUARANTINE_COLUMNS`: nothing at all if it has none, so a projection that never
    quarantined keeps the digest it always had. The entry count."""
    source = sql.SQL(
        '(SELECT topic, partition, "offset", event_type, schema_version, error, '
        "encode(sha256(raw_value), 'hex') AS raw_sha256 FROM {}.{} WHERE projection = {}) q"
    ).format(*(sql.Identifier(x) for x in table), sql.Literal(projection.name))
    order = sql.SQL('topic COLLATE "C", partition, "offset"')
    cols = Table("quarantine", QUARANTINE_COLUMNS, ("topic", "partition", "offset"))
    oids = [25, 23, 20, 25, 23, 25, 25]  # text, integer, bigint: all _AS_COPIED
    with conn.transaction(), conn.cursor() as cur:
        section = _Section(digest, QUARANTINE_SECTION)
        n = _digest_copy(conn, cur, section, source, cols, oids, order)
        assert n is not None  # no json column
        return n


def checksum(
    conn: psycopg.Connection[Any],
    projection: Projection,
    schema: str | None = None,
    quarantine: tuple[str, str] | None = None,
) -> tuple[str, dict[str, int]]:
    """(hex sha256, row count per table) of the projection's tables in `schema`, and of
    its quarantine entries (`_digest_quarantine`) in `quarantine`: by default the table
    the projection's folds into `schema` write (`store.quarantine_table`: a rebuild's
    build schema its own, any other the shared one). The live schema and its rebuild
    agree only if they refused the same records, for the same reasons.

    Each table is read in a transaction of its own unless the caller's transaction is
    open: `checksum_snapshot` reads them all in one snapshot, with the offsets."""
    from projections.store import quarantine_table

    schema = schema or projection.schema
    quarantine = quarantine or quarantine_table(projection, schema)
    digest = hashlib.sha256()
    counts: dict[str, int] = {}
    for table in sorted(projection.tables, key=lambda t: t.name):
        digest.update(f"# {table.name}\n".encode())
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in table.columns)
        source: sql.Composable = sql.SQL("{}.{}").format(
            sql.Identifier(schema), sql.Identifier(table.name)
        )
        with conn.transaction(), conn.cursor() as cur:
            _read_whole(conn)
            cur.execute(sql.SQL("SELECT {} FROM {} LIMIT 0").format(cols, source))
            oids = [d.type_code for d in cur.description or ()]
            order = _order(table, oids)
            copied = all(o in _AS_COPIED or o in _SQL or o == JSON for o in oids)
            if copied and JSON in oids:
                # Its json values as stored, if all are plain (`_json_plain`); else again
                # from this table's start, cast to jsonb.
                before = digest.copy()
                n = _digest_copy(conn, cur, digest, source, table, oids, order)
                if n is not None:
                    counts[table.name] = n
                    continue
                digest = before
            if JSON in oids:
                source, oids = _as_jsonb(table, source, oids)
            if copied:
                n = _digest_copy(conn, cur, digest, source, table, oids, order)
                assert n is not None  # no json column left
                counts[table.name] = n
                continue
        counts[table.name] = _digest_rows(conn, digest, cols, source, order, table.name)
    bad = _digest_quarantine(conn, digest, projection, quarantine)
    if bad:
        counts[QUARANTINE_COUNT] = bad
    return digest.hexdigest(), counts


WHOLE_TABLE_SETTINGS = (
    sql.SQL("SET LOCAL enable_indexscan = off"),
    sql.SQL("SET LOCAL work_mem = '64MB'"),
    sql.SQL("SET LOCAL max_parallel_workers_per_gather = 0"),
)
"""How a checksum's transaction reads a table: every row, in key order, by a sequential
scan and one sort, each heap page read once. At the default `work_mem` (4 MB) the sort of
`order_events` (524,689 rows of ~380 bytes on the bench's 1M log) was costed as spilling,
so the planner walked the primary key instead: heap reads in random order, each page ~20
times, on a table larger than `shared_buffers`. `tradetape checksum orders` there: 1.8
against 2.5 s of PostgreSQL CPU (docs/benchmarks.md, session 26). 64 MB bounds the sort's
memory (beyond it the sort merges from disk). No parallel workers: one client digests the
rows in order, and two workers scanning and sorting beside the backend, then merged, cost
~0.35 s more CPU on that table."""


def _read_whole(conn: psycopg.Connection[Any]) -> None:
    """Make the current transaction read whole tables by sequential scan and sort
    (`WHOLE_TABLE_SETTINGS`; `SET LOCAL`: undone when the transaction ends). Never
    changes a digest: the order is the query's `ORDER BY`, over a unique key."""
    for stmt in WHOLE_TABLE_SETTINGS:
        conn.execute(stmt)


def _as_jsonb(
    table: Table, source: sql.Composable, oids: list[int]
) -> tuple[sql.Composable, list[int]]:
    """`source` with its json columns cast to jsonb, and their oids so: a json value
    renders as the jsonb value it is. Cast once a row, in a subquery kept apart
    (`OFFSET 0`): pulled up, the cast would be parsed again for each of the three uses
    `_JSONB_SQL` makes of the column."""
    cols = sql.SQL(", ").join(
        sql.SQL("{}::jsonb AS {}").format(sql.Identifier(c), sql.Identifier(c))
        if o == JSON
        else sql.Identifier(c)
        for c, o in zip(table.columns, oids, strict=True)
    )
    wrapped = sql.SQL("(SELECT {} FROM {} OFFSET 0) AS t").format(cols, source)
    return wrapped, [JSONB if o == JSON else o for o in oids]


def _order(table: Table, oids: list[int]) -> sql.Composable:
    """The rows' order: each key column's text in the "C" collation. A uuid column is
    ordered by the uuid itself, which is the same order (uuid compares its 16 bytes as
    unsigned, its text is their lowercase hex in fixed places, and "C" compares bytes)
    without casting every value to text and sorting the texts (PostgreSQL still sorts
    the rows, on the 16 bytes: `order_events`' text sort spilled to disk at the default
    `work_mem` and took parallel workers; together ~5 % less of the checksum's
    PostgreSQL CPU, docs/benchmarks.md, session 22)."""
    at = {c: o for c, o in zip(table.columns, oids, strict=True)}
    return sql.SQL(", ").join(
        sql.Identifier(c)
        if at[c] == UUID
        else sql.SQL('{}::text COLLATE "C"').format(sql.Identifier(c))
        for c in table.pk
    )


def _digest_rows(
    conn: psycopg.Connection[Any],
    digest: Any,
    cols: sql.Composable,
    source: sql.Composable,
    order: sql.Composable,
    name: str,
) -> int:
    """The definition, row by row: for a table with a column type COPY is not trusted for."""
    q = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(cols, source, order)
    n = 0
    with conn.transaction(), conn.cursor(name=f"ck_{name}") as cur:
        _read_whole(conn)
        set_json_loads(load_jsonb, cur)
        cur.itersize = 5000
        cur.execute(q)
        for row in cur:
            digest.update(render_row(row))
            n += 1
    return n
