"""The faust surveillance app: intake → one sequenced partition → detectors → alerts.

Design (see docs/surveillance.md):
* `intake` reads the order lifecycle, account facts, market data and detector config
  (raw bytes), dead-letters what does not decode, and forwards the rest unchanged to a
  one-partition internal topic. Spoofing, layering and wash trading need all of one
  beneficial owner's accounts *and* the instrument's visible book in one place; accounts
  are the Kafka key and owners are only known from `AccountOpened`, so instead of a
  repartition that could race the owner map we sequence everything through one
  partition. The detector agent is then one deterministic fold over one log.
* `detect` folds that log with the pure `Surveillance` engine. Its state lives in faust
  tables (memory store + changelog, one partition each): owners, quotes, configs and
  per-owner books.
* Alerts go to `surveillance.alerts` keyed by account. faust's exactly-once mode is not
  trusted: every alert id is derived from detector, version and triggering event ids,
  so a redelivery after a crash re-emits the same id and the projection ignores it.
* While a source topic is off its declared partition count
  (`deploy.kafka.check_partitions`) the app holds: it does not start (`main` waits,
  logging why), and a running app that sees it stops (`check_topology`, exit 1, so the
  supervisor's restart holds). Equal event times release in their partition's log order,
  and partitions tie by name: after keys moved, an order's expiry stamped with its
  intent's time on `orders.lifecycle:10` would be released before its submit on `:4`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
import types
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from deploy import groups
from deploy.deadletter import dead_letter_for
from deploy.groups import group_id
from deploy.kafka import PartitionsChanged, check_partitions, listed_partition_counts
from deploy.settings import Settings
from schemas import Envelope, MalformedEventError, decode, encode
from schemas.events import SurveillanceAlert
from schemas.ids import derived_uuid7
from schemas.topics import Topic
from streams.detectors import all_detectors
from streams.sequencer import MAX_BUFFERED, MAX_HOLD, Buffered, Sequencer, SequencerState
from streams.surveillance_state import OwnerBook, QuoteRec, Surveillance

log = logging.getLogger("tradetape.streams")

SOURCES = (Topic.ORDERS, Topic.ACCOUNTS, Topic.MARKETDATA, Topic.SURVEILLANCE_CONFIG)
WRITTEN = (Topic.SURVEILLANCE_ALERTS, Topic.DEADLETTER)
"""The catalogue topics the app writes (`main` needs them to exist, with `SOURCES`)."""
SEQUENCED = "surveillance.sequenced"
DWELL = timedelta(milliseconds=250)
"""How long an event waits after arriving for anything fetched with it (see sequencer.py)."""
TICK_SECONDS = 0.05
"""The intake's clock goes on the log this often, so a quiet input is released on time."""
TICK_HEADER = "tt-tick"
FLUSH_SECONDS = 0.2
"""Owner books and quotes reach their changelog this often (write-behind), with alerts,
and always just before faust commits offsets (`FlushBeforeCommit` in `build_app`)."""
RX_HEADER = "tt-rx"
SOURCE_HEADER = "tt-src"
OFFSET_HEADER = "tt-off"
"""The record's offset in its source partition: equal event times release in log order."""
INTERNAL_HEADER_PREFIX = "tt-"
"""The app's own headers on the sequenced log; the intake strips them from source records
(a source record carrying `tt-tick` would otherwise be taken for a tick and dropped)."""
STATUS_SECONDS = 5.0
"""How often the worker logs its progress counters (INFO), when they changed."""
TOPOLOGY_SECONDS = 5.0
"""How often the app (and `main`, while it holds) looks at the source topics' partition
counts (seconds, not money)."""
M = TypeVar("M", bound=BaseModel)
V = TypeVar("V")


