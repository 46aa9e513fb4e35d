"""The engine worker: a confluent-kafka consume-transform-produce loop, exactly once.

- Intents and admin commands come through the consumer group (`<prefix>engine`), so N
  workers share the partitions. The control topics (accounts, transfers, risk config) and
  market data are read in full by every worker, each through a manually assigned consumer
  of its own; before a batch with inputs is decided the control consumer is read to the
  end offsets measured after the batch was polled (`engine.control`), else its intents
  are STALE_STATE.
- Every batch is one Kafka transaction: the outputs plus the input offsets
  (`send_offsets_to_transaction`), so a decision and the consumption of its intent
  commit together or not at all. Everything is read with `read_committed`. A batch's
  transaction runs on a committer thread while the next batch is processed; it must have
  committed before the next one begins.
- At its first assignment the worker rebuilds its state from the log: reference topics
  in full, then its own outputs (decisions, orders, fills) for the partitions it owns —
  from the newest usable snapshot slice of each partition on, if there is one (see
  `engine.snapshot`; slices are taken by `engine.snapshotter`, a process of its own, so
  a worker's loop never pays for them). At later assignments it keeps that state,
  forgets the partitions it gave up and folds only the ones it gained (`_take_over`). It
  never re-runs a decision: resent or replayed intents find their decision in that state.
- Fail closed: the consumer lag on the input partitions is passed to the rules, which
  reject with STALE_STATE above the configured bound; so is an unknown lag when the
  control topics could not be read to their end.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from deploy import groups
from deploy.deadletter import redelivered_dead_letter
from deploy.groups import group_id
from deploy.kafka import (
    admin_client,
    client_logger,
    consumer_config,
    describe_partition_changes,
    end_offsets,
    kafka_error,
    partition_changes,
    partitions_of_many,
    producer_config,
    transaction_call_again,
)
from deploy.settings import Settings
from deploy.signals import handling_stop
from engine.control import (
    CONTROL_TOPICS,
    HOLD_BUFFER,
    ControlFeed,
    Drained,
    stale_admin_reason,
)
from engine.heap import HeapPolicy
from engine.partitioning import partitioner
from engine.processor import (
    ENGINE_PRODUCER,
    Context,
    Output,
    bound_kept,
    catch_up,
    control,
    preverify,
    process,
    redo_known,
    reject_admin,
    reject_misrouted,
)
from engine.replay import (
    DECISION_TYPES,
    OWN_TOPICS,
    REFERENCE_TOPICS,
    Intake,
    LogCut,
    changed_ids,
    decode_message,
    folder,
    ids_changed,
    ids_metadata,
    load_slices,
    log_ids_of,
    outside_the_log,
    read_all_until_caught_up,
    read_own,
)
from engine.risk.rules import UNKNOWN_LAG
from engine.snapshot import Slice, SnapshotError, release_partitions
from engine.state import EngineState
from schemas import Envelope, MalformedEventError, encode
from schemas.events import CancelIntent, MarketTrade, OrderIntent, QuoteUpdated
from schemas.events.admin import ADMIN_COMMAND_TYPES
from schemas.topics import Topic

log = logging.getLogger("tradetape.engine")

INPUT_TOPICS = (Topic.INTENTS, Topic.ADMIN)
READ_TOPICS = (*OWN_TOPICS, *REFERENCE_TOPICS, Topic.MARKETDATA)
"""The topics besides the inputs whose records the state folds (a rebuild reads them)."""
MARKETDATA_WARMUP = 5_000
"""Market-data records per partition read back on start: the latest prices, and the
prints a new owner matches its resting orders against (`PaperVenue.catch_up`)."""
SLOW_BATCH_SECONDS = 0.1
"""A batch that takes longer than this (seconds, not money) is logged with where its
time went: a stall shows in the log, not only in a latency percentile."""
REF_GRACE_SECONDS = 0.1
"""How long a batch with an intent for an unseen price/producer/account waits for
reference records already on their way (only then; steady state does not wait)."""
REF_GRACE_BACKOFF = 5.0
"""The same missing price/producer/account is waited for at most once per this many s."""
METADATA_REFRESH_MS = 10_000
"""How often the group consumer refreshes topic metadata (added input partitions)."""
TXN_TIMEOUT_MS = 10_000
"""Short, so a killed worker's open transaction is aborted soon after a takeover."""
TXN_PRODUCER_TUNING: dict[str, Any] = {
    "transaction.timeout.ms": TXN_TIMEOUT_MS,
    "linger.ms": 1,
    # Back-to-back transactions: the coordinator answers AddOffsetsToTxn with
    # CONCURRENT_TRANSACTIONS while the previous transaction's markers are being written or
    # this one's AddPartitionsToTxn (sent at the first produce) is in flight; librdkafka
    # retries it after this backoff (its default 100 ms made ~150 ms commits; 5 ms cost
    # ~2.5 ms more per transaction than 1 ms: bench_transactions, docs/benchmarks.md).
    "retry.backoff.ms": 1,
    "retry.backoff.max.ms": 100,
    "socket.nagle.disable": True,
}
"""Producer settings for the engine's transactions (the bench's pass-through uses them too)."""
RECORD_HEADROOM = 1024
"""Bytes kept free under the producer's `message.max.bytes` for what a record adds to its
key, value and headers (librdkafka refuses `key + value + headers > message.max.bytes`)."""
INPUT_FAULTS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.INVALID_RECORD,
    }
)
"""Produce errors no retry can cure: the record itself is refused. The input it came from
is answered with a rejection or dead letter instead (see `PoisonOutput`)."""
REBUILD_BACKOFF_MAX = 30.0
"""Longest wait (seconds) between two attempts at a rebuild that failed or was incomplete."""
INIT_TXN_SECONDS = 60.0
"""How long (seconds, not money) a worker's producer may take to initialise its
transactions (find the coordinator, settle an earlier transaction of its id) before the
worker gives up and exits 1 (`tradetape run` restarts it)."""
TXN_CALL_SLICE = 0.5
"""The longest one blocking call to `init_transactions` or `abort_transaction` waits before
the worker looks at `stopping` (seconds, not money): librdkafka lets such a call that timed
out be called again to resume it, and these calls do not return for a signal, so a 60 s
call held a SIGTERM for up to 60 s."""
STOP_ABORT_SECONDS = 3.0
"""At a stop, how long (seconds, not money) the worker tries to abort a transaction whose
commit failed. Not longer: an open transaction is aborted by its coordinator anyway (after
`TXN_TIMEOUT_MS`, or when this transactional id next initialises), nothing of it is
read by anyone (`read_committed`), and its inputs are decided again by their next owner."""
IDLE_REPORT_SECONDS = 300.0
"""An idle worker repeats its unchanged periodic report this often (seconds), not every
10 s (a quiet `tradetape run` printed the same line six times a minute; review helper-78)."""

STOP_GRACE_SECONDS = 8.0
"""How long (seconds, not money) `tradetape run engine` lets a stop take before it exits
without the clean-up (a broker call the loop is inside of that does not return for a
signal: a rebuild's metadata or offset request against a dead broker waits up to 30 s).
Safe for the same reason as `STOP_ABORT_SECONDS`: the log holds only committed
transactions. A second SIGTERM/SIGINT exits at once."""


STOP_MESSAGE_SECONDS = 1.0
"""How long (seconds, not money) a hard exit waits for its last log line to be written."""


def _exit_saying(level: int, msg: str, *args: object) -> NoReturn:
    """Log `msg`, then exit 1 at once, without the clean-up. The line is written by a thread
    of its own, waited for at most `STOP_MESSAGE_SECONDS`: stderr may be a full pipe that
    nobody reads (a write to it blocks for ever), and the exit must not wait on it."""

    def say() -> None:
        log.log(level, msg, *args)
        logging.shutdown()

    writer = threading.Thread(target=say, name="engine-exit-log", daemon=True)
    writer.start()
    writer.join(STOP_MESSAGE_SECONDS)
    os._exit(1)


class StopGrace:
    """`tradetape run engine`'s bound on a stop: `start` (at the first signal) exits 1
    without the clean-up `STOP_GRACE_SECONDS` later (the loop inside a broker call that
    does not return for a signal; see there), unless `done` (the clean stop has returned)
    came first; a clean stop then exits with its own code however long the rest of the
    shutdown takes (the clients' release, the interpreter's exit, a profile's dump).
    Both sides decide under `dumping`, so the exit never cuts the state file's write."""

    def __init__(self, dumping: threading.Lock, wid: str) -> None:
        self._dumping = dumping
        self._wid = wid
        self._done = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._deadline, name="engine-stop", daemon=True).start()

    def done(self) -> None:
        with self._dumping:
            self._done.set()

    def _deadline(self) -> None:
        if self._done.wait(STOP_GRACE_SECONDS):
            return
        with self._dumping:  # never while the state file is being written
            if self._done.is_set():
                return
            _exit_saying(
                logging.ERROR,
                "engine worker %s: not stopped within %.0f s of the signal (waiting on the "
                "broker); exiting without the clean-up: its open transaction, if any, is "
                "aborted by the broker",
                self._wid,
                STOP_GRACE_SECONDS,
            )


class Stopped(Exception):
    """The worker was asked to stop while it waited on the broker."""


class PoisonOutput(KafkaException):
    """A transaction failed because of one output the producer or broker refuses whatever
    the retry (too large): `source` names the input it came from, (topic, partition,
    offset), or None if it came from no input (market data, a catch-up)."""

    def __init__(self, source: tuple[str, int, int] | None, error: KafkaError) -> None:
        super().__init__(error)
        self.source = source


