"""One batch into PostgreSQL: decode, de-duplicate, fold, COPY, upsert, offsets.

`apply_records` runs inside the caller's transaction, so the rows, the quarantine and
the offsets it writes commit or vanish together. Round trips per batch are constant:
one de-duplication query, one state query per stateful table, one COPY and one
INSERT ... SELECT per table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from pydantic import ValidationError

from projections.framework import (
    Key,
    Located,
    Projection,
    Quarantined,
    Row,
    State,
    Table,
    WriteMode,
)
from schemas import Envelope, MalformedEventError, UnknownEventTypeError, decode, payload_class

OFFSETS_TABLE = ("public", "projection_offsets")
QUARANTINE_TABLE = ("public", "projection_quarantine")

Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class RawRecord:
    """A Kafka record as consumed, before decoding."""

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
    rows: dict[str, int] = field(default_factory=dict)


_ENVELOPES: dict[tuple[str, int], Any] = {}


def _fast_decode(r: RawRecord) -> Envelope[Any] | None:
    """`schemas.decode` for the common case, parsing JSON once in pydantic-core.

    Only a record whose headers name a known type and version, and whose body agrees,
    is accepted here; anything else returns None and takes the full `schemas.decode`
    path, which produces the canonical error. The result is the same model either way.
    """
    if r.value is None or not r.headers:
        return None
    et = ver = None
    for k, v in r.headers:
        if k == "event_type":
            et = v.decode(errors="replace") if isinstance(v, bytes) else v
        elif k == "schema_version":
            ver = v.decode(errors="replace") if isinstance(v, bytes) else v
    if et is None or ver is None or not ver.isdigit():
        return None
    key = (et, int(ver))
    cls = _ENVELOPES.get(key)
    if cls is None:
        try:
            cls = _ENVELOPES[key] = Envelope[payload_class(et, int(ver))]  # type: ignore[misc]
        except MalformedEventError:
            return None
    try:
        ev: Envelope[Any] = cls.model_validate_json(r.value)
    except ValidationError:
        return None
    if ev.event_type != key[0] or ev.schema_version != key[1]:
        return None
    return ev


_DECODED: dict[tuple[str, int, int], tuple[bytes | None, Envelope[Any]]] = {}
DECODE_CACHE_SIZE = 20_000
"""Projectors in one process share decoded events: a record's bytes at a log position
never change and envelopes are immutable, so the four projections that read
orders.lifecycle validate each record once, not four times."""


def _cached_decode(r: RawRecord) -> Envelope[Any] | None:
    key = (r.topic, r.partition, r.offset)
    hit = _DECODED.get(key)
    if hit is not None and hit[0] == r.value:  # a recreated topic reuses offsets
        return hit[1]
    ev = _fast_decode(r)
    if ev is not None:
        if len(_DECODED) >= DECODE_CACHE_SIZE:
            _DECODED.clear()
        _DECODED[key] = (r.value, ev)
    return ev


def decode_records(
    records: Sequence[RawRecord],
) -> tuple[list[Located], list[Quarantined]]:
    good: list[Located] = []
    bad: list[Quarantined] = []
    for r in records:
        fast = _cached_decode(r)
        if fast is not None:
            good.append(Located(fast, r.topic, r.partition, r.offset))
            continue
        try:
            ev = decode(r.value, r.headers, topic=r.topic, partition=r.partition, offset=r.offset)
        except UnknownEventTypeError as exc:
            bad.append(
                Quarantined(
                    r.topic, r.partition, r.offset, exc.reason, exc.event_type,
                    exc.schema_version, r.value,
                )
            )  # fmt: skip
        except MalformedEventError as exc:
            bad.append(Quarantined(r.topic, r.partition, r.offset, exc.reason, None, None, r.value))
        else:
            good.append(Located(ev, r.topic, r.partition, r.offset))
    return good, bad


def _ident(schema: str, table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def _staging(conn: Conn, schema: str, table: str) -> sql.Identifier:
    """A session temp table shaped like `schema.table`, emptied at every commit."""
    name = f"_stg_{schema}_{table}"[:63]
    conn.execute(
        sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}) ON COMMIT DELETE ROWS").format(
            sql.Identifier(name), _ident(schema, table)
        )
    )
    return sql.Identifier(name)


def copy_rows(conn: Conn, schema: str, table: Table, rows: Sequence[Row]) -> int:
    """COPY into staging, then one set-based INSERT ... ON CONFLICT into the table."""
    if not rows:
        return 0
    stg = _staging(conn, schema, table.name)
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in table.columns)
    with conn.cursor() as cur:
        with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(stg, cols)) as cp:
            for row in rows:
                cp.write_row(row)
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
        cur.execute(
            sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) {}").format(
                _ident(schema, table.name), cols, cols, stg, pk, action
            )
        )
        return cur.rowcount


def load_rows(conn: Conn, schema: str, table: Table, keys: set[Key]) -> dict[Key, Row]:
    """Current rows for `keys`, in one query (text keys, unnested arrays)."""
    if not keys:
        return {}
    ordered = sorted(keys)
    arrays = [[k[i] for k in ordered] for i in range(len(table.pk))]
    cols = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in table.columns)
    names = [sql.Identifier(f"k{i}") for i in range(len(table.pk))]
    on = sql.SQL(" AND ").join(
        sql.SQL("t.{}::text = k.{}").format(sql.Identifier(c), n)
        for c, n in zip(table.pk, names, strict=True)
    )
    q = sql.SQL("SELECT {} FROM {} t JOIN unnest({}) AS k({}) ON {}").format(
        cols,
        _ident(schema, table.name),
        sql.SQL(", ").join(sql.SQL("%s::text[]") for _ in names),
        sql.SQL(", ").join(names),
        on,
    )
    out: dict[Key, Row] = {}
    for row in conn.execute(q, arrays):
        out[table.key_of(row)] = tuple(row)
    return out


def write_quarantine(conn: Conn, projection: str, bad: Sequence[Quarantined]) -> None:
    if not bad:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO projection_quarantine (projection, topic, partition, \"offset\", "
            "event_type, schema_version, error, raw_value) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            [
                (projection, q.topic, q.partition, q.offset, q.event_type, q.schema_version,
                 q.error[:4000], q.raw_value)
                for q in bad
            ],
        )  # fmt: skip


def apply_records(
    conn: Conn, projection: Projection, schema: str, records: Sequence[RawRecord]
) -> BatchResult:
    """Fold one batch into `schema` inside the caller's transaction."""
    result = BatchResult(consumed=len(records))
    good, bad = decode_records(records)
    raw = {(r.topic, r.partition, r.offset): r.value for r in records}
    # De-duplicate on event id: within the batch (first occurrence wins) and against
    # every event this schema has already folded.
    first: dict[Any, Located] = {}
    for item in good:
        first.setdefault(item.event.event_id, item)
    seen: set[Any] = set()
    if first:
        seen = {
            r[0]
            for r in conn.execute(
                sql.SQL("SELECT event_id FROM {} WHERE event_id = ANY(%s)").format(
                    _ident(schema, "_seen")
                ),
                (list(first),),
            )
        }
    fresh = [item for eid, item in first.items() if eid not in seen]
    result.duplicates = len(good) - len(fresh)

    def loader(table: Table, key: Key) -> Row | None:
        return load_rows(conn, schema, table, {key}).get(key)

    state = State(loader=loader)
    for tname, keys in projection.state_keys(fresh).items():
        table = projection.table(tname)
        loaded = load_rows(conn, schema, table, keys)
        state.rows[tname] = {k: loaded.get(k) for k in keys}
    folded_bad = projection.fold(state, fresh)
    for q in folded_bad:
        q.raw_value = raw.get((q.topic, q.partition, q.offset))
    bad.extend(folded_bad)
    failed = {(q.topic, q.partition, q.offset) for q in folded_bad}
    result.applied = len(fresh) - len(failed)
    seen_table = Table("_seen", ("event_id",), ("event_id",))
    copy_rows(
        conn,
        schema,
        seen_table,
        [(i.event.event_id,) for i in fresh if (i.topic, i.partition, i.offset) not in failed],
    )
    for table in projection.tables:
        source = state.dirty if table.mode is WriteMode.UPSERT else state.inserts
        rows = list(source.get(table.name, {}).values())
        result.rows[table.name] = copy_rows(conn, schema, table, rows)
    write_quarantine(conn, projection.name, bad)
    result.quarantined = len(bad)
    return result


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
