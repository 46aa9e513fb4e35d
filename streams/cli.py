"""`tradetape stor` and `tradetape simulate surveillance`. faust is never imported here."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer

from deploy.settings import Settings, get_settings
from schemas.topics import Topic

READ_TIMEOUT_S = 30.0
"""How long `tradetape stor` may take to read each topic to its end (seconds)."""
ORDERS_LOOKBACK = timedelta(hours=1)
"""How far before the evidence's first event the orders log is read for their venue: an
order event's record time trails its event time by the engine's lag, and an intent's
time is at most seconds from its append time (FRESHNESS v2)."""


# seconds, not money
def _watermarks(consumer: Any, tp: Any, timeout: float) -> Any:
    return consumer.get_watermark_offsets(tp, timeout=timeout)


class IncompleteRead(RuntimeError):
    """A topic was not read to its end: a draft from part of it would state falsehoods
    (that an account has no AccountOpened, that an alert does not exist)."""


def read_topic(
    settings: Settings,
    topic: Topic,
    # seconds, not money
    timeout: float = READ_TIMEOUT_S,
    *,
    since: datetime | None = None,
) -> list[Any]:
    """Every committed event on `topic` up to each partition's end (high watermark) when
    the read started, from the beginning or from the first record stamped at or after
    `since`. Raises `IncompleteRead` unless every partition was read to that end within
    `timeout` seconds."""
    import time

    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    from deploy.kafka import consumer_config
    from schemas import MalformedEventError, decode

    name = settings.topic(topic)
    deadline = time.monotonic() + timeout

    # seconds, not money
    def ask(call: Callable[[float], Any]) -> Any:
        """A metadata request, retried until the deadline (a new topic's leader may not
        be known yet: NOT_LEADER_FOR_PARTITION); past it, IncompleteRead."""
        while True:
            try:
                return call(max(0.5, deadline - time.monotonic()))
            except KafkaException as exc:
                if time.monotonic() >= deadline:
                    raise IncompleteRead(f"{name}: {exc.args[0] if exc.args else exc}") from exc
                time.sleep(0.2)

    c = Consumer(
        consumer_config(
            settings, group_id=f"stor-{time.monotonic_ns()}", **{"enable.partition.eof": True}
        )
    )
    try:
        meta = ask(lambda t: c.list_topics(name, timeout=t)).topics.get(name)
        error = getattr(meta, "error", None)
        if meta is None or error is not None or not meta.partitions:
            raise IncompleteRead(f"{name}: no such topic ({error or 'absent'})")
        parts = sorted(meta.partitions)
        lows, ends = {}, {}
        for p in parts:
            lows[p], ends[p] = ask(partial(_watermarks, c, TopicPartition(name, p)))
        starts = dict(lows)
        if since is not None:
            ms = int(since.timestamp() * 1000)
            asked = [TopicPartition(name, p, ms) for p in parts]
            for tp in ask(lambda t: c.offsets_for_times(asked, timeout=t)):
                # -1: no record stamped at or after `since`: nothing to read there
                starts[tp.partition] = ends[tp.partition] if tp.offset < 0 else tp.offset
        reached = dict(starts)
        c.assign([TopicPartition(name, p, starts[p]) for p in parts])
        out: list[Any] = []
        while any(reached[p] < ends[p] for p in parts) and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            part, off, err = msg.partition(), msg.offset(), msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF and part in reached and off is not None:
                    # the fetch position, past transaction markers and aborted records
                    reached[part] = max(reached[part], off)
                elif err.fatal():
                    raise IncompleteRead(f"{name}: {err}")
                continue
            if part is None or off is None or off >= ends.get(part, 0):
                continue  # appended after the read started
            reached[part] = max(reached[part], off + 1)
            try:
                out.append(decode(msg.value(), msg.headers()))
            except MalformedEventError:
                pass  # not an event (the producers dead-letter such records)
    finally:
        c.close()
    short = {p: (reached[p], ends[p]) for p in parts if reached[p] < ends[p]}
    if short:
        where = ", ".join(f"partition {p} at offset {r} of {e}" for p, (r, e) in short.items())
        raise IncompleteRead(f"{name} not read to its end in {timeout:g} s: {where}")
    return out


# seconds, not money
def find_alert(settings: Settings, alert_id: UUID, timeout: float = READ_TIMEOUT_S) -> Any:
    from schemas.events import SurveillanceAlert

    for e in read_topic(settings, Topic.SURVEILLANCE_ALERTS, timeout):
        if isinstance(e.payload, SurveillanceAlert) and e.payload.alert_id == alert_id:
            return e.payload
    return None


def order_venues(
    settings: Settings,
    order_ids: set[str],
    since: datetime,
    timeout: float = READ_TIMEOUT_S,  # seconds, not money
) -> dict[str, str]:
    """order id -> the venue on its OrderSubmitted or Fill, for the orders asked about."""
    from schemas.events import Fill, OrderSubmitted

    venues: dict[str, str] = {}
    for e in read_topic(settings, Topic.ORDERS, timeout, since=since):
        p = e.payload
        if isinstance(p, OrderSubmitted | Fill) and p.order_id in order_ids:
            venues.setdefault(p.order_id, p.venue)
    return venues


def register(app: typer.Typer) -> None:
    @app.command()
    def stor(
        alert_id: Annotated[str, typer.Argument(help="The alert's id")],
        fmt: Annotated[str, typer.Option("--format", help="json or html")] = "json",
        out: Annotated[Path | None, typer.Option("--out", help="Write here, not stdout")] = None,
        timeout: Annotated[
            # seconds, not money
            float, typer.Option(help="Seconds to read each topic to its end")
        ] = READ_TIMEOUT_S,
    ) -> None:
        """Draft a STOR (EU 2025/885, sections 1-4) for one surveillance alert.

        Fails (exit 3) rather than draft from part of a topic: every partition of the
        alerts, accounts and (from an hour before the evidence) orders topics is read to
        its end as of the start of the read."""
        from schemas.events import AccountOpened
        from streams.stor import build_stor, evidence_rows, evidence_start, render_html

        if fmt not in ("json", "html"):
            raise typer.BadParameter("--format must be json or html")
        settings = get_settings()
        try:
            wanted = UUID(alert_id)
        except ValueError as exc:
            raise typer.BadParameter(f"not a UUID: {alert_id}") from exc
        try:
            alert = find_alert(settings, wanted, timeout)
            if alert is None:
                typer.echo(
                    f"alert {alert_id} not found on {settings.topic(Topic.SURVEILLANCE_ALERTS)}",
                    err=True,
                )
                raise typer.Exit(1)
            accounts = {
                e.payload.account: e.payload
                for e in read_topic(settings, Topic.ACCOUNTS, timeout)
                if isinstance(e.payload, AccountOpened)
            }
            rows = evidence_rows(alert)
            venues = None
            if rows:
                order_ids = {str(r["order_id"]) for r in rows}
                since = evidence_start(alert) - ORDERS_LOOKBACK
                venues = order_venues(settings, order_ids, since, timeout)
        except IncompleteRead as exc:
            typer.echo(f"no STOR drafted: {exc} (retry, or raise --timeout)", err=True)
            raise typer.Exit(3) from exc
        draft = build_stor(alert, accounts, reporting_entity="tradetape operator", venues=venues)
        text = render_html(draft) if fmt == "html" else json.dumps(draft, indent=2, default=str)
        if out is None:
            typer.echo(text)
        else:
            out.write_text(text)
            typer.echo(f"wrote {out}", err=True)

    simulate = typer.Typer(help="Synthetic scenarios")
    app.add_typer(simulate, name="simulate")

    @simulate.command("surveillance")
    def simulate_surveillance(
        seed: Annotated[int, typer.Option(help="Scenario seed")] = 1,
        minutes: Annotated[int, typer.Option(help="Scenario length")] = 5,
        labels: Annotated[Path, typer.Option(help="Where to write episode labels")] = Path(
            "surveillance-labels.json"
        ),
        speed: Annotated[float, typer.Option(help="Replay speed (event time runs ahead)")] = 1.0,
        namespace: Annotated[
            str, typer.Option(help="Prefix for owners, accounts and producer (repeat runs)")
        ] = "",
        dense: Annotated[bool, typer.Option(help="An episode every ~10 s, not ~40 s")] = False,
    ) -> None:
        """Publish market makers, takers and labelled abusive episodes through the engine.

        Episodes: spoofing, layering, wash trading, one order-to-trade/cancel-ratio burst
        and one marking-the-close run (the scenario's end is the reference time). It also
        publishes DetectorConfigChanged for order_to_trade and marking_close (test setups
        only: those settings then apply to every account).
        """
        from streams.scenario import publish_scenario

        n = publish_scenario(get_settings(), seed=seed, minutes=minutes, labels_path=labels,
                             speed=speed, namespace=namespace, dense=dense)  # fmt: skip
        typer.echo(f"published {n} intents; labels in {labels}", err=True)
