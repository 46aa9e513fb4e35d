"""The projection contract: a deterministic fold from events to table rows.

A `Projection` owns one PostgreSQL schema (`proj_<name>`) and declares its tables. Its
`apply` is pure: given the events of one batch (in log order per partition) and the
current rows of the keys they touch, it returns the rows to write. The projector does
all I/O (Kafka, COPY, offsets), so the same projection runs live, in a rebuild and in
property tests, and the result cannot depend on where batches were cut.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from operator import itemgetter
from typing import Any

from schemas import Envelope, decode
from schemas.admission import refusal
from schemas.topics import Topic

Row = tuple[Any, ...]
Key = tuple[str, ...]


class WriteMode(StrEnum):
    INSERT = "insert"
    """Append-only: `INSERT ... ON CONFLICT (pk) DO NOTHING` (history, keyed on event id)."""
    UPSERT = "upsert"
    """Current state: `INSERT ... ON CONFLICT (pk) DO UPDATE` with the batch's final row."""


@dataclass(frozen=True)
class Table:
    """One table a projection owns. `columns` are in DDL order; `pk` is a prefix or subset."""

    name: str
    columns: tuple[str, ...]
    pk: tuple[str, ...]
    mode: WriteMode = WriteMode.INSERT
    stateful: bool = False
    """If true, the projector loads current rows for the keys a batch touches."""
    frozen_in_rebuild: bool = False
    """A rebuild keeps an UPSERT table's current rows until its end: frozen to JSON
    between batches if stateful or this is set (a third of the memory of a tuple of
    Python values, for ~1 us a row a batch), else as tuples. Set for a table of many
    wide rows no batch reads back (`tax_lots`' lots and disposals)."""

    def __post_init__(self) -> None:
        missing = [c for c in self.pk if c not in self.columns]
        if missing:
            raise ValueError(f"{self.name}: primary key columns {missing} not in columns")
        object.__setattr__(self, "_pk_at", tuple(self.columns.index(c) for c in self.pk))
        object.__setattr__(self, "_pk_one", self._pk_at[0] if len(self.pk) == 1 else -1)  # type: ignore[attr-defined]
        two = itemgetter(*self._pk_at) if len(self.pk) == 2 else None  # type: ignore[attr-defined]
        object.__setattr__(self, "_pk_two", two)

    def key_of(self, row: Row) -> Key:
        """The row's primary key as text (a value read back from the database, e.g. a
        UUID, keys the same as its text from an event)."""
        one: int = self._pk_one  # type: ignore[attr-defined]
        if one >= 0:  # most tables: one key column, usually already text
            v = row[one]
            return (v if type(v) is str else str(v),)
        two = self._pk_two  # type: ignore[attr-defined]
        if two is not None:  # e.g. (event_id, ordinal): 0.29 us, not 0.46, a row
            a, b = two(row)
            return (a if type(a) is str else str(a), b if type(b) is str else str(b))
        return tuple([str(row[i]) for i in self._pk_at])  # type: ignore[attr-defined]


class Located:
    """A decoded event with the log coordinates it came from.

    `data` is the validated event as JSON values (`Envelope.model_dump(mode="json")`:
    decimals, timestamps and UUIDs as canonical strings), which is what the core
    projections fold. `event` gives the pydantic model for projections written against
    models; it is decoded from the raw bytes on first use.
    """

    __slots__ = ("_event", "data", "headers", "offset", "partition", "raw", "topic")

    def __init__(
        self,
        data: dict[str, Any],
        topic: str,
        partition: int,
        offset: int,
        raw: bytes | None = None,
        headers: Any = None,
        event: Envelope[Any] | None = None,
    ) -> None:
        self.data = data
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.raw = raw
        self.headers = headers
        self._event = event

    @property
    def event_type(self) -> str:
        return str(self.data["event_type"])

    @property
    def schema_version(self) -> int:
        return int(self.data["schema_version"])

    @property
    def event_id(self) -> str:
        return str(self.data["event_id"])

    @property
    def payload(self) -> dict[str, Any]:
        p: dict[str, Any] = self.data["payload"]
        return p

    @property
    def event(self) -> Envelope[Any]:
        if self._event is None:
            self._event = decode(
                self.raw, self.headers, topic=self.topic, partition=self.partition,
                offset=self.offset,
            )  # fmt: skip
        return self._event


