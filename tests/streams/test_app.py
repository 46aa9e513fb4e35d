"""The faust agents with `agent.test_context()`: no broker, the real agent code."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from deploy.settings import Settings
from schemas import Envelope, decode, encode
from schemas.events import DeadLetter, SurveillanceAlert
from streams.app import build_app
from streams.synthetic import Tape
from tests.streams.helpers import spoof_tape


def arrived(e: Envelope[Any], rx: int) -> dict[str, bytes]:
    """The headers the intake adds: source partition and arrival stamp (µs)."""
    return {"tt-src": f"{e.topic}:{e.key}".encode(), "tt-rx": str(rx).encode()}


def tick(rx: int) -> dict[str, bytes]:
    return {"tt-tick": b"1", "tt-rx": str(rx).encode()}


async def _run_detect(tmp: Path, events: list[Envelope[Any]], twice: bool) -> list[Any]:
    built = build_app(Settings(data_dir=tmp, topic_prefix="unit."), app_id=f"unit-{tmp.name}")
    sent: list[Envelope[SurveillanceAlert]] = []

    async def capture(alert: Envelope[SurveillanceAlert]) -> None:
        sent.append(alert)

    built.emit = capture
    async with built.detect.test_context() as agent:
        for _ in range(2 if twice else 1):
            for e in events:
                key, value, _headers = encode(e)
                await agent.put(value=value, key=key, headers=arrived(e, 1_000))
        for k in range(1, 4):
            await agent.put(value=b"tick", key=b"tick", headers=tick(1_000 + k * 200_000))
    return sent


def test_detect_agent_emits_one_alert_even_for_redelivered_input(tmp_path: Path) -> None:
    events = spoof_tape().events
    sent = asyncio.run(_run_detect(tmp_path, events, twice=True))
    assert [a.payload.pattern for a in sent] == ["SPOOFING"]
    assert sent[0].payload.beneficial_owner == "owner-x"


def test_detect_agent_state_lives_in_tables(tmp_path: Path) -> None:
    async def go() -> tuple[list[str], list[str]]:
        built = build_app(Settings(data_dir=tmp_path, topic_prefix="unit."), app_id="unit-tbl")

        async def capture(_a: Envelope[SurveillanceAlert]) -> None:
            return None

        built.emit = capture
        async with built.detect.test_context() as agent:
            for e in spoof_tape().events:
                await agent.put(value=encode(e)[1], key=encode(e)[0], headers=arrived(e, 0))
            await agent.put(value=b"tick", key=b"t", headers=tick(10**6))
            return sorted(built.store.owners), sorted(built.store.books)

    owners, books = asyncio.run(go())
    assert owners == ["A1", "A2"]
    assert books == ["owner-x"]


def test_intake_dead_letters_garbage_and_forwards_good_records(tmp_path: Path) -> None:
    stamps: dict[str, bytes] = {}

    async def go() -> tuple[list[Envelope[Any]], list[bytes]]:
        built = build_app(Settings(data_dir=tmp_path, topic_prefix="unit."), app_id="unit-in")
        dead: list[Envelope[Any]] = []
        forwarded: list[bytes] = []

        async def capture_dead(letter: Envelope[Any]) -> None:
            dead.append(letter)

        async def capture_forward(*, key: Any, value: bytes, headers: Any) -> None:
            forwarded.append(value)
            stamps.update(dict(headers))

        built.dead = capture_dead
        built.sequenced.send = capture_forward
        good = spoof_tape().events[0]
        async with built.intake.test_context() as agent:
            await agent.put(value=b"\xff not json", key=b"k")
            await agent.put(value=b'{"event_type": "Nope", "schema_version": 1}', key=b"k")
            await agent.put(value=encode(good)[1], key=encode(good)[0])
        return dead, forwarded

    dead, forwarded = asyncio.run(go())
    assert len(dead) == 2
    assert all(isinstance(d.payload, DeadLetter) for d in dead)
    assert "not JSON" in dead[0].payload.error
    assert len(forwarded) == 1
    assert decode(forwarded[0]).event_type == "AccountOpened"
    assert stamps["tt-src"].endswith(b":0") and int(stamps["tt-rx"]) > 0, stamps


def test_write_behind_books_reach_the_table_before_any_offset_commit(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """A commit must never cover a book update the changelog has not seen (crash safety)."""
    import streams.app

    monkeypatch.setattr(streams.app, "FLUSH_SECONDS", 3600.0)  # no timed flush in this test

    async def go() -> tuple[bool, bool, list[str]]:
        built = build_app(Settings(data_dir=tmp_path, topic_prefix="unit."), app_id="unit-wb")
        raw_books = built.store.books.table  # type: ignore[attr-defined]
        async with built.detect.test_context() as agent:
            for e in spoof_tape().events[:4]:  # accounts, quote, one resting order: no alert
                await agent.put(value=encode(e)[1], key=encode(e)[0], headers=arrived(e, 0))
            await agent.put(value=b"tick", key=b"t", headers=tick(10**6))
            before = "owner-x" in raw_books
            built.app.sensors.on_commit_initiated(built.app.consumer)
            after = "owner-x" in raw_books
            return before, after, sorted(raw_books.keys())

    before, after, keys = asyncio.run(go())
    assert before is False, "the book was written at once: write-behind not in effect"
    assert after is True, keys


def test_intake_stamps_the_source_offset_and_detect_releases_equal_times_by_it(
    tmp_path: Path,
) -> None:
    """Review helper-45 (r20): an intent's OrderSubmitted and Fill carry the same time, and
    released by `(occurred_at, event_id)` the fill went first whenever its id sorted first,
    so the order stayed OPEN. The intake stamps each record's source offset (`tt-off`) and
    the detect agent releases equal times in that order, even when the two arrive on the
    sequenced log the other way round (a producer retry)."""
    t = Tape()
    t.open_account("A1", "x")
    for i in range(40):  # a pair whose fill's id sorts before its submit's
        sub = t.submit(1.0 + i, "A1", f"o{i}", "BUY", "1", "100")
        fill = t.fill(1.0 + i, f"o{i}")
        if str(fill.event_id) < str(sub.event_id):
            break
    assert str(fill.event_id) < str(sub.event_id)

    async def intake() -> dict[str, bytes]:
        built = build_app(Settings(data_dir=tmp_path, topic_prefix="unit."), app_id="unit-off")
        stamps: dict[str, bytes] = {}

        async def capture_forward(*, key: Any, value: bytes, headers: Any) -> None:
            stamps.update(dict(headers))

        built.sequenced.send = capture_forward
        async with built.intake.test_context() as agent:
            agent.sent_offset = 41  # the record's offset in its source partition
            await agent.put(value=encode(sub)[1], key=encode(sub)[0])
        return stamps

    assert asyncio.run(intake())["tt-off"] == b"41"

    async def detect() -> str:
        built = build_app(Settings(data_dir=tmp_path, topic_prefix="unit."), app_id="unit-off2")
        async with built.detect.test_context() as agent:
            account = t.events[0]
            await agent.put(value=encode(account)[1], key=b"A1", headers=arrived(account, 0))
            for e, off in ((fill, b"42"), (sub, b"41")):  # arrive in the wrong order
                headers = {"tt-src": b"unit.orders.lifecycle:0", "tt-rx": b"10", "tt-off": off}
                await agent.put(value=encode(e)[1], key=encode(e)[0], headers=headers)
            await agent.put(value=b"tick", key=b"t", headers=tick(10 + 300_000))
        [book] = built.store.books.values()
        return book.orders[sub.payload.order_id].status

    assert asyncio.run(detect()) == "FILLED"


def test_intake_dead_letters_any_exception_from_decoding_and_carries_on(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Review helper-45 (r12): the intake caught only MalformedEventError, so a record whose
    decoding raised anything else (RecursionError, ValueError before schemas.decode was
    fixed) crashed the agent, and the same record crashed it again after a restart."""
    import streams.app

    def poisoned(value: Any, *args: Any, **kwargs: Any) -> Any:
        if value == b"poison":
            raise RecursionError("maximum recursion depth exceeded")
        return decode(value, *args, **kwargs)

    monkeypatch.setattr(streams.app, "decode", poisoned)
    dead: list[Envelope[Any]] = []
    forwarded: list[bytes] = []

    async def go() -> None:
        built = build_app(Settings(data_dir=tmp_path, topic_prefix="unit."), app_id="unit-poi")

        async def capture_dead(letter: Envelope[Any]) -> None:
            dead.append(letter)

        async def capture_forward(*, key: Any, value: bytes, headers: Any) -> None:
            forwarded.append(value)

        built.dead = capture_dead
        built.sequenced.send = capture_forward
        good = spoof_tape().events[0]
        async with built.intake.test_context() as agent:
            agent.sent_offset = 7
            await agent.put(value=b"poison", key=b"k")
            await agent.put(value=encode(good)[1], key=encode(good)[0])

    asyncio.run(go())
    [letter] = dead
    assert isinstance(letter.payload, DeadLetter)
    assert letter.payload.error_type == "RecursionError"
    assert "recursion" in letter.payload.error and letter.payload.stage == "surveillance"
    assert letter.payload.source_offset == 7
    assert [decode(v).event_type for v in forwarded] == ["AccountOpened"]


