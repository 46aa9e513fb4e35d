"""The streamed checksum (COPY, values rendered by PostgreSQL and orjson) is the definition's:
sha256 over `render_row` of every row fetched as Python values, in primary-key order."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from hashlib import sha256
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.types.json import set_json_loads

from deploy.settings import Settings
from projections import checksum as checksum_module
from projections.checksum import checksum, load_jsonb, render, render_row
from projections.framework import Projection, Table

COLUMNS = {
    "id": "integer",
    "t": "text",
    "u": "uuid",
    "b": "boolean",
    "big": "bigint",
    "n": "numeric",
    "n2": "numeric",
    "ts": "timestamptz",
    "j": "jsonb",
}


@dataclass(frozen=True)
class J:
    """A jsonb value (`None` in it is JSON null); a row's `j` of None is SQL NULL."""

    value: Any


class Sample(Projection):
    """Every column type the projections use, in one table."""

    name = "cksample"
    tables = (Table("rows", tuple(COLUMNS), ("id",)),)


def reference(
    conn: psycopg.Connection[Any],
    schema: str,
    quarantine: tuple[str, str] = ("public", "projection_quarantine"),
) -> tuple[str, dict[str, int]]:
    """The checksum as it was computed before session 10: row by row, `render_row` over
    the values psycopg loads (jsonb with the definition's `load_jsonb`); since session
    20 followed by the projection's quarantine entries, if it has any."""
    digest = hashlib.sha256()
    counts = {}
    for table in Sample.tables:
        digest.update(f"# {table.name}\n".encode())
        q = sql.SQL('SELECT {} FROM {}.{} ORDER BY {}::text COLLATE "C"').format(
            sql.SQL(", ").join(sql.Identifier(c) for c in table.columns),
            sql.Identifier(schema),
            sql.Identifier(table.name),
            sql.Identifier(table.pk[0]),
        )
        with conn.cursor() as cur:
            set_json_loads(load_jsonb, cur)  # a top-level JSON null is not SQL NULL
            rows = cur.execute(q).fetchall()
        for row in rows:
            digest.update(render_row(row))
        counts[table.name] = len(rows)
    entries = conn.execute(
        sql.SQL(
            'SELECT topic, partition, "offset", event_type, schema_version, error, raw_value '
            "FROM {}.{} WHERE projection = %s"
        ).format(*(sql.Identifier(x) for x in quarantine)),
        (Sample.name,),
    ).fetchall()
    if entries:
        digest.update(b"\\Q projection_quarantine\n")
        for *fields, raw in sorted(entries, key=lambda e: (e[0].encode(), e[1], e[2])):
            digest.update(render_row([*fields, None if raw is None else sha256(raw).hexdigest()]))
        counts["projection_quarantine"] = len(entries)
    return digest.hexdigest(), counts


texts = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]))
special_text = st.sampled_from(
    [
        *["\\N", "\x01", "\x01x", "a\bb\fc\vd", "\\b", "\\\\b\\", "\t\n\r", "\x7f\u2028", "🙂"],
        # jsonb strings that read as another jsonb value's text, and ones that do not
        *[
            "t",
            "f",
            "17",
            "-2",
            "1.5",
            "1e+16",
            "inf",
            "-inf",
            "{}",
            "[]",
            '{"a":null}',
            "[1,null]",
        ],
        *["null", "true", " 17", "[NaN]", "[Infinity]", "\\J", '\\"t', "01", "{ }"],
    ]
)
numerics = st.one_of(
    st.builds(
        lambda i, scale: Decimal(i).scaleb(-scale),
        st.integers(-(10**45), 10**45),
        st.integers(-5, 40),
    ),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "0.000", "-0", "1E+30"]).map(Decimal),
)
timestamps = st.datetimes(
    min_value=datetime(1, 1, 1, 12), max_value=datetime(9999, 12, 31, 12), timezones=st.just(UTC)
)
json_leaves = st.one_of(
    st.none(),  # JSON null: inside a value, or the value itself
    st.sampled_from([1e16, 1.5e-7, -0.0]),
    st.booleans(),
    texts,
    special_text,
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
)
json_values = st.recursive(
    json_leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(texts | special_text, inner, max_size=4)
    ),
    max_leaves=12,
)
rows = st.lists(
    st.fixed_dictionaries(
        {
            "t": st.none() | texts | special_text,
            "u": st.none() | st.uuids(),
            "b": st.none() | st.booleans(),
            "big": st.none() | st.integers(-(2**63), 2**63 - 1),
            "n": st.none() | numerics,
            "n2": st.none() | numerics,
            "ts": st.none() | timestamps,
            "j": st.none() | json_values.map(J),
        }
    ),
    max_size=12,
)


