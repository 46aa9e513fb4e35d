"""Folding the log into an `EngineState`: shared by the worker's rebuilds and the snapshotter.

Both build state the same way, so a slice the snapshotter takes is a slice of exactly
the state a worker's rebuild folds: the reference topics first (accounts, transfers,
risk config), then the engine's own outputs (decisions, orders, fills), each partition
from its newest usable snapshot slice on, if there is one.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from deploy import groups
from deploy.groups import group_id
from deploy.kafka import READ_WAIT_SECONDS, consumer_config, end_offsets, log_gone, topic_ids
from deploy.settings import Settings
from engine.codec import decode_record
from engine.snapshot import Slice, SnapshotError, merge_slices
from engine.snapshot_io import read_slices
from engine.state import EngineState
from schemas import Envelope, MalformedEventError
from schemas.admission import refusal
from schemas.topics import Topic

log = logging.getLogger("tradetape.engine")


class LogCut(RuntimeError):
    """The log no longer holds where a fold must start or go on (records deleted from a
    topic's start; event topics are kept forever): folding what is left would build a
    state without them, silently. Nothing is folded; the operator restores the records."""


REFERENCE_TOPICS = (Topic.ACCOUNTS, Topic.TRANSFERS, Topic.TRANSFER_CHECKS, Topic.RISK_CONFIG)
"""Read in full by every worker. The travel rule's checks (transfers.checks, session 27)
and the requests they answer (transfers.events) are two topics read in no fixed order:
`EngineState.early_checks` folds a check read first right after its request."""
OWN_TOPICS = (Topic.DECISIONS, Topic.ORDERS)
DECISION_TYPES = frozenset({"RiskDecision", "IntentRejected"})

PartitionKey = tuple[str, int]
"""(full topic name, partition)"""

LOG_ID_TOPICS = (*REFERENCE_TOPICS, *OWN_TOPICS, Topic.INTENTS, Topic.ADMIN)
"""The topics a worker's state and inputs come from: their Kafka topic ids are committed
with the engine group's offsets (`ids_metadata`) and held by each snapshot slice, so a
topic deleted and created again (a new id) is told from the log the state was folded
from even once its new log has grown past every stored offset."""

IDS_METADATA_PREFIX = "ids1:"
"""The committed offsets' metadata: this, then the first `ID_CHARS` characters of each
`LOG_ID_TOPICS` topic's id in that order, comma-separated (empty: no id known). About
70 bytes a partition and transaction, where the full names and ids took ~400."""
ID_CHARS = 8
"""Characters of a topic id kept in the metadata: 48 bits, enough to tell a topic created
again from the one before (ids are random)."""


def ids_metadata(settings: Settings, ids: Mapping[str, str]) -> str:
    """The metadata committed with the engine group's offsets: `IDS_METADATA_PREFIX`."""
    return IDS_METADATA_PREFIX + ",".join(
        ids.get(settings.topic(t), "")[:ID_CHARS] for t in LOG_ID_TOPICS
    )


def ids_changed(settings: Settings, metadata: str | None, now: Mapping[str, str]) -> list[str]:
    """The topics whose id `metadata` (`ids_metadata`, committed with an offset) names and
    that have another id now, described. Metadata of another form (none: committed before
    session 25, or by `kafka-consumer-groups --reset-offsets`) names nothing: nothing to
    compare, the offsets' range is still checked."""
    if not metadata or not metadata.startswith(IDS_METADATA_PREFIX):
        return []
    then = metadata[len(IDS_METADATA_PREFIX) :].split(",")
    if len(then) != len(LOG_ID_TOPICS):
        return []
    out = []
    for t, was in zip(LOG_ID_TOPICS, then, strict=True):
        name = settings.topic(t)
        cur = now.get(name)
        if was and cur and cur[:ID_CHARS] != was:
            out.append(
                f"{name}: committed while its topic id began {was}, the topic's id is {cur} "
                "now (it was deleted and created again)"
            )
    return out


def log_ids_of(
    settings: Settings,
    admin: AdminClient,
    timeout: float = 30.0,  # seconds, not money
) -> dict[str, str]:
    """The ids of the `LOG_ID_TOPICS` now, by full name (`deploy.kafka.topic_ids`)."""
    return topic_ids(admin, [settings.topic(t) for t in LOG_ID_TOPICS], timeout=timeout)


def changed_ids(then: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """The topics of `then` (full name -> id) whose id is another now, described."""
    return [
        f"{name}: topic id {was}, the topic's id is {now[name]} now (it was deleted and "
        "created again)"
        for name, was in sorted(then.items())
        if name in now and now[name] != was
    ]


ENGINE_WRITTEN = (*REFERENCE_TOPICS, *OWN_TOPICS)
"""Topics only the engine writes what it folds from them: accepted admin facts and the
brake's kill switch (reference topics), decisions, orders and fills (own topics)."""


class Intake:
    """Which records the engine folds from a topic it reads (live and in a rebuild alike).

    Only the topics it reads in full (`ENGINE_WRITTEN` and market data), and on them what
    `schemas.admission.refusal` admits, the projections' rule too: per topic only the
    event types of its catalogue, and a type only the engine writes there only if the
    engine is its producer (the travel rule's `TransferChecked` only if it is the
    travel rule's, since session 26). Anything else is refused with a reason (the worker
    dead-letters it, a rebuild logs and skips it); a catalogue type of another service
    (its `TransferRequested`) passes (folded since session 18:
    `EngineState._apply_transfer`; ignored before). A foreign `OrderAccepted` or
    `CancelRequested`, which the fold ignores, was passed in silence until session 17;
    it is refused now, like the projections quarantine it. Before, a
    `ProducerRegistered` written to the market-data topic registered a key for any
    account, and a `KillSwitchReleased` or `Fill` there was folded. A set test, then
    the rule's cached topic lookup and a set test or two per record.
    """

    def __init__(self, settings: Settings) -> None:
        read = (*ENGINE_WRITTEN, Topic.MARKETDATA)
        self.topics: frozenset[str] = frozenset(settings.topic(t) for t in read)
        """The full names of the topics the engine folds (the rule reads each back as
        the topic the engine means, whatever the prefix: `schemas.admission.logical_topic`)."""

    def refusal(self, topic: str | None, event: Envelope[Any]) -> str | None:
        """Why `event` read from `topic` must not be folded, or None."""
        if topic is None or topic not in self.topics:
            return f"the engine folds nothing from topic {topic!r}"
        return refusal(topic, event.event_type, event.producer)


def decode_message(msg: Message) -> Envelope[Any]:
    return decode_record(
        msg.value(),
        msg.headers(),
        topic=msg.topic(),
        partition=msg.partition(),
        offset=msg.offset(),
    )


def folder(state: EngineState, intake: Intake) -> Callable[[Message], None]:
    """Fold a record read from the log into `state`: malformed ones, and ones `intake`
    refuses (the live worker dead-letters those), are logged and skipped."""
    refusal = intake.refusal

    def apply(msg: Message) -> None:
        try:
            event = decode_message(msg)
        except MalformedEventError as exc:
            log.warning("skipping malformed record while rebuilding: %s", exc)
            return
        why = refusal(msg.topic(), event)
        if why is not None:
            log.warning(
                "skipping a record while rebuilding (%s:%s@%s): %s",
                msg.topic(), msg.partition(), msg.offset(), why,
            )  # fmt: skip
            return
        raw = (msg.key(), msg.value(), msg.headers() or [])
        state.apply(event, raw if event.event_type in DECISION_TYPES else None)

    return apply


def read_until_caught_up(
    consumer: Consumer,
    admin: AdminClient,
    start: list[TopicPartition],
    on_message: Callable[[Message], None],
    *,
    timeout: float = 90.0,  # seconds, not money
) -> bool:
    """Assign `start` and read every partition up to its last stable offset.

    Reading to the last stable offset (not the high watermark) means an open transaction
    of a dead worker is not waited for: it can only ever be aborted. Returns False when
    no record came for `timeout` seconds with partitions still short (a stalled broker),
    never merely because the log is long: a fixed deadline made a worker whose rebuild
    needs longer than it hold for ever, each retry stopping at the same point (review
    helper-53).
    """
    return read_all_until_caught_up([(consumer, start)], admin, on_message, timeout=timeout)


def read_all_until_caught_up(
    readers: list[tuple[Consumer, list[TopicPartition]]],
    admin: AdminClient,
    on_message: Callable[[Message], None],
    *,
    timeout: float = 90.0,  # seconds, not money
) -> bool:
    """`read_until_caught_up` for several consumers at once (the worker's control and
    market-data consumers in a rebuild): one pair of offset requests, every consumer
    assigned (and fetching) before any is read, the reads interleaved."""
    readers = [(c, start) for c, start in readers if start]
    if not readers:
        return True
    every = [tp for _c, start in readers for tp in start]
    ends = end_offsets(admin, every)
    lows = end_offsets(admin, every, earliest=True)
    gone = outside_the_log(every, lows, ends)
    if gone:
        log.error(
            "the log no longer holds where this rebuild must start reading (%s): records "
            "were deleted from a log's start (kafka-delete-records; event topics are kept "
            "forever), or the topic was deleted and created again or truncated. A state "
            "folded from what is left would miss those events (deposits, limits, a kill "
            "switch, decisions): deciding nothing, retrying. Restore the topic's records "
            "(docs/operations.md, A topic deleted or truncated)",
            gone,
        )
        return False
    todo: list[tuple[Consumer, dict[PartitionKey, int]]] = []
    for consumer, start in readers:
        consumer.assign(start)
        targets: dict[PartitionKey, int] = {}
        for tp in start:
            key = (tp.topic, tp.partition)
            high, low = ends[key], lows[key]
            if high > max(low, 0) and (tp.offset < 0 or tp.offset < high):
                targets[key] = high
        todo.append((consumer, targets))
    wait = READ_WAIT_SECONDS / len(todo)
    idle_since = time.monotonic()
    while any(t for _c, t in todo) and time.monotonic() - idle_since < timeout:
        for consumer, targets in todo:
            if not targets:
                continue
            for msg in consumer.consume(num_messages=5000, timeout=wait):
                if msg.error():
                    continue
                idle_since = time.monotonic()
                on_message(msg)
            done = []
            positions = consumer.position([TopicPartition(t, p) for (t, p) in targets])
            for tp in positions:
                high = targets[(tp.topic, tp.partition)]
                if tp.offset >= high:
                    done.append((tp.topic, tp.partition))
                elif tp.offset >= high - 1 and time.monotonic() - idle_since > 1.0:
                    # Only a trailing transaction marker is left after the last record.
                    done.append((tp.topic, tp.partition))
            for key in done:
                targets.pop(key, None)
    return not any(t for _c, t in todo)


def outside_the_log(
    start: list[TopicPartition],
    lows: Mapping[PartitionKey, int],
    ends: Mapping[PartitionKey, int],
    ids_then: Mapping[str, str] | None = None,
    ids_now: Mapping[str, str] | None = None,
) -> str:
    """The partitions of `start` whose start the log no longer holds, described (empty if
    none): `deploy.kafka.log_gone` for each (a read from its beginning of a log cut at its
    start, an offset outside the first offset..end, or, given the topic ids the positions
    were taken in and those of now, a topic created again)."""
    bad = []
    for tp in start:
        key = (tp.topic, tp.partition)
        why = log_gone(
            tp.topic, tp.partition, tp.offset, lows[key], ends[key],
            id_then=(ids_then or {}).get(tp.topic), id_now=(ids_now or {}).get(tp.topic),
        )  # fmt: skip
        if why is not None:
            bad.append(why)
    return "; ".join(bad)


def fold_until(
    settings: Settings,
    starts: Mapping[PartitionKey, int],
    targets: Mapping[PartitionKey, int],
    on_message: Callable[[Message], None],
    *,
    timeout: float = 60.0,  # seconds, not money
    settle: float = 0.25,  # seconds, not money
    stop: Callable[[], bool] = lambda: False,
) -> tuple[bool, dict[PartitionKey, int]]:
    """Fold each partition's records in [start, target) and nothing after: (every target
    reached?, the offset after the last record folded per partition).

    Unlike `read_until_caught_up` this never folds past `target`, so the result names
    exactly what was folded even if more was committed meanwhile (the snapshotter needs
    that: it reads the reference topics only as far as those targets need). A partition
    is done when the consumer's position reaches its target: librdkafka moves it past
    transaction markers and aborted records, which fold as nothing. One that stays one
    short for `settle` seconds is given up for this call (reported as not reached;
    `folded` stays exact). Each call reads with a consumer of its own: a reused one can
    report its previous assignment's position for a moment after `assign`, which would
    count records never folded as folded.
    """
    folded = dict(starts)
    todo = {k for k, t in targets.items() if folded[k] < t}
    if not todo:
        return True, folded
    short = False
    consumer = Consumer(
        consumer_config(
            settings,
            group_id=group_id(settings.topic_prefix, groups.ENGINE_FOLD, uuid.uuid4().hex),
            # A start the log no longer holds is an error, never a jump to the log's start.
            **{"auto.offset.reset": "error"},
        )
    )
    try:
        consumer.assign([TopicPartition(t, p, folded[(t, p)]) for (t, p) in sorted(todo)])
        deadline = time.monotonic() + timeout
        idle_since = time.monotonic()
        while todo and time.monotonic() < deadline and not stop():
            for msg in consumer.consume(num_messages=5000, timeout=READ_WAIT_SECONDS):
                err = msg.error()
                if err is not None and err.code() == KafkaError._AUTO_OFFSET_RESET:
                    raise LogCut(f"a fold's offset is outside the log ({err.str()})")
                if err is not None:
                    continue
                key = (msg.topic() or "", msg.partition() or 0)
                off = msg.offset() or 0
                if key in todo and folded[key] <= off < targets[key]:
                    idle_since = time.monotonic()
                    on_message(msg)
                    folded[key] = off + 1
            for tp in consumer.position([TopicPartition(t, p) for (t, p) in sorted(todo)]):
                key = (tp.topic, tp.partition)
                if tp.offset >= targets[key]:
                    folded[key] = targets[key]  # what lies between: markers, aborted records
                    todo.discard(key)
                elif tp.offset >= targets[key] - 1 and time.monotonic() - idle_since > settle:
                    todo.discard(key)
                    short = True
    finally:
        consumer.close()
    return not todo and not short, folded


def own_positions(
    admin: AdminClient, reader: Consumer, own: list[TopicPartition]
) -> dict[PartitionKey, int]:
    """Where a rebuild stopped reading each own partition (what the state holds)."""
    lows = end_offsets(admin, own, earliest=True)
    out: dict[PartitionKey, int] = {}
    positions = {(tp.topic, tp.partition): tp.offset for tp in reader.position(own)} if own else {}
    for tp in own:
        key = (tp.topic, tp.partition)
        pos = positions.get(key, -1)
        if pos >= 0:
            out[key] = pos
        elif tp.offset >= 0:
            out[key] = tp.offset  # started at a slice's offset, nothing after it
        else:
            out[key] = max(lows[key], 0)  # nothing on the partition
    return out


def read_own(
    settings: Settings, admin: AdminClient, state: EngineState, own: list[TopicPartition]
) -> tuple[bool, dict[PartitionKey, int]]:
    """Fold the own-topic records from each partition's start offset to the end into
    `state`: (complete?, where each partition's reading stopped)."""
    if not own:
        return True, {}
    reader = Consumer(
        consumer_config(
            settings,
            group_id=group_id(settings.topic_prefix, groups.ENGINE_REBUILD, uuid.uuid4().hex),
        )
    )
    try:
        ok = read_until_caught_up(reader, admin, own, folder(state, Intake(settings)))
        return ok, own_positions(admin, reader, own)
    finally:
        reader.close()


def load_slices(
    settings: Settings,
    admin: AdminClient,
    state: EngineState,
    partitions: list[int],
    snapshot_partitions: int,
) -> dict[int, Slice]:
    """The newest usable slice of each of `partitions`, merged into `state` (which holds
    the reference topics and none of those partitions). Refused slices are logged and
    their partition is replayed in full; if merging fails half-way, `state` is torn:
    `SnapshotError` goes up and the caller rebuilds without snapshots.

    A slice naming an own-topic offset beyond the committed end (the log went back: the
    topic deleted and created again, or truncated) raises `LogCut` with an ERROR, nothing
    merged: replaying the new log in full would forget the decisions, orders and fills of
    the old one without a word. The caller holds until the operator accepts the new log
    (deletes the snapshot topic) or restores the old one."""
    try:
        slices, notes, beyond = read_slices(
            settings,
            admin,
            partitions,
            {t.value: settings.topic(t) for t in OWN_TOPICS},
            snapshot_partitions,
        )
    except Exception:
        log.exception("reading snapshots failed; replaying the log in full")
        return {}
    now = log_ids_of(settings, admin) if slices else {}
    recreated = sorted(
        {
            why
            for sl in slices.values()
            for why in changed_ids(
                {settings.topic(Topic(t)): i for t, i in sl.topic_ids.items()}, now
            )
        }
    )
    if recreated:
        topic = settings.topic(Topic.ENGINE_SNAPSHOTS)
        log.error(
            "a topic the snapshot slices were folded from was deleted and created again "
            "(%s): its new log is not the one the slices hold (a kill switch, limits or "
            "decisions of the old one would be forgotten, or the new one's first records "
            "skipped). Deciding nothing, retrying. Restore the topic; or, to accept the new "
            "log as the truth, stop the engine and the snapshotter, delete the topic %s "
            "(kafka-topics --delete --topic %s), run `tradetape topics`, reset the engine "
            "group's offsets (docs/operations.md, A topic deleted or truncated) and start them",
            "; ".join(recreated),
            topic,
            topic,
        )
        raise LogCut(f"snapshot slices of another log ({'; '.join(recreated)})")
    if beyond:
        topic = settings.topic(Topic.ENGINE_SNAPSHOTS)
        log.error(
            "the log went back under the snapshot slices (%s): an own topic was deleted and "
            "created again, or truncated, and its offsets restarted below what the slices "
            "cover. Replaying the new log would forget the decisions, orders and fills of "
            "the old one: deciding nothing, retrying. Restore the topic's records, or, to "
            "accept the new log as the truth, stop the engine and the snapshotter, delete "
            "the topic %s (kafka-topics --delete --topic %s), run `tradetape topics` to "
            "create it again and start them (docs/operations.md, A topic deleted or "
            "truncated)",
            "; ".join(beyond),
            topic,
            topic,
        )
        raise LogCut(f"snapshot slices beyond the log ({'; '.join(beyond)})")
    for note in notes:
        log.warning("snapshot: %s; that partition is replayed in full", note)
    if slices:
        try:
            merge_slices(state, list(slices.values()))
        except SnapshotError as exc:
            log.warning("snapshot slices do not fit (%s); replaying the log in full", exc)
            raise
    return slices