def _record_bytes(key: bytes | None, value: bytes, headers: Any) -> int:
    return (
        len(key or b"")
        + len(value)
        + sum(len(k) + len(v or b"") + 8 for k, v in headers or ())
        + RECORD_HEADROOM
    )


def _record(msg: Message) -> tuple[int, int] | None:
    """A record's (partition, offset), which a rejection of the intent in it names."""
    partition, offset = msg.partition(), msg.offset()
    if partition is None or offset is None or partition < 0 or offset < 0:
        return None
    return (partition, offset)


def broker_time(msg: Message) -> datetime | None:
    """The broker's append time of a record, or None if its timestamp is the producer's
    (CreateTime: a topic not configured with LogAppendTime) or missing. An intent without
    it fails closed (FRESHNESS: CLOCK_SKEW), see `schemas.topics.INTENT_LOG_CONFIG`."""
    kind, ms = msg.timestamp()
    if kind != TIMESTAMP_LOG_APPEND_TIME or ms is None or ms < 0:
        return None
    return datetime.fromtimestamp(ms // 1000, UTC) + timedelta(milliseconds=ms % 1000)


class Ownership:
    """Whether an account lies on a partition the worker owns (cached per account: the
    partitioner hashes the account's key)."""

    def __init__(self, part: Callable[[str], int], owned: frozenset[int]) -> None:
        self.part, self.owned = part, owned
        self._known: dict[str, bool] = {}

    def __call__(self, account: str) -> bool:
        known = self._known.get(account)
        if known is None:
            known = self._known[account] = self.part(account) in self.owned
        return known


def _live_from(consumer: Consumer, read: list[TopicPartition]) -> list[TopicPartition]:
    """Where `consumer` stopped reading `read` (the start of a partition it read nothing of)."""
    positions = consumer.position([TopicPartition(tp.topic, tp.partition) for tp in read])
    return [
        tp if tp.offset >= 0 else TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING)
        for tp in positions
    ]


def worker_id() -> str:
    return os.environ.get("TRADETAPE_ENGINE_WORKER_ID", "0")


def admin_producers() -> frozenset[str]:
    raw = os.environ.get("TRADETAPE_ENGINE_ADMINS", "admin")
    return frozenset(a.strip() for a in raw.split(",") if a.strip())


