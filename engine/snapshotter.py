"""The snapshotter: takes the engine's snapshot slices in a process of its own.

Why a process of its own: a worker that sliced its own state stalled its loop for
0.2-0.7 s per slice (rendering and encoding held the interpreter lock its loop needs),
and that stall was the whole latency tail at 1,000 intents/s (docs/benchmarks.md,
*Session 8*). The snapshotter folds the log exactly as a worker's rebuild does
(`engine.replay`) and slices what it folded; workers only read slices.

Each round:

1. note the own topics' last stable offsets: the round's targets;
2. read the reference topics to their ends. Every reference record a worker read before
   producing an own record below a target was committed before that record, so before
   step 1: it is folded before that record, as in a rebuild (reference topics first);
3. fold the own records up to the targets and not one further (`fold_until`), so the
   state is exactly "the log up to these offsets";
4. slice every partition that is due (`engine_snapshot_every` own records folded since
   its last slice, or `engine_snapshot_seconds` with any) and publish the slices.

A slice is a cache. If the snapshotter is down or behind, workers start from an older
slice, or replay more of the log; nothing else changes. Workers check every slice they
read (`engine.snapshot_io.read_slices`, `engine.snapshot.merge_slices`).

While a topic it reads is off its declared partition count (`deploy.kafka.partition_changes`)
the snapshotter holds: it folds nothing and writes no slice, and says why (ERROR). Such a
log moved keys: an account's history lies on one partition and its new records on another,
so a slice would be cut by the new count from records read in no fixed order, and the
slice of the old partition would claim offsets whose records it no longer holds. The
workers decide nothing on such a log either (every intent STALE_STATE).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from deploy import groups
from deploy.groups import group_id
from deploy.kafka import (
    PartitionsChanged,
    admin_client,
    check_partitions,
    consumer_config,
    end_offsets,
    partitions_of_many,
    topic_ids,
)
from deploy.settings import Settings
from deploy.signals import handling_stop
from engine.partitioning import partitioner
from engine.replay import (
    OWN_TOPICS,
    REFERENCE_TOPICS,
    Intake,
    LogCut,
    PartitionKey,
    changed_ids,
    fold_until,
    folder,
    load_slices,
)
from engine.snapshot import SnapshotError, take_slice
from engine.snapshot_io import SnapshotWriter
from engine.state import EngineState
from schemas.topics import Topic

log = logging.getLogger("tradetape.engine.snapshotter")

ROUND_SECONDS = 1.0
"""How often the snapshotter looks for new records (seconds, not money)."""
RETRY_SECONDS = 5.0
"""After a failed round: wait this long, then start over from the log."""


def _check_whole(lows: dict[PartitionKey, int]) -> None:
    """Raise `LogCut` if a partition folded from its beginning has lost it (its first
    offset past 0: records deleted): a slice of what is left would pass for the whole
    partition (its offsets are inside the log) and a worker would load it."""
    cut = sorted(f"{t}[{p}]: the log holds from {low}" for (t, p), low in lows.items() if low > 0)
    if cut:
        raise LogCut(
            "the log no longer holds the beginning of what the snapshotter folds from it ("
            + "; ".join(cut)
            + "): records were deleted from a log's start (docs/operations.md, A topic "
            "deleted or truncated)"
        )


class Snapshotter:
    """Folds the engine's log and publishes per-partition slices of the folded state."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stopping = False
        self.intake = Intake(settings)
        prefix = settings.topic_prefix
        self.admin = admin_client(settings)
        self.reader = Consumer(
            consumer_config(
                settings, group_id=group_id(prefix, groups.ENGINE_SNAPSHOTTER, uuid.uuid4().hex)
            )
        )
        self.writer: SnapshotWriter | None = None
        self.state: EngineState | None = None
        """None: (re)built from the log at the next round."""
        self.ref_at: dict[PartitionKey, int] = {}
        """Reference topic partition -> the offset after the last record folded."""
        self.own_at: dict[PartitionKey, int] = {}
        """Own topic partition -> the offset after the last record folded (exact)."""
        self.n_own = 0
        self.parts: dict[Topic, list[int]] = {}
        """Topic -> partitions, as of the current round (`_refresh_partitions`)."""
        self.due: dict[int, int] = {}
        """Own records folded per engine partition since its last slice."""
        self.last: dict[int, float] = {}  # time.monotonic() seconds, not money
        self.ids: dict[str, str] = {}
        """The topic ids (full name -> id) of the topics it folds and writes, taken at
        `start`: every round compares them with the topics' ids now (`_check_ids`)."""
        self.holding: str | None = None
        """Why it holds (a topic off its declared partition count), or None."""
        self.stats = {
            "rounds": 0,
            "folded": 0,
            "slices": 0,
            "slice_bytes": 0,
            "restarts": 0,
        }

    # ---- folding -----------------------------------------------------------------

    def _topic_partitions(self) -> dict[Topic, list[int]]:
        """The partitions of every topic a round reads, from one metadata request."""
        topics = [*OWN_TOPICS, *REFERENCE_TOPICS, Topic.ENGINE_SNAPSHOTS]
        self.parts = partitions_of_many(self.reader, self.settings, topics)
        return self.parts

    def _refresh_partitions(self) -> int:
        """Refresh `parts` (one metadata request); the own topics' partition count.
        Raises `PartitionsChanged` if a topic it reads is off its declared count."""
        parts = self._topic_partitions()
        check_partitions(
            self.settings,
            {self.settings.topic(t): len(ps) for t, ps in parts.items()},
            who="the snapshotter",
        )
        counts = {len(parts[t]) for t in OWN_TOPICS}
        if len(counts) != 1:
            raise SnapshotError(f"own topics differ in partition count {sorted(counts)}")
        return counts.pop()

    def _fold_reference(self, state: EngineState) -> bool:
        """Read the reference topics to their current ends (step 2)."""
        tps = [
            TopicPartition(self.settings.topic(t), p)
            for t in REFERENCE_TOPICS
            for p in self.parts[t]
        ]
        ends = end_offsets(self.admin, tps)
        missing = [tp for tp in tps if (tp.topic, tp.partition) not in self.ref_at]
        if missing:
            lows = end_offsets(self.admin, missing, earliest=True)
            _check_whole(lows)
            for k, low in lows.items():
                self.ref_at[k] = max(low, 0)
        ok, self.ref_at = fold_until(
            self.settings, self.ref_at, ends, folder(state, self.intake), stop=lambda: self.stopping
        )
        return ok

    def _fold_own(self, state: EngineState, targets: dict[PartitionKey, int]) -> bool:
        """Fold the own records up to `targets`, counting them per partition (step 3)."""
        apply = folder(state, self.intake)
        due, stats = self.due, self.stats

        def fold(msg: Message) -> None:
            apply(msg)
            # An own record's partition is its account's engine partition.
            p = msg.partition() or 0
            due[p] = due.get(p, 0) + 1
            stats["folded"] += 1

        ok, self.own_at = fold_until(
            self.settings, self.own_at, targets, fold, stop=lambda: self.stopping
        )
        return ok

    def _own_targets(self) -> dict[PartitionKey, int]:
        tps = [
            TopicPartition(self.settings.topic(t), p) for t in OWN_TOPICS for p in range(self.n_own)
        ]
        return end_offsets(self.admin, tps)

    def start(self, *, use_slices: bool = True) -> None:
        """A fresh state: as a worker's rebuild of every partition (slices, then the rest)."""
        started = time.monotonic()
        self.ids = topic_ids(self.admin, self._id_topics())
        self.n_own = self._refresh_partitions()
        state = EngineState(partition_of=partitioner(self.n_own))
        self.ref_at, self.own_at, self.due = {}, {}, {}
        targets = self._own_targets()
        if not self._fold_reference(state):
            raise RuntimeError("the reference topics were not read to their end in time")
        slices = {}
        if use_slices and self.settings.engine_snapshot_load:
            try:
                slices = load_slices(
                    self.settings,
                    self.admin,
                    state,
                    list(range(self.n_own)),
                    len(self.parts[Topic.ENGINE_SNAPSHOTS]),
                )
            except SnapshotError:
                self.start(use_slices=False)
                return
        lows = end_offsets(self.admin, [TopicPartition(t, p) for (t, p) in targets], earliest=True)
        _check_whole(
            {
                (self.settings.topic(t), p): lows[(self.settings.topic(t), p)]
                for t in OWN_TOPICS
                for p in range(self.n_own)
                if p not in slices
            }
        )
        for t in OWN_TOPICS:
            name = self.settings.topic(t)
            for p in range(self.n_own):
                s = slices.get(p)
                self.own_at[(name, p)] = (
                    s.offsets[t.value] if s is not None else max(lows[(name, p)], 0)
                )
        own_ok = self._fold_own(state, targets)
        now = time.monotonic()
        self.last = {p: now for p in range(self.n_own)}
        self.state = state
        log.info(
            "snapshotter folded %d partitions in %.2fs%s: %d own records after slices %s",
            self.n_own,
            now - started,
            "" if own_ok else " (the rest at the next rounds)",
            sum(self.due.values()),
            {p: s.slice_id for p, s in sorted(slices.items())} or "none",
        )

    def round(self) -> int:
        """One round (steps 1-4); returns the slices published."""
        if self.state is None:
            self.start()
        state = self.state
        assert state is not None
        if self._refresh_partitions() != self.n_own:
            log.warning("partitions were added to the own topics: starting over")
            self.state = None
            return 0
        targets = self._own_targets()
        ref_ok = self._fold_reference(state)
        if not ref_ok:
            # Own records may need reference records not read yet: fold none this round.
            if not self.stopping:
                log.warning("the reference topics were not read to their end; retrying")
            return 0
        self._fold_own(state, targets)
        self._check_ids()
        self.stats["rounds"] += 1
        return self._slice_due(state)

    def _id_topics(self) -> list[str]:
        return [
            self.settings.topic(t) for t in (*REFERENCE_TOPICS, *OWN_TOPICS, Topic.ENGINE_SNAPSHOTS)
        ]

    def _check_ids(self) -> None:
        """Raise `LogCut` if a topic it folds or writes was deleted and created again since
        `start` (its id changed): its state would mix the two logs, or its slices go to a
        topic that is not the one it loaded (the round holds; the next `start` folds the
        logs there are now, and refuses slices of other logs: `load_slices`)."""
        changed = changed_ids(self.ids, topic_ids(self.admin, self._id_topics()))
        if changed:
            raise LogCut(
                "a topic the snapshotter folds or writes was deleted and created again while "
                f"it ran ({'; '.join(changed)}); no slice of the state it holds is written "
                "(docs/operations.md, A topic deleted or truncated)"
            )

    # ---- slicing -----------------------------------------------------------------

    def _slice_due(self, state: EngineState) -> int:
        every = self.settings.engine_snapshot_every
        seconds = self.settings.engine_snapshot_seconds
        now = time.monotonic()
        due = sorted(
            p
            for p, n in self.due.items()
            if n > 0 and (n >= every or now - self.last.get(p, 0.0) >= seconds)
        )
        if not due:
            return 0
        if self.writer is None:
            self.writer = SnapshotWriter(
                self.settings,
                len(self.parts[Topic.ENGINE_SNAPSHOTS]),
            )
        ids = {
            t.value: self.ids[self.settings.topic(t)]
            for t in (*REFERENCE_TOPICS, *OWN_TOPICS)
            if self.settings.topic(t) in self.ids
        }
        for p in due:
            offsets = {t.value: self.own_at[(self.settings.topic(t), p)] for t in OWN_TOPICS}
            try:
                s = take_slice(state, p, offsets, ids)
                n = self.writer.publish(s)
            except Exception:  # the state is still exact: keep it, try again next round
                log.exception("slicing partition %d failed; retrying next round", p)
                continue
            self.due[p] = 0
            self.last[p] = now
            self.stats["slices"] += 1
            self.stats["slice_bytes"] += n
            log.info("snapshot slice of partition %d at %s: %d bytes", p, s.offsets, n)
        left = self.writer.flush(30)
        if left:
            log.warning("%d snapshot chunks not delivered yet", left)
        return len(due)

    # ---- the loop ----------------------------------------------------------------

    def run(self) -> int:
        if not self.settings.engine_snapshots:
            log.info("snapshots are off (TRADETAPE_ENGINE_SNAPSHOTS=false): nothing to do")
            while not self.stopping:
                time.sleep(0.5)
            return 0
        log.info("engine snapshotter started")
        try:
            while not self.stopping:
                began = time.monotonic()
                try:
                    self.round()
                    self.holding = None
                except PartitionsChanged as exc:
                    self._hold(exc)
                except LogCut as exc:
                    self._hold(exc, "no slices are written until the records are restored")
                except (KafkaException, SnapshotError, RuntimeError) as exc:
                    self._failed(exc)
                except Exception as exc:  # never crash: a slice is only a cache
                    log.exception("snapshot round failed")
                    self._failed(exc)
                rest = ROUND_SECONDS - (time.monotonic() - began)
                while rest > 0 and not self.stopping:
                    time.sleep(min(rest, 0.2))
                    rest -= 0.2
        finally:
            if self.writer is not None:
                self.writer.close()
            self.reader.close()
        log.info("engine snapshotter stopped: %s", self.stats)
        return 0

    def _hold(
        self,
        exc: PartitionsChanged | LogCut,
        until: str = "no slices are written until the topics are as declared",
    ) -> None:
        """Fold nothing, write nothing: logged once per change, looked at again after
        RETRY_SECONDS."""
        if str(exc) != self.holding:
            log.error("%s; %s", exc, until)
        self.holding = str(exc)
        self.state = None
        deadline = time.monotonic() + RETRY_SECONDS
        while time.monotonic() < deadline and not self.stopping:
            time.sleep(0.2)

    def _failed(self, exc: Exception) -> None:
        log.warning("snapshot round failed (%s); starting over from the log", exc)
        self.state = None
        self.stats["restarts"] += 1
        deadline = time.monotonic() + RETRY_SECONDS
        while time.monotonic() < deadline and not self.stopping:
            time.sleep(0.2)


def main(settings: Settings) -> int:
    """`tradetape run snapshotter`: the snapshotter in the foreground until SIGTERM/SIGINT."""
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if settings.engine_snapshotter_nice:
        os.nice(settings.engine_snapshotter_nice)
    snapshotter = Snapshotter(settings)

    def _stop(signum: int, _frame: Any) -> None:
        snapshotter.stopping = True

    with handling_stop(_stop):
        return snapshotter.run()
