"""`tradetape stor` and `tradetape simulate surveillance`. faust is never imported here."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Annotated, Any, NoReturn
from uuid import UUID

import typer

from deploy import groups
from deploy.groups import group_id
from deploy.settings import Settings, get_settings
from schemas.topics import Topic

READ_TIMEOUT_S = 30.0
"""How long `tradetape stor` may take to read each topic to its end (seconds)."""
ORDERS_LOOKBACK = timedelta(hours=1)
"""How far before the evidence's first event the orders log is read for their venue: an
order event's record time trails its event time by the engine's lag, and an intent's
time is at most seconds from its append time (FRESHNESS v2)."""


def _watermarks(consumer: Any, tp: Any, timeout: float) -> Any:  # seconds, not money
    return consumer.get_watermark_offsets(tp, timeout=timeout)


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def unwritable(path: Path) -> str | None:
    """Why a file cannot be written at `path` (None if it can): checked before the work
    whose result goes there, so the work is not done for nothing."""
    if path.is_dir():
        return f"{path} is a directory"
    if path.exists():
        return None if os.access(path, os.W_OK) else f"{path} is not writable"
    parent = path.parent
    if not parent.is_dir():
        return f"directory {parent} does not exist"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"directory {parent} is not writable"
    return None


class IncompleteRead(RuntimeError):
    """A topic was not read to its end: a draft from part of it would state falsehoods
    (that an account has no AccountOpened, that an alert does not exist)."""


def read_topic(
    settings: Settings,
    topic: Topic,
    timeout: float = READ_TIMEOUT_S,  # seconds, not money
    *,
    since: datetime | None = None,
    keep: Callable[[Any], bool] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    group: str | None = None,
    unreadable: Callable[[Any, Exception], None] | None = None,
) -> list[Any]:
    """Every committed event on `topic` up to each partition's end (high watermark) when
    the read started, from the beginning or from the first record stamped at or after
    `since`; only those `keep` accepts, if given (a long log need not be held whole).
    `progress(topic, records read, records to read)` is called for each record. Raises
    `IncompleteRead` unless every partition was read to that end within `timeout`
    seconds. `group`: the consumer group id, which the caller builds with `group_id`
    from its own `deploy.groups` constant (its role's ACLs grant it); `stor`'s if None.
    `unreadable(message, error)` is told of each record that is not an event (left out;
    the producers dead-letter such records): a reader that must not miss one (a
    regulatory report) decides what it means."""
    import time

    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    from deploy.kafka import consumer_config
    from schemas import MalformedEventError, decode

    name = settings.topic(topic)
    deadline = time.monotonic() + timeout

    def ask(call: Callable[[float], Any]) -> Any:  # seconds, not money
        """A metadata request, retried until the deadline (a new topic's leader may not
        be known yet: NOT_LEADER_FOR_PARTITION); past it, IncompleteRead."""
        while True:
            try:
                return call(max(0.5, deadline - time.monotonic()))
            except KafkaException as exc:
                if time.monotonic() >= deadline:
                    raise IncompleteRead(f"{name}: {exc}") from exc
                time.sleep(0.2)

    c = Consumer(
        consumer_config(
            settings,
            group_id=group
            or group_id(settings.topic_prefix, groups.STOR, str(time.monotonic_ns())),
            **{"enable.partition.eof": True},
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
        seen, total = 0, sum(ends[p] - starts[p] for p in parts)
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
            seen += 1
            if progress is not None:
                progress(name, seen, total)
            try:
                event = decode(msg.value(), msg.headers(), topic=name, partition=part, offset=off)
            except MalformedEventError as exc:
                if unreadable is not None:
                    unreadable(msg, exc)
                continue  # not an event (the producers dead-letter such records)
            if keep is None or keep(event):
                out.append(event)
    finally:
        c.close()
    short = {p: (reached[p], ends[p]) for p in parts if reached[p] < ends[p]}
    if short:
        where = ", ".join(f"partition {p} at offset {r} of {e}" for p, (r, e) in short.items())
        raise IncompleteRead(f"{name} not read to its end in {timeout:g} s: {where}")
    return out


def find_alert(
    settings: Settings,
    alert_id: UUID,
    timeout: float = READ_TIMEOUT_S,  # seconds, not money
) -> Any:
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
            float, typer.Option(help="Seconds to read each topic to its end")  # seconds, not money
        ] = READ_TIMEOUT_S,
    ) -> None:
        """Draft a STOR (EU 2025/885, sections 1-4) for one surveillance alert.

        Fails (exit 3) rather than draft from part of a topic: every partition of the alerts, accounts and (from an hour before the evidence) orders topics is read to its end as of the start of the read. An alert not found, or no broker answering, exits 1; bad arguments, or an --out that cannot be written, exit 2 before anything is read.

        Example (an ALERT_ID from `tradetape query alerts`): tradetape stor ALERT_ID --format html --out stor.html
        """
        from schemas.events import AccountOpened
        from streams.stor import build_stor, evidence_rows, evidence_start, render_html

        if fmt not in ("json", "html"):
            _fail(f"--format must be json or html, not {fmt!r}", 2)
        try:
            wanted = UUID(alert_id)
        except ValueError:
            _fail(f"not a UUID: {alert_id!r}", 2)
        if out is not None and (why := unwritable(out)) is not None:
            _fail(f"cannot write --out: {why}", 2)
        settings = get_settings()
        from deploy.kafka import broker_unreachable

        if (why := broker_unreachable(settings)) is not None:
            # at once: the reads printed librdkafka's failures for ~30 s, then a KafkaError
            _fail(f"no STOR drafted: {why}")
        try:
            alert = find_alert(settings, wanted, timeout)
            if alert is None:
                _fail(f"alert {alert_id} not found on {settings.topic(Topic.SURVEILLANCE_ALERTS)}")
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
            typer.echo(f"error: no STOR drafted: {exc} (retry, or raise --timeout)", err=True)
            raise typer.Exit(3) from exc
        draft = build_stor(alert, accounts, reporting_entity="tradetape operator", venues=venues)
        text = render_html(draft) if fmt == "html" else json.dumps(draft, indent=2, default=str)
        if out is None:
            typer.echo(text)
        else:
            try:
                out.write_text(text)
            except OSError as exc:  # changed since the check
                _fail(f"cannot write {out}: {exc.strerror or exc}")
            typer.echo(f"wrote {out}", err=True)

    simulate = typer.Typer(help="Synthetic scenarios.")
    app.add_typer(simulate, name="simulate")

    @simulate.command("surveillance")
    def simulate_surveillance(
        seed: Annotated[int, typer.Option(help="Scenario seed")] = 1,
        minutes: Annotated[int, typer.Option(help="Scenario length")] = 5,
        labels: Annotated[Path, typer.Option(help="Where to write episode labels")] = Path(
            "surveillance-labels.json"
        ),
        speed: Annotated[
            float,  # a speed factor, not money
            typer.Option(help="Replay speed (event time runs ahead)"),
        ] = 1.0,
        namespace: Annotated[
            str, typer.Option(help="Prefix for owners, accounts and producer (repeat runs)")
        ] = "",
        dense: Annotated[bool, typer.Option(help="An episode every ~10 s, not ~40 s")] = False,
    ) -> None:
        """Publish market makers, takers and labelled abusive episodes through the engine.

        Episodes: spoofing, layering, wash trading, one order-to-trade/cancel-ratio burst and one marking-the-close run (the scenario's end is the reference time). It also publishes DetectorConfigChanged for order_to_trade and marking_close (test setups only: those settings then apply to every account).

        Prints how many intents, admin commands and market-data events the broker acknowledged; exits 1 if any was not delivered (an unreachable broker), 2 on bad arguments (checked before anything is sent).

        Example (paced: 5 minutes of scenario in 30 s): tradetape simulate surveillance --seed 7 --minutes 5 --labels labels.json --speed 10
        """
        from streams.scenario import publish_scenario

        if minutes <= 0:
            _fail(f"--minutes must be a positive number, got {minutes}", 2)
        if not (math.isfinite(speed) and speed > 0):
            _fail(f"--speed must be a positive number (1.0 = real time), got {speed}", 2)
        if (why := unwritable(labels)) is not None:
            _fail(f"cannot write --labels: {why}", 2)
        from deploy.kafka import broker_unreachable

        settings = get_settings()
        if (why := broker_unreachable(settings)) is not None:  # at once, not after a flush
            _fail(f"nothing published: {why}")
        from deploy.progress import EVERY_SECONDS, Ticker, clock, duration

        typer.echo(
            f"simulate surveillance: {minutes} min of scenario paced at {speed:g}x real time,"
            f" about {duration(minutes * 60 / speed)} (--speed N goes N times faster);"
            f" a progress line every {EVERY_SECONDS:g} s",
            err=True,
        )
        ticker = Ticker(
            lambda n, total, at, end: (
                f"simulate surveillance: {n:,} of {total:,} inputs sent,"
                f" scenario time {clock(at)} of {clock(end)}"
            )
        )
        try:
            report = publish_scenario(settings, seed=seed, minutes=minutes,
                                      labels_path=labels, speed=speed, namespace=namespace,
                                      dense=dense, progress=ticker)  # fmt: skip
        except OSError as exc:  # the labels file, changed since the check
            _fail(f"cannot write {labels}: {exc.strerror or exc}")
        sent, done = report.sent, report.delivered
        parts = [
            f"{done.get(kind, 0)} of {sent[kind]} {what}"
            for kind, what in (
                ("intent", "intents"),
                ("admin", "admin commands"),
                ("marketdata", "market-data events"),
                ("other", "other events"),
            )
            if sent.get(kind)
        ]
        typer.echo(f"published {', '.join(parts)}; labels in {labels}", err=True)
        if not report.ok:
            _fail(
                f"{report.not_delivered} records were not delivered to the broker: "
                f"{report.first_error}"
            )
