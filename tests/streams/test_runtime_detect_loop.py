"""The detect agent dead-letters an event whose folding raises and folds the rest of the
batch; the intake strips the app's own headers from source records."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any, ClassVar

from deploy.settings import Settings
from schemas import Envelope, decode, encode
from schemas.events import DeadLetter, Fill, SurveillanceAlert
from streams.app import build_app
from streams.surveillance_state import AlertDraft, Context
from streams.synthetic import Tape
from tests.streams.helpers import spoof_tape
from tests.streams.test_app import arrived, tick


class _Boom:
    """A detector that raises on fills (a detector bug, or a config it cannot use)."""

    NAME: ClassVar[str] = "zz_boom"
    VERSION: ClassVar[int] = 1
    PATTERN: ClassVar[str] = "BOOM"
    DEFAULTS: ClassVar[dict[str, str]] = {}

    def validate(self, params: dict[str, str]) -> None:
        return None

    def on_event(self, ctx: Context) -> list[AlertDraft]:
        if isinstance(ctx.event.payload, Fill):
            raise RuntimeError("boom on a fill")
        return []


def _run(
    tmp: Path, name: str, events: list[Envelope[Any]]
) -> tuple[list[Envelope[DeadLetter]], list[Envelope[SurveillanceAlert]], Any]:
    async def go() -> tuple[list[Envelope[DeadLetter]], list[Envelope[SurveillanceAlert]], Any]:
        built = build_app(Settings(data_dir=tmp, topic_prefix="unit."), app_id=f"unit-{name}")
        dead: list[Envelope[DeadLetter]] = []
        sent: list[Envelope[SurveillanceAlert]] = []

        async def capture_dead(letter: Envelope[Any]) -> None:
            dead.append(letter)

        async def capture(alert: Envelope[SurveillanceAlert]) -> None:
            sent.append(alert)

        built.dead = capture_dead
        built.emit = capture
        async with built.detect.test_context() as agent:
            for i, e in enumerate(events):
                key, value, _ = encode(e)
                await agent.put(value=value, key=key, headers=arrived(e, i))
            await agent.put(value=b"tick", key=b"t", headers=tick(10**6))
        return dead, sent, built

    return asyncio.run(go())


def test_an_event_that_raises_is_dead_lettered_and_the_rest_of_the_batch_is_folded(
    tmp_path: Path, monkeypatch: Any
) -> None:
    import streams.app
    from streams.detectors import all_detectors

    monkeypatch.setattr(streams.app, "all_detectors", lambda: [*all_detectors(), _Boom()])
    events = spoof_tape().events  # one batch: released together by the final tick
    fill = next(e for e in events if isinstance(e.payload, Fill))
    dead, _sent, built = _run(tmp_path, "boom", events)

    assert [d.payload.error for d in dead] == ["boom on a fill"]
    letter = dead[0].payload
    assert letter.error_type == "RuntimeError" and letter.stage == "surveillance"
    assert decode(base64.b64decode(letter.original_value_b64)).event_id == fill.event_id
    # the cancel after the fill was still folded (before the fix: lost with the batch)
    assert built.store.books["owner-x"].orders["big"].status == "CANCELED"
    assert list(built.store.books) == ["owner-x"]


def test_an_invalid_detector_config_is_dead_lettered_with_its_reason(tmp_path: Path) -> None:
    t = Tape()
    t.open_account("A1", "owner-x")
    bad = t.config("no_such_detector", 2, window_s="5")
    t.submit(1.0, "A1", "o1", "BUY", "1", "99.95")
    t.submit(1.6, "A1", "o2", "BUY", "1", "99.95")
    dead, _sent, built = _run(tmp_path, "badcfg", t.events)

    assert len(dead) == 1, [d.payload.error for d in dead]
    letter = dead[0].payload
    assert letter.error_type == "InvalidDetectorConfig"
    assert "no_such_detector" in letter.error
    assert decode(base64.b64decode(letter.original_value_b64)).event_id == bad.event_id
    assert sorted(built.store.books["owner-x"].orders) == ["o1", "o2"]


def test_intake_strips_internal_headers_so_a_source_record_is_never_taken_for_a_tick(
    tmp_path: Path,
) -> None:
    forwarded: list[tuple[bytes, list[tuple[str, bytes]]]] = []
    good = spoof_tape().events[0]

    async def intake() -> None:
        built = build_app(Settings(data_dir=tmp_path, topic_prefix="unit."), app_id="unit-hdr")

        async def capture_forward(*, key: Any, value: bytes, headers: Any) -> None:
            forwarded.append((value, list(headers)))

        built.sequenced.send = capture_forward
        key, value, headers = encode(good)
        forged = [*headers, ("tt-tick", b"1"), ("tt-rx", b"1"), ("tt-src", b"forged:9")]
        async with built.intake.test_context() as agent:
            await agent.put(value=value, key=key, headers=forged)

    asyncio.run(intake())
    [(value, headers)] = forwarded
    names = [k for k, _ in headers]
    assert "tt-tick" not in names
    assert names.count("tt-rx") == 1 and names.count("tt-src") == 1
    assert dict(headers)["tt-src"] != b"forged:9"

    async def detect() -> list[str]:
        built = build_app(Settings(data_dir=tmp_path, topic_prefix="unit."), app_id="unit-hdr2")
        async with built.detect.test_context() as agent:
            await agent.put(value=value, key=b"k", headers=headers)
            rx = int(dict(headers)["tt-rx"])
            await agent.put(value=b"tick", key=b"t", headers=tick(rx + 10**6))
        return sorted(built.store.owners)

    assert asyncio.run(detect()) == [good.payload.account]
