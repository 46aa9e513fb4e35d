"""Marking the close judges every close whose window holds the fill.

With two reference times whose windows overlap (16:00 and 16:03, 5 minutes before each),
a fill was judged only for the first close at or after it, and an alert for that close
suppressed the second (one suppression time per owner and instrument, not per close):
heavy buying in the last minutes before 16:03 raised nothing once 16:00 had been marked.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.detectors import MarkingCloseDetector, all_detectors
from streams.surveillance_state import Surveillance
from streams.synthetic import Tape


def close_fills(seconds_after_1555: list[float], refs: str) -> list[Any]:
    """A1's market buys at 15:55 + s (T0 is 14:00), closes at `refs`, 5 min before each."""
    t = Tape()
    t.open_account("A1", "o")
    t.config("marking_close", 1, reference_times=refs)
    for i, s in enumerate(sorted(seconds_after_1555)):
        at = 6900 + s
        t.submit(at, "A1", f"m{i}", "BUY", "1", None)
        t.fill(at, f"m{i}", price="100")
    return [a.payload for a in Surveillance(all_detectors()).process_batch(t.events)]


def test_a_second_close_whose_window_overlaps_the_first_is_judged() -> None:
    """5 buys at 15:59 mark 16:00 (and 16:03, whose window starts 15:58); 5 more at 16:01
    come after 16:00. Before, one alert (16:00): the 16:03 close was never judged."""
    alerts = close_fills([240, 250, 260, 270, 280, 360, 370, 380, 390, 400], "16:00,16:03")
    closes = [
        (a.evidence["reference_time"], a.evidence["aggressive_fills_in_window"]) for a in alerts
    ]
    assert closes == [
        ("2026-01-05T16:00:00.000000Z", 5),
        ("2026-01-05T16:03:00.000000Z", 5),
    ]
    assert len({a.alert_id for a in alerts}) == 2  # same fills, another close: another alert
    assert {a.detector_version for a in alerts} == {MarkingCloseDetector.VERSION}


def judged(alerts: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (a.evidence["reference_time"], a.window_end, a.alert_id, a.score,
         [f["fill_id"] for f in a.evidence["fills"]])
        for a in alerts
    ]  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    fills=st.lists(st.integers(0, 600), min_size=1, max_size=14, unique=True),
    second=st.sampled_from(["16:01", "16:03", "16:04:59", "16:05", "16:10"]),
)
def test_each_close_is_judged_as_if_it_were_the_only_one(fills: list[int], second: str) -> None:
    """Two closes fold to the alerts each close raises alone (same ids, fills, times)."""
    both = judged(close_fills([float(s) for s in fills], f"16:00,{second}"))
    first = judged(close_fills([float(s) for s in fills], "16:00"))
    other = judged(close_fills([float(s) for s in fills], second))
    assert sorted(both, key=str) == sorted(first + other, key=str)
