"""A live batch asks each projection for the state keys of every event it decoded for it
(`Projection.state_keys`, in `store.apply_members`) before the fold quarantines what it
does not understand. So `state_keys` must not fail on a record of any type on any topic
the projection reads: an exception there fails the whole batch, which the projector
re-reads forever (and a rebuild, which folds in memory without asking, quarantines the
same record: live and rebuilt disagree). Before, `positions` took `payload["instrument"]`
of every record that was not a `Fill`: one `DepositReceived` (or any other type without
an instrument) on marketdata.events or orders.lifecycle wedged its projector."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from projections.core import PROJECTIONS
from projections.framework import State
from projections.store import RawRecord, prepare

SAMPLES = sorted((Path(__file__).parents[1] / "schemas" / "samples").glob("*.json"))


def _record(body: dict[str, Any], topic: str) -> RawRecord:
    headers = [
        ("event_type", str(body["event_type"]).encode()),
        ("schema_version", str(body["schema_version"]).encode()),
    ]
    return RawRecord(topic, 0, 1, json.dumps(body).encode(), headers)


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_state_keys_take_any_record_the_fold_quarantines(name: str) -> None:
    projection = PROJECTIONS[name]
    for topic in projection.topics:
        for path in SAMPLES:
            body = json.loads(path.read_text())
            for producer in ("engine", "sample"):
                body["producer"] = producer
                [share] = prepare([_record(body, str(topic))], [projection])
                where = f"{path.name} by {producer} on {topic}"
                try:
                    projection.state_keys(share.items)
                except Exception as exc:  # what would fail the live batch
                    pytest.fail(f"{name}.state_keys failed on {where}: {exc!r}")
                bad = projection.fold(State(), share.items)
                assert len(bad) <= len(share.items), where