def _sequenced_records() -> list[tuple[bytes | None, bytes, dict[str, bytes]]]:
    """The spoof tape and a quote every 100 ms, as they lie on the sequenced log (100 ms of
    arrival apart, so the dwell releases as they come), with ticks after them."""
    t = spoof_tape()
    for i in range(12):
        t.quote(4.1 + i / 10, "100.00", "100.10", str(2 + i % 3), "2")
    out: list[tuple[bytes | None, bytes, dict[str, bytes]]] = []
    for n, e in enumerate(t.events):
        key, value, _headers = encode(e)
        out.append((key, value, arrived(e, 1_000 + n * 100_000)))
    last = 1_000 + len(t.events) * 100_000
    out += [(b"tick", b"tick", tick(last + k * 200_000)) for k in range(1, 4)]
    return out


async def _detect_with_redelivery(tmp: Path, app_id: str, redeliver: bool) -> dict[str, Any]:
    """Fold the records through the detect agent; with `redeliver`, after the 12th record
    the five before it come again at their own offsets, as after a restart whose tables
    (flushed every FLUSH_SECONDS) are ahead of the committed offset."""
    built = build_app(Settings(data_dir=tmp, topic_prefix="unit."), app_id=app_id)
    sent: list[bytes] = []

    async def capture(alert: Envelope[SurveillanceAlert]) -> None:
        sent.append(encode(alert)[1])

    built.emit = capture
    records = _sequenced_records()
    order = list(range(len(records)))
    if redeliver:
        order = [*order[:12], *order[7:12], *order[12:]]
    async with built.detect.test_context() as agent:
        for offset in order:
            key, value, headers = records[offset]
            agent.sent_offset = offset
            await agent.put(value=value, key=key, headers=headers)
    state = built.sequencer.load()
    return {
        "alerts": sent,
        "quotes": {k: v.model_dump_json() for k, v in built.store.quotes.items()},
        "books": {k: v.model_dump_json() for k, v in built.store.books.items()},
        "sequencer": state.model_dump_json(exclude={"folded_to"}),
    }


