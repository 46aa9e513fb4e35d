"""Kafka client configuration and topic administration shared by every component."""

from __future__ import annotations

import concurrent.futures
import logging
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

from confluent_kafka import Consumer, IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec  # type: ignore[attr-defined]

from deploy.settings import Settings
from schemas.topics import TOPICS, Topic, TopicSpec

READ_WAIT_SECONDS = 0.05
"""How long one `consume` call of a reader catching up to a target may wait for a full
batch (seconds, not money). The call returns early only with a full batch, so near the
end of a read every call waits this long: with 0.2 s, reading the few reference records
alone took 0.3-0.7 s of each engine rebuild (bench_engine_startup)."""


CLIENT_LOGGER = "tradetape.kafka"
"""The Python logger librdkafka's logs go to (the `logger` config key of the clients made
from `producer_config` or `consumer_config` that are served often enough: `routes_logs`)."""
REPEATS_REPORTED_EVERY = 100
"""A client's suppressed repeats of a connection failure are counted in the log every
this many (the first one is always shown)."""
QUIET_SECONDS = 60.0
"""A repeat of a connection failure this long after the last one shown is shown again,
with the count of those suppressed meanwhile; seconds, not money."""

_TIMINGS = re.compile(r"\d+ms\b|, \d+ identical error\(s\) suppressed")
"""What differs between repeats of one librdkafka failure: "(after 0ms in state CONNECT)",
"(after 3ms in state CONNECT, 4 identical error(s) suppressed)". Addresses, ports and
broker ids are kept: another broker's failure is another failure."""


def failure_kind(text: str) -> str:
    """A librdkafka message with its timings and repeat counts taken out."""
    return _TIMINGS.sub(lambda m: "" if m.group().startswith(",") else "Nms", text)


REFUSED_HINT = (
    " (is the broker running? `tradetape status` shows the stack, `tradetape up` starts "
    "the local one; TRADETAPE_KAFKA_BOOTSTRAP names an external cluster)"
)
"""Added to the first refused connection a process shows: a component started before the
stack waits and retries, and said only "Connection refused" (review helper-78)."""


