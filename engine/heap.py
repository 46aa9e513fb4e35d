"""How the worker keeps CPython's cyclic garbage collector off its latency path.

The engine's state is a large, long-lived heap (open orders, the idempotency record,
prices), and processing an intent creates no reference cycles: over 10,000 intents the
collector found 0 objects to collect, yet it took ~20 % of the CPU per intent, and each
full (generation 2) collection re-scanned the whole state in one pause of 100-250 ms
(measured in process). Reference counting frees everything the engine drops; the
collector is only needed for cycles.

So, after a rebuild and after every batch, everything alive is moved to the permanent
generation (`gc.freeze()`, O(1)): automatic collections then scan only what the current
batch allocated. A cycle created and dropped within a batch is still collected by them.
A cycle among frozen objects (none seen; an exception kept in the state would be one) is
collected by a full collection over everything (`gc.unfreeze()` + `gc.collect()`),
between batches: when the worker has been idle for `IDLE_SECONDS`, at most once per
`FULL_COLLECTION_EVERY` s,
and without waiting for idleness once the last one is `FULL_COLLECTION_AT_LEAST` s old.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("tradetape.engine")

FULL_COLLECTION_EVERY = 60.0
"""At most one full collection (over frozen objects too) per this many seconds, idle."""
YOUNG_THRESHOLD = 20_000
"""Net allocations between automatic young-generation collections (CPython's default: 700).
With the heap frozen after every batch, a batch at a steady 1k/s (~1,000 net allocations)
ends before one is due, so the collector rarely runs at all; under a backlog it runs a few
times per 2,000-intent batch."""
IDLE_SECONDS = 1.0
"""No input for this long counts as idle (a 50 ms empty poll between bursts does not)."""
FULL_COLLECTION_AT_LEAST = 600.0
"""A worker that is never idle still collects fully this often (bounds a leak of cycles)."""


class HeapPolicy:
    """Freeze the heap after each rebuild and batch; collect fully only when idle."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        full_every: float = FULL_COLLECTION_EVERY,  # seconds (a duration, not money)
        full_at_least: float = FULL_COLLECTION_AT_LEAST,  # seconds, not money
    ) -> None:
        self.enabled = enabled
        """Off: CPython's default collector, untouched (`TRADETAPE_ENGINE_GC_FREEZE=0`)."""
        self.full_every = full_every
        self.full_at_least = full_at_least
        self.last_full = time.monotonic()
        self.last_input = self.last_full
        self.collected = 0
        """Objects found by the full collections so far (cycles among frozen objects)."""
        self._thresholds: tuple[int, int, int] | None = None

    def install(self) -> None:
        """Raise the young-generation threshold (undone by `release`)."""
        if self.enabled and self._thresholds is None:
            self._thresholds = gc.get_threshold()
            gc.set_threshold(YOUNG_THRESHOLD, *self._thresholds[1:])

    def after_rebuild(self) -> None:
        """The rebuilt state is long-lived: collect once, then never scan it again."""
        if not self.enabled:
            return
        self.collected += gc.collect()
        gc.freeze()
        self.last_full = time.monotonic()

    def after_batch(self) -> None:
        """What the batch left alive (state) leaves the generations the collector scans."""
        if self.enabled:
            gc.freeze()

    def between_batches(
        self,
        *,
        had_input: bool,
        now: float | None = None,  # monotonic seconds, not money
    ) -> int:
        """After a step (`had_input`: it took records; `now`: monotonic seconds, a time, not
        money): a full collection over everything
        if it is due — no input for `IDLE_SECONDS` and the last one at least `full_every`
        s old, or the last one `full_at_least` s old whatever the load.

        Returns the number of objects it collected (0 if it did not run).
        """
        if not self.enabled:
            return 0
        now = time.monotonic() if now is None else now
        if had_input:
            self.last_input = now
        idle = now - self.last_input >= IDLE_SECONDS
        age = now - self.last_full
        if age < (self.full_every if idle else self.full_at_least):
            return 0
        started = time.monotonic()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        self.last_full = now
        self.collected += found
        log.info(
            "full garbage collection (%s): %d objects in cycles, %.0f ms",
            "idle" if idle else "due",
            found,
            (time.monotonic() - started) * 1000,
        )
        return found

    def release(self) -> None:
        """At a stop: the process's objects back to the ordinary collector, which gets its
        thresholds back."""
        if self.enabled:
            gc.unfreeze()
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None
