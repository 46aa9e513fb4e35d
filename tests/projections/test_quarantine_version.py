"""A record whose schema version no `integer` can hold (any producer may write
marketdata.events, transfers.events, deadletter or surveillance.alerts) is quarantined
like any unknown version, its number kept in the error text; `projection_quarantine`'s
`schema_version` column is an `integer`, and before, the quarantine entry's insert failed
the whole batch (re-read forever) and the rebuild with it. A header version of more
digits than Python parses (4,300) raised from `lean.header_type`, failing the batch the
same way, before anything was decoded."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from deploy.settings import Settings
from projections.core import PROJECTIONS
from projections.store import RawRecord, apply_records, prepare

SAMPLES = Path(__file__).parents[1] / "schemas" / "samples"


def _trade(n: int, version: int) -> RawRecord:
    body = json.loads((SAMPLES / "MarketTrade.v1.json").read_text())
    body["event_id"] = f"00000000-0000-7000-8000-{n:012d}"
    body["schema_version"] = version
    headers = [("event_type", b"MarketTrade"), ("schema_version", str(version).encode())]
    return RawRecord("marketdata.events", 0, n, json.dumps(body).encode(), headers)


@pytest.mark.integration
def test_an_out_of_range_schema_version_is_quarantined(env: Settings) -> None:
    proj = PROJECTIONS["positions"]
    records = [_trade(0, 1), _trade(1, 2**31), _trade(2, -(2**31) - 1), _trade(3, 2**31 - 1)]
    with psycopg.connect(env.dsn) as conn:
        with conn.transaction():
            result = apply_records(conn, proj, proj.schema, records)
        marks = conn.execute("SELECT count(*) FROM proj_positions.marks").fetchone()
        quarantined = conn.execute(
            'SELECT "offset", schema_version, error FROM projection_quarantine '
            "WHERE projection = 'positions' ORDER BY \"offset\""
        ).fetchall()
    assert marks == (1,)
    assert [(o, v) for o, v, _e in quarantined] == [(1, None), (2, None), (3, 2**31 - 1)]
    assert str(2**31) in quarantined[0][2] and str(-(2**31) - 1) in quarantined[1][2]
    assert (result.consumed, result.quarantined) == (4, 3)


@pytest.mark.parametrize("digits", [4300, 4301, 100_000])
def test_a_header_version_of_any_length_is_decoded_or_quarantined(digits: int) -> None:
    proj = PROJECTIONS["positions"]
    for body_version in (1, "1" * digits):
        r = _trade(1, 1)
        value = (r.value or b"").replace(
            b'"schema_version": 1', f'"schema_version": {body_version}'.encode()
        )
        headers = [("event_type", b"MarketTrade"), ("schema_version", b"1" * digits)]
        [share] = prepare([RawRecord(r.topic, 0, 1, value, headers)], [proj])
        assert len(share.items) + len(share.bad) == 1


@pytest.mark.integration
def test_an_event_type_text_cannot_hold_is_quarantined(env: Settings) -> None:
    """An unknown type's name is stored in `projection_quarantine.event_type` (text): one
    holding NUL or a lone surrogate (`"Mark\\u0000"` in the body, no headers) failed the
    insert, and with it the whole batch, re-read forever."""
    proj = PROJECTIONS["positions"]
    records = [_trade(0, 1)]
    for n, name in enumerate(("Mark\x00", "Mark\ud800"), start=1):
        body = json.loads((SAMPLES / "MarketTrade.v1.json").read_text())
        body["event_id"] = f"00000000-0000-7000-8000-{n:012d}"
        body["event_type"] = name
        records.append(RawRecord("marketdata.events", 0, n, json.dumps(body).encode(), []))
    with psycopg.connect(env.dsn) as conn:
        with conn.transaction():
            result = apply_records(conn, proj, proj.schema, records)
        quarantined = conn.execute(
            'SELECT "offset", event_type FROM projection_quarantine '
            "WHERE projection = 'positions' ORDER BY \"offset\""
        ).fetchall()
    assert quarantined == [(1, "Mark\ufffd"), (2, "Mark\ufffd")]
    assert (result.consumed, result.quarantined) == (3, 2)