@dataclass
class Quarantined:
    """An event the projection could not use, with the reason. Never dropped silently."""

    topic: str
    partition: int
    offset: int
    error: str
    event_type: str | None = None
    schema_version: int | None = None
    raw_value: bytes | None = None


class SkipEvent(Exception):
    """Raised by a handler for an event it understands but must refuse (goes to quarantine)."""


INT4 = (-(2**31), 2**31 - 1)
INT8 = (-(2**63), 2**63 - 1)


def fits_column(value: Any, column: str, bounds: tuple[int, int]) -> Any:
    """`value` for an integer column, or SkipEvent (quarantine) if the column cannot hold
    it. The schemas' ints are unbounded; one out of range failed its whole batch in
    PostgreSQL, and the projector re-read that batch forever."""
    if value is not None and not bounds[0] <= value <= bounds[1]:
        raise SkipEvent(f"{column} {value} is outside its column's range {bounds}")
    return value


Loader = Callable[[Table, Key], "Row | None"]
ManyLoader = Callable[[Table, set[Key]], "Mapping[Key, Row]"]


@dataclass
class State:
    """Current rows for the keys a batch touches, updated in place as the batch folds.

    `rows` is preloaded for the keys `Projection.state_keys` names (one query per table
    per batch); a key it could not foresee is fetched through `loader`.
    """

    rows: dict[str, dict[Key, Row | None]] = field(default_factory=dict)
    dirty: dict[str, dict[Key, Row]] = field(default_factory=dict)
    inserts: dict[str, dict[Key, Row]] = field(default_factory=dict)
    loader: Loader | None = None
    many: ManyLoader | None = None
    """Loads several keys' rows at once (one query): `prefetch`."""
    deferred: dict[Any, Any] = field(default_factory=dict)
    """What a projection's `handle` leaves for its `settle` at the end of the same
    `fold` (emptied there): a fold whose rows depend on the events' order across topics
    does it once a batch, not once an event."""

    def get(self, table: Table, key: Key) -> Row | None:
        known = self.rows.get(table.name)
        if known is None:
            known = self.rows[table.name] = {}
        elif key in known:
            return known[key]
        row = known[key] = self.loader(table, key) if (self.loader and table.stateful) else None
        return row

    def knows(self, table: Table, key: Key) -> bool:
        """Whether `get` has the row of `key` (or its absence) without a query."""
        return key in self.rows.get(table.name, ())

    def prefetch(self, table: Table, keys: set[Key]) -> None:
        """Load the rows of `keys` not yet known in one query, for a fold that knows
        ahead that it may read them (else `get` loads each on demand: a round trip
        each, live)."""
        if self.many is None or not table.stateful:
            return
        known = self.rows.get(table.name)
        if known is None:
            known = self.rows[table.name] = {}
        want = {k for k in keys if k not in known}
        if want:
            found = self.many(table, want)
            for k in want:
                known[k] = found.get(k)

    def put(self, table: Table, row: Row, key: Key | None = None) -> None:
        """Set the current row of a stateful (UPSERT) table (`key`: its key, if known)."""
        if key is None:
            key = table.key_of(row)
        name = table.name
        rows, dirty = self.rows.get(name), self.dirty.get(name)
        if rows is None:
            rows = self.rows[name] = {}
        if dirty is None:
            dirty = self.dirty[name] = {}
        rows[key] = row
        dirty[key] = row

    def insert(self, table: Table, row: Row) -> None:
        """Append a history row; the first row for a key wins, as in the database."""
        kept = self.inserts.get(table.name)
        if kept is None:
            kept = self.inserts[table.name] = {}
        kept.setdefault(table.key_of(row), row)


