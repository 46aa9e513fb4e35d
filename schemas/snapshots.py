"""The records of `engine.snapshots`: per-partition slices of the engine's state.

A snapshot is a cache of the engine's fold, never the truth: the log is. One slice holds
what the engine folded from partition `p` of its own topics (`risk.decisions`,
`orders.lifecycle`) up to the offsets it names, so that a worker taking over `p` reads
the slice and replays only the records after those offsets.

Wire format (not an envelope event: it is state, not a fact):

- topic `engine.snapshots`, compacted, slice of engine partition `p` on partition
  `p % partitions(engine.snapshots)`;
- the body is zlib-compressed canonical JSON (sorted keys, Decimals and datetimes as
  strings, bytes as base64) of the slice, cut into chunks of at most `MAX_CHUNK_BYTES`;
- chunk `i` of `n` has key `"<p>/<i>"` (compaction keeps the newest of each chunk index)
  and the headers below; every chunk of one slice carries the same id and digest.

A reader takes the slice covering the most of the log (by the offsets in its id, then
the latest written) whose chunks are all present, whose digest matches, whose format it
knows and whose offsets the log has committed; with none, it replays that partition's
log in full.
"""

from __future__ import annotations

FORMAT_VERSION = 21
"""Bumped on any change of the slice's content; a reader ignores other versions (2: the
idempotency and client-order keys carry the account; 3: the idempotency record's recent
tier is bounded per account, so a slice holds another set of recent decisions; 4: each
account's newest maker fill per instrument, which bounds the prints matched again after a
hand-over; 5: that fill per instrument and side; 6: each order's `protected`, the filled
quantity its stop/take children were last armed for, as they are armed from the first
fill on; 7: each account's `taken`, what its orders took of the displayed book, which its
next orders against that book no longer find; 8: each order's `last_fill_at`, after
which a stop/take child triggered and filled in part fills its rest; 9: `taken` per
quote, for the last quotes taken from, not only the last one; 10: the ended parent
orders of its accounts, `engine.ended`, so a cancel naming one is TOO_LATE_TO_CANCEL
after a hand-over as live; 11: each account's units, the NAV per unit of its last flows
and the flows its `UnitsChanged` named, and its peaks as NAV per unit, DRAWDOWN_BRAKE v6:
an older slice's peaks are of equity; 12: each order's `triggered_at`, when a stop/take
child was triggered with nothing filled, `OrderTriggered`; 13: each order's
`producer_key`, the key its intent verified with, which decides the revocation that
cancels it, `EngineState.revocation_of`; 14: each account's `wiped_at`, when a flow
last found its capital gone, DRAWDOWN_BRAKE v8: an older slice does not say; 15: each
account's `unheld`, the facts whose WITHDRAWAL_HELD cancels are on the log: without it a
restart's `catch_up` would run a committed hold's pass again and could cancel more than
the live worker did; 16: the rate windows per producer and account, whatever the
strategy, ORDER_RATE v4: an older slice's are per strategy, and restored would count the
producer's intents short; 17: `unheld` also holds the limits changes whose cancels
(CREDIT_LIMIT, MAX_POSITION, an allow-list code) are on the log, and each account's
`decided_under`, the limits version of its newest approved decision: a 16 slice lacks
both, so a restart would run a committed limits change's credit pass again on its
state; 18: `unheld` also holds the facts named by the account's `RestingOrdersChecked`,
the record of every hold's or limits change's pass, cancelling or not: a 17 slice was
taken by a snapshotter that could not read that record, so restored it would leave such
a pass to be run again on a later state; 19: the admin commands the engine rejected
whose key is on the partition, `EngineState.rejected_commands`: an 18 slice lacks them,
so a rejected command's envelope replayed after a hand-over would be decided again; 20:
each recent decision's `ranked_at`, its intent's broker append time where recorded, in
place of its event time, the producer's stamp, which ranked the recent tier before: a 19
slice restored would rank its decisions otherwise than the log's fold; 21: the Kafka topic
ids of the logs the slice was folded from, `topic_ids` (control, own and input topics): a
20 slice cannot tell a topic deleted and created again, its new log grown past the slice's
offsets, from the one it was folded from, so a worker would fold a new `risk.config` onto
state decided under the old one)."""
MAX_CHUNK_BYTES = 512 * 1024
"""Below the broker's default 1 MB `message.max.bytes`, headers included."""

HEADER_FORMAT = "tt-snapshot-format"
"""The slice format version, decimal ASCII."""
HEADER_ID = "tt-snapshot-id"
"""`<p>:<orders.lifecycle offset>:<risk.decisions offset>`: the same for every chunk."""
HEADER_CHUNK = "tt-snapshot-chunk"
"""`<i>/<n>`, zero-based."""
HEADER_DIGEST = "tt-snapshot-sha256"
"""Hex SHA-256 of the whole compressed body (all chunks joined)."""
HEADER_PARTITION = "tt-snapshot-partition"
"""The engine partition the slice belongs to, decimal ASCII."""


def record_key(partition: int, chunk: int) -> bytes:
    return f"{partition}/{chunk}".encode()


HEADERS: dict[str, str] = {
    HEADER_FORMAT: "slice format version, decimal ASCII; readers ignore other versions",
    HEADER_ID: "`<p>:<orders.lifecycle offset>:<risk.decisions offset>`, same on every chunk",
    HEADER_CHUNK: "`<i>/<n>`, zero-based chunk index and chunk count",
    HEADER_DIGEST: "hex SHA-256 of the whole compressed body (all chunks joined)",
    HEADER_PARTITION: "the engine partition the slice belongs to, decimal ASCII",
}
"""Every header of a snapshot record and what it carries (rendered into docs/events.md)."""
