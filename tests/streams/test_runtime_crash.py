"""Crash consistency of the detect agent's tables: a kill -9 between two commits.

The agent runs with `agent.test_context()` (no broker). What a table's changelog holds is
what has been written to the faust table (`table.data`: the app writes both together), so
a kill -9 is simulated by starting a fresh app whose tables hold only that, and putting
again the records after the last commit (faust redelivers from the committed offset).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from deploy.settings import Settings
from schemas import Envelope, encode
from schemas.events import SurveillanceAlert
from streams.app import SurveillanceApp, build_app
from tests.streams.helpers import spoof_tape
from tests.streams.test_app import arrived, tick

TABLES = ("owners", "quotes", "configs", "books", "sequencer", "sequencer-buffer")


def _app(tmp: Path, name: str, sent: list[Envelope[SurveillanceAlert]]) -> SurveillanceApp:
    built = build_app(Settings(data_dir=tmp, topic_prefix="unit."), app_id=f"unit-{name}")

    async def capture(alert: Envelope[SurveillanceAlert]) -> None:
        sent.append(alert)

    built.emit = capture
    return built


def _changelog(built: SurveillanceApp) -> dict[str, dict[str, Any]]:
    """What each table has written (and so sent to its changelog)."""
    return {n: {k: built.app.tables[n].data[k] for k in built.app.tables[n].data} for n in TABLES}


async def _put_event(agent: Any, e: Envelope[Any], rx: int) -> None:
    key, value, _ = encode(e)
    await agent.put(value=value, key=key, headers=arrived(e, rx))


@pytest.mark.parametrize("flush_seconds", [3600.0, 0.0])
def test_kill_9_after_a_release_loses_no_event(
    tmp_path: Path, monkeypatch: Any, flush_seconds: float
) -> None:
    """r1..r6 pushed; commit; r7 (a tick) releases and folds them, no alert; kill -9.

    Restarted from the changelogs, with r7 redelivered, then the cancel: the spoof must
    still be found. Before the fix the sequencer's rows were deleted in the changelog at
    r7 while the books were only written at the commit: the events were lost for good.
    With `flush_seconds=0` every record boundary is flushed (the timed flush).
    """
    import streams.app

    monkeypatch.setattr(streams.app, "FLUSH_SECONDS", flush_seconds)
    *first, cancel = spoof_tape().events
    ms = 1000

    async def go() -> tuple[list[str], list[str]]:
        before: list[Envelope[SurveillanceAlert]] = []
        old = _app(tmp_path, "crash-a", before)
        async with old.detect.test_context() as agent:
            for i, e in enumerate(first):  # r1..r6: buffered, nothing released yet
                await _put_event(agent, e, i * ms)
            old.app.sensors.on_commit_initiated(old.app.consumer)  # commit after r6
            await agent.put(value=b"tick", key=b"t", headers=tick(300 * ms))  # r7
            survived = _changelog(old)  # kill -9 here
        after: list[Envelope[SurveillanceAlert]] = []
        new = _app(tmp_path, "crash-b", after)
        for name, rows in survived.items():
            for k, v in rows.items():
                new.app.tables[name].data[k] = v
        async with new.detect.test_context() as agent:
            agent.sent_offset = len(first)  # r7's offset on the sequenced log
            await agent.put(value=b"tick", key=b"t", headers=tick(300 * ms))  # r7 again
            await _put_event(agent, cancel, 4000 * ms)
            await agent.put(value=b"tick", key=b"t", headers=tick(4300 * ms))
        books = sorted(new.store.books["owner-x"].orders) if "owner-x" in new.store.books else []
        return [a.payload.pattern for a in before + after], books

    patterns, orders = asyncio.run(go())
    assert orders == ["big", "sell"]
    assert patterns == ["SPOOFING"]