class WriteBehindTable(MutableMapping[str, V], Generic[V]):
    """A faust table seen as a mapping of live values (stored as JSON in the changelog).

    With `write_behind`, values live in memory and reach the table (and changelog),
    deletions included, only on `flush()`: an owner's book is rewritten by every event of
    theirs, and dumping it to JSON each time cost ~5 ms per event (see
    docs/surveillance.md, state). The detector's tables are all write-behind and flushed
    together (`build_app`), so their changelogs only ever hold one consistent cut of the
    fold: the sequencer never forgets a released event before the book that folded it.
    """

    def __init__(
        self,
        table: Any,
        load: Callable[[Any], V],
        dump: Callable[[V], Any],
        *,
        write_behind: bool = False,
    ) -> None:
        self.table = table
        self.load = load
        self.dump = dump
        self.write_behind = write_behind
        self.live: dict[str, V] = {}
        self.dirty: set[str] = set()
        self.deleted: set[str] = set()
        """Keys deleted since the last flush (write-behind): still in the table."""

    def __getitem__(self, key: str) -> V:
        if key in self.deleted:
            raise KeyError(key)
        if key in self.live:
            return self.live[key]
        value = self.load(self.table[key])
        if self.write_behind:
            self.live[key] = value
        return value

    def __setitem__(self, key: str, value: V) -> None:
        if self.write_behind:
            self.live[key] = value
            self.dirty.add(key)
            self.deleted.discard(key)
        else:
            self.table[key] = self.dump(value)

    def __delitem__(self, key: str) -> None:
        if self.write_behind:
            if key not in self:
                raise KeyError(key)
            self.live.pop(key, None)
            self.dirty.discard(key)
            self.deleted.add(key)
            return
        self.live.pop(key, None)
        del self.table[key]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted((set(self.table.keys()) | set(self.live)) - self.deleted))

    def __len__(self) -> int:
        return len((set(self.table.keys()) | set(self.live)) - self.deleted)

    def forget(self) -> None:
        """Drop the live values and unflushed changes (the partition was revoked): read
        from the table again, as faust restores it from the changelog, and re-fold what
        was not flushed from the committed offset."""
        self.live.clear()
        self.dirty.clear()
        self.deleted.clear()

    @property
    def pending(self) -> bool:
        """Changes not yet written to the table."""
        return bool(self.dirty or self.deleted)

    def flush(self) -> int:
        """Write the values changed and the keys deleted since the last flush; how many."""
        from faust.streams import current_event

        outside_stream = current_event() is None
        for key in sorted(self.deleted):
            if key not in self.table.data:
                continue
            if outside_stream:
                # Before a commit there is no current event for faust to take the
                # changelog partition from; these tables have exactly one partition.
                self.table.send_changelog(0, key, None, value_serializer="raw")
                del self.table.data[key]
            else:
                del self.table[key]
        for key in sorted(self.dirty):
            value = self.dump(self.live[key])
            if outside_stream:
                self.table.send_changelog(0, key, value)
                self.table.data[key] = value
            else:
                self.table[key] = value
        n = len(self.dirty) + len(self.deleted)
        self.dirty.clear()
        self.deleted.clear()
        return n


class ModelTable(WriteBehindTable[M]):
    """A faust table seen as a mapping of pydantic models."""

    def __init__(self, table: Any, model: type[M], *, write_behind: bool = False) -> None:
        super().__init__(
            table,
            model.model_validate,
            lambda value: value.model_dump(mode="json"),
            write_behind=write_behind,
        )
        self.model = model


