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


def spoof_tape() -> Tape:
    t = Tape()
    t.open_account("A1", "owner-x")
    t.open_account("A2", "owner-x")
    t.quote(0.5, "100.00", "100.10", "2", "2")
    t.submit(1.0, "A1", "big", "BUY", "10", "99.95")
    t.submit(2.0, "A2", "sell", "SELL", "1", "100.10")
    t.fill(2.5, "sell")
    t.cancel(4.0, "big")
    return t


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
