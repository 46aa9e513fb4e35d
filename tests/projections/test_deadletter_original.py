"""The dead-letter browser keeps the original value's full length, SHA-256 and truncated
flag (DeadLetter v1's optional fields), live and rebuilt alike; a dead letter written
before those fields existed still projects (NULL length and digest, not truncated)."""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

import orjson
import psycopg
import pytest
from confluent_kafka import Producer

from deploy.kafka import producer_config
from deploy.settings import Settings
from projections import query
from projections.checksum import checksum
from projections.core import PROJECTIONS
from projections.framework import Located, State
from projections.lean import lean_decode
from projections.projector import Projector
from projections.rebuild import rebuild
from projections.store import RawRecord, decode_one
from schemas import encode, new_event
from schemas.events import DeadLetter
from schemas.topics import Topic

PROJ = PROJECTIONS["deadletters"]
NEW = ("original_value_bytes", "original_value_sha256", "original_truncated")
VALUE = b'{"not": "an event"'
BIG = VALUE * 1000


def _letter(n: int, **kept: Any) -> tuple[bytes, bytes, list[tuple[str, Any]]]:
    fields: dict[str, Any] = {"original_value_b64": base64.b64encode(VALUE).decode(), **kept}
    ev = new_event(
        DeadLetter(
            source_topic="orders.intents", source_partition=0, source_offset=n,
            error_type="MalformedEventError", error="bad", stage="engine", **fields,
        ),
        producer="t",
        event_id=uuid.UUID(int=n),
    )  # fmt: skip
    key, value, headers = encode(ev)
    return key, value, list(headers)


def _old(n: int) -> tuple[bytes, bytes, list[tuple[str, Any]]]:
    """A dead letter as written before the three fields existed: its JSON has none."""
    key, value, headers = _letter(n)
    data = orjson.loads(value)
    for name in NEW:
        del data["payload"][name]
    return key, orjson.dumps(data), headers


def _letters() -> list[tuple[bytes, bytes, list[tuple[str, Any]]]]:
    return [
        _old(1),
        _letter(
            2, original_value_bytes=len(VALUE),
            original_value_sha256=hashlib.sha256(VALUE).hexdigest(), original_truncated=False,
        ),
        _letter(
            3, original_value_bytes=len(BIG),
            original_value_sha256=hashlib.sha256(BIG).hexdigest(), original_truncated=True,
        ),
        _letter(4, original_value_bytes=2**63),  # more than a bigint: quarantined
    ]  # fmt: skip


EXPECTED = {
    str(uuid.UUID(int=1)): (None, None, False),
    str(uuid.UUID(int=2)): (len(VALUE), hashlib.sha256(VALUE).hexdigest(), False),
    str(uuid.UUID(int=3)): (len(BIG), hashlib.sha256(BIG).hexdigest(), True),
}


def test_the_fold_keeps_the_originals_length_digest_and_truncation() -> None:
    letters = _letters()
    old = letters[0][1]
    assert not any(name.encode() in old for name in NEW)
    # The old form takes the lean path like the new (the fields' defaults fill it in).
    assert lean_decode(old, letters[0][2]) is not None
    items = []
    for off, (_k, value, headers) in enumerate(letters):
        item = decode_one(RawRecord("deadletter", 0, off, value, headers))
        assert isinstance(item, Located), item
        items.append(item)
    state = State()
    bad = PROJ.fold(state, items)
    assert [q.offset for q in bad] == [3] and "outside its column's range" in bad[0].error
    cols = PROJ.table("deadletters").columns
    rows = state.inserts["deadletters"]
    assert {k[0]: tuple(r[cols.index(c)] for c in NEW) for k, r in rows.items()} == EXPECTED


@pytest.mark.integration
def test_live_and_rebuilt_browser_show_them_with_equal_checksums(env: Settings) -> None:
    producer = Producer(producer_config(env))
    for key, value, headers in _letters():
        producer.produce(env.topic(Topic.DEADLETTER), value, key, headers=headers)
    assert producer.flush(30) == 0
    with Projector(env, PROJ) as proj:
        proj.catch_up()
    live = checksum_of(env)
    shown = query.frame("deadletters", env)
    assert {
        str(r["event_id"]): tuple(r[c] for c in NEW) for r in shown.iter_rows(named=True)
    } == EXPECTED
    result = rebuild(env, PROJ)
    assert (result.checksum, result.counts) == live
    assert checksum_of(env) == live
    with psycopg.connect(env.dsn) as conn:
        quarantined = conn.execute(
            'SELECT "offset" FROM projection_quarantine WHERE projection = %s', (PROJ.name,)
        ).fetchall()
    assert len(quarantined) == 1


def checksum_of(env: Settings) -> tuple[str, dict[str, int]]:
    with psycopg.connect(env.dsn) as conn:
        return checksum(conn, PROJ)