def _load(conn: psycopg.Connection[Any], schema: str, batch: list[dict[str, Any]]) -> None:
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    ddl = ", ".join(f"{c} {t}" for c, t in COLUMNS.items())
    conn.execute(f"CREATE TABLE {schema}.rows ({ddl}, PRIMARY KEY (id))")
    for i, r in enumerate(batch):
        values = {
            **r,
            "id": i,
            "n": None if r["n"] is None else str(r["n"]),
            "n2": None if r["n2"] is None else str(r["n2"]),
            "j": None if r["j"] is None else json.dumps(r["j"].value),
        }
        conn.execute(
            f"INSERT INTO {schema}.rows VALUES (%(id)s, %(t)s, %(u)s, %(b)s, %(big)s, "
            "%(n)s::numeric, %(n2)s::numeric, %(ts)s, %(j)s::jsonb)",
            values,
        )


@pytest.mark.integration
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=rows, zone=st.sampled_from(["UTC", "America/New_York", "Asia/Kolkata"]))
def test_streamed_checksum_equals_the_row_by_row_definition(
    env: Settings, batch: list[dict[str, Any]], zone: str
) -> None:
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("SET TIME ZONE {}").format(sql.Literal(zone)))
        _load(conn, "ck", batch)
        assert checksum(conn, Sample(), "ck") == reference(conn, "ck")


EDGES: list[dict[str, Any]] = [
    {"t": t, "u": uuid.UUID(int=i), "b": i % 2 == 0, "big": -i, "n": n, "n2": None, "ts": ts, "j": J(j)}
    for i, (t, n, ts, j) in enumerate(
        [
            ("a\bb", Decimal("1234567890.12345678901234567891"), datetime(5, 3, 4, 1, 2, 3, tzinfo=UTC), {"b": 1, "a": [2.5]}),
            ("\\b", Decimal("-0.000000000000000000000000001"), datetime(2026, 1, 1, tzinfo=UTC), "scalar"),
            ("\x01", Decimal("1E+40"), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), {"k": "\\\"\t"}),
            ("x\x0by", Decimal("12345678901234567890123456.5"), datetime(1, 1, 1, tzinfo=UTC), [None, True, "é", {"z": [], "ä": {}}]),
            ("plain", Decimal("1.50"), datetime(2026, 12, 5, 20, 0, 0, 120000, tzinfo=UTC), 17),
        ]
    )
]  # fmt: skip


@pytest.mark.integration
def test_streamed_checksum_on_the_edges(env: Settings) -> None:
    """Each way a value leaves the fast path: years at a datetime's ends, numbers and
    scalars in jsonb, COPY's \\b \\f \\v escapes, the marker byte in a text column; and
    numerics of more digits than Decimal's 28, which left it until session 23."""
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        _load(conn, "edges", EDGES)
        assert checksum(conn, Sample(), "edges") == reference(conn, "edges")


def _as_json_column(
    conn: psycopg.Connection[Any], schema: str, batch: list[dict[str, Any]]
) -> None:
    """`_load`, then `j` made json and each value written as Python's JSON text of it
    (key order, spaces and number forms as json.dumps writes them, not as jsonb does)."""
    _load(conn, schema, batch)
    conn.execute(f"ALTER TABLE {schema}.rows ALTER COLUMN j TYPE json USING j::json")
    for i, r in enumerate(batch):
        if r["j"] is not None:
            conn.execute(
                f"UPDATE {schema}.rows SET j = %s::json WHERE id = %s",
                (json.dumps(r["j"].value, ensure_ascii=False), i),
            )


def _no_row_by_row(*_args: Any) -> Any:
    raise AssertionError("the checksum read a table row by row, or cast it")