class SequencerStore:
    """The sequencer's state in two tables: small metadata, and one row per buffered event.

    Writing the whole buffer on every record would put O(buffer) bytes in the changelog
    per input; here a push writes one row and a release deletes the rows it released.
    The live state is kept in memory and read back from the tables only after a start.
    """

    def __init__(
        self, meta: MutableMapping[str, SequencerState], rows: MutableMapping[str, Buffered]
    ) -> None:
        self.meta = meta
        self.rows = rows
        self.live: SequencerState | None = None

    def load(self) -> SequencerState:
        if self.live is None:
            meta = self.meta.get("state") or SequencerState()
            rows = sorted((self.rows[k] for k in self.rows), key=Buffered.key)
            self.live = meta.model_copy(update={"buffer": rows})
        return self.live

    def save(self, state: SequencerState) -> None:
        before = {b.event_id for b in self.load().buffer}
        after = {b.event_id: b for b in state.buffer}
        for event_id, row in after.items():
            if event_id not in before:
                self.rows[event_id] = row
        for event_id in before - after.keys():
            del self.rows[event_id]
        self.meta["state"] = state.model_copy(update={"buffer": []})
        self.live = state


@dataclass
class TableStore:
    owners: MutableMapping[str, str]
    quotes: MutableMapping[str, QuoteRec]
    configs: MutableMapping[str, dict[str, str]]
    books: MutableMapping[str, OwnerBook]


class _Record:
    """A faust message in the shape `deploy.deadletter` expects."""

    def __init__(self, message: Any) -> None:
        self.m = message

    def topic(self) -> str | None:
        return str(self.m.topic)

    def partition(self) -> int | None:
        return int(self.m.partition)

    def offset(self) -> int | None:
        return int(self.m.offset)

    def key(self) -> bytes | None:
        k = self.m.key
        return k if isinstance(k, bytes) or k is None else str(k).encode()

    def value(self) -> bytes | None:
        v = self.m.value
        return v if isinstance(v, bytes) or v is None else str(v).encode()

    def headers(self) -> Any:
        return self.m.headers


class _Released:
    """A released event (from the sequencer's buffer) in the shape `deploy.deadletter`
    expects: its source topic and bytes; its offset is not kept in the buffer."""

    def __init__(self, event: Envelope[Any]) -> None:
        self.k, self.v, self.h = encode(event)
        self.t = event.topic

    def topic(self) -> str | None:
        return str(self.t)

    def partition(self) -> int | None:
        return None

    def offset(self) -> int | None:
        return None

    def key(self) -> bytes | None:
        return self.k

    def value(self) -> bytes | None:
        return self.v

    def headers(self) -> Any:
        return self.h


def _force_read_committed() -> None:
    """faust only reads committed records in its (untrusted) EOS mode; we want it always.

    Without it an aborted engine transaction's fills would feed the detectors.
    """
    import importlib

    driver: Any = importlib.import_module("faust.transport.drivers.aiokafka")
    real = driver.aiokafka
    if isinstance(real, types.SimpleNamespace):
        return

    def consumer(*args: Any, **kwargs: Any) -> Any:
        kwargs["isolation_level"] = "read_committed"
        return real.AIOKafkaConsumer(*args, **kwargs)

    proxy = types.SimpleNamespace(
        **{k: getattr(real, k) for k in dir(real) if not k.startswith("__")}
    )
    proxy.AIOKafkaConsumer = consumer
    driver.aiokafka = proxy


def _letter(
    record: _Record | _Released, exc: Exception, at: datetime | None, *where: str
) -> Envelope[Any]:
    """The dead letter of a record or released event, its id and time derived from `where`
    it is and `at` (its time on the log): delivered again (at least once), the same
    record gives the same dead letter, which the dead-letter projection keeps once. With
    no time on the record (`at` None), a new id, now."""
    return dead_letter_for(
        record,
        exc,
        stage="surveillance",
        producer="surveillance",
        event_id=derived_uuid7(at, "surveillance", "deadletter", *where) if at else None,
        occurred_at=at,
    )


def _record_time(msg: Any) -> datetime | None:
    """A faust message's timestamp on its topic (seconds), as a UTC datetime."""
    ts = getattr(msg, "timestamp", None)
    if not isinstance(ts, int | float) or ts <= 0:  # a Kafka timestamp in ms, not money
        return None
    return datetime.fromtimestamp(ts, UTC)