class RepeatedFailures(logging.Filter):
    """Passes the first connection-failure record (librdkafka facility FAIL) of each kind
    and drops its repeats: with the broker down, librdkafka logs one per reconnect
    attempt, ~240 lines before a command's one `error:` line (review helper-57, item 13).

    A kind is (client, level, facility, message without its timings: `failure_kind`), so
    a failure of another broker, or a SASL or SSL failure after a refused connection, is
    shown (review helper-60, item 6). A repeat is shown again, with the count suppressed
    since the last shown, every `every`-th time or when `quiet` seconds have passed since
    the last one *shown* (a suppressed repeat does not extend the quiet spell: a
    continuing outage shows once a minute). Every other record (errors and warnings of
    other facilities) passes untouched."""

    def __init__(self, every: int = REPEATS_REPORTED_EVERY, quiet: float = QUIET_SECONDS) -> None:
        super().__init__()
        self.every, self.quiet = every, quiet
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, int, str, str], tuple[int, float]] = {}
        """kind -> (repeats suppressed since the last shown, time the last was shown)."""
        self._hinted = False
        """Whether a refused connection has been shown with `REFUSED_HINT` (once a process)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # confluent-kafka logs ("%s [%s] %s", facility, client name, message)
        if not (isinstance(args, tuple) and len(args) == 3 and args[0] == "FAIL"):
            return True
        key = (str(args[1]), record.levelno, str(args[0]), failure_kind(str(args[2])))
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(key)
            if seen is None:
                if len(self._seen) > 10_000:  # clients come and go: forget the oldest
                    for old in sorted(self._seen, key=lambda k: self._seen[k][1])[:5_000]:
                        del self._seen[old]
                self._seen[key] = (0, now)
                if "Connection refused" in str(args[2]) and not self._hinted:
                    self._hinted = True
                    record.args = (args[0], args[1], f"{args[2]}{REFUSED_HINT}")
                return True
            suppressed = seen[0] + 1
            if suppressed < self.every and now - seen[1] < self.quiet:
                self._seen[key] = (suppressed, seen[1])
                return False
            self._seen[key] = (0, now)
        if suppressed > 1:
            record.args = (
                args[0],
                args[1],
                f"{args[2]} (and {suppressed - 1} more like it, not shown)",
            )
        return True


def client_logger() -> logging.Logger:
    """The logger the clients' librdkafka logs go to (`routes_logs`), with
    `RepeatedFailures`.

    librdkafka hands a client's logs to it only from the client's own poll(), flush(),
    consume() or close() (confluent-kafka queues them until then), where they went
    straight to stderr before: every producer routed here polls or flushes after
    producing and every consumer polls, so their logs still appear, at most one poll
    later. What a client logs after its last poll is lost with it: a consumer that fails
    before its first poll (its error is the caller's exception), and librdkafka's
    "Producer terminating with N messages still in queue" for a producer dropped without a
    flush (every producer here flushes and checks what is left, or counts delivery
    reports). A long-lived producer that sends rarely (a signer's, polled only when it
    sends) shows its logs at its next send; its consumer, polled all the time, shows the
    same broker's failures meanwhile. Admin clients (`admin_client`), transactional
    producers and clients with librdkafka `debug` on keep librdkafka's own stderr logging
    (`routes_logs`)."""
    log = logging.getLogger(CLIENT_LOGGER)
    if not any(isinstance(f, RepeatedFailures) for f in log.filters):
        log.addFilter(RepeatedFailures())
    return log


def routes_logs(conf: dict[str, Any]) -> bool:
    """Whether a client with this config gets `client_logger` (else librdkafka writes its
    logs to stderr itself, from its own threads, at once).

    Not a transactional producer (`transactional.id`): the engine's is polled only inside
    a transaction, so an idle or holding worker -- the broker-outage case -- would show
    none of its logs (review helper-60, item 6). Not a client with `debug` on
    (bench_transactions --debug): its volume through the log queue is exposed to
    librdkafka issue #5325, a poll(0) that may block indefinitely."""
    return "transactional.id" not in conf and not conf.get("debug")


def _with_logger(conf: dict[str, Any]) -> dict[str, Any]:
    if "logger" not in conf and routes_logs(conf):
        conf["logger"] = client_logger()
    return conf


def security_config(settings: Settings) -> dict[str, Any]:
    """The librdkafka keys that authenticate a client (`TRADETAPE_KAFKA_SASL_USERNAME`,
    `TRADETAPE_KAFKA_SASL_PASSWORD`, `TRADETAPE_KAFKA_SASL_MECHANISM`,
    `TRADETAPE_KAFKA_SECURITY_PROTOCOL`, `TRADETAPE_KAFKA_SSL_CA_LOCATION`); empty without a
    SASL user and protocol, as on the open local stack. Every client builder here adds
    them (`producer_config`, `consumer_config`, `admin_client`), so a component runs as
    the principal its settings name and the broker's ACLs decide what it may do
    (`deploy.acls`, docs/operations.md, *Securing the broker*)."""
    conf: dict[str, Any] = {}
    protocol = settings.kafka_protocol
    if protocol != "PLAINTEXT" or settings.kafka_security_protocol is not None:
        conf["security.protocol"] = protocol
    if settings.kafka_sasl_username is not None and settings.kafka_sasl_password is not None:
        conf["sasl.mechanism"] = settings.kafka_sasl_mechanism
        conf["sasl.username"] = settings.kafka_sasl_username
        conf["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_ssl_ca_location is not None:
        conf["ssl.ca.location"] = str(settings.kafka_ssl_ca_location.expanduser())
    return conf


def producer_config(
    settings: Settings, *, transactional_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap,
        **security_config(settings),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "compression.type": "lz4",
        # Java's partitioner: the same key lands on the same partition number on every
        # topic and from every client (librdkafka's default is CRC32-based).
        "partitioner": "murmur2_random",
    }
    if transactional_id is not None:
        conf["transactional.id"] = transactional_id
        conf["transaction.timeout.ms"] = 60_000
    conf.update(extra)
    return _with_logger(conf)


def consumer_config(settings: Settings, *, group_id: str, **extra: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap,
        **security_config(settings),
        "group.id": group_id,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
    }
    conf.update(extra)
    return _with_logger(conf)


ADMIN_LOG_LEVEL = 5
"""syslog NOTICE: the most verbose librdkafka level an admin client logs (`admin_client`)."""


def admin_client(settings: Settings, *, polled: bool = False, **extra: Any) -> AdminClient:
    """An admin client. `polled`: its caller calls its `poll(0)` often (the engine worker,
    every step), so its librdkafka logs go through `client_logger` like the other
    clients'. Else no `logger`: a client never polled would never deliver them, and they
    would pile up in a long-lived one (a projector's); they go to stderr.

    Logged from NOTICE up (`ADMIN_LOG_LEVEL`), without librdkafka's INFO lines: the one an
    admin client printed, when dropped right after an answer (a projector's
    `high_watermarks`, after each `make demo` stage), was `Purging 1 unserved events from
    background queue`. librdkafka's destroy sets its terminating flag, then queues a
    TERMINATE op to wake the background thread; a thread still in confluent-kafka's
    callback for that answer sees the flag on its return and reports its own wake-up op
    as unserved. Nothing is lost (tests/deploy/test_admin_close_log.py). Failures are
    ERROR and warnings WARNING: still shown. With `debug` on, librdkafka's level stays."""
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap,
        **security_config(settings),
        **extra,
    }
    if not conf.get("debug"):
        conf.setdefault("log_level", ADMIN_LOG_LEVEL)
    if polled and not conf.get("debug"):
        conf["logger"] = client_logger()
    return AdminClient(conf)


def partition_count(settings: Settings, spec: TopicSpec) -> int:
    """The partitions a catalogue topic is created with (and which readers wait to see).

    `TRADETAPE_DEFAULT_PARTITIONS` overrides the catalogue's count for the partitioned
    topics only. A topic the catalogue declares with one partition keeps one: its records
    are read as one total order (surveillance.config's detector settings in the order
    they were changed, a signing round's request, messages and outcome, the dead
    letters), which a key-hashed spread over several partitions would lose."""
    if spec.partitions == 1:
        return 1
    return settings.default_partitions or spec.partitions


def partition_changes(settings: Settings, counts: Mapping[str, int]) -> dict[str, tuple[int, int]]:
    """The catalogue topics among `counts` (full name -> partitions the broker lists now)
    whose partition count differs from the one they are created with: name -> (declared,
    actual). Empty when the log's topology is as declared.

    A topic's count is fixed once it exists (`TopicSpec.fixed_partitions`): every event
    topic is keyed (account, instrument, scope, request id) and events of one key share a
    partition, which is all the per-key order the engine and the projections rely on.
    Adding partitions moves keys, so an account's old events stay on one partition and its
    new ones land on another: an engine worker owning the new one rebuilds without the
    account's history, and a replay reads old and new interleaved in no fixed order. The
    engine decides every intent as STALE_STATE and `tradetape status` reports the
    projections DEGRADED while this is non-empty (docs/operations.md, *Adding partitions*).
    The declared count is `partition_count` (the catalogue's, or
    `TRADETAPE_DEFAULT_PARTITIONS`): changing that setting for an existing log is a
    partition change too."""
    changed: dict[str, tuple[int, int]] = {}
    for spec in TOPICS.values():
        if not spec.fixed_partitions:
            continue
        name = spec.full_name(settings.topic_prefix)
        actual = counts.get(name)
        if actual is None or actual == 0:
            continue  # not created (yet): nothing folded from it
        declared = partition_count(settings, spec)
        if actual != declared:
            changed[name] = (declared, actual)
    return changed


def describe_partition_changes(changed: Mapping[str, tuple[int, int]]) -> str:
    """One line naming each changed topic: `orders.lifecycle has 12 partitions, declared 6`."""
    return "; ".join(
        f"{name} has {actual} partitions, declared {declared}"
        for name, (declared, actual) in sorted(changed.items())
    )


class PartitionsChanged(RuntimeError):
    """A component refuses to fold a log whose topics are off their declared partition
    counts (`partition_changes`): what it would compute depends on the order it happens
    to read a key's events from before and after the change in. `changed` is
    `partition_changes`'s answer; the message names each topic and says what to do."""

    def __init__(self, who: str, changed: Mapping[str, tuple[int, int]]) -> None:
        self.who = who
        self.changed = dict(changed)
        super().__init__(
            f"{who} holds: {describe_partition_changes(changed)}; a key's events before and "
            "after the change lie on different partitions and would be folded in no fixed "
            "order (docs/operations.md, Adding partitions)"
        )


def check_partitions(settings: Settings, counts: Mapping[str, int], *, who: str) -> None:
    """Raise `PartitionsChanged` if any topic in `counts` (full name -> partitions the
    broker lists now) is off its declared count: the one check every component that
    folds the log makes before it folds (the engine worker decides STALE_STATE instead,
    `tradetape rebuild` refuses, the snapshotter and surveillance hold)."""
    if changed := partition_changes(settings, counts):
        raise PartitionsChanged(who, changed)


def listed_partition_counts(
    settings: Settings, topics: list[Topic], *, admin: AdminClient | None = None,
    timeout: float = 10.0,
) -> dict[str, int]:  # fmt: skip
    """Full name -> partitions the broker lists now, for the catalogue `topics` that exist
    (one metadata request)."""
    wanted = {settings.topic(t) for t in topics}
    listed = (admin or admin_client(settings)).list_topics(timeout=timeout).topics
    return {n: len(md.partitions) for n, md in listed.items() if n in wanted and md.error is None}


def declared_partitions_error(settings: Settings, admin: AdminClient | None = None) -> str | None:
    """What `tradetape up` and `topics` refuse with when an existing catalogue topic is off
    its declared count (`partition_changes`), or None. The declared count of a partitioned
    topic is `TRADETAPE_DEFAULT_PARTITIONS` when set: changing that setting after the
    topics exist declares a count they do not have, and every component then holds (the
    engine decides every intent STALE_STATE). Said at once, with what to do."""
    counts = listed_partition_counts(settings, list(TOPICS), admin=admin)
    changed = partition_changes(settings, counts)
    if not changed:
        return None
    setting = (
        f"TRADETAPE_DEFAULT_PARTITIONS={settings.default_partitions}"
        if settings.default_partitions
        else "TRADETAPE_DEFAULT_PARTITIONS unset: the catalogue's counts"
    )
    return (
        f"{describe_partition_changes(changed)}. The declared count ({setting}) applies only "
        "when a topic is created: if the setting changed since, set it back to the count the "
        "topics were created with; if partitions were added, they cannot be removed "
        "(docs/operations.md, Adding partitions). Until then the engine decides every intent "
        "as STALE_STATE and the snapshotter and surveillance hold"
    )


def create_topics(
    settings: Settings, topics: list[Topic] | None = None, timeout: float = 30.0
) -> list[str]:
    """Create catalogue topics that do not exist yet. Returns the names it created."""
    admin = admin_client(settings)
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [TOPICS[t] for t in (topics or list(TOPICS))]
    new = [
        NewTopic(
            spec.full_name(settings.topic_prefix),
            num_partitions=partition_count(settings, spec),
            replication_factor=spec.replication_factor,
            config=dict(spec.config),
        )
        for spec in wanted
        if spec.full_name(settings.topic_prefix) not in existing
    ]
    align_topic_configs(
        admin, [s for s in wanted if s.full_name(settings.topic_prefix) in existing], settings
    )
    if not new:
        return []
    created: list[str] = []
    for name, fut in admin.create_topics(new, operation_timeout=timeout).items():
        try:
            fut.result()
            created.append(name)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return sorted(created)


def ensure_topics(settings: Settings, topics: list[Topic], timeout: float = 30.0) -> list[str]:
    """`create_topics` for a component that needs `topics`, only when one of them is
    missing. A component running as its role (`deploy.acls`) sees only the topics it may
    describe and may create none: `create_topics` would try to create the catalogue's
    others and align their configs, and be refused (`TOPIC_AUTHORIZATION_FAILED`).
    Creating the catalogue is `tradetape up` / `topics`' job, as an administrator."""
    counts = listed_partition_counts(settings, topics, timeout=timeout)
    if all(settings.topic(t) in counts for t in topics):
        return []
    return create_topics(settings, timeout=timeout)


ALIGNED_CONFIGS = ("message.timestamp.type",)
"""Topic configs `create_topics` also sets on topics that exist already: the intents
topic's LogAppendTime, which the engine bounds intent times against, must reach a stack
whose topics were created before it was in the catalogue."""


def align_topic_configs(
    admin: AdminClient, specs: list[Any], settings: Settings, timeout: float = 30.0
) -> list[str]:
    """Set `ALIGNED_CONFIGS` of existing topics to the catalogue's values where they
    differ (an incremental alter: other configs are left alone). Returns the names changed."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourceType,
    )

    wanted = {
        spec.full_name(settings.topic_prefix): {
            k: v for k, v in spec.config.items() if k in ALIGNED_CONFIGS
        }
        for spec in specs
    }
    wanted = {name: cfg for name, cfg in wanted.items() if cfg}
    if not wanted:
        return []
    described = admin.describe_configs(
        [ConfigResource(ResourceType.TOPIC, name) for name in sorted(wanted)],
        request_timeout=timeout,
    )
    changes = []
    for resource, fut in described.items():
        current = fut.result()
        diff = {
            k: v
            for k, v in wanted[resource.name].items()
            if k not in current or current[k].value != v
        }
        if diff:
            changes.append(
                ConfigResource(
                    ResourceType.TOPIC,
                    resource.name,
                    incremental_configs=[
                        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                        for k, v in sorted(diff.items())
                    ],
                )
            )
    if not changes:
        return []
    for fut in admin.incremental_alter_configs(changes, request_timeout=timeout).values():
        fut.result()
    return sorted(c.name for c in changes)


def partitions_of(
    consumer: Consumer, settings: Settings, topic: Topic, timeout: float = 30.0
) -> list[int]:
    """The topic's partitions, waiting until the metadata shows as many as it was created
    with: right after creation a broker may list none yet, and a reader that assigned
    from that answer would silently miss partitions forever."""
    return partitions_of_many(consumer, settings, [topic], timeout)[topic]


def partitions_of_many(
    consumer: Consumer,
    settings: Settings,
    topics: list[Topic],
    timeout: float = 30.0,
    *,
    optional: frozenset[Topic] = frozenset(),
) -> dict[Topic, list[int]]:
    """`partitions_of` for several topics from one metadata request: an engine rebuild
    asked for seven topics one by one, at ~80 ms a request (a third of a small rebuild).
    An `optional` topic (a cache, say) that does not exist comes back with no partitions
    instead of being waited for."""
    names = {t: settings.topic(t) for t in topics}
    deadline = time.monotonic() + timeout
    while True:
        if len(topics) == 1:
            md = consumer.list_topics(names[topics[0]], timeout=10).topics
        else:
            md = consumer.list_topics(timeout=10).topics
        found: dict[Topic, list[int]] = {}
        for t, name in names.items():
            tm = md.get(name)
            found[t] = sorted(tm.partitions) if tm is not None and tm.error is None else []
        denied = [
            names[t]
            for t in topics
            if not found[t] and t not in optional and _denied(consumer, names[t], md)
        ]
        if denied:
            raise RuntimeError(
                f"topic {', '.join(denied)}: not authorized for this principal (its ACLs "
                "grant no DESCRIBE/READ on it; `tradetape acls plan` lists what each role "
                "may read)"
            )
        short = [
            t
            for t in topics
            if t not in optional and len(found[t]) < partition_count(settings, TOPICS[t])
        ]
        if not short or time.monotonic() > deadline:
            empty = [names[t] for t in topics if not found[t] and t not in optional]
            if empty:
                raise RuntimeError(f"topic {', '.join(empty)} has no partitions")
            return found
        time.sleep(0.2)


def _denied(consumer: Consumer, name: str, md: Mapping[str, Any]) -> bool:
    """Whether the broker refuses this principal `name`'s metadata. A listing of every
    topic leaves such a topic out, as it leaves out one that does not exist: only a
    request naming it gets the refusal. A refusal is not waited out (it is no topic
    still being created), and is named as what it is, not "no partitions"."""
    tm = md.get(name)
    if tm is None:
        tm = consumer.list_topics(name, timeout=10).topics.get(name)
    err = tm.error if tm is not None else None
    return err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


_T = TypeVar("_T")
_K = TypeVar("_K")

COORDINATOR_NOT_READY = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)
"""What a group request (describe a group, list its offsets) answers for a moment while
the group coordinator is not ready (a broker just started: its offsets topic created or
loading): `asked_again(..., waiting=COORDINATOR_NOT_READY)`."""


def kafka_error(exc: BaseException) -> KafkaError | None:
    """The `KafkaError` an exception carries as its first argument, as librdkafka raises
    a `KafkaException` (None: it carries none)."""
    err = exc.args[0] if exc.args else None
    return err if isinstance(err, KafkaError) else None


def error_detail(exc: BaseException) -> str:
    """What went wrong, for a one-line message: the carried `KafkaError`'s own text (its
    `str()`, not the `KafkaError{code=...}` form), else the exception's first argument's."""
    err = kafka_error(exc)
    if err is not None:
        return err.str()
    return str(exc.args[0]) if exc.args else str(exc)


def error_code(exc: KafkaException) -> int | None:
    """The `KafkaError` code a `KafkaException` carries (None: it carries none)."""
    err = kafka_error(exc)
    return None if err is None else err.code()


def transaction_call_again(exc: KafkaException) -> bool:
    """Whether librdkafka lets a failed transaction call (`init_transactions`, a commit)
    be made again: a retriable error that is neither fatal nor one that needs the
    transaction aborted."""
    err = kafka_error(exc)
    return err is not None and err.retriable() and not err.fatal() and not err.txn_requires_abort()


class StopAsked(Exception):
    """The caller's `stopping()` turned true while a broker request was waited on: a
    clean stop the caller asked for, not a broker error."""


STOP_LOOK_SECONDS = 0.1
"""How long a stop-aware wait on a broker answer goes without looking at `stopping`
(seconds, not money)."""


def _answers(
    futures: Mapping[_K, concurrent.futures.Future[_T]],
    stopping: Callable[[], bool] | None,
) -> dict[_K, _T]:
    """Each future's result. With `stopping`, waited in slices of `STOP_LOOK_SECONDS`
    with the stop looked at between them (`StopAsked`): an admin request's `result()`
    does not return for a signal until its `request_timeout`."""
    if stopping is not None:
        pending: set[concurrent.futures.Future[_T]] = set(futures.values())
        while pending:
            if stopping():
                raise StopAsked("while waiting on the broker")
            _done, pending = concurrent.futures.wait(pending, timeout=STOP_LOOK_SECONDS)
    return {k: f.result() for k, f in futures.items()}


def asked_again(
    call: Callable[[], _T],
    timeout: float,  # seconds, not money
    *,
    waiting: Collection[int] | None = None,
    stopping: Callable[[], bool] | None = None,
) -> _T:
    """`call()`, asked again every 0.2 s while it raises a `KafkaException` whose code is
    in `waiting` (None: any code; a broker just started or a request timed out), for up
    to `timeout` seconds; then that error. Another error is raised at once. With
    `stopping`, a stop asked for between calls ends it (`StopAsked`). The one retry loop
    of the admin requests (`end_offsets`, `topic_ids`, the status's group descriptions)."""
    deadline = time.monotonic() + timeout  # seconds, not money
    while True:
        try:
            return call()
        except KafkaException as exc:
            if waiting is not None and error_code(exc) not in waiting:
                raise
            if time.monotonic() > deadline:
                raise
            if stopping is not None and stopping():
                raise StopAsked("while asking the broker again") from None
            time.sleep(0.2)


def end_offsets(
    admin: AdminClient,
    tps: list[TopicPartition],
    *,
    earliest: bool = False,
    timeout: float = 30.0,
    stopping: Callable[[], bool] | None = None,
) -> dict[tuple[str, int], int]:
    """Committed end (last stable offset) of each partition, in one batched request.
    With `stopping`, a stop asked for while it waits on the broker ends it within
    `STOP_LOOK_SECONDS` (`StopAsked`); without, it may take up to `timeout` and one
    request's 10 s more."""
    spec = OffsetSpec.earliest() if earliest else OffsetSpec.latest()  # type: ignore[no-untyped-call]

    def ask() -> dict[tuple[str, int], int]:
        futures = admin.list_offsets(
            {TopicPartition(tp.topic, tp.partition): spec for tp in tps},
            isolation_level=IsolationLevel.READ_COMMITTED,
            request_timeout=10,
        )
        return {
            (tp.topic, tp.partition): int(info.offset)
            for tp, info in _answers(futures, stopping).items()
        }

    return asked_again(ask, timeout, stopping=stopping)


def assign_from_end(consumer: Consumer, settings: Settings, topics: list[Topic]) -> None:
    """Assign every partition of `topics` at its committed end: only new records are read."""
    tps = [
        TopicPartition(settings.topic(t), p)
        for t in topics
        for p in partitions_of(consumer, settings, t)
    ]
    ends = end_offsets(admin_client(settings), tps)
    consumer.assign(
        [TopicPartition(tp.topic, tp.partition, ends[(tp.topic, tp.partition)]) for tp in tps]
    )


def bootstrap_addresses(servers: str) -> list[tuple[str, int]]:
    """The (host, port) of each `host:port` of a comma-separated bootstrap list (an
    optional `scheme://`, an IPv6 literal in brackets); entries of another form are left
    to the Kafka client to make sense of."""
    out: list[tuple[str, int]] = []
    for server in servers.split(","):
        host, _, port = server.strip().rpartition("://")[2].rpartition(":")
        host = host.strip("[]")
        if host and port.isdigit():
            out.append((host, int(port)))
    return out


def broker_unreachable(settings: Settings) -> str | None:
    """The one error line if no bootstrap broker accepts a TCP connection, else None.
    A plain socket, no librdkafka handle (safe before a fork), and at once: a Kafka
    client retries an absent broker until its own timeout (`tradetape topics` took 30 s
    to fail)."""
    import socket

    addresses = bootstrap_addresses(settings.bootstrap)
    if not addresses:
        return None  # not host:port: the client will say what it makes of it
    first: str | None = None
    for address in addresses:
        try:
            socket.create_connection(address, timeout=10).close()
            return None
        except OSError as exc:
            first = first or (exc.strerror or str(exc))
    return f"cannot reach the Kafka broker at {settings.bootstrap}: {first}"


def topic_ids(
    admin: AdminClient,
    names: list[str],
    timeout: float = 30.0,  # seconds, not money
) -> dict[str, str]:
    """Each topic's id (`TopicDescription.topic_id`, as text) by full name; a topic that
    does not exist is left out. Kafka gives a topic a new id when it is created again, so
    an id stored with a position tells a recreated topic's log from the one the position
    was taken in even once the new log has grown past it (offsets alone cannot)."""
    from confluent_kafka import TopicCollection

    if not names:
        return {}

    def ask() -> dict[str, str]:
        futures = admin.describe_topics(TopicCollection(sorted(set(names))), request_timeout=10)
        out: dict[str, str] = {}
        for name, fut in futures.items():
            try:
                out[name] = str(fut.result().topic_id)
            except KafkaException as exc:
                if error_code(exc) in (
                    KafkaError.UNKNOWN_TOPIC_OR_PART,
                    KafkaError.UNKNOWN_TOPIC_ID,
                ):
                    continue
                raise
        return out

    return asked_again(ask, timeout)


def log_gone(
    topic: str,
    partition: int,
    offset: int,
    low: int,
    high: int,
    *,
    id_then: str | None = None,
    id_now: str | None = None,
    said: str = "from offset",
) -> str | None:
    """Why a reader positioned at `offset` of `topic[partition]` would fold another log
    than the one its position was taken in, described (None: the same log, as far as it
    can be told). The one check every reader makes before folding on (projectors,
    the engine's rebuild and input check, the snapshotter):

    - the topic's id is not the one stored with the position (`id_then`; None: none was
      stored, nothing to compare): the topic was deleted and created again, whatever the
      offsets say (the new log may have grown past the stored offset);
    - a read from the beginning (`offset` < 0) of a log whose first offset is past 0:
      records were deleted from its start;
    - an `offset` outside the partition's first offset..end: records deleted past it, or
      the topic deleted and created again, or truncated.

    Reading on would skip the new log's records below the offset as already folded or
    fold a log with a hole, silently: a consumer's `auto.offset.reset` moves an
    out-of-range fetch to the log's start without a word."""
    low, high = max(low, 0), max(high, 0)
    where = f"{topic}[{partition}]"
    if id_then is not None and id_now is not None and id_then != id_now:
        at = "from its beginning" if offset < 0 else f"{said} {offset}"
        return (
            f"{where}: {at} in topic id {id_then}, the topic's id is {id_now} now (it was "
            "deleted and created again)"
        )
    if offset < 0:
        return None if low == 0 else f"{where}: from its beginning, the log holds {low}..{high}"
    if not low <= offset <= high:
        return f"{where}: {said} {offset}, the log holds {low}..{high}"
    return None