@pytest.mark.integration
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=rows)
def test_a_json_column_renders_as_the_jsonb_value_its_text_is(
    env: Settings, batch: list[dict[str, Any]]
) -> None:
    """`order_events.detail` is json since 0125: its digest is the one the same values in
    a jsonb column give, whatever the text's key order, spaces or number forms, and it
    is streamed (COPY), not read row by row (it was: json had no rendering in SQL)."""
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        _load(conn, "ckjb", batch)
        _as_json_column(conn, "ckj", batch)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(checksum_module, "_digest_rows", _no_row_by_row)
            assert checksum(conn, Sample(), "ckj") == checksum(conn, Sample(), "ckjb")
        _as_json_column(conn, "edgesj", EDGES)
        _load(conn, "edgesjb", EDGES)
        assert checksum(conn, Sample(), "edgesj") == reference(conn, "edgesjb")


PAYLOADS: list[dict[str, Any]] = [
    {"t": None, "u": None, "b": None, "big": None, "n": None, "n2": None, "ts": None, "j": J(j)}
    for j in (
        {"order_id": "o-1", "quantity": "4.059", "at": "2026-01-05T09:00:00.002000Z", "x": None},
        {"z": [True, False, None, "1"], "a": {"é": "d: 5", "": []}, "reason": "a 'quoted' one"},
        {"reason": "limit 5, 10", "n": -1},  # a number: this table is cast after all
    )
]


@pytest.mark.integration
def test_a_json_payload_is_rendered_without_a_cast(env: Settings) -> None:
    """Objects of strings, booleans and nulls, as every payload is, are rendered from the
    json text itself (`_json_plain`): PostgreSQL casts none to jsonb; a table holding
    one it cannot render so (a number, or what may be one) is read again, cast."""
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        _load(conn, "payj", PAYLOADS[:2])
        _as_json_column(conn, "pay", PAYLOADS[:2])
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(checksum_module, "_as_jsonb", _no_row_by_row)
            assert checksum(conn, Sample(), "pay") == checksum(conn, Sample(), "payj")
        _load(conn, "payj", PAYLOADS)
        _as_json_column(conn, "pay", PAYLOADS)
        assert checksum(conn, Sample(), "pay") == checksum(conn, Sample(), "payj")


LONG_NUMERICS = [
    Decimal("0.986300000000479700640644475121106926060252478981209861142590"),
    Decimal("-0.0000000000000000000000000000000000000000000000000000000000001"),
    Decimal("1E+60"),
    Decimal("123456789012345678901234567890123456789012345678901234567890.500"),
    Decimal(7).scaleb(-300),
    Decimal("9" * 400 + "." + "1" * 120 + "000"),
]


