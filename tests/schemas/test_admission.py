"""The one admission rule (`schemas.admission.refusal`), which the engine's intake and
the projections both apply: a record is folded only if its type belongs on the topic it
was read from and, if only the engine writes that type there, the engine wrote it. Here
against the catalogue itself, for any deployment prefix, type and producer."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from schemas.admission import logical_topic, refusal
from schemas.registry import (
    COMPONENT_WRITTEN,
    ENGINE_PRODUCER,
    REGISTRY,
    TRAVELRULE_PRODUCER,
    engine_written,
    event_types_for,
    sole_writers,
)
from schemas.topics import Topic

TYPES = sorted({k[0] for k in REGISTRY})
prefixes = st.sampled_from(["", "t17.", "tenant-a."]) | st.text(max_size=12)
event_types = st.sampled_from(TYPES) | st.text(max_size=20)
producers = (
    st.sampled_from([ENGINE_PRODUCER, TRAVELRULE_PRODUCER, "mallory", "transfer-service", ""])
    | st.text()
)


@given(prefix=prefixes, topic=st.sampled_from(list(Topic)))
def test_a_prefix_never_makes_one_topic_read_as_another(prefix: str, topic: Topic) -> None:
    """No topic's name ends with another's, so the full name maps back whatever the
    prefix (the engine names its topics by prefix, the rule reads them by suffix)."""
    assert logical_topic(prefix + topic.value) is topic


@given(prefix=prefixes, topic=st.sampled_from(list(Topic)), et=event_types, who=producers)
def test_the_rule_is_the_catalogues(prefix: str, topic: Topic, et: str, who: str) -> None:
    full = prefix + topic.value
    why = refusal(full, et, who)
    only = sole_writers(topic).get(et)
    if et not in event_types_for(topic):
        assert why == f"{et} does not belong on {full}"
    elif et in engine_written(topic) and who != ENGINE_PRODUCER:
        assert why == f"{et} on {full} not written by the engine ({who!r})"
    elif only == TRAVELRULE_PRODUCER and who != only:
        assert why == f"{et} on {full} not written by the travel rule ({who!r})"
    else:
        assert why is None
    if why is None:  # its one writer's own copy of anything admitted is admitted too
        assert refusal(full, et, only or ENGINE_PRODUCER) is None


def test_the_sole_writers_are_the_engine_and_the_travel_rule() -> None:
    """Each type one producer alone writes has one writer: no type is both the engine's
    and a component's, and every component's type is in the catalogue of a topic."""
    for topic in Topic:
        only = sole_writers(topic)
        assert {t for t, w in only.items() if w == ENGINE_PRODUCER} == engine_written(topic)
        assert not set(COMPONENT_WRITTEN) & engine_written(topic)
    assert COMPONENT_WRITTEN == {"TransferChecked": TRAVELRULE_PRODUCER}
    assert sole_writers(Topic.TRANSFER_CHECKS) == {"TransferChecked": TRAVELRULE_PRODUCER}
    assert sole_writers(Topic.TRANSFERS) == {}


@given(prefix=prefixes, who=producers)
def test_a_transfer_check_is_the_travel_rules_alone(prefix: str, who: str) -> None:
    """A `TransferChecked` decides whether a withdrawal's hold stays: every reader takes
    one from the travel rule only. Until session 26 one the engine, a strategy or the
    transfer service wrote under any name was folded by the engine and the books. Since
    session 27 only from transfers.checks, which only the travel rule's principal may
    write: one on transfers.events is refused whoever it claims (the transfer service's
    principal could write it there as `travelrule`), an old log's answers too."""
    full = f"{prefix}{Topic.TRANSFER_CHECKS}"
    why = refusal(full, "TransferChecked", who)
    if who == TRAVELRULE_PRODUCER:
        assert why is None
    else:
        assert why == f"TransferChecked on {full} not written by the travel rule ({who!r})"
    old = f"{prefix}{Topic.TRANSFERS}"
    assert refusal(old, "TransferChecked", who) == f"TransferChecked does not belong on {old}"
    # the transfer service's own steps stay admitted from it, whatever its producer id
    assert refusal(old, "TransferRequested", who) is None


@given(name=st.text(max_size=30), et=event_types, who=producers)
def test_a_topic_outside_the_catalogue_is_not_this_rules(name: str, et: str, who: str) -> None:
    """Which topics a reader reads at all is the reader's business (the engine refuses
    any other; a projection reads only its own)."""
    if logical_topic(name) is None:
        assert refusal(name, et, who) is None


def test_the_engines_facts_are_refused_from_anyone_else() -> None:
    """Not a rule reading itself back: the cases named in the reviews."""
    assert refusal("accounts.events", "DepositReceived", "mallory") is not None
    assert refusal("accounts.events", "DepositReceived", ENGINE_PRODUCER) is None
    # On transfers.events, which the transfer service writes too, the producer field
    # proves nothing: refused whoever it claims, an old deployment's deposits too.
    assert refusal("transfers.events", "DepositReceived", ENGINE_PRODUCER) == (
        "DepositReceived does not belong on transfers.events"
    )
    assert refusal("transfers.events", "TransferRequested", "transfer-service") is None
    assert refusal("transfers.checks", "TransferChecked", ENGINE_PRODUCER) == (
        "TransferChecked on transfers.checks not written by the travel rule ('engine')"
    )
    assert refusal("t.transfers.checks", "TransferChecked", "strat1") is not None
    assert refusal("t.transfers.checks", "TransferChecked", "travelrule") is None
    # Where the transfer service's principal could write it as the travel rule's.
    assert refusal("t.transfers.events", "TransferChecked", "travelrule") == (
        "TransferChecked does not belong on t.transfers.events"
    )
    assert refusal("t.marketdata.events", "Fill", ENGINE_PRODUCER) == (
        "Fill does not belong on t.marketdata.events"
    )
    assert refusal("orders.lifecycle", "OrderAccepted", "venue") == (
        "OrderAccepted on orders.lifecycle not written by the engine ('venue')"
    )
    assert refusal("marketdata.events", "MarketTrade", "feed") is None
