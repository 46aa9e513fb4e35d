"""A surveillance alert's `evidence` (free JSON, `dict[str, Any]`) that PostgreSQL's
jsonb cannot hold is quarantined, not a failed batch. The model accepts `NaN`,
`Infinity` and numbers past a float's range (`1e400`, read as inf) and any key; jsonb
refuses non-finite numbers, and text (keys too) holding NUL or a lone surrogate. Before,
the alerts fold rendered `"x":NaN` (or `Infinity`, or the key's `\\u0000`) and the whole
batch failed in PostgreSQL, re-read forever: the light group (accounts, alerts,
deadletters, risk_config share one consumer and transaction) stopped with it, while a
rebuild failed outright. So did a `pattern` or `beneficial_owner` (unbounded in the
schema, indexed) longer than an index entry may be."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import psycopg
import pytest

from deploy.settings import Settings
from projections.core import PROJECTIONS
from projections.framework import Located, State
from projections.store import RawRecord, apply_records, decode_one

SAMPLE = Path(__file__).parents[1] / "schemas" / "samples" / "SurveillanceAlert.v1.json"
HEADERS = [("event_type", b"SurveillanceAlert"), ("schema_version", b"1")]
BAD_EVIDENCE = [
    '{"x": NaN}',
    '{"x": -Infinity}',
    '{"x": [1e400]}',
    '{"x\\u0000": 1}',
    '{"\\ud800": 1}',
]
GOOD_EVIDENCE = '{"x": 1.5, "n": 123456789012345678901234567890, "s": "\\u00e9"}'


def _record(evidence: str, n: int) -> RawRecord:
    body = json.loads(SAMPLE.read_text())
    body["producer"] = "surveillance"
    body["event_id"] = f"00000000-0000-7000-8000-{n:012d}"
    body["payload"]["alert_id"] = f"00000000-0000-7000-9000-{n:012d}"
    body["payload"]["evidence"] = {}
    text = json.dumps(body).replace('"evidence": {}', f'"evidence": {evidence}', 1)
    return RawRecord("surveillance.alerts", 0, n, text.encode(), HEADERS)


@pytest.mark.parametrize("evidence", BAD_EVIDENCE)
def test_evidence_jsonb_cannot_hold_is_quarantined(evidence: str) -> None:
    d = decode_one(_record(evidence, 1))
    if isinstance(d, Located):
        st = State()
        bad = PROJECTIONS["alerts"].fold(st, [d])
        assert len(bad) == 1 and not st.inserts.get("alerts"), st.inserts
    else:  # refused at decoding, as a NUL in a value always was
        assert "cannot store" in d.error


def test_evidence_jsonb_holds_is_folded() -> None:
    d = decode_one(_record(GOOD_EVIDENCE, 1))
    assert isinstance(d, Located)
    st = State()
    assert PROJECTIONS["alerts"].fold(st, [d]) == []
    [row] = st.inserts["alerts"].values()
    assert json.loads(row[13]) == json.loads(GOOD_EVIDENCE)


@pytest.mark.integration
def test_a_batch_with_such_evidence_commits(env: Settings) -> None:
    proj = PROJECTIONS["alerts"]
    records = [_record(GOOD_EVIDENCE, 0)] + [
        _record(e, n) for n, e in enumerate(BAD_EVIDENCE, start=1)
    ]
    with psycopg.connect(env.dsn) as conn:
        with conn.transaction():
            result = apply_records(conn, proj, proj.schema, records)
        rows = conn.execute("SELECT count(*) FROM proj_alerts.alerts").fetchone()
        quarantined = conn.execute(
            "SELECT count(*) FROM projection_quarantine WHERE projection = 'alerts'"
        ).fetchone()
    assert rows == (1,)
    assert quarantined == (len(BAD_EVIDENCE),)
    assert (result.consumed, result.quarantined) == (len(records), len(BAD_EVIDENCE))


def _noise(n: int) -> str:
    """`n` characters PostgreSQL cannot compress much (an index entry is kept compressed)."""
    digest = b"".join(hashlib.sha256(str(i).encode()).digest() for i in range(n // 32 + 1))
    return base64.b64encode(digest).decode()[:n]


def _indexed(field: str, text: str, n: int) -> RawRecord:
    r = _record("{}", n)
    body = json.loads(r.value or b"")
    body["payload"][field] = text
    return RawRecord(r.topic, r.partition, r.offset, json.dumps(body).encode(), r.headers)


@pytest.mark.parametrize("field", ["pattern", "beneficial_owner"])
def test_an_indexed_text_longer_than_an_index_entry_is_quarantined(field: str) -> None:
    """`pattern` and `beneficial_owner` are indexed (`alerts_pattern`, `alerts_owner`) and
    unbounded in the schema: PostgreSQL refuses an index entry over 2,704 bytes."""
    for text, folded in ((_noise(2000), True), (_noise(2001), False), ("é" * 1001, False)):
        d = decode_one(_indexed(field, text, 1))
        assert isinstance(d, Located)
        st = State()
        bad = PROJECTIONS["alerts"].fold(st, [d])
        assert (not bad) == folded and bool(st.inserts.get("alerts")) == folded, len(text)


@pytest.mark.integration
def test_a_batch_with_an_overlong_indexed_text_commits(env: Settings) -> None:
    proj = PROJECTIONS["alerts"]
    records = [
        _record(GOOD_EVIDENCE, 0),
        _indexed("pattern", _noise(9000), 1),
        _indexed("beneficial_owner", _noise(9000), 2),
        _indexed("pattern", _noise(2000), 3),
    ]
    with psycopg.connect(env.dsn) as conn:
        with conn.transaction():
            result = apply_records(conn, proj, proj.schema, records)
        rows = conn.execute("SELECT count(*) FROM proj_alerts.alerts").fetchone()
    assert rows == (2,)
    assert (result.consumed, result.quarantined) == (4, 2)
