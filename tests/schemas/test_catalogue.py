"""The catalogue stays consistent: generated files fresh, old samples still parse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas import MalformedEventError, UnknownEventTypeError, decode
from schemas.events import DeadLetter
from schemas.export import EVENTS_DOC, JSON_DIR, render_events_doc, render_json_files
from schemas.registry import REGISTRY
from schemas.topics import TOPICS, Topic

SAMPLES = Path(__file__).with_name("samples")


def test_json_schema_files_are_fresh() -> None:
    wanted = render_json_files()
    on_disk = {p.name: p.read_text() for p in JSON_DIR.glob("*.json")}
    assert on_disk == wanted, "schemas/json is stale: run `python -m schemas.export`"


def test_events_doc_is_fresh() -> None:
    assert EVENTS_DOC.read_text() == render_events_doc(), (
        "docs/events.md is stale: run `python -m schemas.export`"
    )


def test_every_event_type_has_a_sample() -> None:
    names = {p.stem for p in SAMPLES.glob("*.json")}
    missing = {f"{t}.v{v}" for t, v in REGISTRY} - names
    assert not missing, f"add samples for {sorted(missing)}"


@pytest.mark.parametrize("path", sorted(SAMPLES.glob("*.json")), ids=lambda p: p.stem)
def test_every_sample_of_every_version_still_parses(path: Path) -> None:
    event = decode(path.read_bytes(), topic="samples", partition=0, offset=0)
    assert f"{event.event_type}.v{event.schema_version}" == path.stem


def test_every_event_type_routes_to_a_catalogued_topic() -> None:
    topics = {spec.topic.value for spec in TOPICS.values()}
    for cls in REGISTRY.values():
        assert cls.TOPIC in topics


def test_event_topics_keep_events_forever() -> None:
    for spec in TOPICS.values():
        if spec.topic is Topic.ENGINE_SNAPSHOTS:
            continue
        assert spec.config["retention.ms"] == "-1"
        assert spec.config["cleanup.policy"] == "delete"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe not json", "not JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"event_type": "OrderIntent"}', "missing event_type or schema_version"),
        (b'{"event_type": "OrderIntent", "schema_version": 1, "payload": {}}', "failed validation"),
        (None, "tombstone"),
    ],
)
def test_malformed_bytes_raise_one_typed_error_with_coordinates(
    raw: bytes | None, reason: str
) -> None:
    with pytest.raises(MalformedEventError) as info:
        decode(raw, topic="orders.intents", partition=3, offset=42)
    err = info.value
    assert (err.topic, err.partition, err.offset) == ("orders.intents", 3, 42)
    assert reason in str(err)


def test_unknown_version_is_a_distinct_typed_error() -> None:
    sample = json.loads((SAMPLES / "OrderIntent.v1.json").read_text())
    sample["schema_version"] = 99
    with pytest.raises(UnknownEventTypeError) as info:
        decode(json.dumps(sample).encode(), topic="orders.intents", partition=0, offset=7)
    assert info.value.schema_version == 99 and info.value.offset == 7


def test_dead_letter_model_captures_the_original_bytes() -> None:
    import base64

    raw = b"\x00garbage\xff"
    try:
        decode(raw, topic="orders.intents", partition=1, offset=9)
    except MalformedEventError as err:
        dl = DeadLetter(
            source_topic=err.topic or "?",
            source_partition=err.partition,
            source_offset=err.offset,
            original_value_b64=base64.b64encode(raw).decode(),
            error_type=type(err).__name__,
            error=str(err),
            stage="test",
        )
    assert base64.b64decode(dl.original_value_b64) == raw
    assert dl.source_offset == 9 and dl.error_type == "MalformedEventError"
