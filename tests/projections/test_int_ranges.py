"""An integer the schemas allow but its PostgreSQL column cannot hold is quarantined
with its reason; the batch's other events are applied and its transaction commits."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from deploy.settings import Settings
from projections.core import PROJECTIONS
from projections.store import RawRecord, apply_records
from schemas import EventPayload, encode, new_event
from schemas.events import DeadLetter, SurveillanceAlert
from schemas.events.risk import (
    MAX_CONFIG_VERSION,
    DecisionOutcome,
    RiskDecision,
    RiskLimits,
    RiskLimitsChanged,
    RuleResult,
)

pytestmark = pytest.mark.integration


def _records(payloads: list[EventPayload]) -> list[RawRecord]:
    out = []
    for off, p in enumerate(payloads):
        e = new_event(p, producer="engine", event_id=uuid.UUID(int=off + 1))
        _k, v, h = encode(e)
        out.append(RawRecord(str(e.topic), 0, off, v, h))
    return out


def _dl(partition: int, offset: int) -> DeadLetter:
    return DeadLetter(
        source_topic="orders", source_partition=partition, source_offset=offset,
        original_value_b64="eA==", error_type="X", error="e", stage="engine",
    )  # fmt: skip


def _decision(rule_version: int, config_version: int) -> RiskDecision:
    return RiskDecision(
        account="ACC001", producer_id="p", strategy_id="s", client_order_id="c",
        intent_event_id=uuid.UUID(int=7), intent_kind="ORDER", outcome=DecisionOutcome.APPROVED,
        rule_results=(RuleResult(rule_id="r", rule_version=1, passed=True),
                      RuleResult(rule_id="r2", rule_version=rule_version, passed=True)),
        risk_config_version=config_version,
    )  # fmt: skip


def _limits(version: int) -> RiskLimitsChanged:
    """Beyond `MAX_CONFIG_VERSION` the schema refuses it since session 24; one an older
    engine accepted is still on a log, and is still quarantined (by the decode now)."""
    fields: dict[str, Any] = dict(
        scope="*", config_version=version, limits=RiskLimits(), changed_by="admin"
    )
    if version <= MAX_CONFIG_VERSION:
        return RiskLimitsChanged(**fields)
    return RiskLimitsChanged.model_construct(**fields, reason="", signature=None)


def _alert(n: int, detector_version: int) -> SurveillanceAlert:
    return SurveillanceAlert(
        alert_id=uuid.UUID(int=100 + n), detector="spoofing", detector_version=detector_version,
        pattern="SPOOFING", account="ACC001", instrument="BTC/USDC", score="1",
        window_start="2026-01-05T09:00:00.000000Z", window_end="2026-01-05T09:00:01.000000Z",
        triggering_event_ids=(uuid.UUID(int=9),), summary="s",
    )  # fmt: skip


CASES: list[tuple[str, list[Any], str, list[int]]] = [
    ("alerts", [_alert(1, 1), _alert(2, 2**31), _alert(3, 2**31 - 1)], "alerts", [1]),
    (
        "deadletters",
        [_dl(1, 5), _dl(2**31, 5), _dl(1, 2**63), _dl(-(2**31), 2**63 - 1)],
        "deadletters",
        [1, 2],
    ),
    ("decisions", [_decision(1, 0), _decision(2**31, 1), _decision(1, 2**31)], "decisions", [1, 2]),
    ("risk_config", [_limits(1), _limits(2**31), _limits(2**31 - 1)], "config_events", [1]),
]


@pytest.mark.parametrize(("name", "payloads", "table", "bad"), CASES)
def test_out_of_range_integer_is_quarantined_not_fatal(
    env: Settings, name: str, payloads: list[EventPayload], table: str, bad: list[int]
) -> None:
    proj = PROJECTIONS[name]
    with psycopg.connect(env.dsn) as conn:
        with conn.transaction():
            result = apply_records(conn, proj, proj.schema, _records(payloads))
        rows = conn.execute(f"SELECT count(*) FROM {proj.schema}.{table}").fetchone()
        quarantined = conn.execute(
            'SELECT "offset", error FROM projection_quarantine WHERE projection = %s '
            'ORDER BY "offset"',
            (name,),
        ).fetchall()
    assert rows == (len(payloads) - len(bad),)
    assert [q[0] for q in quarantined] == bad
    why = (
        "less than or equal to 2147483647"
        if name == "risk_config"
        else "outside its column's range"
    )
    assert all(why in q[1] for q in quarantined), quarantined
    assert (result.consumed, result.quarantined) == (len(payloads), len(bad))