def _header_items(headers: Any) -> list[tuple[str, str | bytes | None]]:
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers or [])


def _int_header(value: Any) -> int | None:
    """An integer header (arrival stamps); None when absent or not a number."""
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _headers(headers: list[tuple[str, str | bytes | None]]) -> list[tuple[str, bytes]]:
    return [(k, v.encode() if isinstance(v, str) else (v or b"")) for k, v in headers]


Emit = Callable[[Envelope[SurveillanceAlert]], Awaitable[None]]


@dataclass
class SurveillanceApp:
    app: Any
    intake: Any
    detect: Any
    source: Any
    sequenced: Any
    alerts: Any
    deadletter: Any
    store: TableStore
    emit: Emit
    dead: Callable[[Envelope[Any]], Awaitable[None]]
    held: list[PartitionsChanged]
    """Why the running app stopped itself (`check_topology`): `main` then exits 1."""
    sequencer: SequencerStore


def partitions_hold(settings: Settings, admin: Any = None) -> PartitionsChanged | None:
    """Why the app must not fold its sources (a source topic off its declared partition
    count), or None. One metadata request."""
    try:
        counts = listed_partition_counts(settings, list(SOURCES), admin=admin)
        check_partitions(settings, counts, who="surveillance")
    except PartitionsChanged as exc:
        return exc
    return None


def faust_credentials(settings: Settings) -> dict[str, Any]:
    """`broker_credentials` for faust (aiokafka) from the settings' SASL user, as
    `deploy.kafka.security_config` gives the librdkafka clients theirs; empty without one."""
    if settings.kafka_sasl_username is None or settings.kafka_sasl_password is None:
        return {}
    import ssl

    import faust

    context = None
    if settings.kafka_protocol == "SASL_SSL":
        ca = settings.kafka_ssl_ca_location
        context = ssl.create_default_context(cafile=str(ca.expanduser()) if ca else None)
    return {
        "broker_credentials": faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    }


