"""`store.prepare` of one projection's records that `predecode` decoded (the rebuild's
path, session 13) splits a batch exactly as it does decoding the records itself."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from deploy.settings import Settings
from projections.core import PROJECTIONS
from projections.framework import Located
from projections.store import Prepared, RawRecord, predecode, prepare
from projections.synthetic import generate
from schemas.topics import Topic
from tests.projections.helpers import as_records

ENV = Settings(topic_prefix="t.")
RECORDS = as_records(ENV, generate(53, 600))
ODD = [
    RawRecord(ENV.topic(Topic(t)), 0, 10_000 + i, value, headers)
    for i, (t, value, headers) in enumerate(
        [
            ("orders.lifecycle", b"\x00not json", None),
            ("risk.decisions", b"{}", [("event_type", b"RiskDecision"), ("schema_version", b"1")]),
            ("orders.lifecycle", b"{}", [("event_type", b"Nope"), ("schema_version", b"1")]),
            (
                "orders.lifecycle",
                b"{}",
                [("event_type", b"OrderSubmitted"), ("schema_version", b"9")],
            ),
            ("orders.lifecycle", None, [("event_type", b"Fill"), ("schema_version", b"x")]),
            ("risk.decisions", RECORDS[0].value, [("event_type", b"Fill")]),
        ]
    )
]
_DECISION = next(r for r in RECORDS if r.value is not None and b'"RiskDecision"' in r.value)
assert _DECISION.value is not None
ODD += [
    # JSON escapes: NUL (refused: PostgreSQL cannot store it), a storable one, a plain
    # backslash escape; `predecode`'s inlined common case must hand each to the same
    # verdict as `decode_one` (session 15).
    _DECISION._replace(offset=20_000 + i, value=_DECISION.value.replace(b'"detail":"', b, 1))
    for i, b in enumerate([b'"detail":"\\u0000', b'"detail":"\\u00e9\\t', b'"detail":"a\\\\b\\n'])
]


def _plain(share: Prepared) -> Any:
    return (
        [(i.topic, i.partition, i.offset, i.data) for i in share.items if isinstance(i, Located)],
        share.bad,
        share.ignored,
        share.consumed,
    )


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(sorted(PROJECTIONS)),
    picks=st.lists(st.integers(0, len(RECORDS) + len(ODD) - 1), max_size=120),
    below=st.dictionaries(st.integers(0, 5), st.integers(0, 80), max_size=6),
)
def test_prepare_of_predecoded_records_is_prepare(
    name: str, picks: list[int], below: dict[int, int]
) -> None:
    pool = RECORDS + ODD
    records = [pool[i] for i in picks]
    p = PROJECTIONS[name]
    topics = [frozenset(ENV.topic(t) for t in p.topics)]
    skip = [{(ENV.topic(t), n): o for t in p.topics for n, o in below.items()}]
    for skip_below in (None, skip):
        decoded = predecode(records, [p], topics)
        fast = prepare(records, [p], skip_below, topics, decoded)
        slow = prepare(records, [p], skip_below, topics)
        assert [_plain(s) for s in fast] == [_plain(s) for s in slow]


@settings(max_examples=60, deadline=None)
@given(
    names=st.lists(st.sampled_from(sorted(PROJECTIONS)), min_size=2, max_size=4, unique=True),
    picks=st.lists(st.integers(0, len(RECORDS) + len(ODD) - 1), max_size=120),
    below=st.lists(
        st.dictionaries(st.integers(0, 5), st.integers(0, 80), max_size=6), min_size=4, max_size=4
    ),
    with_names=st.booleans(),
)
def test_prepare_of_a_predecoded_group_is_prepare(
    names: list[str], picks: list[int], below: list[dict[int, int]], with_names: bool
) -> None:
    """A live group of several projections (the `orders.lifecycle` split, the joined
    light group) takes `_prepare_share`'s pass per member, with the headers' types
    `predecode` collected or parsed again: the same shares as the record-by-member
    loop, members at different offsets included."""
    pool = RECORDS + ODD
    records = [pool[i] for i in picks]
    ps = [PROJECTIONS[n] for n in names]
    topics = [frozenset(ENV.topic(t) for t in p.topics) for p in ps]
    skip = [
        {(ENV.topic(t), n): o for t in p.topics for n, o in below[i].items()}
        for i, p in enumerate(ps)
    ]
    for skip_below in (None, skip):
        types: list[Any] = []
        decoded = predecode(records, ps, topics, types if with_names else None)
        fast = prepare(records, ps, skip_below, topics, decoded, types if with_names else None)
        slow = prepare(records, ps, skip_below, topics)
        assert [_plain(s) for s in fast] == [_plain(s) for s in slow]
        if with_names:
            assert len(types) == len(records)
