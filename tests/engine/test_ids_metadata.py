"""The topic ids committed with the engine group's offsets (`engine.replay.ids_metadata`):
pure."""

from __future__ import annotations

from deploy.settings import Settings
from engine.replay import LOG_ID_TOPICS, ids_changed, ids_metadata
from schemas.topics import Topic

S = Settings(topic_prefix="p.")
IDS = {S.topic(t): f"{t.value[:4]:_<4}ABCDEFGHIJKLMNOPQR" for t in LOG_ID_TOPICS}


def test_the_same_ids_change_nothing_and_stay_short() -> None:
    meta = ids_metadata(S, IDS)
    assert ids_changed(S, meta, IDS) == []
    assert len(meta) < 80  # committed with every partition of every transaction


def test_a_topic_created_again_is_named() -> None:
    meta = ids_metadata(S, IDS)
    now = dict(IDS) | {S.topic(Topic.RISK_CONFIG): "NEWIDxxxxxxxxxxxxxxxxx"}
    changed = ids_changed(S, meta, now)
    assert len(changed) == 1 and changed[0].startswith(f"{S.topic(Topic.RISK_CONFIG)}: "), changed


def test_metadata_without_ids_compares_nothing() -> None:
    now = {n: "other" for n in IDS}
    assert ids_changed(S, None, now) == []
    assert ids_changed(S, "", now) == []  # kafka-consumer-groups --reset-offsets
    assert ids_changed(S, "ids1:a,b", now) == []  # another list of topics: not ours
    unknown = ids_metadata(S, {})  # no id known when committed
    assert ids_changed(S, unknown, now) == []