def build_app(settings: Settings, *, app_id: str | None = None) -> SurveillanceApp:
    """Create the faust app; nothing connects until it is started."""
    import faust

    _force_read_committed()
    data_dir = settings.resolved_data_dir / "faust"
    data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id or group_id(settings.topic_prefix, groups.SURVEILLANCE),
        broker=f"kafka://{settings.bootstrap}",
        store="memory://",
        datadir=str(data_dir),
        topic_partitions=1,
        topic_replication_factor=1,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        producer_acks=-1,
        stream_wait_empty=False,
        **faust_credentials(settings),
    )
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    source = app.topic(*(settings.topic(t) for t in SOURCES), **raw)
    sequenced = app.topic(f"{settings.topic_prefix}{SEQUENCED}", partitions=1, internal=True, **raw)
    alerts = app.topic(settings.topic(Topic.SURVEILLANCE_ALERTS), **raw)
    deadletter = app.topic(settings.topic(Topic.DEADLETTER), **raw)
    tables = {
        n: app.Table(n, partitions=1, key_type=str)
        for n in ("owners", "quotes", "configs", "books", "sequencer", "sequencer-buffer")
    }
    books = ModelTable(tables["books"], OwnerBook, write_behind=True)
    quotes = ModelTable(tables["quotes"], QuoteRec, write_behind=True)
    owners: WriteBehindTable[str] = WriteBehindTable(tables["owners"], str, str, write_behind=True)
    configs: WriteBehindTable[dict[str, str]] = WriteBehindTable(
        tables["configs"], dict, dict, write_behind=True
    )
    seq_meta = ModelTable(tables["sequencer"], SequencerState, write_behind=True)
    seq_rows = ModelTable(tables["sequencer-buffer"], Buffered, write_behind=True)
    # Flush order: the fold's state first, the sequencer (what is still to be folded) last,
    # so the changelogs never hold a released event as neither buffered nor folded.
    write_behind: list[WriteBehindTable[Any]] = [books, quotes, owners, configs, seq_meta, seq_rows]
    last_flush = [time.monotonic()]

    def flush_books(force: bool = False) -> None:
        """Every table reaches its changelog at most FLUSH_SECONDS after it changed, all at
        one record boundary of the fold (called only between records, or before a commit:
        the agent does not await between folding a record and saving the sequencer)."""
        dirty = any(t.pending for t in write_behind)
        if dirty and (force or time.monotonic() - last_flush[0] >= FLUSH_SECONDS):
            for t in write_behind:
                t.flush()
            last_flush[0] = time.monotonic()

    class FlushBeforeCommit(faust.Sensor):
        """Writes the write-behind tables before every offset commit.

        faust calls `on_commit_initiated` synchronously right before it picks the offsets
        to commit, and in at-least-once mode it flushes its producer (changelog records
        included) before committing them. So no committed offset covers a book update that
        is not yet in the changelog: after a crash, what the tables lack is re-delivered.
        """

        def on_commit_initiated(self, consumer: Any) -> Any:
            flush_books(force=True)
            return None

    app.sensors.add(FlushBeforeCommit())

    async def forget_on_revoke(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        """A rebalance revoked our partitions (faust has waited for the agents to go idle).
        The write-behind values are this worker's own and may be older than the tables
        when the partition comes back (another worker folded it meanwhile): drop them and
        the sequencer's live state, without flushing. faust seeks back to the committed
        offset, and `SequencerState.folded_to` skips what the flushed state holds."""
        for table in write_behind:
            table.forget()
        seq_store.live = None

    app.on_partitions_revoked.connect(forget_on_revoke)
    store = TableStore(
        owners=owners,
        quotes=quotes,
        configs=configs,
        books=books,
    )
    engine = Surveillance(all_detectors(), store)
    sequencer = Sequencer(DWELL, max_hold=MAX_HOLD, max_buffered=MAX_BUFFERED)
    seq_store = SequencerStore(seq_meta, seq_rows)

    async def emit(alert: Envelope[SurveillanceAlert]) -> None:
        key, value, headers = encode(alert)
        await alerts.send(key=key, value=value, headers=_headers(headers))

    async def dead(letter: Envelope[Any]) -> None:
        key, value, headers = encode(letter)
        await deadletter.send(key=key, value=value, headers=_headers(headers))

    holder: SurveillanceApp
    counters = {
        "intake": 0,
        "dead": 0,
        "pushed": 0,
        "ticks": 0,
        "released": 0,
        "alerts": 0,
        "redelivered": 0,
    }
    last_status: dict[str, int] = {}

    async def intake(stream: Any) -> Any:
        """Decode-check every input; forward good records as they are, dead-letter the rest
        (with the reason: whatever decoding raised, a record never stops the intake)."""
        async for event in stream.events():
            msg = event.message
            try:
                decode(
                    msg.value,
                    msg.headers,
                    topic=msg.topic,
                    partition=msg.partition,
                    offset=msg.offset,
                )
            except Exception as exc:  # MalformedEventError, or a decoder bug: dead letter
                if not isinstance(exc, MalformedEventError):
                    log.warning("intake: decoding %s[%s]@%s raised %r", msg.topic,
                                msg.partition, msg.offset, exc)  # fmt: skip
                counters["dead"] += 1
                where = (str(msg.topic), str(msg.partition), str(msg.offset))
                await holder.dead(_letter(_Record(msg), exc, _record_time(msg), *where))
                yield None
                continue
            log.debug("intake %s[%s]@%s", msg.topic, msg.partition, msg.offset)
            counters["intake"] += 1
            headers = [
                *_headers(
                    [
                        (k, v)
                        for k, v in _header_items(msg.headers)
                        if not k.startswith(INTERNAL_HEADER_PREFIX)
                    ]
                ),
                (SOURCE_HEADER, f"{msg.topic}:{msg.partition}".encode()),
                (OFFSET_HEADER, str(msg.offset).encode()),
                (RX_HEADER, str(time.time_ns() // 1000).encode()),
            ]
            await sequenced.send(key=msg.key, value=msg.value, headers=headers)
            yield None

    skipping = [False]
    """Whether the last record was skipped as folded already (one log line per run)."""

    async def detect(stream: Any) -> Any:
        """One deterministic fold over the sequenced log (events and ticks).

        Per record: sequence it (pure), fold every released event, then save the
        sequencer, with no await in between, so a flush (timed, or before a commit) always
        writes a state where each event is either still buffered or folded. An event whose
        folding raises is dead-lettered with the reason and the rest of the batch goes on.
        """
        async for event in stream.events():
            msg = event.message
            state = seq_store.load()
            if state.folded_to is not None and msg.offset <= state.folded_to:
                # Folded already: faust delivers again from the committed offset, and the
                # tables' changelogs (written every FLUSH_SECONDS) are ahead of it. Pushed
                # again it was buffered twice or released again, and the clock stepped.
                if not skipping[0]:
                    log.info("skipping records up to offset %d of the sequenced log: "
                             "folded before (delivered again from the committed offset)",
                             state.folded_to)  # fmt: skip
                skipping[0] = True
                counters["redelivered"] += 1
                yield []
                continue
            skipping[0] = False
            before_late = state.late
            headers = dict(_header_items(msg.headers))
            rx = _int_header(headers.get(RX_HEADER))
            try:
                if TICK_HEADER in headers:
                    counters["ticks"] += 1
                    state, ready = sequencer.tick(state, rx)
                    flush_books()  # the tables are at the previous record's boundary
                    if not ready:
                        yield []  # only the clock moved: nothing worth a changelog record
                        continue
                else:
                    counters["pushed"] += 1
                    env = decode(msg.value, msg.headers, topic=msg.topic, offset=msg.offset)
                    src = headers.get(SOURCE_HEADER)
                    source = src.decode() if isinstance(src, bytes) else str(src or "-")
                    offset = _int_header(headers.get(OFFSET_HEADER))
                    state, ready = sequencer.push(state, env, source=source, rx=rx, offset=offset)
            except Exception as exc:  # never crash the fold; nothing was changed yet
                counters["dead"] += 1
                seq_store.save(seq_store.load().model_copy(update={"folded_to": msg.offset}))
                where = (str(msg.topic), str(msg.partition), str(msg.offset))
                await holder.dead(_letter(_Record(msg), exc, _record_time(msg), *where))
                yield []
                continue
            if state.late > before_late:
                log.debug(
                    "late: released %s behind %s",
                    [(e.event_type, e.occurred_at.isoformat()) for e in ready],
                    state.released_at,
                )
            alerts: list[Envelope[SurveillanceAlert]] = []
            letters: list[Envelope[Any]] = []
            for env in ready:
                try:
                    alerts.extend(engine.process(env))
                except Exception as exc:  # one bad event must not cost the rest of the batch
                    log.warning("dead-lettered %s %s: %s", env.event_type, env.event_id, exc)
                    released = _Released(env)
                    letters.append(_letter(released, exc, env.occurred_at, str(env.event_id)))
                log.debug("detect %s %s", env.event_type, env.event_id)
            # only now are the released events gone from the buffer
            seq_store.save(state.model_copy(update={"folded_to": msg.offset}))
            counters["released"] += len(ready)
            counters["dead"] += len(letters)
            counters["alerts"] += len(alerts)
            for letter in letters:
                await holder.dead(letter)
            for alert in alerts:
                log.info(
                    "alert %s %s owner=%s account=%s",
                    alert.payload.alert_id,
                    alert.payload.pattern,
                    alert.payload.beneficial_owner,
                    alert.payload.account,
                )
                await holder.emit(alert)
            flush_books(force=bool(alerts))
            yield [str(a.payload.alert_id) for a in alerts]

    async def tick() -> None:
        """Advance the watermark when inputs go quiet; the tick itself goes on the log."""
        now = str(time.time_ns() // 1000).encode()
        await sequenced.send(
            key=b"tick", value=b"tick", headers=[(TICK_HEADER, b"1"), (RX_HEADER, now)]
        )

    async def status() -> None:
        """Progress for operators (and for a failing test's log): what moved since last time."""
        moved = {k: v for k, v in counters.items() if k != "ticks"}
        if moved != last_status:
            state = seq_store.load()
            log.info(
                "progress %s buffered=%d late=%d forced=%d clock_steps=%d released_up_to=%s",
                " ".join(f"{k}={v}" for k, v in counters.items()),
                len(state.buffer),
                state.late,
                state.forced,
                state.steps,
                state.released_at.isoformat() if state.released_at else "-",
            )
            last_status.update(moved)

    admin: list[Any] = []

    def held() -> PartitionsChanged | None:
        if not admin:
            from deploy.kafka import admin_client

            admin.append(admin_client(settings))
        return partitions_hold(settings, admin[0])

    async def check_topology() -> None:
        """Stop the app (exit 1) when a source topic's partition count changes; the
        supervisor's restart then holds in `main`."""
        try:
            why = await asyncio.get_running_loop().run_in_executor(None, held)
        except Exception as exc:  # the broker's own errors say more; look again next time
            log.warning("could not check the source topics' partitions: %s", exc)
            return
        if why is not None and not holder.held:
            log.error("%s; stopping", why)
            holder.held.append(why)
            # The worker's own SIGTERM path: a clean stop (offsets committed, tables
            # flushed); `app.crash` left the worker running with its app crashed.
            os.kill(os.getpid(), signal.SIGTERM)

    intake_agent = app.agent(source, name="surveillance-intake")(intake)
    detect_agent = app.agent(sequenced, name="surveillance-detect")(detect)
    app.timer(TICK_SECONDS)(tick)
    app.timer(STATUS_SECONDS)(status)
    app.timer(TOPOLOGY_SECONDS)(check_topology)
    holder = SurveillanceApp(
        app=app,
        intake=intake_agent,
        detect=detect_agent,
        source=source,
        sequenced=sequenced,
        alerts=alerts,
        deadletter=deadletter,
        store=store,
        emit=emit,
        dead=dead,
        held=[],
        sequencer=seq_store,
    )
    return holder


def main(settings: Settings) -> int:
    """`tradetape run streams`: run until SIGTERM/SIGINT."""
    import faust

    from deploy.kafka import ensure_topics
    from streams.quiet_logs import quiet_root_handlers

    class Worker(faust.Worker):
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            quiet_root_handlers(logger, level)

    ensure_topics(settings, [*SOURCES, *WRITTEN])
    if _hold(settings):
        return 0
    built = build_app(settings)
    worker = Worker(built.app, loglevel=settings.log_level, quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return 1 if built.held else int(exc.code or 0)
    return 1 if built.held else 0


def _hold(settings: Settings) -> bool:
    """Wait while a source topic is off its declared partition count (an ERROR naming
    them, once per change); True if SIGTERM/SIGINT came meanwhile (then exit 0)."""
    why = partitions_hold(settings)
    if why is None:
        return False
    stop = threading.Event()
    before = {
        sig: signal.signal(sig, lambda _n, _f: stop.set())
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    log.addHandler(handler)
    try:
        shown = ""
        while why is not None:
            if str(why) != shown:
                log.error("%s; not starting until they are", why)
                shown = str(why)
            if stop.wait(TOPOLOGY_SECONDS):
                return True
            why = partitions_hold(settings)
        log.info("the source topics are as declared again: starting")
        return False
    finally:
        log.removeHandler(handler)
        for sig, old in before.items():
            signal.signal(sig, old)
