"""The alerts table in PostgreSQL, on the projections framework (exactly-once projector,
offsets in the same transaction, rebuild + checksum). Idempotent on `alert_id`: a
re-emitted alert (faust redelivery, replay) is `ON CONFLICT (alert_id) DO NOTHING`."""

from __future__ import annotations

from typing import Any

from projections.framework import INT4, Located, Projection, State, Table, fits_column
from schemas.serde import canonical_json
from schemas.topics import Topic


def _json(data: Any) -> str:
    return canonical_json(data).decode()


class AlertsProjection(Projection):
    name = "alerts"
    topics = (Topic.SURVEILLANCE_ALERTS,)
    alerts = Table(
        "alerts",
        (
            "alert_id",
            "event_id",
            "detector",
            "detector_version",
            "pattern",
            "account",
            "related_accounts",
            "beneficial_owner",
            "instrument",
            "score",
            "window_start",
            "window_end",
            "triggering_event_ids",
            "evidence",
            "summary",
            "occurred_at",
        ),
        ("alert_id",),
    )
    tables = (alerts,)
    handles = frozenset({"SurveillanceAlert/1"})
    migrations = ("0300_surveillance_alerts.sql",)

    def handle(self, state: State, item: Located) -> None:
        ev, p = item.event, item.event.payload
        fits_column(p.detector_version, "detector_version", INT4)  # else quarantined
        state.insert(
            self.alerts,
            (
                p.alert_id, ev.event_id, p.detector, p.detector_version, p.pattern, p.account,
                _json(list(p.related_accounts)), p.beneficial_owner, p.instrument, p.score,
                p.window_start, p.window_end, _json([str(i) for i in p.triggering_event_ids]),
                _json(p.evidence), p.summary, ev.occurred_at,
            ),
        )  # fmt: skip
