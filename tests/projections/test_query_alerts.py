"""`tradetape query alerts` lists the surveillance alerts, so `tradetape stor ALERT_ID`
(README) has its ids at hand. Before: no named query read `proj_alerts.alerts`; a
newcomer had to know the table for `query --sql` (the newcomer's audit, session 24)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from deploy.settings import Settings
from projections import query

pytestmark = pytest.mark.integration


def _alert(conn: psycopg.Connection, n: int, pattern: str, account: str) -> None:
    at = datetime(2026, 1, 5, 14, 0, n, tzinfo=UTC)
    conn.execute(
        "INSERT INTO proj_alerts.alerts (alert_id, event_id, detector, detector_version,"
        " pattern, account, related_accounts, beneficial_owner, instrument, score,"
        " window_start, window_end, triggering_event_ids, evidence, summary, occurred_at)"
        " VALUES (%s, %s, %s, 1, %s, %s, '[]', 'owner', 'BTC/USDC', 0.9, %s, %s, '[]', '{}',"
        " 'a summary', %s)",
        (uuid.UUID(int=n), uuid.UUID(int=100 + n), pattern.lower(), pattern, account, at, at, at),
    )


def test_alerts_are_listed_and_filtered(env: Settings) -> None:
    with psycopg.connect(env.dsn) as conn:
        _alert(conn, 2, "SPOOFING", "AB1")
        _alert(conn, 1, "LAYERING", "AB2")
        _alert(conn, 3, "SPOOFING", "AB2")
    every = query.frame("alerts", env)
    assert every["alert_id"].cast(str).to_list() == [str(uuid.UUID(int=n)) for n in (1, 2, 3)]
    assert {"alert_id", "pattern", "account", "score", "window_end", "summary"} <= set(
        every.columns
    )
    spoofing = query.frame("alerts", env, pattern="SPOOFING", account="AB2")
    assert spoofing["alert_id"].cast(str).to_list() == [str(uuid.UUID(int=3))]