def test_a_sequenced_record_delivered_again_is_not_folded_again(tmp_path: Path) -> None:
    """faust delivers again from the committed offset after a restart or a rebalance, but
    the tables reach their changelog every FLUSH_SECONDS, ahead of that offset: the
    records between were pushed to the sequencer a second time (buffered twice, released
    again: `late`, a quote folded twice) and the state after a restart was not the state
    of a run without one. The detect agent now keeps the offset of the last record it
    folded with the state (`SequencerState.folded_to`) and skips what is not after it."""
    once = asyncio.run(_detect_with_redelivery(tmp_path / "a", "unit-rd1", redeliver=False))
    again = asyncio.run(_detect_with_redelivery(tmp_path / "b", "unit-rd2", redeliver=True))
    assert len(once["alerts"]) == 1
    assert again == once


def test_a_revoked_partition_forgets_what_the_tables_held_in_memory(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """The tables are write-behind: the live values (books, quotes, the sequencer's state)
    sat in the worker's memory, read from the table once and never again. After a
    rebalance took the sequenced partition to another worker and back, this worker went
    on from its old values, not from what the other one had folded meanwhile (the books
    missed its events, the sequencer re-released or lost what it had buffered). A
    revocation now drops them: the values are read again from the tables faust restores
    from the changelogs, and what was not flushed is re-folded from the committed offset."""
    from faust.types import TP

    import streams.app
    from streams.surveillance_state import OwnerBook

    monkeypatch.setattr(streams.app, "FLUSH_SECONDS", 3600.0)  # no timed flush in this test

    async def go() -> tuple[OwnerBook, int | None]:
        built = build_app(Settings(data_dir=tmp_path, topic_prefix="unit."), app_id="unit-rv")
        raw_books = built.store.books.table  # type: ignore[attr-defined]
        events = spoof_tape().events
        async with built.detect.test_context() as agent:
            for e in events[:4]:  # accounts, quote, A1's order
                await agent.put(value=encode(e)[1], key=encode(e)[0], headers=arrived(e, 0))
            await agent.put(value=b"tick", key=b"t", headers=tick(10**6))  # offset 4
            built.app.sensors.on_commit_initiated(built.app.consumer)  # flushed up to here
            e = events[4]  # A2's order, folded but not flushed
            await agent.put(value=encode(e)[1], key=encode(e)[0], headers=arrived(e, 10**6))
            await agent.put(value=b"tick", key=b"t", headers=tick(2 * 10**6))
            assert len(built.store.books["owner-x"].orders) == 2
            # Another worker held the partition meanwhile; its book reached the changelog.
            theirs = OwnerBook(owner="owner-x", alerted=["folded elsewhere"])
            raw_books.data["owner-x"] = theirs.model_dump(mode="json")
            sequenced = TP(built.sequenced.get_topic_name(), 0)
            await built.app.on_partitions_revoked.send({sequenced})
            return built.store.books["owner-x"], built.sequencer.load().folded_to

    book, folded_to = asyncio.run(go())
    assert book.alerted == ["folded elsewhere"], "the worker's own old book, not the table's"
    assert folded_to == 4, "the sequencer's state as flushed, not the unflushed one"


def test_a_record_dead_lettered_again_is_the_same_dead_letter(tmp_path: Path) -> None:
    """faust delivers a source record again after a restart (at least once): its dead
    letter had a new random id and the wall clock's time each time, so the dead-letter
    browser (one row per event id) listed one bad record twice. Its id and time now come
    from the record (topic, partition, offset, its timestamp on the log)."""

    async def go() -> list[bytes]:
        built = build_app(Settings(data_dir=tmp_path, topic_prefix="unit."), app_id="unit-dl")
        dead: list[bytes] = []

        async def capture_dead(letter: Envelope[Any]) -> None:
            dead.append(repr(encode(letter)).encode())

        built.dead = capture_dead
        async with built.intake.test_context() as agent:
            for _ in range(2):
                agent.sent_offset = 7
                await agent.put(value=b"\xff not json", key=b"k", timestamp=1767621600.123)
        return dead

    first, again = asyncio.run(go())
    assert first == again