class EngineWorker:
    def __init__(self, settings: Settings, *, wid: str | None = None) -> None:
        self.settings = settings
        self.wid = wid or worker_id()
        self.stopping = False
        self.dumping = threading.Lock()
        """Held while the state file is written at a stop (see `main`)."""
        self.state = EngineState()
        self.ctx = Context(admins=admin_producers())
        self.names = {t: settings.topic(t) for t in Topic}
        self.input_names = {self.names[t] for t in INPUT_TOPICS}
        self._new_clients()
        self.admin = self._admin_client()
        self.max_record = int(producer_config(settings).get("message.max.bytes", 1_000_000))
        """The producer's record size limit: an output over it is its input's fault."""
        self._control_failed_at = -1e9
        self.stale: str | None = None
        """Why the batch being decided may see stale control facts (the control topics not
        read to their end, the lag unknown), or None: its intents are STALE_STATE and its
        admin commands that loosen are rejected (`engine.control.stale_admin_reason`)."""
        self.held_md: list[Message] = []
        """Market-data records read while holding (`_serve_logs`), for the next step."""
        self.poison: dict[tuple[str, int, int], str] = {}
        """Inputs (topic, partition, offset) whose outputs the producer refused for good,
        with the reason: reprocessed, they are answered with a rejection or dead letter."""
        self.intake = Intake(settings)
        """Which event types (and producers) each topic read in full may bring."""
        self.complete = True
        """False while the state is not the whole log (a rebuild timed out or failed, a
        failed transaction's rewind is pending): the worker decides nothing, it retries."""
        self.rewind_pending = False
        self._retry_at = 0.0
        self._retries = 0
        self._owned: list[int] = []
        self.catch_up_pending = False
        """Set when partitions were (re)assigned: the next step matches their resting
        orders against the kept prints the log does not show as matched."""
        self.catch_up_enabled = True
        self.folded: set[int] = set()
        """The partitions whose own-topic records the state holds (through a rebalance,
        until `_take_over` or a rebuild adjusts it to the new assignment)."""
        self.n_own_partitions = 0
        """The own topics' partition count at the last full rebuild (accounts' partitions)."""
        self.assigned: list[TopicPartition] = []
        """The input partitions as of the last rebalance callback (eager protocol: the
        callbacks carry the whole assignment). `Consumer.assignment()` asks librdkafka's
        main thread and waits for it: 1.1 ms per call in a cProfile of the loaded worker,
        twice per step before."""
        self._high: dict[tuple[str, int], int] = {}
        self.read_in_full: dict[str, int] = {}
        """Topic -> partitions the reference consumer was assigned at the last rebuild."""
        self.topology: dict[str, tuple[int, int]] = {}
        """The topics the worker reads whose partition count is not the declared one:
        name -> (declared, actual) (`deploy.kafka.partition_changes`). While non-empty
        every intent is decided as STALE_STATE: an account's history may lie on a
        partition whose owner is another worker (fail closed)."""
        self._misrouted_logged = 0.0  # monotonic seconds, not money
        self._partitions_checked = time.monotonic()
        self._high_at = 0.0
        self.needs_rebuild = False
        self.in_txn = False
        self.committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-commit")
        """Commits batch N while the main thread processes batch N+1 (see `step`)."""
        self.pending: Future[dict[tuple[str, int], int] | None] | None = None
        self._grace_given: dict[str, float] = {}  # monotonic seconds, not money
        self.heap = HeapPolicy(enabled=os.environ.get("TRADETAPE_ENGINE_GC_FREEZE", "1") != "0")
        """Keeps the cyclic garbage collector from re-scanning the state (see engine.heap)."""
        self.stats = {
            "intents": 0,
            "outputs": 0,
            "dead_letters": 0,
            "transactions": 0,
            "caught_up": 0,
        }
        # ---- reading snapshot slices (written by engine.snapshotter) ----
        self.snapshots = settings.engine_snapshots
        self.own_short = {self.names[t]: t.value for t in OWN_TOPICS}
        self.log_ids: dict[str, str] = {}
        """The ids of the topics (`LOG_ID_TOPICS`) as of the last rebuild's start: the logs
        the state was folded from. Committed with every offset (`ids_meta`) and compared
        with the topics' ids at each rebuild and take-over (`_inputs_in_range`)."""
        self.ids_meta = ""
        self.own_end: dict[tuple[str, int], int] = {}
        """Own topic partition -> the offset after the last record this worker's state
        has folded, as committed (rebuild positions, then delivery reports)."""
        self.exact = False
        """True while `own_end` names exactly what the state folded: after a complete
        rebuild, as long as every transaction's delivery reports arrive and none failed.
        Only then may a partition hand-over fold onto the state held (`_take_over`)."""
        self.last_rebuild: dict[str, Any] = {}
        self.part: Callable[[str], int] = partitioner(1)
        self.busy = {
            "poll": 0.0,
            "refs+lag": 0.0,
            "control": 0.0,
            "process": 0.0,
            "commit-wait": 0.0,
            "produce": 0.0,
            "offsets": 0.0,
            "end": 0.0,
        }

    def _new_clients(self) -> None:
        """The transactional producer, the group consumer and the reference consumer."""
        prefix = self.settings.topic_prefix
        self.producer = Producer(
            producer_config(
                self.settings,
                transactional_id=f"{prefix}engine-{self.wid}",
                **TXN_PRODUCER_TUNING,
                # Its logs through `tradetape.kafka` too: polled inside each transaction
                # and, between them, by `_poll_logs` (deploy.kafka.routes_logs leaves a
                # transactional producer on stderr, as one polled only inside
                # transactions would show nothing while idle or holding).
                **{"client.id": f"engine-{self.wid}-txn", "logger": client_logger()},
            )
        )
        self.consumer = Consumer(
            consumer_config(
                self.settings,
                group_id=group_id(prefix, groups.ENGINE),
                **{
                    "max.poll.interval.ms": 300_000,
                    "session.timeout.ms": self.settings.engine_session_timeout_ms,
                    "heartbeat.interval.ms": min(
                        2_000, self.settings.engine_session_timeout_ms // 3
                    ),
                    # Static membership: a restarted worker takes its partitions straight
                    # back; a dead one's go to the others after the session timeout.
                    "group.instance.id": f"{prefix}engine-{self.wid}",
                    # A partition added to an input topic reaches the group (a rebalance)
                    # at the next metadata refresh: librdkafka's default is 5 minutes.
                    "topic.metadata.refresh.interval.ms": METADATA_REFRESH_MS,
                    "client.id": f"engine-{self.wid}-group",
                },
            )
        )
        self.ref_consumer = Consumer(
            consumer_config(
                self.settings,
                group_id=group_id(prefix, groups.ENGINE_REF, uuid.uuid4().hex),
                **{"client.id": f"engine-{self.wid}-md"},
            )
        )
        """Market data (the latest prices, the prints resting orders are matched against)."""
        self.ctl_consumer = Consumer(
            consumer_config(
                self.settings,
                group_id=group_id(prefix, groups.ENGINE_CTL, uuid.uuid4().hex),
                **{"client.id": f"engine-{self.wid}-ctl"},
            )
        )
        """The control topics, read to their end before each batch is decided."""
        self.control = ControlFeed(self.ctl_consumer)
        self.held_md = []  # read by the old market-data consumer

    def _renew_clients(self, exc: KafkaException) -> None:
        """After a fatal broker error (the producer fenced: a broker stall outlasted the
        transaction timeout, so the coordinator aborted the transaction and bumped the
        epoch; the static consumer fenced): new clients, as a restart would make, and a
        full rebuild at the next assignment. Before, the worker exited, and `tradetape
        run` stopped its whole group with it."""
        log.error(
            "worker %s: fatal broker error (%s); starting its Kafka clients afresh", self.wid, exc
        )
        for old in (self.consumer, self.ref_consumer, self.ctl_consumer):
            try:
                old.close()
            except Exception:
                log.exception("closing a failed consumer")
        # The fenced producer too (its threads would otherwise reconnect for the life of
        # the process, one more per fatal error), once the committer thread is done with
        # it (destroying a librdkafka handle another thread is inside of is a crash); its
        # transaction's own outcome no longer matters: the state is rebuilt from the log.
        pending, self.pending = self.pending, None
        finished = True
        if pending is not None:
            try:
                pending.result(timeout=90)
            except TimeoutError:  # concurrent.futures.TimeoutError since 3.11
                finished = False
            except Exception as err:
                log.info("the transaction in flight ended with %s", err)
        if finished:
            try:
                self.producer.close()
            except KafkaException as err:
                log.info("closing the fenced producer: %s", err)
        else:  # still inside the broker call: left to the garbage collector, unclosed
            log.warning("worker %s: the committer is still in a broker call", self.wid)
        self.in_txn = False
        self.assigned = []
        self.owned = []
        self.folded = set()
        self.exact = False
        self.complete = True
        self.rewind_pending = False
        self.read_in_full = {}
        time.sleep(1.0)
        self._new_clients()
        self._renew_admin()

    def _renew_admin(self) -> None:
        """A new admin client after a broker error: after a long broker stall the old one
        kept stale partition leader epochs and every `list_offsets` failed with
        FENCED_LEADER_EPOCH (seen with the rev54 40 s SIGSTOP reproduction)."""
        self.admin = self._admin_client()

    def _admin_client(self) -> AdminClient:
        """The worker's admin client, its logs through `tradetape.kafka` (polled each step
        and while holding: `_serve_logs`)."""
        return admin_client(self.settings, polled=True, **{"client.id": f"engine-{self.wid}-admin"})

    # ---- rebuild -------------------------------------------------------------------

    @property
    def owned(self) -> list[int]:
        """The engine partitions this worker owns now (empty between a rebalance's
        revocation and the next assignment)."""
        return self._owned

    @owned.setter
    def owned(self, partitions: list[int]) -> None:
        self._owned = partitions
        self.ctx.owns = Ownership(self.part, frozenset(partitions))
        if partitions:
            self.catch_up_pending = True

    def _topic_partitions(self) -> dict[Topic, list[int]]:
        """The partitions of every topic a rebuild reads, from one metadata request."""
        topics = [*INPUT_TOPICS, *READ_TOPICS, Topic.ENGINE_SNAPSHOTS]
        # The snapshot topic is a cache: without it a rebuild replays the log in full.
        optional = frozenset({Topic.ENGINE_SNAPSHOTS})
        parts = partitions_of_many(self.ref_consumer, self.settings, topics, optional=optional)
        self._set_topology({self.names[t]: len(ps) for t, ps in parts.items()})
        return parts

    def _set_topology(self, counts: dict[str, int]) -> None:
        """Note the topics whose partition count differs from the declared one (see
        `topology`); logged as an ERROR when that changes."""
        changed = partition_changes(self.settings, counts)
        if changed != self.topology:
            if changed:
                log.error(
                    "worker %s: %s: adding partitions moves accounts to other partitions, so "
                    "a worker may not hold an account's history; deciding every intent as "
                    "STALE_STATE (docs/operations.md, Adding partitions)",
                    self.wid,
                    describe_partition_changes(changed),
                )
            else:
                log.warning("worker %s: every topic has its declared partitions again", self.wid)
        self.topology = changed

    def rebuild(self, partitions: Iterable[int], *, use_snapshots: bool = True) -> None:
        """Fresh state from the log: reference topics in full, own outputs for `partitions`
        (after each partition's newest usable snapshot slice, if any)."""
        started = time.monotonic()
        self.exact = False
        self.log_ids = log_ids_of(self.settings, self.admin)
        self.ids_meta = ids_metadata(self.settings, self.log_ids)
        parts = self._topic_partitions()
        n_own = {len(parts[t]) for t in OWN_TOPICS}
        if len(n_own) != 1 and self.snapshots:
            log.warning("own topics differ in partition count %s: snapshots off", n_own)
            self.snapshots = False
        self.part = partitioner(max(n_own))
        state = EngineState(partition_of=self.part)
        self.owned = sorted(set(partitions))

        apply = folder(state, self.intake)
        ctl = [
            TopicPartition(self.names[t], p, OFFSET_BEGINNING)
            for t in CONTROL_TOPICS
            for p in parts[t]
        ]
        md = [TopicPartition(self.names[Topic.MARKETDATA], p) for p in parts[Topic.MARKETDATA]]
        md_ends = end_offsets(self.admin, md)
        md_lows = end_offsets(self.admin, md, earliest=True)
        md = [
            TopicPartition(
                tp.topic,
                tp.partition,
                max(
                    md_lows[(tp.topic, tp.partition)],
                    md_ends[(tp.topic, tp.partition)] - MARKETDATA_WARMUP,
                ),
            )
            for tp in md
        ]
        ok = read_all_until_caught_up(
            [(self.ctl_consumer, ctl), (self.ref_consumer, md)], self.admin, apply
        )
        ref_applied = state.applied
        t_ref = time.monotonic()
        slices: dict[int, Slice] = {}
        if self.snapshots and use_snapshots and self.settings.engine_snapshot_load and self.owned:
            try:
                slices = self._load_slices(state, self.owned, parts)
            except LogCut:
                ok = False  # the log went back under the slices (logged): hold
            except SnapshotError:
                self.rebuild(partitions, use_snapshots=False)
                return
        t_slices = time.monotonic()
        own = [
            TopicPartition(
                self.names[t],
                p,
                slices[p].offsets[t.value] if p in slices else OFFSET_BEGINNING,
            )
            for t in OWN_TOPICS
            for p in self.owned
        ]
        own_ok, self.own_end = read_own(self.settings, self.admin, state, own)
        ok = own_ok and ok and self._inputs_in_range(parts)
        self.folded = set(self.owned)
        self.n_own_partitions = max(n_own)
        # Keep reading the control topics and market data live from where the rebuild stopped.
        self.control.assign(_live_from(self.ctl_consumer, ctl))
        self.ref_consumer.assign(_live_from(self.ref_consumer, md))
        self.held_md = []
        self.read_in_full = {}
        for tp in (*ctl, *md):
            self.read_in_full[tp.topic] = self.read_in_full.get(tp.topic, 0) + 1
        self._partitions_checked = time.monotonic()
        if not self.owned:
            # No partition: no `catch_up` follows, nothing of this state is ever redone.
            bound_kept(state, lambda _account: False)
        self.state = state
        self.heap.after_rebuild()
        now = time.monotonic()
        self.exact = ok
        self.complete = ok
        self.last_rebuild = {
            "partitions": list(self.owned),
            "events": state.applied,
            "own_records": state.applied - ref_applied,
            "slices": {p: s.slice_id for p, s in sorted(slices.items())},
            "seconds": now - started,
            "phases": {
                "ref": t_ref - started,
                "slices": t_slices - t_ref,
                "own": now - t_slices,
            },
        }
        log.info(
            "worker %s rebuilt partitions %s from %d events in %.2fs%s; own records replayed "
            "%d, snapshot slices %s",
            self.wid,
            self.owned,
            state.applied,
            now - started,
            "" if ok else " (incomplete: timed out; deciding nothing until a rebuild completes)",
            state.applied - ref_applied,
            self.last_rebuild["slices"] or "none",
        )

    def _inputs_in_range(self, parts: dict[Topic, list[int]]) -> bool:
        """Whether the log holds where the engine group resumes each owned input partition
        (its committed offset, or its beginning if none). If not, the consumer's
        `auto.offset.reset` would move it to the log's start without a word: past intents
        and admin commands never decided (records deleted from the start: the first
        offset past the committed one), or decided ones read again (the topic deleted and
        created again, or truncated: the committed offset past the end). Also whether the
        topic ids committed with those offsets (`ids_metadata`), and those the state was
        folded from (`log_ids`), are the topics' ids now: a topic deleted and created
        again whose new log has grown past every offset is in range by offsets alone.
        Logged as an ERROR naming the partitions and what the operator runs; False: the
        worker holds."""
        tps = [
            TopicPartition(self.names[t], p)
            for t in INPUT_TOPICS
            for p in parts[t]
            if p in self.owned
        ]
        if not tps:
            return True
        committed = self.consumer.committed(tps, timeout=30)
        now = log_ids_of(self.settings, self.admin)
        recreated = sorted(
            {why for tp in committed for why in ids_changed(self.settings, tp.metadata, now)}
            | set(changed_ids(self.log_ids, now))
        )
        if recreated:
            log.error(
                "worker %s: a topic the engine's state or inputs come from was deleted and "
                "created again (%s): the engine group's offsets, and the state, were taken in "
                "the old log; folding the new one onto them would forget what the old one "
                "held (a kill switch, limits, decisions) or skip the new one's first records. "
                "Deciding nothing: restore the topic; or, to accept the new log as the truth, "
                "stop the engine and the snapshotter, reset the group's offsets "
                "(kafka-consumer-groups --group %s --reset-offsets ... --execute: offsets so "
                "set carry no topic ids) and delete and recreate the snapshot topic "
                "(docs/operations.md, A topic deleted or truncated)",
                self.wid,
                "; ".join(recreated),
                group_id(self.settings.topic_prefix, groups.ENGINE),
            )
            return False
        gone = outside_the_log(
            [TopicPartition(tp.topic, tp.partition, tp.offset) for tp in committed],
            end_offsets(self.admin, tps, earliest=True),
            end_offsets(self.admin, tps),
        )
        if gone:
            log.error(
                "worker %s: the log no longer holds where the engine group resumes its inputs "
                "(%s): records deleted from their start, or the topic deleted and created "
                "again or truncated. Deciding nothing: once what became of those intents is "
                "known, set the group's offsets with the engine stopped (kafka-consumer-groups "
                "--group %s --reset-offsets --to-offset N --topic T:P --execute; "
                "docs/operations.md, A topic deleted or truncated)",
                self.wid,
                gone,
                group_id(self.settings.topic_prefix, groups.ENGINE),
            )
            return False
        return True

    def _check_partitions(self) -> None:
        """Rebuild when a topic read in full has gained partitions since the last rebuild,
        or a topic of `LOG_ID_TOPICS` has another id than at its start (deleted and created
        again: the rebuild then holds, `_inputs_in_range`).

        The reference consumer is assigned by hand, so a partition added to, say,
        `risk.config` would otherwise never be read by a running worker: a kill switch or
        a limit landing there would be missed, which fails open.
        """
        every = self.settings.engine_partition_check_seconds
        now = time.monotonic()
        if every <= 0 or now - self._partitions_checked < every or not self.read_in_full:
            return
        self._partitions_checked = now
        try:
            topics = self.admin.list_topics(timeout=5).topics
        except KafkaException as exc:
            log.warning("could not check the reference topics for added partitions: %s", exc)
            return
        self._set_topology(
            {
                name: len(topics[name].partitions)
                for name in (self.names[t] for t in (*INPUT_TOPICS, *READ_TOPICS))
                if name in topics and topics[name].error is None
            }
        )
        grown = {
            name: (n, len(topics[name].partitions))
            for name, n in self.read_in_full.items()
            if name in topics and len(topics[name].partitions) > n
        }
        if grown:
            log.warning(
                "worker %s: partitions added to %s (was, now); rebuilding to read them",
                self.wid,
                grown,
            )
            self.needs_rebuild = True
        try:
            recreated = changed_ids(self.log_ids, log_ids_of(self.settings, self.admin, 5.0))
        except KafkaException as exc:
            log.warning("could not check the topics' ids: %s", exc)
            return
        if recreated:
            # The state was folded from the old logs, the group's offsets were committed
            # with their ids: the rebuild holds (`_inputs_in_range`) until the operator
            # restores the topic or accepts the new log.
            log.error(
                "worker %s: a topic it reads was deleted and created again while it ran (%s); "
                "rebuilding",
                self.wid,
                "; ".join(recreated),
            )
            self.needs_rebuild = True

    def _take_over(self, new: set[int]) -> bool:
        """Partitions change hands without a rebuild: forget the ones given up, then fold
        onto the state held the gained ones (their newest slices, then their records after
        them) and whatever others wrote on the kept ones since this worker last folded them
        (nothing, unless it was out of the group meanwhile). The state held must name
        exactly what it folded: False (a full rebuild is needed) after a failed
        transaction, an incomplete rebuild, missing delivery reports, partitions added to
        the own topics, or a slice that does not fit.

        Needs snapshots on: only then do delivery reports keep `own_end` at what the state
        folded (with them off it stays at the last rebuild's positions, and re-reading the
        kept partitions from there would fold their records twice).

        Equal to a full replay: tests/engine/test_partition_handover.py."""
        if not (self.settings.engine_incremental_handover and self.snapshots and self.exact):
            return False
        if self.needs_rebuild:
            return False
        parts = self._topic_partitions()
        if {len(parts[t]) for t in OWN_TOPICS} != {self.n_own_partitions} or self.topology:
            return False
        started = time.monotonic()
        held, state = self.folded, self.state
        given_up, gained, kept = held - new, sorted(new - held), sorted(held & new)
        own_end = self.own_end
        starts: dict[tuple[str, int], int] = {}
        for t in OWN_TOPICS:
            for p in kept:
                key = (self.names[t], p)
                if key not in own_end:
                    return False
                starts[key] = own_end[key]
        release_partitions(state, given_up)
        self.folded = held - given_up
        slices: dict[int, Slice] = {}
        if gained and self.snapshots and self.settings.engine_snapshot_load:
            try:
                slices = self._load_slices(state, gained, parts)
            except (SnapshotError, LogCut):
                self.exact = False  # torn, or the log went back: the caller rebuilds
                return False
        for t in OWN_TOPICS:
            for p in gained:
                starts[(self.names[t], p)] = (
                    slices[p].offsets[t.value] if p in slices else OFFSET_BEGINNING
                )
        own = [TopicPartition(name, p, offset) for (name, p), offset in sorted(starts.items())]
        before = state.applied
        ok, positions = read_own(self.settings, self.admin, state, own)
        part = state.partition_of
        unknown = sorted(a for a in state.accounts if part(a) in new and not redo_known(state, a))
        if unknown:
            # What this worker kept of the steps it could not see committed does not tell
            # which passes the old owner lost (`processor.redo_known`): from the log.
            log.warning(
                "worker %s: the kept steps of %d account(s) (first %s) cannot redo their "
                "lost passes exactly; rebuilding from the log",
                self.wid,
                len(unknown),
                unknown[0],
            )
            self.exact = False
            return False
        self.own_end = {
            k: v for k, v in own_end.items() if k[1] in new and k not in positions
        } | positions
        self.owned = sorted(new)
        self.folded = set(new)
        ok = ok and self._inputs_in_range(parts)
        self.exact = ok
        self.complete = ok
        now = time.monotonic()
        self.heap.after_rebuild()
        self.last_rebuild = {
            "partitions": list(self.owned),
            "incremental": {"gained": gained, "given_up": sorted(given_up), "kept": kept},
            "events": state.applied,
            "own_records": state.applied - before,
            "slices": {p: s.slice_id for p, s in sorted(slices.items())},
            "seconds": now - started,
        }
        log.info(
            "worker %s rebuilt partitions %s from %d events in %.2fs%s (incrementally: gained "
            "%s, gave up %s, kept %s); own records replayed %d, snapshot slices %s",
            self.wid,
            self.owned,
            state.applied - before,
            now - started,
            "" if ok else " (incomplete: timed out; deciding nothing until a rebuild completes)",
            gained,
            sorted(given_up),
            kept,
            state.applied - before,
            self.last_rebuild["slices"] or "none",
        )
        return True

    def _load_slices(
        self, state: EngineState, partitions: list[int], parts: dict[Topic, list[int]]
    ) -> dict[int, Slice]:
        """`engine.replay.load_slices` for this worker (SnapshotError: the state is torn)."""
        n = len(parts[Topic.ENGINE_SNAPSHOTS])
        if not n:
            topic = self.names[Topic.ENGINE_SNAPSHOTS]
            log.warning("no %s topic: replaying the log in full", topic)
            return {}
        return load_slices(self.settings, self.admin, state, partitions, n)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._settle_in_flight()
        new = {tp.partition for tp in partitions}
        self.assigned = [TopicPartition(tp.topic, tp.partition) for tp in partitions]
        try:
            if not self._take_over(new):
                self.rebuild(new)
        except KafkaException as exc:
            self._rebuild_failed(exc, new)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """The state is kept (`folded` names what it holds): the next assignment usually
        gives most partitions back, and `_take_over` adjusts the state to it."""
        self._settle_in_flight()
        self.owned = []
        self.assigned = []

    def _settle_in_flight(self) -> None:
        """Before partitions move: the transaction in flight commits (with the offsets of
        the partitions we still own) or is aborted; the next owner, or our own rebuild on
        assignment, starts from what was committed."""
        try:
            self._await_commit()
        except KafkaException as exc:
            self._abort(exc, "during a rebalance")

    def _abort(self, exc: KafkaException, when: str) -> None:
        """Abort the open transaction after `exc`; a fatal error (fenced) is re-raised."""
        err = kafka_error(exc)
        if err is not None and err.fatal():
            raise exc
        if isinstance(exc, PoisonOutput) and exc.source is not None:
            self._mark_poison(exc.source, str(err.str() if err is not None else exc))
        log.warning("transaction failed %s (%s); aborting", when, exc)
        self.exact = False  # the state folded outputs the log will not have
        # A transaction may be committing on the committer thread (an error on this thread
        # before `step` waited for it): transactional calls must not overlap, so it ends
        # first. Its own failure needs nothing more: the abort and the rebuild below cover it.
        try:
            self._await_commit()
        except KafkaException as pending_exc:
            log.warning("the transaction in flight failed too (%s)", pending_exc)
        for attempt in range(1_000_000):
            try:
                if self.stopping:
                    self._abort_at_stop()
                    break
                self._txn_call(self.producer.abort_transaction, 30)
                break
            except KafkaException as abort_exc:
                aerr = kafka_error(abort_exc)
                if aerr is not None and aerr.fatal():
                    raise
                if self.stopping:
                    self._abort_at_stop()
                    break
                if not (aerr is not None and aerr.retriable()):
                    log.exception("abort failed")
                    break
                log.warning("abort timed out (%s); retrying (attempt %d)", aerr, attempt + 1)
                time.sleep(min(1.0 * (attempt + 1), 5.0))
        self.in_txn = False

    def _abort_at_stop(self) -> None:
        """Abort the open transaction within `STOP_ABORT_SECONDS`, else leave it to the
        coordinator (see there); never raises."""
        try:
            self._txn_call(self.producer.abort_transaction, STOP_ABORT_SECONDS, stoppable=False)
        except KafkaException as exc:
            log.warning(
                "worker %s: the open transaction was not aborted at the stop (%s); its "
                "coordinator aborts it (after %d ms, or when this worker id starts again)",
                self.wid,
                exc,
                TXN_TIMEOUT_MS,
            )
        self.in_txn = False

    def _mark_poison(self, source: tuple[str, int, int], reason: str) -> None:
        if len(self.poison) >= 10_000:
            self.poison.clear()
        self.poison[source] = reason
        log.error(
            "input %s:%d@%d: its output cannot be written (%s); it will be answered with a "
            "rejection or dead letter",
            *source,
            reason,
        )

    # ---- lag -----------------------------------------------------------------------

    def consumer_lag(self) -> int:
        """Records on our input partitions not yet consumed: high watermark - position.

        High watermarks come from the fetch responses (cached, free); a partition with no
        cached figure yet is asked for in one batched request, at most once a second.
        """
        assignment = self.assigned
        if not assignment:
            return 0
        lag = 0
        now = time.monotonic()
        missing: list[TopicPartition] = []
        positions = self.consumer.position(assignment)
        highs: dict[tuple[str, int], int] = {}
        for tp in positions:
            _low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0:
                highs[(tp.topic, tp.partition)] = high
            else:
                missing.append(tp)
        if missing:
            unknown = any((tp.topic, tp.partition) not in self._high for tp in missing)
            if unknown or now - self._high_at > 1.0:
                self._high = end_offsets(self.admin, missing)
                self._high_at = now
            highs.update({k: v for k, v in self._high.items() if k not in highs})
        for tp in positions:
            found = highs.get((tp.topic, tp.partition))
            if found is None:
                return UNKNOWN_LAG  # not measured: fail closed (STALE_STATE)
            position = tp.offset if tp.offset >= 0 else found
            lag += max(0, found - position)
        return lag

    # ---- the loop ------------------------------------------------------------------

    def _dead_letter(self, msg: Message, exc: Exception) -> Envelope[Any]:
        """Its id and time from the record: a record dead-lettered again (a reference
        record's partition number handed to a worker that had not read it yet, an input
        read again after an abort) is the same dead letter, kept once by the sinks."""
        self.stats["dead_letters"] += 1
        return redelivered_dead_letter(msg, exc, stage="engine", producer=ENGINE_PRODUCER)

    def _decode_input(self, msg: Message) -> Envelope[Any] | MalformedEventError:
        try:
            return decode_message(msg)
        except MalformedEventError as exc:
            return exc

    def _missing_ref(
        self, event: Envelope[Any] | MalformedEventError, *, prices: bool
    ) -> str | None:
        """What an intent needs that this worker has not seen yet: its price (`prices`,
        from market data), else its producer or account (control facts); or None."""
        if not isinstance(event, Envelope):
            return None
        p = event.payload
        if not isinstance(p, OrderIntent | CancelIntent):
            return None
        if prices:
            if isinstance(p, OrderIntent):
                ps = self.state.prices.get(p.instrument)
                if ps is None or ps.reference() is None:
                    return "price:" + p.instrument
            return None
        if p.producer_id not in self.state.producers and p.producer_id not in self.state.revoked:
            return "producer:" + p.producer_id
        acc = self.state.accounts.get(p.account)
        if acc is None or not acc.opened:
            return "account:" + p.account
        return None

    def _ref_grace(
        self, decoded: list[tuple[Message, Any]], *, prices: bool
    ) -> float:  # seconds, not money
        """How long to give the market-data consumer (`prices`) or the control consumer
        before deciding this batch: the grace if an intent needs a price, or a producer or
        account, not seen yet, unless the worker already waited for that within
        `REF_GRACE_BACKOFF` (so intents for something that never comes cannot slow every
        batch down)."""
        missing = {
            m for _, ev in decoded if (m := self._missing_ref(ev, prices=prices)) is not None
        }
        if not missing:
            return 0.0
        now = time.monotonic()
        waited = self._grace_given
        if all(now - waited.get(m, -1e9) < REF_GRACE_BACKOFF for m in missing):
            return 0.0
        if len(waited) > 10_000:
            waited.clear()
        for m in missing:
            waited[m] = now
        return REF_GRACE_SECONDS

    def _control_failed(self, drained: Drained) -> None:
        """The control topics could not be read to their end before this batch: its
        intents are decided as STALE_STATE (fail closed), as with an unknown lag."""
        self.ctx.consumer_lag = UNKNOWN_LAG
        self.stale = f"control topics not read to their end ({drained.failure})"
        now = time.monotonic()
        if now - self._control_failed_at > 1.0:  # a broker outage: once a second
            self._control_failed_at = now
            log.warning(
                "worker %s: control topics not read to their end (%s): deciding this batch "
                "as stale",
                self.wid,
                drained.failure,
            )
        if not drained.measured:
            self._renew_admin()

    def _handle_input(
        self, msg: Message, event: Envelope[Any] | MalformedEventError, out: list[Output]
    ) -> None:
        if isinstance(event, MalformedEventError):
            out.append(self._dead_letter(msg, event))
            return
        topic = msg.topic()
        if self.poison:
            why = self.poison.get((topic or "", msg.partition() or 0, msg.offset() or 0))
            if why is not None:
                self._refuse_input(msg, event, why, out)
                return
        p = event.payload
        wrong = None
        if topic == self.names[Topic.INTENTS] and not isinstance(p, OrderIntent | CancelIntent):
            wrong = f"{event.event_type} is not an intent"
        elif topic == self.names[Topic.ADMIN] and event.event_type not in ADMIN_COMMAND_TYPES:
            wrong = f"{event.event_type} is not an admin command"
        if wrong is not None:
            err = MalformedEventError(
                wrong, topic=topic, partition=msg.partition(), offset=msg.offset()
            )
            out.append(self._dead_letter(msg, err))
            return
        self.stats["intents"] += 1
        if topic == self.names[Topic.ADMIN]:
            view = self.stale
            if view is None and self._misrouted(msg, p.partition_key(), event.event_type):
                view = (
                    f"{event.event_type} for {p.partition_key()} on partition "
                    f"{msg.partition()}, not its key's partition {self.part(p.partition_key())}"
                )
            why = None if view is None else stale_admin_reason(event.event_type, view)
            if why is not None:  # fail closed, as the batch's intents (engine.control)
                out.extend(reject_admin(self.state, event, why))
                return
        if isinstance(p, OrderIntent | CancelIntent) and self._misrouted(msg, p.account):
            # Decided nothing, recorded nowhere (`processor.reject_misrouted`).
            out.extend(reject_misrouted(self.state, event, (
                f"intent for {p.account} on partition {msg.partition()} of {msg.topic()}, "
                f"not its account's partition {self.part(p.account)}: this worker need not "
                "hold the account's state, so nothing about the intent was decided or "
                "recorded; send it keyed by its account (murmur2)"
            ), _record(msg)))  # fmt: skip
            return
        try:
            out.extend(process(self.state, event, self.ctx, broker_time(msg), _record(msg)))
        except Exception as exc:  # never crash on input; state may be torn: rebuild
            log.exception("processing failed for %s", event.event_id)
            out.append(self._dead_letter(msg, exc))
            self.needs_rebuild = True

    def _misrouted(self, msg: Message, account: str, what: str = "intent") -> bool:
        """An intent on another partition than its account's (murmur2 over the own topics'
        partition count): the worker owning that partition need not hold the account's
        state (a producer that picks partitions itself, or a topic whose partitions
        changed), so the intent is decided as STALE_STATE, never on a partial state.

        An admin command on another partition than its key's (`partition_key`: the
        account, scope or producer it is about) is refused `STALE_STATE` unless it only
        tightens (session 20): every other worker decides the commands on its own
        partitions at the same time, and a fact another worker wrote in a transaction
        not yet committed is in no drained view, so two workers could each accept a
        deposit of one id (credited twice by the books) or open one account twice."""
        if self.part(account) == msg.partition():
            return False
        now = time.monotonic()
        if now - self._misrouted_logged > 1.0:  # seconds, not money: not a line per intent
            self._misrouted_logged = now
            log.warning(
                "worker %s: %s for %s on %s[%s], its key's partition is %d: refused",
                self.wid, what, account, msg.topic(), msg.partition(), self.part(account),
            )  # fmt: skip
        return True

    def _refuse_input(
        self, msg: Message, event: Envelope[Any], why: str, out: list[Output]
    ) -> None:
        """An input whose outputs cannot be written: an admin command gets its
        `AdminCommandRejected` (the issuer waits for an answer), anything else a dead
        letter; both fit in a record."""
        self.stats["intents"] += 1
        if msg.topic() == self.names[Topic.ADMIN] and event.event_type in ADMIN_COMMAND_TYPES:
            out.extend(reject_admin(self.state, event, why))
        else:
            out.append(self._dead_letter(msg, MalformedEventError(
                why, topic=msg.topic(), partition=msg.partition(), offset=msg.offset()
            )))  # fmt: skip

    def _preverify(
        self, decoded: list[tuple[Message, Envelope[Any] | MalformedEventError]]
    ) -> None:
        """The batch's intent signatures in one batched check (see `processor.preverify`);
        if that fails for any reason, each intent is checked alone as before."""
        self.ctx.preverified.clear()
        try:
            preverify(self.state, [ev for _, ev in decoded if isinstance(ev, Envelope)], self.ctx)
        except Exception:
            log.exception("batched signature check failed; checking one by one")
            self.ctx.preverified.clear()

    def _handle_reference(self, msg: Message, out: list[Output]) -> None:
        try:
            event = decode_message(msg)
        except MalformedEventError as exc:
            self._refuse_reference(msg, exc, out)
            return
        why = self.intake.refusal(msg.topic(), event)
        if why is not None:
            self._refuse_reference(
                msg,
                MalformedEventError(
                    why, topic=msg.topic(), partition=msg.partition(), offset=msg.offset()
                ),
                out,
            )
            return
        if isinstance(event.payload, MarketTrade | QuoteUpdated):
            try:
                out.extend(process(self.state, event, self.ctx))
            except Exception:
                log.exception("market event %s failed", event.event_id)
                self.needs_rebuild = True
        else:
            # A limits change leaves the rate windows alone (a fixed horizon, see
            # `RateWindow`): the state stays what a fold of the log gives; it cancels the
            # owned resting orders the new limits refuse (`processor._limits_changed`). A
            # kill switch engaged or an AML flag raised cancels at once the owned orders it
            # stops.
            try:
                out.extend(control(self.state, event, self.ctx))
            except Exception:
                log.exception("control event %s failed", event.event_id)
                self.needs_rebuild = True

    def _refuse_reference(self, msg: Message, exc: MalformedEventError, out: list[Output]) -> None:
        """A record on a topic read in full that the fold must not take (malformed, or
        refused by `Intake`): skipped, as a rebuild skips it, and dead-lettered by the
        worker owning the engine partition of the same number (every worker reads the
        record; one dead letter, not one per worker)."""
        log.warning("reference record skipped: %s", exc)
        n = self.n_own_partitions or 1
        if (msg.partition() or 0) % n in set(self.owned):
            out.append(self._dead_letter(msg, exc))

    def _catch_up(self) -> list[Output] | None:
        """Fills the log lacks for prints already read (`processor.catch_up`); None if it
        failed, leaving the state possibly torn (fills folded in that no transaction will
        carry): the caller rebuilds before deciding anything on it. One failure turns the
        catch-up off until the process restarts, so a failure that repeats on every
        rebuilt state cannot keep the worker rebuilding; until then every intent is
        refused STALE_STATE (`step`), as what the catch-up owed is not done."""
        try:
            found = catch_up(
                self.state, self.ctx, self.ctx.owns or Ownership(self.part, frozenset())
            )
        except Exception:
            log.exception(
                "the catch-up after an assignment failed: rebuilding; every intent is "
                "refused STALE_STATE until this worker is restarted"
            )
            self.catch_up_enabled = False
            return None
        if found:
            log.info(
                "worker %s: %d events from kept prints after an assignment", self.wid, len(found)
            )
            self.stats["caught_up"] += len(found)
        return found

    def _encoded(self, event: Output) -> tuple[bytes, bytes, Any]:
        """Wire bytes; a decision was encoded once already, when the state recorded it
        (for a resent intent: the original decision's bytes, exactly as published)."""
        if event.event_type in DECISION_TYPES:
            p = event.payload
            rec = self.state.decisions.get((p.producer_id, p.account, p.client_order_id or ""))
            if rec is not None and rec.event_id == event.event_id:
                return rec.key, rec.value, rec.headers
        return encode(event)

    def _wire(self, out: list[Output]) -> list[tuple[str, bytes, bytes, Any]]:
        """The batch's outputs as (topic, key, value, headers), encoded while the state
        that recorded the decisions' bytes is the one that made them."""
        names = self.names
        return [(names[Topic(e.topic)], *self._encoded(e)) for e in out]

    def _transact(
        self,
        records: list[tuple[str, bytes, bytes, Any]],
        positions: list[TopicPartition],
        group: Any,
        origin: Callable[[int], tuple[str, int, int] | None] = lambda i: None,
    ) -> dict[tuple[str, int], int] | None:
        """One whole transaction: the outputs, the input offsets, the commit — all or none.

        Runs on the committer thread while the main thread processes the next batch
        (confluent-kafka releases the GIL while it waits on the broker). It never touches
        the consumer: `group` (the consumer group metadata) is taken on the main thread with
        `positions`. confluent-kafka serialises calls on a consumer handle, and during a
        rebalance the main thread holds it inside `consume()` while its revoke callback
        waits for this transaction; a `consumer_group_metadata()` call here then waited for
        the handle forever (a deadlock seen with two workers under a backlog). Metadata of
        the batch's own generation is also the right one: after a rebalance the broker
        refuses those offsets and the transaction aborts.
        """
        t0 = time.monotonic()
        producer = self.producer
        producer.begin_transaction()
        self.in_txn = True
        produce = producer.produce
        # With snapshots on, the own records' offsets (delivery reports): `own_end` then
        # names exactly what the state folded, and a hand-over can fold onto it.
        own = self.own_short if self.snapshots else {}
        ends: dict[tuple[str, int], int] = {}
        expected = 0
        delivered = [0]
        refused: list[Any] = []

        def on_delivery(err: Any, msg: Any) -> None:
            if err is None:
                if msg.topic() in own:
                    delivered[0] += 1
                    k = (msg.topic(), msg.partition())
                    off = msg.offset() + 1
                    if off > ends.get(k, -1):
                        ends[k] = off
            elif err.code() in INPUT_FAULTS:
                refused.append(msg)

        for i, (topic, key, value, headers) in enumerate(records):
            while True:
                try:
                    produce(topic, key=key, value=value, headers=headers, on_delivery=on_delivery)
                    if topic in own:
                        expected += 1
                    break
                except BufferError:
                    producer.poll(0.01)
                except KafkaException as exc:
                    err = kafka_error(exc)
                    if err is not None and err.code() in INPUT_FAULTS:
                        raise PoisonOutput(origin(i), err) from exc
                    raise
        producer.poll(0)
        t1 = time.monotonic()
        try:
            if positions:
                self._retrying(
                    "sending the offsets",
                    lambda: producer.send_offsets_to_transaction(positions, group, 30),
                )
            t2 = time.monotonic()
            # Not in `_txn_call` slices like init and abort: send_offsets_to_transaction
            # called again while its request is in flight sends it again, and the commit
            # path stays as measured (bench_transactions); a stop held inside one of these
            # is cut by `STOP_GRACE_SECONDS`.
            self._retrying("the commit", lambda: producer.commit_transaction(30))
        except KafkaException as exc:
            producer.poll(0)  # the delivery reports: was a record refused for good?
            if refused:
                culprit = max(refused, key=lambda m: len(m.value() or b""))
                value, topic = culprit.value(), culprit.topic()
                index = next(
                    (i for i, r in enumerate(records) if r[0] == topic and r[2] == value), -1
                )
                raise PoisonOutput(origin(index) if index >= 0 else None, culprit.error()) from exc
            raise
        self.in_txn = False
        if expected:
            producer.poll(0)  # serve the delivery reports of what just committed
            if delivered[0] != expected:
                log.warning(
                    "%d of %d delivery reports after a commit: the next rebalance rebuilds "
                    "the state in full",
                    delivered[0],
                    expected,
                )
                self.exact = False
        busy = self.busy
        busy["produce"] += t1 - t0
        busy["offsets"] += t2 - t1
        busy["end"] += time.monotonic() - t2
        self.stats["transactions"] += 1
        self.stats["outputs"] += len(records)
        return ends if own else None

    def _retrying(self, what: str, call: Callable[[], Any]) -> None:
        """`call` (a transaction step), again while it fails with a retriable error (a
        broker stall: TIMED_OUT), as librdkafka allows for these calls; until the worker
        stops. Anything else goes up (the caller aborts)."""
        attempt = 0
        while True:
            try:
                call()
                return
            except KafkaException as exc:
                if not transaction_call_again(exc) or self.stopping:
                    raise
                attempt += 1
                log.warning("%s failed (%s); retrying (attempt %d)", what, exc, attempt)
                time.sleep(min(0.5 * attempt, 5.0))

    # timeout: seconds, not money
    def _txn_call(
        self,
        call: Callable[[float], Any],  # called with seconds, not money
        timeout: float,  # seconds, not money
        *,
        stoppable: bool = True,
    ) -> None:
        """`call(t)`, a transactional producer call, for up to `timeout` seconds in slices
        of `TXN_CALL_SLICE`, called again after each slice that timed out (librdkafka
        resumes it): `stopping` is looked at between slices, so a stop is not held for the
        whole timeout. Raises the last slice's retriable error if it did not complete in
        `timeout` or (if `stoppable`) the worker is stopping; any other error at once."""
        deadline = time.monotonic() + timeout
        while True:
            began = time.monotonic()
            try:
                call(max(0.01, min(TXN_CALL_SLICE, deadline - began)))  # seconds, not money
                return
            except KafkaException as exc:
                # A retriable error (TIMED_OUT, or NOT_COORDINATOR while the coordinator
                # loads, which a sliced call sees as an intermediate result) is called
                # again, as librdkafka asks.
                if (
                    not transaction_call_again(exc)
                    or (stoppable and self.stopping)
                    or time.monotonic() >= deadline
                ):
                    raise
                if time.monotonic() - began < 0.05:  # s, not money: no busy loop
                    time.sleep(0.05)

    def _init_transactions(self) -> None:
        """The producer's `init_transactions`, given up on after `INIT_TXN_SECONDS` (the
        error goes up: exit 1, as before) or when the worker is asked to stop (`Stopped`).
        Before, one 60 s call held a SIGTERM for up to 60 s."""

        def init(timeout: float) -> None:  # seconds, not money
            self._poll_logs()
            self.producer.init_transactions(timeout)

        try:
            self._txn_call(init, INIT_TXN_SECONDS)
        except KafkaException:
            if self.stopping:
                raise Stopped("while initialising the producer's transactions") from None
            raise

    def _await_commit(self) -> None:
        """Wait for the transaction in flight, if any; its failure raises here."""
        pending, self.pending = self.pending, None
        if pending is not None:
            ends = pending.result()
            if ends:
                own_end = self.own_end
                for k, v in ends.items():
                    if v > own_end.get(k, -1):
                        own_end[k] = v

    def _recover(self, exc: KafkaException) -> None:
        """After a failed transaction: abort, rewind the inputs and rebuild from the log.
        Until the rewind and a complete rebuild succeed the worker decides nothing (`_hold`
        retries them: the broker may be what failed)."""
        self._abort(exc, "before a rewind and rebuild")
        self.complete = False
        self.rewind_pending = True
        self._retry_at = 0.0
        self._restore()

    def _rewind(self) -> None:
        """Seek the inputs back to their committed offsets."""
        assignment = self.consumer.assignment()
        if assignment:
            committed = self.consumer.committed(assignment, timeout=30)
            for tp in committed:
                self.consumer.seek(
                    tp
                    if tp.offset >= 0
                    else TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING)
                )

    def _restore(self) -> None:
        """One attempt at what an incomplete state needs: the rewind if pending, then a
        rebuild. A broker error leaves the worker holding; the next attempt is backed off.
        None at a stop (the loop ends; the next start rebuilds)."""
        if self.stopping or time.monotonic() < self._retry_at:
            return
        try:
            if self.rewind_pending:
                self._rewind()
                self.rewind_pending = False
            self.rebuild(self.owned)
        except KafkaException as exc:
            self._rebuild_failed(exc, self.owned)
            return
        if self.complete:
            self._retries = 0
        else:
            self._schedule_retry()

    def _schedule_retry(self) -> None:
        self._retries += 1
        self._retry_at = time.monotonic() + min(2.0 ** min(self._retries, 5), REBUILD_BACKOFF_MAX)

    def _rebuild_failed(self, exc: KafkaException, partitions: Iterable[int]) -> None:
        """A rebuild (or a hand-over) raised a broker error: hold, retry later."""
        err = kafka_error(exc)
        if err is not None and err.fatal():
            raise exc
        log.warning(
            "worker %s: rebuild failed (%s); deciding nothing until a rebuild completes",
            self.wid,
            exc,
        )
        self._renew_admin()
        self.owned = sorted(set(partitions))
        self.complete = False
        self.exact = False
        self._schedule_retry()

    def _hold(self, timeout: float) -> int:  # seconds, not money
        """The state is incomplete: retry what it needs; meanwhile poll only to serve the
        group (rebalances) and put back whatever the poll returned, undecided."""
        try:
            self._await_commit()
        except KafkaException as exc:
            self._recover(exc)
            return 0
        self._restore()
        if self.complete:
            return 0
        try:
            msgs = self._poll_inputs(500, timeout)
        except KafkaException as exc:
            log.warning("poll failed while holding: %s", exc)
            time.sleep(timeout)
            return 0
        self._put_back(msgs)
        self._serve_logs()
        if not msgs:
            time.sleep(min(timeout, max(0.0, self._retry_at - time.monotonic())))
        return 0

    def _poll_logs(self) -> None:
        """Serve the librdkafka logs of the clients the loop does not read: the admin
        client, and the transactional producer while no transaction is in flight (the
        committer thread polls it inside one). A `poll(0)` each: a few µs."""
        self.admin.poll(0)
        if self.pending is None or self.pending.done():
            self.producer.poll(0)

    def _serve_logs(self) -> None:
        """While holding: read the control and market-data consumers ahead (kept for the
        next step, at most `HOLD_BUFFER` records each; a rebuild drops them, as it
        reassigns both) so that their librdkafka logs, which confluent-kafka delivers only
        from a read, come through `tradetape.kafka` as they happen. Before, a broker
        outage's connection failures of these clients came out in a burst after it."""
        self.control.hold()
        if len(self.held_md) < HOLD_BUFFER:
            self.held_md.extend(self.ref_consumer.consume(num_messages=500, timeout=0))

    def _put_back(self, msgs: list[Message]) -> None:
        """Seek each partition back to the first of `msgs` polled from it (not decided)."""
        first: dict[tuple[str, int], int] = {}
        for m in msgs:
            err = m.error()
            if err is not None and (err.fatal() or err.code() == KafkaError._FATAL):
                raise KafkaException(err)
            if err is None:
                k = (m.topic() or "", m.partition() or 0)
                off = m.offset() or 0
                if k not in first or off < first[k]:
                    first[k] = off
        for (topic, part), off in first.items():
            try:
                self.consumer.seek(TopicPartition(topic, part, off))
            except KafkaException as exc:
                # Revoked meanwhile (its next owner starts from what was committed) or the
                # broker is away: rewind everything to the committed offsets before deciding.
                log.warning("could not put back %s:%d@%d (%s)", topic, part, off, exc)
                self.rewind_pending = True
                self.complete = False

    def _poll_inputs(self, max_batch: int, timeout: float) -> list[Message]:  # seconds, not money
        """What is there now, up to `max_batch`; if nothing, wait up to `timeout` for one.

        No fixed linger: at low rates a batch is whatever one poll returns, committed at
        once (latency); under a backlog batches fill up to `max_batch` (throughput).
        """
        msgs: list[Message] = self.consumer.consume(num_messages=max_batch, timeout=0)
        if msgs:
            return msgs
        first = self.consumer.poll(timeout)
        if first is None:
            return []
        return [first, *self.consumer.consume(num_messages=max_batch - 1, timeout=0)]

    def step(self, max_batch: int = 2000, timeout: float = 0.05) -> int:  # seconds, not money
        self._poll_logs()
        if not self.complete:
            # Never decide on a partial state (a resend's decision may be in the part
            # missing: it would be traded again).
            return self._hold(timeout)
        caught_up: list[Output] = []
        if self.catch_up_pending and self.owned and self.catch_up_enabled:
            # Before anything is polled: if it fails, nothing of this step is lost.
            self.catch_up_pending = False
            found = self._catch_up()
            if found is None:
                try:
                    self._await_commit()
                except KafkaException as exc:
                    self._recover(exc)  # rebuilds too
                    return 0
                self._rebuild_or_hold()
                return 0
            caught_up = found
        t0 = time.monotonic()
        msgs = self._poll_inputs(max_batch, timeout)
        t1 = time.monotonic()
        if not self.complete:
            # An assignment served by this poll left the state incomplete.
            self._put_back(msgs)
            return 0
        # The control topics' end as of now (the batch is polled), answered while the
        # batch is decoded, its signatures checked and market data read: every control
        # fact whose commit markers were written before the broker measured that end is
        # folded before the batch is decided (`engine.control`: not yet a commit that has
        # just returned).
        query = self.control.ask_ends(self.admin) if msgs else None
        admin_topic = self.names[Topic.ADMIN]
        # Admin facts first: an account opened in this batch is open for its intents.
        msgs.sort(key=lambda m: m.topic() != admin_topic)
        decoded = []
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.fatal() or err.code() == KafkaError._FATAL:
                    raise KafkaException(err)  # a fenced static member: new clients (`run`)
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error: %s", err)
                continue
            decoded.append((msg, self._decode_input(msg)))
        out: list[Output] = caught_up
        # The signatures in one batched check: a verdict holds for its (payload, key), and
        # `process` checks again if the control facts read below changed the key.
        tv = time.monotonic()
        self._preverify(decoded)
        verify = time.monotonic() - tv
        # An intent for a price, producer or account not seen yet waits a few ms for
        # records already on their way (else it would be rejected, fail closed); in steady
        # state nothing waits.
        refs = self.ref_consumer.consume(
            num_messages=5000, timeout=self._ref_grace(decoded, prices=True)
        )
        if self.held_md:
            refs, self.held_md = self.held_md + refs, []
        self.stale = None
        try:
            self.ctx.consumer_lag = self.consumer_lag()
        except KafkaException as exc:  # fail closed: every intent is STALE_STATE
            log.warning("consumer lag unknown (%s): deciding this batch as stale", exc)
            self.ctx.consumer_lag = UNKNOWN_LAG
            self.stale = f"consumer lag unknown ({exc})"
            self._renew_admin()
        if self.topology:
            self.ctx.consumer_lag = UNKNOWN_LAG  # fail closed: see `topology`
        if not self.catch_up_enabled:
            # A failed catch-up left undone what a lost transaction may have owed (a kill
            # switch's or a hold's cancels, a limits change's pass): deciding on as if it
            # were done would approve past them, and each approval would later read as
            # proof that the pass committed (`processor._limits_committed`). Every intent
            # is STALE_STATE and every admin command that does not tighten is refused
            # until a restart catches up (fail closed).
            self.ctx.consumer_lag = UNKNOWN_LAG
            self.stale = "the catch-up after an assignment failed: restart the worker"
        for msg in refs:
            if not msg.error():
                self._handle_reference(msg, out)
        tc = time.monotonic()
        drained = self.control.drain(query) if query is not None else None
        for msg in drained.records if drained is not None else self.control.take():
            if not msg.error():
                self._handle_reference(msg, out)
        ctl_grace = self._ref_grace(decoded, prices=False)
        if ctl_grace:
            for msg in self.control.take(ctl_grace):
                if not msg.error():
                    self._handle_reference(msg, out)
        self.busy["control"] += time.monotonic() - tc
        if drained is not None and drained.failure is not None:
            self._control_failed(drained)
        t2 = time.monotonic()
        inputs = len(decoded)
        starts: list[int] = []
        """Where each input's outputs begin in `out` (the outputs before the first are
        the catch-up's, market data's and the control facts')."""
        try:
            for msg, event in decoded:
                starts.append(len(out))
                self._handle_input(msg, event, out)
            self.ctx.preverified.clear()
            records = self._wire(out)

            def origin(i: int) -> tuple[str, int, int] | None:
                j = bisect.bisect_right(starts, i) - 1
                if j < 0:
                    return None
                m = decoded[j][0]
                return (m.topic() or "", m.partition() or 0, m.offset() or 0)

            too_big = self._oversized(records)
            # The offsets this batch's transaction commits: taken before the next poll.
            positions = (
                [
                    # With the ids of the logs the state was folded from (`ids_metadata`).
                    TopicPartition(
                        tp.topic,
                        tp.partition,
                        tp.offset,
                        self.ids_meta,
                        -1 if tp.leader_epoch is None else tp.leader_epoch,
                    )
                    for tp in self.consumer.position(self.assigned)
                    if tp.offset >= 0
                ]
                if self.assigned
                else []
            )
            group = self.consumer.consumer_group_metadata() if positions else None
            t3 = time.monotonic()
            # The previous batch's transaction must be committed before this one begins; if
            # it failed, this batch's outputs are dropped with it and `_recover` rewinds
            # the inputs to the last committed offsets and rebuilds the state from the log.
            self._await_commit()
            t4 = time.monotonic()
            if too_big is not None:
                # Caught before the transaction: the state folded an output the producer
                # would refuse (MSG_SIZE_TOO_LARGE) on every retry, a poison pill.
                self._refuse_output(too_big, records, origin(too_big))
                return 0
            if out or inputs:
                self.pending = self.committer.submit(
                    self._transact, records, positions, group, origin
                )
        except KafkaException as exc:
            self._recover(exc)
            return 0
        if inputs:
            # Where a busy worker's time goes (seconds; logged every 10 s).
            busy = self.busy
            busy["poll"] += t1 - t0
            busy["refs+lag"] += t2 - t1 - verify
            busy["process"] += t3 - t2 + verify
            busy["commit-wait"] += t4 - t3
            if t4 - t0 > SLOW_BATCH_SECONDS:
                log.info(
                    "slow batch of %d inputs: poll %.0f, refs+lag %.0f, process %.0f, "
                    "commit-wait %.0f ms",
                    inputs, (t1 - t0) * 1000, (t2 - t1 - verify) * 1000, (t3 - t2 + verify) * 1000,
                    (t4 - t3) * 1000,
                )  # fmt: skip
        self._check_partitions()
        if self.needs_rebuild:
            self.needs_rebuild = False
            try:
                self._await_commit()
            except KafkaException as exc:
                self._recover(exc)  # rebuilds too
                return inputs
            self._rebuild_or_hold()
        if inputs:
            self.heap.after_batch()
        self.heap.between_batches(had_input=bool(msgs))
        return inputs

    def _rebuild_or_hold(self) -> None:
        try:
            self.rebuild(self.owned)
        except KafkaException as exc:
            self._rebuild_failed(exc, self.owned)

    def _oversized(self, records: list[tuple[str, bytes, bytes, Any]]) -> int | None:
        """The index of the first record over the producer's size limit, or None (a
        length test per record; headers are counted only near the limit)."""
        limit = self.max_record
        near = limit - 65_536
        for i, (_topic, key, value, headers) in enumerate(records):
            if len(value) > near and _record_bytes(key, value, headers) > limit:
                return i
        return None

    def _refuse_output(
        self,
        index: int,
        records: list[tuple[str, bytes, bytes, Any]],
        source: tuple[str, int, int] | None,
    ) -> None:
        """Output `index` cannot be written: remember its input for a rejection, rewind
        the inputs to the last commit and rebuild (the state folded the batch)."""
        topic, key, value, headers = records[index]
        reason = (
            f"its output {topic} record of {_record_bytes(key, value, headers)} bytes is over "
            f"the producer's limit of {self.max_record} bytes (message.max.bytes)"
        )
        if source is not None:
            self._mark_poison(source, reason)
        else:
            log.error("an output not caused by an input cannot be written: %s", reason)
        self.exact = False
        self.complete = False
        self.rewind_pending = True
        self._retry_at = 0.0
        self._restore()

    def run(self) -> int:
        self.heap.install()
        try:
            while True:
                try:
                    self._serve()
                    break
                except KafkaException as exc:
                    err = kafka_error(exc)
                    fatal = err is not None and (err.fatal() or err.code() == KafkaError._FATAL)
                    if self.stopping or not fatal:
                        raise
                    self._renew_clients(exc)
        except Stopped as exc:
            log.info("worker %s: stopping %s", self.wid, exc)
        finally:
            try:
                self._await_commit()
            except KafkaException as exc:
                # Abort, bounded; no rewind or rebuild at a stop (they waited on the broker
                # for minutes when it was gone): the inputs' next owner starts from what
                # was committed.
                log.warning("worker %s: the transaction in flight failed at the stop (%s)",
                            self.wid, exc)  # fmt: skip
                self._abort_at_stop()
            self.committer.shutdown(wait=True)
            self.heap.release()
            self.consumer.close()
            self.ref_consumer.close()
            self.ctl_consumer.close()
            # Nothing is queued after a commit; what is, belongs to a transaction that
            # will not commit: no 10 s wait for a broker that is gone.
            self.producer.flush(1.0 if self.stopping else 10.0)  # seconds, not money
        self.dump_state()
        log.info("engine worker %s stopped: %s", self.wid, self.stats)
        return 0

    def _serve(self) -> None:
        self._init_transactions()
        self.consumer.subscribe(
            [self.names[t] for t in INPUT_TOPICS],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
        )
        log.info("engine worker %s started", self.wid)
        last_report = last_logged = time.monotonic()
        reported: tuple[dict[str, int], int] | None = None
        # The report interval in seconds (a duration, not money).
        every = float(os.environ.get("TRADETAPE_ENGINE_REPORT_SECONDS", "10"))  # seconds, not money
        while not self.stopping:
            self.step()
            now = time.monotonic()
            if now - last_report > every:
                last_report = now
                seen = (dict(self.stats), self.ctx.consumer_lag)
                # An idle worker's report is the same every time: logged when something
                # changed, else once every IDLE_REPORT_SECONDS (it is alive).
                if seen != reported or now - last_logged >= IDLE_REPORT_SECONDS:
                    reported, last_logged = seen, now
                    log.info(
                        "worker %s: %s, lag %d, busy %s",
                        self.wid,
                        self.stats,
                        self.ctx.consumer_lag,
                        {k: round(v, 3) for k, v in self.busy.items()},
                    )

    def dump_state(self) -> Path:
        """Positions and balances at a clean stop, for operators and the crash tests."""
        path = (
            self.settings.resolved_data_dir
            / "engine"
            / f"state-{self.settings.topic_prefix}{self.wid}.json"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.dumping:
            return self._dump_state(path)

    def _dump_state(self, path: Path) -> Path:
        owned = set(self.owned)
        data = {
            "worker": self.wid,
            "partitions": sorted(owned),
            "positions": {
                f"{a}|{i}": str(q) for (a, i), q in sorted(self.state.positions().items())
            },
            "decisions": len(self.state.decisions),
            "fills": self.state.fills_applied,
        }
        # Whole or not at all: a second signal exits at once, mid-write too.
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
        return path

    def close(self) -> None:
        """Release the Kafka clients (`run` closes only the consumers), e.g. of a worker
        that never ran; their threads otherwise keep reconnecting to a gone broker."""
        self.consumer.close()
        self.ref_consumer.close()
        self.ctl_consumer.close()
        self.producer.close()
        del self.admin  # an AdminClient has no close: its handle goes with the last reference


def main(settings: Settings) -> int:
    """`tradetape run engine`: one worker in the foreground until SIGTERM/SIGINT."""
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    worker = EngineWorker(settings)
    grace = StopGrace(worker.dumping, worker.wid)

    def _stop(signum: int, _frame: object) -> None:
        if worker.stopping:  # a second signal: no more waiting
            _exit_saying(logging.WARNING, "engine worker %s: asked again to stop; exiting now",
                         worker.wid)  # fmt: skip
        worker.stopping = True
        grace.start()

    def _run() -> int:
        code = worker.run()
        grace.done()  # stopped cleanly: exit with its code, however long the rest takes
        return code

    with handling_stop(_stop):
        # Said once the handlers are in place: from this line on a SIGTERM stops it cleanly.
        log.info("engine worker %s starting (pid %d; SIGTERM or Ctrl-C stops it)",
                 worker.wid, os.getpid())  # fmt: skip
        profile_to = os.environ.get("TRADETAPE_ENGINE_PROFILE")
        if profile_to:
            # Diagnostics: cProfile the whole run, stats written at a clean stop.
            import cProfile

            profiler = cProfile.Profile()
            try:
                return int(profiler.runcall(_run))
            finally:
                profiler.dump_stats(f"{profile_to}.{worker.wid}")
        return _run()
