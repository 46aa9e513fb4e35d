"""The alerts projection on the real broker and database: idempotent, rebuildable, checksummed."""

from __future__ import annotations

import json

import psycopg
import pytest

from deploy.settings import Settings
from projections.checksum import checksum
from projections.core import PROJECTIONS
from projections.projector import Projector
from projections.rebuild import rebuild
from schemas.events import SurveillanceAlert
from streams.detectors import all_detectors
from streams.stor import build_stor, render_html
from streams.surveillance_state import Surveillance
from streams.synthetic import Tape
from tests.streams.helpers import produce
from tests.streams.test_detectors import layer, spoof, wash

pytestmark = pytest.mark.integration


def test_alerts_projection_is_idempotent_and_rebuilds_identically(env: Settings) -> None:
    t = Tape()
    spoof(t)
    t2, t3 = Tape(seed="l"), Tape(seed="w")
    layer(t2)
    wash(t3)
    alerts = [
        a for tape in (t, t2, t3) for a in Surveillance(all_detectors()).process_batch(tape.events)
    ]
    assert len(alerts) == 3
    # duplicates and a replay of the same alerts (as a faust redelivery would produce)
    produce(env, alerts + alerts[:2])
    produce(env, alerts)
    with Projector(env, PROJECTIONS["alerts"]) as proj:
        proj.catch_up(idle_timeout=10)
    with psycopg.connect(env.dsn) as conn:
        rows = conn.execute(
            "SELECT alert_id, pattern, evidence FROM proj_alerts.alerts ORDER BY pattern"
        ).fetchall()
        before, counts = checksum(conn, PROJECTIONS["alerts"])
    assert [r[1] for r in rows] == ["LAYERING", "SPOOFING", "WASH_TRADING"]
    assert {str(r[0]) for r in rows} == {str(a.payload.alert_id) for a in alerts}
    assert rows[1][2]["order_id"] == "big"
    assert counts["alerts"] == 3
    rebuild(env, PROJECTIONS["alerts"])
    with psycopg.connect(env.dsn) as conn:
        after, _ = checksum(conn, PROJECTIONS["alerts"])
    assert after == before


def test_stor_draft_from_an_alert() -> None:
    t = Tape()
    spoof(t)
    [alert] = Surveillance(all_detectors()).process_batch(t.events)
    payload = alert.payload
    assert isinstance(payload, SurveillanceAlert)
    accounts = {e.payload.account: e.payload for e in t.events if e.event_type == "AccountOpened"}
    draft = build_stor(payload, accounts, reporting_entity="Test CASP")
    json.dumps(draft, default=str)
    s4 = draft["section_4_identity_of_suspected_person"]
    assert s4["name"] == "owner-x"
    assert s4["date_of_birth"]["value"] == "NA" and s4["date_of_birth"]["reason"]
    rows = draft["section_2_transactions_orders"]["orders_and_transactions"]
    assert {r["status"] for r in rows} == {"CANCELED", "FILLED"}
    page = render_html(draft)
    assert "<svg" in page and 'class="canceled"' in page and 'class="filled"' in page
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    no_account = build_stor(payload, {}, reporting_entity="Test CASP")
    assert no_account["section_4_identity_of_suspected_person"]["name"]["value"] == "NA"
