"""`rebuild.same_topics`: what refuses a rebuild's swap for a topic recreated under it."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from deploy.settings import Settings
from projections import rebuild
from projections.core import PROJECTIONS


def _check(monkeypatch: pytest.MonkeyPatch, start: Mapping[str, str], now: dict[str, str]) -> None:
    monkeypatch.setattr(rebuild, "read_topic_ids", lambda _s, _p: now)
    rebuild.same_topics(Settings(), [PROJECTIONS["positions"]], start)


def test_a_topic_unlisted_at_the_start_is_not_taken_for_a_recreated_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Before: refused, "topic a, b was deleted and created again during the rebuild"
    # (the mid-session clone's test_the_leftover_note_waits_for_the_rebuild_lock).
    _check(monkeypatch, {}, {"a": "id-a", "b": "id-b"})
    _check(monkeypatch, {"a": "id-a"}, {"a": "id-a", "b": "id-b"})


@pytest.mark.parametrize("now", [{"a": "id-a2"}, {}], ids=["recreated", "deleted"])
def test_a_topic_whose_id_changed_or_that_is_gone_refuses_the_swap(
    monkeypatch: pytest.MonkeyPatch, now: dict[str, str]
) -> None:
    with pytest.raises(RuntimeError, match="deleted and created again during the rebuild"):
        _check(monkeypatch, {"a": "id-a"}, now)
