"""How far each projection is behind its topics, for `tradetape status`.

Lag is counted over every partition the broker lists for a projection's topics now, not
over the partitions a projector happens to read: a partition with no stored offset
(added while the projector ran, or never reached) counts from offset 0. So a projection
that misses partitions shows as behind (fail closed), never as caught up.

Lag is committed records, not offsets: a projector stores the offset after the last
record it applied, and behind a transactional producer the log goes on with a commit
marker (and an aborted transaction's records and marker), which a read_committed
consumer never returns. So where a stored offset is short of the end, `gap_lag`
reads the gap with a read_committed consumer and counts the records it returns: a gap of
markers only is lag 0. A gap longer than COUNT_LIMIT records, or one not read to its end
within the timeout, counts from the first record returned (or the stored offset) to
the end: markers within it are then counted too (an upper bound, never an undercount).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaError, TopicPartition

from deploy import groups
from deploy.groups import group_id
from deploy.kafka import (
    admin_client,
    consumer_config,
    describe_partition_changes,
    end_offsets,
    log_gone,
    partition_changes,
    topic_ids,
)
from deploy.settings import Settings
from projections.framework import Projection
from projections.store import OFFSETS_TABLE, issue_offsets_query, issue_topic_ids_query, offsets_of

TP = tuple[str, int]


def partition_lag(stored: Mapping[TP, int], ends: Mapping[TP, int]) -> dict[TP, int]:
    """Records not yet applied on each partition in `ends` (a missing stored offset is 0)."""
    return {tp: max(0, end - stored.get(tp, 0)) for tp, end in ends.items()}


COUNT_LIMIT = 100_000
"""Records of a gap `gap_lag` reads (over all partitions) before it falls back
to counting offsets."""


Gap = tuple[str, int, int]
"""(topic, partition, stored offset): where a projection's unapplied records start."""


def gap_lag(
    settings: Settings,
    gaps: Iterable[Gap],
    ends: Mapping[TP, int],
    *,
    timeout: float = 5.0,  # seconds, not money
    limit: int = COUNT_LIMIT,
) -> dict[Gap, int]:
    """Committed records from each gap's offset to its partition's end (see the module).

    One read_committed consumer; a partition wanted from two offsets (two projections at
    different offsets) is read once per offset, the lowest first."""
    todo = sorted(set(gaps))
    out: dict[Gap, int] = {}
    if not todo:
        return out
    consumer = Consumer(
        consumer_config(
            settings,
            group_id=group_id(settings.topic_prefix, groups.STATUS_LAG),  # never joined: assigned
            **{"enable.partition.eof": True, "fetch.wait.max.ms": 50},
        )
    )
    read = 0
    deadline = time.monotonic() + timeout
    try:
        while todo:
            # this round: each partition once, from the lowest offset still wanted
            round_: dict[TP, int] = {}
            for t, p, o in todo:
                round_.setdefault((t, p), o)
            todo = [g for g in todo if round_[(g[0], g[1])] != g[2]]
            counted = dict.fromkeys(round_, 0)
            first: dict[TP, int] = {}
            open_ = set(round_)
            consumer.assign([TopicPartition(t, p, o) for (t, p), o in round_.items()])
            while open_ and read < limit and time.monotonic() < deadline:
                for m in consumer.consume(1000, 0.1):  # seconds, not money
                    tp = (str(m.topic()), int(m.partition() or 0))
                    if tp not in open_:
                        continue
                    err = m.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            open_.discard(tp)
                            continue
                        raise RuntimeError(f"reading {tp[0]}[{tp[1]}]: {err.str()}")
                    off = int(m.offset() or 0)
                    if off >= ends[tp]:  # written after the ends were taken
                        open_.discard(tp)
                        continue
                    first.setdefault(tp, off)
                    counted[tp] += 1
                    read += 1
            consumer.unassign()
            for tp, o in round_.items():
                # not read to the end: offsets from the first record seen (markers too)
                n = ends[tp] - first.get(tp, o) if tp in open_ else counted[tp]
                out[(tp[0], tp[1], o)] = n
    finally:
        consumer.close()
    return out


def committed_lag(
    stored: Mapping[TP, int], ends: Mapping[TP, int], counts: Mapping[Gap, int]
) -> dict[TP, int]:
    """`partition_lag`, a gap's records counted where `counts` (of `gap_lag`) has it."""
    lag = partition_lag(stored, ends)
    for tp, n in lag.items():
        if n > 0:
            lag[tp] = counts.get((tp[0], tp[1], stored.get(tp, 0)), n)
    return lag


