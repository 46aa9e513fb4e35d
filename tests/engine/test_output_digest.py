"""The engine's outputs for a fixed input stream, pinned by one digest.

The speed-ups of session 15 (engine/processor.py, engine/risk/, engine/state.py, ...) must
not change a single output byte. `test_trusted` compares the fast path with the validating
one *within* the current code; this test compares the current code with the code before:
a seeded stream (the snapshot and trusted tests' actions: limits with stop/take children,
market orders, prints, quotes, cancels, resends, deposits, kill switches, limit changes
with short rate windows and tight notional/position/open-order limits, waits that age the
price, odd ids, unknown producers, forged signatures; since session 24 intents stamped off
their arrival, `SKEWS`) with a fixed key and fixed event ids runs through the pure processor, and every output's (topic, key, value, headers), the recorded
decisions and `canonical_state` are hashed. The digest was taken on `fd0c089` (before the
session's changes). A change to what the engine emits (a rule's detail text, a new field)
changes it: then say so in the commit and take the new digest deliberately.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import schemas.envelope
import tests.engine.pure as pure
from engine import auth
from engine.processor import Context, process
from engine.snapshot import canonical_state
from engine.state import EngineState
from schemas import encode
from schemas.events import CancelIntent, OrderIntent, Side, TimeInForce
from tests.engine.test_snapshot import ACCOUNTS, Log, _harness
from tests.engine.test_trusted import _play_odd

PINNED = "ff4bec65608875a4481e4631242a6b8ead274ce35c53f700a80b1f5eb1caad17"
"""Retaken in session 24 (helper s24-clock): `IntentRejected.intent_partition` and
`intent_offset`, the intents record a rejection refused (null here: the harness has no
broker), which a client compares with where the broker put its own. Every
`IntentRejected` carries the two fields; with them taken out of the output and recorded
bytes the digest is the one before. Before:"""
"""PINNED was 2101bc245f8351e5b5017783b16aa85b6d6c99855427c7bbba602615251acf8f."""
"""Retaken in session 24 (helper s24-clock) for a changed stream, not a changed engine:
its intents are now stamped off their arrival (`SKEWS`, drawn from a generator of their
own, so the actions are the ones before) and passed their arrival as the broker's append
time. Before, every intent was stamped at its arrival, and a regression to the
producer's stamp for what it must not choose left the digest unchanged: with order events
at the intent's stamp (`order_events_at` returning None), the rules' book at the stamp,
or the idempotency record ranked by the stamp, the digest stayed 8c9ad22d... Now each of
these, the book at the stamp in the rules alone, a stamp ahead honoured up to
`max_intent_ahead_ms` and a backdated stamp taken for the order events moves it (six
reverts, each checked). The stream now has 98 CLOCK_SKEW refusals; approved 128 -> 119
of 700, fills 127 -> 121. Before:"""
"""PINNED was 8c9ad22d38ba55d4a644275eace83c213b36f14fe096a1ea61e64410d6c63762."""
"""Retaken in session 24 (helper s24-clock): `RiskLimits.order_events_ahead_ms` (0: an
intent's order events, and the book its order meets, at its append time even if stamped
ahead of it). Every accepted `RiskLimitsChanged` and the limits in `canonical_state` carry
it; with it taken out of the bytes everything is the one before (this stream stamps every
intent at its arrival). Before:"""
"""PINNED was e8235a0dc532916c2ea8162d6c82f0cc2b1c9be0bb77e7dd4842fa6b7a05f51e."""
"""Retaken in session 24 (helper s24-clock): `IntentRejected.received_at`, the intent's
append time (here its stamp: the harness's intents arrive when stamped), which the
idempotency record now ranks a recorded rejection by, as it ranks a `RiskDecision` by its
`received_at`. Every `IntentRejected` carries it; with the field taken out of the output
and recorded bytes, every output, the recent tier's keys and the rest of
`canonical_state` are the ones before. Before:"""
"""PINNED was 64f2c3d3468049cc076ec47966d5b687e08b11b2aa27ceff6b5560290833d546."""
"""Retaken in session 24 (helper s24-clock) for FRESHNESS v4, PRICE_COLLAR v4,
MAX_ORDER_NOTIONAL v5 and BALANCE v5 (an order meets, and is valued at, the book in force
at its submission, its append time, not at its producer's stamp): every decision records
the new versions. This stream stamps every intent at its arrival, so no book, figure or
outcome changed: with the four versions set back the digest is the one before. Before:"""
"""PINNED was ca1487a20728f86cde3da4107c07901f3ce9e0e1162f7de7908fead291af5d57."""
"""Retaken in session 23 (helper-134): an account's own kill switch engaged from an admin
command writes `RestingOrdersChecked` for the account in the halt's transaction (one record
per such switch of the stream), so a restart can tell a halt that
committed from one lost by an owner that read a switch another worker decided. With those
records left out the digest is the one before. Before:"""
"""PINNED was 06cb3c248adc05a5098884d894530b7d7376493a4ff0cc69d990138a915bf412."""
"""Retaken in session 22 (lead): each output's topic is hashed with its bytes, so an event
type moved to another topic (deposits went to accounts.events this session, `9852662`,
and the digest could not see it) changes the digest. No output changed. Before:"""
"""PINNED was 8cad82af92343a53c2b6426a3ada26d83ddab632bb9f0eda5d2e35466e9b6d76."""
"""Retaken in session 22 (helper-123): `canonical_state` names `rejected_commands`, the
admin commands the engine rejected (their envelopes replayed are refused). No output
changed: with that key left out of `canonical_state` the digest is the one before.
Before:"""
"""PINNED was 4163f2ff71c2981a7b9d50268533a3cfa8d3e3d6e673f97c71dd96a1c993939c."""
"""Retaken in session 22 (helper-118) for `RestingOrdersChecked`: the owner records every
withdrawal hold's and limits change's pass over an account's resting orders in the pass's
transaction, cancelling or not, so a restart does not run it again. The stream's limits
changes write 80 of them (it has no transfer facts), and `canonical_state`'s `unheld`
names those changes; nothing else changed (with `processor._checked` a no-op the digest
is the one before). Before:"""
"""PINNED was fadf816fd31d977dbf4ad1b1f3f6af125d62dc5f033b964bbd702e60052cf1a6."""
"""Retaken in session 22 (helper-123): `canonical_state` names `executed_commands`, the
admin commands whose facts were accepted (a replay under another `occurred_at` is refused
by the command's id). No output changed: with that key left out of `canonical_state` the
digest is the one before. Before:"""
"""PINNED was fada2c1b03a34af3cbdc9c766a9357baeead6ce0cdb7463fdac1bd0ae0e362cb."""
"""Retaken in session 22 (helper-120) for AccountOpened schema version 2 (`base_currency`
required): the harness's accounts are opened with v2 commands, so their accepted facts
say `schema_version` 2; with the harness sending `AccountOpenedV1` the digest is the one
before. Before:"""
"""PINNED was 1e24458ffdab93dc8083042524b086f6341cad94c088671ea6b7aa5810838f10."""
"""Retaken in session 22 (helper-120) for the paper venue's self-trade prevention (a
print meeting a stop/take child of an account cancels the account's resting orders it
reaches on the other side, `SELF_TRADE`): 2 such cancels in the stream, where the
account's resting order and its child both traded at one print; with that inventory and
those slots, approved 127 -> 128 of 700, fills 128 -> 127, orders submitted 161 -> 162,
cancels 42 -> 44. Before:"""
"""PINNED was ba3e95986c2deb919999f8b06226b2bc4dcc4205b58fb146afacc01a12bdc21c."""
"""Retaken in session 22 (helper-120) for MAX_POSITION v3 (the worst case starts from
the position once the account's open stop/take children on the order's side filled):
every decision records rule version 3; one more decision fails MAX_POSITION (180 of the
rule's failures, 179 before), rejected anyway, its detail naming the position the
children leave; no outcome, fill or cancel changed. Before:"""
"""PINNED was 2e5a92e142d003c32d47cad4d920a8b94ff8ec979b9b40fe73ec45b69dc379f8."""
"""Retaken in session 21 (helper-117) for SELF_TRADE v3 (an order's take-profit may not
cross the account's own orders on the order's side): every decision records rule version
3; no outcome, figure or detail changed (with the version set back to 2 the digest is the
one before). Before:"""
"""PINNED was 06a582c69394e2f0dc89cab6c1b4f85627d0801e53fc4ad27b1aeb286e61d140."""
"""Retaken in session 21 (helper-117) for SELF_TRADE v2 (the account's armed take-profit
children count at their trigger, triggered stop/take children cross every limit): every
decision records rule version 2; 20 of the 700 fail it (14 before), approvals 132 -> 127,
fills 138 -> 128. Before:"""
"""PINNED was 9f9d0d7f3d2f140bd9da642c820a9a6145e72d7ced7f74e8b5b0cc11a0352b01."""
"""Retaken in session 21 (helper-116) for MAX_ORDER_NOTIONAL v4 (a notional valued in the
account's valuation currency at the quote asset's mark): every decision records rule
version 4. The stream trades BTC/USDC for USDC accounts alone, so no figure, detail or
outcome changed: with the version set back to 3 the digest is the one before. Before:"""
"""PINNED was 16fc450c07d5550afd9cc736c4cf8ca16edf066d2cc5c3cbf970cf648245c73d."""
"""Retaken in session 21 (helper-110) for SELF_TRADE v1 (a limit crossing the account's
own resting orders on the other side of the pair is SELF_CROSS): every decision records a
twelfth rule result; 14 of the 700 decisions fail it, one of them approved before (its
order had rested across the account's own and filled with it), and 3 outcomes change in
all as positions and balances follow. Before:"""
"""PINNED was cf323463f9f62df8eb7dea38375045a56626576e8832996cf02fba03dc2c0f9f."""
"""Retaken in session 21 (helper-115): `canonical_state` names each account's
`decided_under` (the limits version of its newest approved decision) and keeps in
`unheld` the limits changes whose cancels (here the stream's MAX_POSITION ones) are on
the log: what shows a limits change's transaction committed, so a restart does not redo
its credit pass. No output changed: with those two keys left out of `canonical_state`
the digest is the one before. Before:"""
"""PINNED was c05ad29c19b9c65c299e27b036f3f05b00f8e46401b188c80ad5550a813af0d3."""
"""Retaken in session 21 (helper-110) for ORDER_RATE v4 (counted per producer and account,
whatever the intent's strategy id): every decision records the version, `canonical_state`
keys the rate windows `(producer, "")`, and the stream's "odd" intents, which carry odd
strategy ids, now count with the producer's others: 20 decisions newly fail ORDER_RATE,
and 18 of the 700 change outcome (17 approved -> rejected, one the other way as positions
and balances follow). Before:"""
"""PINNED was b8c8c3b6a87f703233e6c6e960c7f03d77ca2b60c1c044ee544cf0e1812180a1."""
"""Retaken in session 21 (helper-110): a limits change cancels the resting orders the
new limits refuse (`processor._limits_changed`). The stream's "tight" changes lower
`max_position` to 0.5 or 5 while bids of 2.5 rest: at the first (version 6) A1's and A4's
2.5 bids are canceled (`MAX_POSITION`), where before they filled 1 + 1.5 and 2.5 under a
limit of 0.5; everything after follows from there (16 MAX_POSITION cancels in the stream,
fills 170 -> 147, approvals 141 -> 147). Before:"""
"""PINNED was 9ff07a6370aca48e57a2a01a6c607e5bb37f8e47e0b7ba2ed14f3589f69694bf."""
"""Retaken in session 21 (helper-110) for KILL_SWITCH v2 / DRAWDOWN_BRAKE v9
(risk-reducing also takes the base asset's holding toward zero): every decision records
the new versions, and one output moved. A4, short BTC/USDC but holding deposited BTC, had
a buy of 0.001 resting when an admin engaged its switch (the first of two): v1 kept it as
closing the short, v2 cancels it then (KILL_SWITCH), not at the second engagement, and
three later A4 decisions no longer fail MAX_OPEN_ORDERS besides MAX_ORDER_NOTIONAL (one
open order fewer). Every other output is the one before. Before:"""
"""PINNED was 874bc714db9c9bfbdb5863582bde0c3153708ef1bd5e3d355efa59887638ad4e."""
"""Retaken in session 20 (helper-105) for DRAWDOWN_BRAKE v8 (a flow that finds an
account's capital gone marks its whole peak lost until a release): every decision records
rule version 8 and `canonical_state` names each account's `wiped_at` (none in the stream);
with the version set back to 7 and that key left out, the digest is the one before, so no
decision, brake or other output changed. Before:"""
"""PINNED was bf52f9a86d2c7ad9a8520fc3d107a713aa8c18497f324c4e1b5e215cadba4844."""
"""Retaken in session 20 (helper-105) for DRAWDOWN_BRAKE v7 (an account a settled
withdrawal left with no units and equity below zero has lost its whole peak): every
decision records rule version 7; with the version set back to 6 the digest is the one
before, so no decision, brake or other output changed. Before:"""
"""PINNED was 6f799245fde4afe9069fe8f46ab0459be37fbc671acac0a5e1b57421ae2774b7."""
"""Retaken in session 19 (helper-100): `OrderSubmitted.producer_key`, the key a parent's
intent verified with (141 parents name it; the 55 stop/take children carry null), which
decides the revocation that cancels the order; `canonical_state` names each order's key.
With that field taken out of the bytes and the state, the digest is the one before: no
other output changed. Before:"""
"""PINNED was 71b218b47c05c4771f7dfa8af21ccc725bf9136e8640a4177e88a4bb882b8675."""
"""Retaken in session 19 (helper-99): a stop/take child triggered by a print that left it
nothing stays triggered (`OrderTriggered`, 3 in the stream: two such, one replacement), and
a triggered child re-armed by its parent's fill is replaced by one of its kind alone,
triggered too. So: a stop hit at output 250 with nothing left is CHILD_CAPPED at the next
print (254; before at 322, when a later print reached its trigger again); a take-profit
hit at 419 with nothing left sells 0.2 at 424 and its 2.3 rest at 450 (before: it waited
until 513, then sold at 513, 526, 528 and 543); a triggered stop re-armed at 260 sells
its 2.1 on that print (before: a pair waiting for 29,700, which sold at 450), without a
take-profit submitted (OrderSubmitted 197 -> 196, OCO 24 -> 23); Fill 172 -> 170,
PeakEquityRaised 75 -> 72. `canonical_state` names each order's `triggered_at`. No
decision's outcome changed (700 RiskDecision, 216 IntentRejected, 33 kill switches); 4
rejections also name MAX_POSITION or INSUFFICIENT_BALANCE (the positions then differ).
Before:"""
"""PINNED was a7d7daedf169b0c5694735ebd484dc60bdac37fca45d65b14d8b2a7c9233c759."""
"""Retaken in session 19 (helper-94) for DRAWDOWN_BRAKE v6, drawdown per unit: each of the
52 deposits is followed by its `UnitsChanged` (risk.decisions); peaks are NAV per unit
(`peak_nav` on decisions, fills and `PeakEquityRaised`; `peak_equity` is that peak times
the units), so a deposit no longer raises the peak: `PeakEquityRaised` 99 -> 75, fills
recording a high 18 -> 15; every decision records rule version 6, and `canonical_state`
names each account's units and flows. No decision, brake, fill or cancel changed (141
orders approved, no DRAWDOWN_BRAKE or NO_MARK, the same 33 admin kill switches). Before:"""
"""Retaken in session 19 (helper-95) for TOO_LATE_TO_CANCEL: of the stream's 140 cancels
refused, 4 name an approved order since done and are now TOO_LATE_TO_CANCEL (were
UNKNOWN_ORDER); 14 name an id whose intent was rejected or was a cancel and stay
UNKNOWN_ORDER, their detail now saying the id placed no order; the other 122 (ids never
used) are unchanged, as is every other output byte. `canonical_state` names the ended
orders (`EngineState.ended`), and the harness keeps 2 ends per account. Before:"""
"""Retaken in session 19 (helper-97): `canonical_state` writes an account's `taken` per
quote (the last quotes taken from, not only the last one: an intent stamped earlier no
longer makes a newer quote show its size afresh). No output changed: with each `taken`
written as its last entry the digest is still ef5e903b02a9... Before:"""
"""Retaken in session 18 (helper-87) for DRAWDOWN_BRAKE v5, the drawdown peak raised at
every print for the holders of the printed pair: 99 `PeakEquityRaised` (risk.decisions),
so 4 fills fewer carry a `peak_equity` (22 -> 18: the high was recorded at an earlier
print); every decision records rule version 5; no decision, brake or fill changed. Before:"""
"""Retaken in session 18 (helper-87), for the stop/take children: a triggered child fills
up to each print's size, the rest at later prints: children's fills 15 -> 24 for the same
15.199 BTC in all (one more pair `REPLACED`, a parent filling again while its child
worked). Before:"""
"""Retaken in session 18 (helper-92) for DRAWDOWN_BRAKE v4 (drawdown measured net of
settled withdrawals): every decision records rule version 4. With the version at 3 the
digest is still 8c5bc345f40b... (this stream has no transfers, so no peak, equity or
decision changed). Before:"""
"""Retaken in session 18 (helper-88) for BALANCE v4 (pending withdrawals held, settled
ones debited): every decision records rule version 4, and `canonical_state` names each
account's withdrawals and holds (none in this stream, which has no transfers). With the
version at 3 and those two keys left out the digest is still helper-87's
3df483e99cb3...: no other byte changed. Before:"""
"""Retaken in session 18 (helper-87): every fill carries `quote_id` (the 85 fills on
submission name the quote they took from, the 78 at prints null), which an account's
later orders against that quote no longer find (`AccountState.taken`); in this stream no
account's orders met one quote's displayed size twice, so no fill quantity changed."""
"""Retaken in session 17 (helper-84), three times. Every fill carries `peak_equity` (null
on 141, an equity high found at the print on 22; no brake engages differently). Stop/take children armed from a parent's
first fill, re-armed at each later fill: 10 more armed on prints (parents filled in part),
8 of them replacing the pair before (`REPLACED`), one more stop triggered (a fill and its
OCO). Engaging the kill switch cancels the resting orders
that add risk at once (4 in the stream, where they stayed open until a print reached
them, or until the release); with those funds and slots free, approved orders 155 -> 159,
fills on prints 79 -> 77, on submission 83 -> 85. Before that:"""
"""Retaken in session 17 (helper-81) for FRESHNESS v3, PRICE_COLLAR v3 and MAX_POSITION
v2: every decision records the new versions; the stream's aged quotes (FRESHNESS) and
wide books (PRICE_COLLAR, a market order's touch) now reject (approved orders 159 -> 137,
fills 189 -> 162); MAX_POSITION v2 adds its code to 3 orders rejected anyway."""

SIDES = [Side.BUY, Side.SELL]
SKEWS = [0.0] * 16 + [-3.5, -1.0, -0.2, 0.5, 0.9, 2.0, -6.0, 3600.0]
"""Seconds an intent's producer stamps it off its arrival (the broker's append time, the
harness's clock), drawn per intent from a generator of its own (the actions are drawn as
before): most on time, some back or ahead within FRESHNESS's skew window (-5 s / +1 s),
some beyond it (orders refused CLOCK_SKEW, cancels not), a cancel or refusal an hour
either way. Since session 24 the engine takes none of these stamps for what the producer
must not choose: the book an order meets, its order events' time, the idempotency
record's ranking (all at the append time), so a change back to the producer's stamp for
any of them moves the digest (checked by reverting each: PINNED's session-24 note).
Before, every intent of the stream was stamped at its arrival and such a
regression left the digest as it was."""


def _action(r: random.Random) -> tuple[Any, ...]:
    acc = r.choice(ACCOUNTS)
    side = r.choice(SIDES)
    kind = r.choices(
        [
            "limit",
            "market",
            "trade",
            "quote",
            "cancel",
            "resend",
            "deposit",
            "release",
            "limits",
            "wait",
            "odd",
            "stranger",
            "forged",
            "tight",
        ],
        weights=[30, 8, 10, 10, 8, 5, 3, 2, 2, 4, 4, 1, 1, 2],
    )[0]
    if kind == "limit":
        return (
            kind,
            acc,
            side,
            r.choice(["0.1", "1", "2.5"]),
            r.randint(-20, 20),
            r.random() < 0.3,
        )
    if kind == "market":
        return (kind, acc, side)
    if kind == "trade":
        return (kind, r.randint(-30, 30), r.choice(["0.2", "1", "5"]))
    if kind == "quote":
        return (kind, r.randint(-20, 20))
    if kind == "cancel":
        return (kind, acc, r.randint(0, 400))
    if kind == "resend":
        return (kind, r.randint(0, 400))
    if kind == "deposit":
        return (kind, acc, r.choice(["USDC", "BTC"]))
    if kind == "release":
        return (kind, acc)
    if kind == "limits":
        return (kind, r.randint(1, 3))
    if kind == "wait":
        return (kind, r.choice([0.5, 2.0, 400.0]))
    if kind == "odd":
        text = "".join(r.choice('ab"\\\x00é€😀\u2028') for _ in range(r.randint(1, 6)))
        tif = r.choice(list(TimeInForce))
        return (
            kind,
            acc,
            side,
            text,
            tif,
            r.choice(["0.001", "3", "1000000"]),
            r.randint(-3000, 3000),
        )
    if kind in ("stranger", "forged"):
        return (kind, acc)
    return (kind, r.choice(["100", "40000"]), r.choice(["0.5", "5"]), r.randint(0, 3))


def _run(seed: int, n: int) -> str:
    ids = iter(range(1, 10**9))
    fixed_key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    outputs: list[list[Any]] = []

    skews = random.Random(seed + 1)

    def recorder(state: EngineState, event: Any, ctx: Context) -> list[Any]:
        arrival = None
        if isinstance(event.payload, OrderIntent | CancelIntent):
            arrival = event.occurred_at
            skew = timedelta(seconds=skews.choice(SKEWS))
            event = event.model_copy(update={"occurred_at": arrival + skew})
        out = process(state, event, ctx, arrival)
        outputs.append(list(out))
        return out

    mp = pytest.MonkeyPatch()
    mp.setattr(schemas.envelope, "uuid7", lambda: uuid.UUID(int=(7 << 76) | (2 << 62) | next(ids)))
    mp.setattr(auth, "new_keypair", lambda: (fixed_key, auth.public_hex(fixed_key)))
    mp.setattr(pure, "process", recorder)
    try:
        h = _harness()
        log = Log(h)
        r = random.Random(seed)
        for _ in range(n):
            a = _action(r)
            if a[0] in ("odd", "stranger", "forged", "tight"):
                _play_odd(log, a)
            else:
                log.play(a)
    finally:
        mp.undo()
    digest = hashlib.sha256()
    kinds: dict[str, int] = {}
    for out in outputs:
        digest.update(b"\x1e")
        for e in out:
            k, v, hd = encode(e)
            kinds[e.event_type] = kinds.get(e.event_type, 0) + 1
            digest.update(repr((e.topic, k, v, hd)).encode())
    recorded = sorted(
        (repr(key), r.key, r.value, r.headers) for key, r in h.state.decisions.recent.items()
    )
    digest.update(repr(recorded).encode())
    digest.update(json.dumps(canonical_state(h.state), sort_keys=True, default=str).encode())
    assert kinds.get("RiskDecision", 0) > 100 and kinds.get("Fill", 0) > 20, kinds
    return digest.hexdigest()


def test_the_outputs_of_a_fixed_stream_are_the_pinned_bytes() -> None:
    assert _run(20261206, 1500) == PINNED


def test_the_current_book_is_the_quote_it_was_built_from() -> None:
    """`PriceState.book_at`'s fallback (an order older than the kept history) keeps one
    Quote per current book: always the current fields, never an older book's."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from engine.state import PriceState, Quote

    t0, t1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    ps = PriceState()
    assert ps.book_at(t0) is None
    ps.bid, ps.ask, ps.quote_at, ps.quote_id = Decimal("1"), Decimal("2"), t1, "q1"
    first = ps.book_at(t0)
    assert first == Quote(t1, Decimal("1"), Decimal("2"), Decimal(0), Decimal(0), "q1")
    assert ps.book_at(t0) is first
    for name, value in [
        ("bid", Decimal("1.5")),
        ("ask", Decimal("3")),
        ("bid_qty", Decimal("4")),
        ("ask_qty", Decimal("5")),
        ("quote_id", "q2"),
        ("quote_at", t0),
    ]:
        setattr(ps, name, value)
        book = ps.book_at(t0 if name != "quote_at" else datetime(2025, 1, 1, tzinfo=UTC))
        assert book == Quote(ps.quote_at, ps.bid, ps.ask, ps.bid_qty, ps.ask_qty, ps.quote_id)
