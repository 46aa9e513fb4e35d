"""The alerts table in PostgreSQL, on the projections framework (exactly-once projector,
offsets in the same transaction, rebuild + checksum). Idempotent on `alert_id`: a
re-emitted alert (faust redelivery, replay) is `ON CONFLICT (alert_id) DO NOTHING`."""

from __future__ import annotations

import json
from typing import Any

from projections.framework import (
    INT4,
    Located,
    Projection,
    SkipEvent,
    State,
    Table,
    fits_column,
)
from schemas.topics import Topic


def _json(data: Any) -> str:
    """Canonical JSON text for a jsonb column (`schemas.serde.canonical_json`'s), or
    ValueError (the alert is quarantined) for what jsonb cannot hold: `evidence` is free
    JSON, and the model reads `NaN`, `Infinity` and `1e400` as floats, and keeps a key's
    NUL or lone surrogate (the decoder's check of the JSON values looks at values, not at
    the keys of the model this projection reads). Each failed the whole batch."""
    _storable(data)
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _storable(data: Any) -> None:
    """ValueError if a string in `data`, a key included, holds NUL or a lone surrogate."""
    if isinstance(data, str):
        if "\x00" in data:
            raise ValueError("evidence holds a NUL, which jsonb cannot store")
        data.encode()  # UnicodeEncodeError, a ValueError, for a lone surrogate
    elif isinstance(data, dict):
        for k, v in data.items():
            _storable(k)
            _storable(v)
    elif isinstance(data, list | tuple):
        for v in data:
            _storable(v)


INDEXED_TEXT_BYTES = 2000
"""The most UTF-8 bytes an indexed text column (`pattern`, `beneficial_owner`) takes:
the schema does not bound them, and PostgreSQL refuses a btree entry over 2,704 bytes
(one over it failed the whole batch); 2,000 leave room for the `window_end` beside it."""


def _indexed(value: str | None, column: str) -> str | None:
    if value is not None and len(value.encode()) > INDEXED_TEXT_BYTES:
        raise SkipEvent(
            f"{column} is longer than {INDEXED_TEXT_BYTES} bytes, which its index cannot hold"
        )
    return value


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
        _indexed(p.pattern, "pattern")
        _indexed(p.beneficial_owner, "beneficial_owner")
        state.insert(
            self.alerts,
            (
                p.alert_id, ev.event_id, p.detector, p.detector_version, p.pattern, p.account,
                _json(list(p.related_accounts)), p.beneficial_owner, p.instrument, p.score,
                p.window_start, p.window_end, _json([str(i) for i in p.triggering_event_ids]),
                _json(p.evidence), p.summary, ev.occurred_at,
            ),
        )  # fmt: skip