def projection_lag(
    settings: Settings,
    projections: Iterable[Projection],
    stored: Mapping[str, Mapping[TP, int]],
    *,
    timeout: float = 5.0,  # seconds, not money
    stored_ids: Mapping[str, Mapping[TP, str | None]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per projection: `lag` (records behind, over every partition listed now),
    `partitions` (how many) and `unread_partitions` (listed, with records, but no stored
    offset: e.g. added after the projector started and not picked up yet). A projection
    whose topics do not have their declared partition count (partitions added: a key's
    events before and after lie on different partitions and are folded in no fixed
    order, `deploy.kafka.partition_changes`) also gets `degraded` and
    `partitions_changed`, the reason; one whose stored offsets the log no longer holds
    (`out_of_range`), `degraded` and `offsets_out_of_range`."""
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
    every = [TopicPartition(n, p) for n in names for p in listed[n]]
    ends = end_offsets(admin, every, timeout=timeout)
    starts = end_offsets(admin, every, earliest=True, timeout=timeout)
    ids = topic_ids(admin, names, timeout=timeout) if stored_ids is not None else {}
    gaps = [
        (t, n, stored.get(p.name, {}).get((t, n), 0))
        for p in selected
        for (t, n), e in ends.items()
        if t in {settings.topic(x) for x in p.topics} and stored.get(p.name, {}).get((t, n), 0) < e
    ]
    counts = gap_lag(settings, gaps, ends, timeout=timeout)
    out: dict[str, dict[str, Any]] = {}
    for p in selected:
        mine = {settings.topic(t) for t in p.topics}
        own_ends = {tp: e for tp, e in ends.items() if tp[0] in mine}
        have = stored.get(p.name, {})
        lag = committed_lag(have, own_ends, counts)
        out[p.name] = {
            "lag": sum(lag.values()),
            "partitions": len(own_ends),
            "unread_partitions": sorted(
                f"{t}[{n}]" for (t, n), e in own_ends.items() if e > 0 and (t, n) not in have
            ),
        }
        gone = out_of_range(have, starts, own_ends, (stored_ids or {}).get(p.name), ids)
        if gone:
            # its projector refuses to run (projector.OffsetsOutOfRange): rebuild it
            out[p.name]["degraded"] = True
            out[p.name]["offsets_out_of_range"] = gone
        changed = partition_changes(settings, {n: len(listed[n]) for n in mine})
        if changed:
            out[p.name]["degraded"] = True
            out[p.name]["partitions_changed"] = describe_partition_changes(changed)
    return out


def out_of_range(
    stored: Mapping[TP, int],
    starts: Mapping[TP, int],
    ends: Mapping[TP, int],
    stored_ids: Mapping[TP, str | None] | None = None,
    ids: Mapping[str, str] | None = None,
) -> str:
    """The partitions of `ends` whose stored offset (0 if none) is not in the log there is
    now, described (empty if none): `deploy.kafka.log_gone`, as the projector checks
    (past the committed end, before the first offset, or stored with another topic id
    than the topic has now: deleted and created again)."""
    bad = []
    for (t, n), end in sorted(ends.items()):
        why = log_gone(
            t, n, stored.get((t, n), 0), starts.get((t, n), 0), end,
            id_then=(stored_ids or {}).get((t, n)), id_now=(ids or {}).get(t), said="stored",
        )  # fmt: skip
        if why is not None:
            bad.append(why)
    return "; ".join(bad)


def status_lag(
    settings: Settings,
    timeout: float = 5.0,  # seconds, not money
) -> dict[str, dict[str, Any]]:
    """`projection_lag` of every projection against the offsets stored in PostgreSQL."""
    from projections.core import PROJECTIONS

    names = list(PROJECTIONS)
    with psycopg.connect(settings.dsn, connect_timeout=int(timeout)) as conn:
        stored = offsets_of(issue_offsets_query(conn, names, OFFSETS_TABLE), names)
        stored_ids: dict[str, dict[TP, str | None]] = {n: {} for n in names}
        for name, t, n, tid in issue_topic_ids_query(conn, names, OFFSETS_TABLE).fetchall():
            stored_ids[name][(t, int(n))] = tid
    return projection_lag(
        settings, PROJECTIONS.values(), stored, timeout=timeout, stored_ids=stored_ids
    )