class Projection:
    """Base class. Subclasses set the class attributes and implement `handle`."""

    name: str = ""
    topics: tuple[Topic, ...] = ()
    tables: tuple[Table, ...] = ()
    handles: frozenset[str] = frozenset()
    """`EventType/version` strings this projection folds."""
    ignores: frozenset[str] = frozenset()
    """Event types (any version) on its topics it knowingly has no use for."""
    migrations: tuple[str, ...] = ()
    """Migration files (under projections/migrations) that create this schema."""
    partition_local: bool = False
    """Every key it folds on (its state rows, the event ids it de-duplicates) lives on
    one partition number of its topics, so a rebuild may fold halves of the partitions
    in separate processes (`projections.partitioned`, which checks the claim on the
    log it reads and falls back to one consumer if it does not hold)."""
    rebuilds_in_time_order: bool = False
    """A rebuild hands this projection its records merged by Kafka timestamp across its
    topics' partitions (`projections.timeorder`), not as each is fetched: for a fold
    whose cost grows with how far its topics' reads drift apart. Its rows may not
    depend on the order either way."""
    fold_version: int = 1
    """Raised whenever `handle` folds the same events into different rows: a live schema
    folded by another version is refused until rebuilt (`projections.foldversion`)."""
    seen_table: str = "_seen"
    """The table whose `event_id` primary key records every folded event. A projection
    whose history table gets exactly one row per folded event names that table instead,
    which saves writing every event id twice."""

    @property
    def schema(self) -> str:
        return f"proj_{self.name}"

    def table(self, name: str) -> Table:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(name)

    def accepts(self, event_type: str, schema_version: int) -> bool | None:
        """True to fold, False to ignore knowingly, None when it does not understand it."""
        if f"{event_type}/{schema_version}" in self.handles:
            return True
        if event_type in self.ignores:
            return False
        return None

    def state_keys(self, events: Sequence[Located]) -> Mapping[str, set[Key]]:
        """Keys of stateful tables the batch will read. Default: none."""
        return {}

    def handle(self, state: State, item: Located) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def settle(self, state: State) -> list[Quarantined]:
        """Called once at the end of every `fold`, after the last `handle`: work `handle`
        deferred (`State.deferred`). Returns the events it could not use. Default: none."""
        return []

    def _admit(self, topic: str, event_type: str, schema_version: int, producer: str) -> Any:
        """True to fold, False to ignore knowingly, None when not understood, or the
        reason it is refused: what it does not ignore, the one admission rule of every
        reader (`schemas.admission.refusal`, the engine's `engine.replay.Intake` too), so
        a `KillSwitchReleased` someone else wrote to risk.config, or any `DepositReceived`
        on transfers.events (deposits are on accounts.events since session 22), which the
        engine dead-letters, changes nothing here either."""
        verdict = self.accepts(event_type, schema_version)
        if verdict is not True:
            return verdict
        why = refusal(topic, event_type, producer)
        return True if why is None else why

    def fold(self, state: State, events: Iterable[Located]) -> list[Quarantined]:
        """Apply events in order; an event whose handler fails goes to quarantine, and
        so does one the engine would not admit (`_admit`)."""
        bad: list[Quarantined] = []
        verdicts: dict[tuple[Any, Any, Any, Any], Any] = {}
        handle = self.handle
        for item in events:
            d = item.data
            raw = (item.topic, d["event_type"], d["schema_version"], d["producer"])
            if raw in verdicts:  # one verdict per topic, type, version and producer a batch
                verdict = verdicts[raw]
            else:
                verdict = verdicts[raw] = self._admit(
                    item.topic, item.event_type, item.schema_version, d["producer"]
                )
            if verdict is False:
                continue
            if verdict is not True:
                et, ver = item.event_type, item.schema_version
                why = f"{self.name} does not understand {et} v{ver}" if verdict is None else verdict
                bad.append(Quarantined(item.topic, item.partition, item.offset, why, et, ver))
                continue
            try:
                handle(state, item)
            except (SkipEvent, ArithmeticError, ValueError, KeyError, TypeError) as exc:
                et, ver = item.event_type, item.schema_version
                bad.append(
                    Quarantined(
                        item.topic, item.partition, item.offset,
                        f"{type(exc).__name__}: {exc}", et, ver,
                    )
                )  # fmt: skip
        bad += self.settle(state)
        return bad