@pytest.mark.integration
def test_a_long_numeric_is_rendered_by_postgresql(
    env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`trim_scale`'s text is `render`'s at any length, so a numeric of more than 28
    characters (a drawdown's NAV and drawdown carry ~60 digits) is not sent marked to be
    rendered in Python (it was until session 23: half of `drawdown`'s checksum CPU)."""
    batch = [
        {"t": None, "u": None, "b": None, "big": None, "n": n, "n2": -n, "ts": None, "j": None}
        for n in LONG_NUMERICS
    ]
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        _load(conn, "longnum", batch)
        expected = reference(conn, "longnum")
        rendered: list[Any] = []

        def counted(value: Any) -> str:
            rendered.append(value)
            return render(value)

        monkeypatch.setattr("projections.checksum.render", counted)
        assert checksum(conn, Sample(), "longnum") == expected
        assert rendered == []


# Contents without a top-level jsonb null or a jsonb string that reads as another jsonb
# value: their checksum, computed before session 17's rule, must not move.
FIXED_J: list[Any] = [
    None, {"a": None, "b": [None, 1.5, "x"]}, [None], "abc", "true", "null", " 17", "\\N",
    "tab\there", "", 17, 1.5, True, False, {"k": "\t\n\\", "\\N": None}, [], {},
    [[[None]]], "x\x01", 10**30, -0.5,
]  # fmt: skip
FIXED: list[dict[str, Any]] = [
    {
        "t": None if i % 5 == 0 else f"t{i}\t",
        "u": uuid.UUID(int=i),
        "b": None if i % 3 == 0 else i % 2 == 0,
        "big": i * 10**15,
        "n": Decimal(i).scaleb(-3),
        "n2": None,
        "ts": datetime(2026, 1, 1 + i, 12, i, tzinfo=UTC),
        "j": None if j is None else J(j),
    }
    for i, j in enumerate(FIXED_J)
]
FIXED_DIGEST = "a3e4c280ab207327344420bc734e1f8713579d9b23878060398eaa60b73806d8"


@pytest.mark.integration
def test_checksum_unchanged_without_the_ambiguity(env: Settings) -> None:
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        _load(conn, "fixed", FIXED)
        assert checksum(conn, Sample(), "fixed") == (FIXED_DIGEST, {"rows": len(FIXED)})
        assert reference(conn, "fixed") == (FIXED_DIGEST, {"rows": len(FIXED)})


QUARANTINED = {
    "topic": "t.orders.lifecycle",
    "partition": 3,
    "offset": 17,
    "event_type": "Fill",
    "schema_version": 2,
    "error": "unknown event type 'Fill' v2\there\\n\x08",
    "raw_value": b'{"schema_version": 2}',
}
# One field of the entry changed at a time: each is part of what the checksum covers.
CHANGED: list[tuple[str, Any]] = [
    ("topic", "t.orders.lifecycle2"),
    ("partition", 4),
    ("offset", 18),
    ("event_type", None),
    ("event_type", "Fil"),
    ("schema_version", None),
    ("schema_version", 3),
    ("error", "unknown event type 'Fill' v2"),
    ("raw_value", None),
    ("raw_value", b'{"schema_version": 3}'),
]


def _quarantine(
    conn: psycopg.Connection[Any],
    entry: dict[str, Any],
    table: str = "public.projection_quarantine",
    projection: str = Sample.name,
) -> None:
    conn.execute(
        f'INSERT INTO {table} (projection, topic, partition, "offset", event_type, '
        "schema_version, error, raw_value) VALUES (%(projection)s, %(topic)s, %(partition)s, "
        "%(offset)s, %(event_type)s, %(schema_version)s, %(error)s, %(raw_value)s)",
        {**entry, "projection": projection},
    )


@pytest.mark.integration
def test_the_quarantine_enters_the_checksum(env: Settings) -> None:
    """A projection's quarantine entries are part of its checksum (after its tables, all
    their fields, the raw value by its SHA-256): live and rebuild agree only if they
    refused the same records for the same reasons. No entries: the digest it always had.
    Until session 20 the quarantine was left out, so a live projection and a rebuild that
    quarantined different events (an unknown event version, say) had one checksum."""
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        _load(conn, "fixed", FIXED)
        clean = (FIXED_DIGEST, {"rows": len(FIXED)})
        _quarantine(conn, QUARANTINED, projection="another")  # not this projection's
        assert checksum(conn, Sample(), "fixed") == clean
        _quarantine(conn, QUARANTINED)
        held = checksum(conn, Sample(), "fixed")
        assert held[0] != FIXED_DIGEST
        assert held[1] == {"rows": len(FIXED), "projection_quarantine": 1}
        assert held == reference(conn, "fixed")
        seen = {FIXED_DIGEST, held[0]}
        for field, value in CHANGED:
            conn.execute("DELETE FROM projection_quarantine WHERE projection = %s", (Sample.name,))
            _quarantine(conn, {**QUARANTINED, field: value})
            digest = checksum(conn, Sample(), "fixed")
            assert digest == reference(conn, "fixed"), (field, value)
            assert digest[0] not in seen, (field, value)
            seen.add(digest[0])
        # Entries in (topic, partition, offset) order, numbers by value: 10 after 9.
        for offset in (9, 10, 100):
            _quarantine(conn, {**QUARANTINED, "offset": offset})
        assert checksum(conn, Sample(), "fixed") == reference(conn, "fixed")
        conn.execute("DELETE FROM projection_quarantine WHERE projection = %s", (Sample.name,))
        assert checksum(conn, Sample(), "fixed") == clean

        # A rebuild's build schema counts its own quarantine (what the swap publishes),
        # not the shared table's entries.
        build = Sample().schema + "__rebuild"
        _load(conn, build, FIXED)
        conn.execute(f"CREATE TABLE {build}._quarantine (LIKE public.projection_quarantine)")
        _quarantine(conn, QUARANTINED)
        assert checksum(conn, Sample(), build) == clean
        _quarantine(conn, QUARANTINED, f"{build}._quarantine")
        assert checksum(conn, Sample(), build) == held
        assert checksum(conn, Sample(), "fixed") == held


class Dated(Projection):
    """A `date` column: no fast path, the table is read row by row (`_digest_rows`)."""

    name = "ckdated"
    tables = (Table("rows", ("id", "d", "j"), ("id",)),)


# Pairs of jsonb contents (SQL text; None: SQL NULL) that rendered alike before session 17,
# and pairs that never did.
PAIRS = [
    (None, "null"),
    ('"t"', "true"),
    ('"f"', "false"),
    ('"17"', "17"),
    ('"1.5"', "1.5"),
    ('"1e+16"', "1.0e16"),
    ('"1.5e-07"', "1.5e-7"),
    ('"inf"', "1e400"),
    ('"-inf"', "-1e400"),
    ('"{}"', "{}"),
    ('"[]"', "[]"),
    ('"[1,\\"a\\",null]"', '[1, "a", null]'),
    ('"{\\"a\\":null}"', '{"a": null}'),
    ('"[Infinity]"', "[1e400]"),
    ('"null"', "null"),
    ('"\\\\N"', None),
    ('"\\\\J"', "null"),
    ('"\\\\\\"t"', '"t"'),
    ('""', None),
    ('"true"', "true"),
    ("[null]", "null"),
    ('{"a": null}', '{"a": "null"}'),
]


@pytest.mark.integration
@pytest.mark.parametrize("table", [Sample(), Dated()], ids=["copy", "rows"])
def test_distinct_jsonb_contents_have_distinct_checksums(env: Settings, table: Projection) -> None:
    """Two one-row tables differing only in the jsonb value: never one checksum (before
    session 17 SQL NULL and JSON null, the string "t" and true, "{}" and {} ... had one)."""
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        digests: dict[str | None, str] = {}
        for a, b in PAIRS:
            for j in (a, b):
                if j in digests:
                    continue
                schema = f"pair{len(digests)}"
                conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
                extra = "d date" if isinstance(table, Dated) else "t text"
                conn.execute(
                    f"CREATE TABLE {schema}.rows (id integer PRIMARY KEY, {extra}, j jsonb)"
                )
                conn.execute(f"INSERT INTO {schema}.rows (id, j) VALUES (1, %s::jsonb)", (j,))
                if isinstance(table, Sample):  # the fast path needs every Sample column
                    for c, t in COLUMNS.items():
                        if c not in ("id", "t", "j"):
                            conn.execute(f"ALTER TABLE {schema}.rows ADD COLUMN {c} {t}")
                digests[j] = checksum(conn, table, schema)[0]
                if isinstance(table, Sample):
                    assert digests[j] == reference(conn, schema)[0], j
        for a, b in PAIRS:
            assert digests[a] != digests[b], (a, b)
        assert len(set(digests.values())) == len(digests)


# Top-level jsonb values whose rendering collided before session 17 (json.loads values).
ATOMS: list[Any] = [
    None, "null", "t", True, "f", False, "17", 17, "1.5", 1.5, "1e+16", 1e16, "inf",
    float("inf"), "-inf", float("-inf"), "{}", {}, "[]", [], '{"a":null}', {"a": None},
    "[Infinity]", [float("inf")], "\\N", "\\J", '\\"t', "", " 17", "[NaN]",
]  # fmt: skip


@settings(max_examples=300)
@given(values=st.lists(json_values, max_size=30))
def test_jsonb_rendering_is_injective(values: list[Any]) -> None:
    """No two jsonb values with different JSON texts render alike, nor any like SQL NULL:
    render(load_jsonb(text)) never maps two canonical texts to one rendering."""
    seen: dict[str, str | None] = {render(None): None}
    for v in [*ATOMS, *values]:
        text = json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        key = render(load_jsonb(text))
        assert seen.setdefault(key, text) == text, (key, text, seen[key])


class Keyed(Projection):
    """A history table keyed on an event id (a uuid), as `order_events` and `fills` are."""

    name = "ckkeyed"
    tables = (Table("events", ("event_id", "note"), ("event_id",)),)


# uuids whose order as 16 bytes and as text could part if either were compared otherwise
# (signed bytes, the hyphens, digits against letters, the version and variant nibbles).
EDGE_UUIDS = [
    uuid.UUID(int=0), uuid.UUID(int=2**128 - 1), uuid.UUID(int=2**127), uuid.UUID(int=2**127 - 1),
    uuid.UUID("00000000-0000-0000-0000-0000000000a0"), uuid.UUID("00000000-0000-0000-0000-000000000099"),
    uuid.UUID("0000000a-0000-0000-0000-000000000000"), uuid.UUID("00000009-ffff-ffff-ffff-ffffffffffff"),
    uuid.UUID("7fffffff-ffff-ffff-ffff-ffffffffffff"), uuid.UUID("80000000-0000-0000-0000-000000000000"),
]  # fmt: skip


@pytest.mark.integration
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ids=st.lists(st.uuids(), max_size=40, unique=True), edges=st.booleans())
def test_a_uuid_key_orders_as_its_text(env: Settings, ids: list[uuid.UUID], edges: bool) -> None:
    """The checksum orders a uuid key by the uuid (no text cast, no text sort): the same
    order as its text in the "C" collation, which is the definition (`reference`)."""
    rows = list(dict.fromkeys([*ids, *(EDGE_UUIDS if edges else [])]))
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS ukey CASCADE")
        conn.execute("CREATE SCHEMA ukey")
        conn.execute("CREATE TABLE ukey.events (event_id uuid PRIMARY KEY, note text)")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO ukey.events VALUES (%s, %s)", [(u, str(i)) for i, u in enumerate(rows)]
            )
        digest = hashlib.sha256(b"# events\n")
        for u, i in sorted(
            ((str(u), str(i)) for i, u in enumerate(rows)), key=lambda r: r[0].encode()
        ):
            digest.update(f"{u}\t{i}\n".encode())
        assert checksum(conn, Keyed(), "ukey") == (digest.hexdigest(), {"events": len(rows)})


@pytest.mark.integration
def test_a_uuid_key_is_not_sorted_as_text(env: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checksum's query of a table keyed on a uuid sorts (if at all) on the uuid, not on
    its text (the text sort of `order_events` spilled to disk; docs/benchmarks.md,
    session 22)."""
    queries: list[str] = []
    copy = psycopg.Cursor.copy

    def spy(self: psycopg.Cursor[Any], statement: Any, *args: Any, **kwargs: Any) -> Any:
        queries.append(statement.as_string(self.connection))
        return copy(self, statement, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "copy", spy)
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA ukey")
        conn.execute("CREATE TABLE ukey.events (event_id uuid PRIMARY KEY, note text)")
        conn.execute(
            "INSERT INTO ukey.events SELECT md5(i::text)::uuid, i::text "
            "FROM generate_series(1, 2000) i"
        )
        conn.execute("ANALYZE ukey.events")
        checksum(conn, Keyed(), "ukey")
        (query,) = [q for q in queries if '"ukey"."events"' in q]
        select = query[len("COPY (") : query.rindex(") TO STDOUT")]
        plan = conn.execute(f"EXPLAIN (FORMAT JSON) {select}").fetchone()[0]  # type: ignore[index]
        keys = re.findall(r'"Sort Key": \[([^\]]*)\]', json.dumps(plan))
        assert not [k for k in keys if "::text" in k], keys


@pytest.mark.integration
def test_copy_rows_are_read_from_libpq_not_row_by_row_through_psycopg(
    env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The streamed checksum reads the COPY's rows from libpq's buffer in one loop
    (`checksum._copy_data`): through `psycopg.Copy.read`, ~1.2 us of CPU a row went to
    its generator and wait machinery (session 23: `decisions`' checksum 2.13 -> 1.62 s)."""
    reads: list[int] = []
    read = psycopg.Copy.read

    def counted(self: psycopg.Copy) -> Any:
        reads.append(1)
        return read(self)

    monkeypatch.setattr(psycopg.Copy, "read", counted)
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        _load(conn, "fixed", FIXED)
        assert checksum(conn, Sample(), "fixed") == (FIXED_DIGEST, {"rows": len(FIXED)})
    assert reads == []


@pytest.mark.integration
def test_a_copy_the_server_fails_raises_its_error(env: Settings) -> None:
    """An error the server meets while it sends the COPY (here a division by zero in a
    view's column) is raised as psycopg raises it, and the connection stays usable."""
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        _load(conn, "ckerr", FIXED)
        conn.execute("ALTER TABLE ckerr.rows RENAME TO base")
        conn.execute(
            "CREATE VIEW ckerr.rows AS SELECT id, t, u, b, big / (id - 3) AS big, n, n2, ts, j "
            "FROM ckerr.base"
        )
        with pytest.raises(psycopg.errors.DivisionByZero):
            checksum(conn, Sample(), "ckerr")
        assert conn.execute("SELECT 1").fetchone() == (1,)
        conn.execute("DROP SCHEMA ckerr CASCADE")
