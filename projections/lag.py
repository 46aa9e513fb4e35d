"""How far each projection is behind its topics, for `tradetape status`.

Lag is counted over every partition the broker lists for a projection's topics now, not
over the partitions a projector happens to read: a partition with no stored offset
(added while the projector ran, or never reached) counts from offset 0. So a projection
that misses partitions shows as behind (fail closed), never as caught up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import psycopg
from confluent_kafka import TopicPartition

from deploy.kafka import admin_client, end_offsets
from deploy.settings import Settings
from projections.framework import Projection
from projections.store import OFFSETS_TABLE, issue_offsets_query, offsets_of

TP = tuple[str, int]


def partition_lag(stored: Mapping[TP, int], ends: Mapping[TP, int]) -> dict[TP, int]:
    """Records not yet applied on each partition in `ends` (a missing stored offset is 0)."""
    return {tp: max(0, end - stored.get(tp, 0)) for tp, end in ends.items()}


def projection_lag(
    settings: Settings,
    projections: Iterable[Projection],
    stored: Mapping[str, Mapping[TP, int]],
    *,
    timeout: float = 5.0,  # seconds, not money
) -> dict[str, dict[str, Any]]:
    """Per projection: `lag` (records behind, over every partition listed now),
    `partitions` (how many) and `unread_partitions` (listed, with records, but no stored
    offset: e.g. added after the projector started and not picked up yet)."""
    selected = list(projections)
    admin = admin_client(settings)
    names = sorted({settings.topic(t) for p in selected for t in p.topics})
    metadata = admin.list_topics(timeout=timeout).topics
    listed: dict[str, list[int]] = {}
    for name in names:
        md = metadata.get(name)
        if md is None or md.error is not None:
            raise RuntimeError(f"topic {name} is missing")
        listed[name] = sorted(md.partitions)
    ends = end_offsets(
        admin, [TopicPartition(n, p) for n in names for p in listed[n]], timeout=timeout
    )
    out: dict[str, dict[str, Any]] = {}
    for p in selected:
        mine = {settings.topic(t) for t in p.topics}
        own_ends = {tp: e for tp, e in ends.items() if tp[0] in mine}
        have = stored.get(p.name, {})
        lag = partition_lag(have, own_ends)
        out[p.name] = {
            "lag": sum(lag.values()),
            "partitions": len(own_ends),
            "unread_partitions": sorted(
                f"{t}[{n}]" for (t, n), e in own_ends.items() if e > 0 and (t, n) not in have
            ),
        }
    return out


def status_lag(
    settings: Settings,
    timeout: float = 5.0,  # seconds, not money
) -> dict[str, dict[str, Any]]:
    """`projection_lag` of every projection against the offsets stored in PostgreSQL."""
    from projections.core import PROJECTIONS

    names = list(PROJECTIONS)
    with psycopg.connect(settings.dsn, connect_timeout=int(timeout)) as conn:
        stored = offsets_of(issue_offsets_query(conn, names, OFFSETS_TABLE), names)
    return projection_lag(settings, PROJECTIONS.values(), stored, timeout=timeout)
