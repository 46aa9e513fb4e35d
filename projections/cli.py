"""`tradetape rebuild`, `checksum` and `query`: the read side's commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from collections.abc import Callable

    from deploy.settings import Settings
    from projections.rebuild import RebuildResult


def register(app: typer.Typer) -> None:
    app.command()(rebuild)
    app.command()(checksum)
    app.command()(query)
    from projections.tax.cli import register as register_tax

    register_tax(app)


def rebuild(
    name: Annotated[
        str | None,
        typer.Argument(
            help="Projection to rebuild: orders, fills, positions, balances, decisions, ..."
            " (`tradetape status` lists them)"
        ),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Rebuild every projection")] = False,
    parallel: Annotated[
        bool,
        typer.Option(
            "--parallel/--one-consumer",
            help="With --all: one process per topic group (the default), at most one "
            "building per core, or every projection on one consumer (decoded in a reader "
            "process). Measured times and memory: docs/benchmarks.md",
        ),
    ] = True,
) -> None:
    """Replay a projection from offset 0 into a fresh schema, swap it in, print its checksum.

    With --all, every topic group (as `run projections` groups them) is rebuilt in its own process, and all are swapped in together only once every group has finished (all or nothing); with --all --one-consumer, every projection is rebuilt on one consumer (each record decoded once) and all are swapped in together in one transaction.

    Exits 2 on bad arguments, 1 if the rebuild failed (an unreachable database or broker is one error line naming it); the live projection is then unchanged.

    Examples: tradetape rebuild positions; tradetape rebuild --all
    """
    from deploy.settings import get_settings
    from projections.core import PROJECTIONS

    if all_ == (name is not None):
        both = ", not both" if all_ else ""
        typer.echo(f"error: give a projection NAME or --all{both}", err=True)
        raise typer.Exit(2)
    if not parallel and not all_:
        # was ignored: a single projection is always rebuilt on one consumer
        typer.echo("error: --one-consumer goes with --all", err=True)
        raise typer.Exit(2)
    names = list(PROJECTIONS) if all_ else [str(name)]
    unknown = [n for n in names if n not in PROJECTIONS]
    if unknown:
        typer.echo(
            f"error: unknown projection {unknown[0]!r}; known: {', '.join(PROJECTIONS)}", err=True
        )
        raise typer.Exit(2)
    parallel = parallel and all_  # one projection is one group
    settings = get_settings()
    if (why := preflight(settings)) is not None:
        typer.echo(f"error: {why}", err=True)
        raise typer.Exit(1)
    if (why := partitions_changed(settings, names)) is not None:
        typer.echo(f"error: {why}", err=True)
        raise typer.Exit(1)

    def say_leftovers() -> None:
        # Was dropped without a word (by create_schema). Said once the rebuild lock is
        # held: said before it, a rebuild that took the lock in between made this one say
        # 'dropping' and then refuse 'a rebuild of NAME is under way'.
        for name_, schema in sorted(_build_schemas(settings, names, locked=True).items()):
            typer.echo(
                f"note: dropping {schema}, left by a rebuild of {name_} that did not finish",
                err=True,
            )

    try:
        results = (
            _rebuild_parallel_with_bars(settings, names, say_leftovers)
            if parallel
            else _rebuild_with_bar(settings, names, say_leftovers)
        )
    except KeyboardInterrupt:
        typer.echo(_interrupted(settings, names), err=True)
        raise  # `error: interrupted (Ctrl-C)`, exit 130 (deploy.cli.main)
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except Exception as exc:
        if (why := unreachable(settings, exc)) is None:
            raise
        typer.echo(f"error: {why}", err=True)
        raise typer.Exit(1) from exc
    from projections.checksum import offsets_line

    for result in results:
        rows = ", ".join(f"{t}={c}" for t, c in sorted(result.counts.items()))
        typer.echo(
            f"{result.name}: {result.events} events in {result.seconds:.1f}s "
            f"({result.rate:,.0f} events/s); {rows}; offsets: {offsets_line(result.offsets)}",
            err=True,
        )
    if parallel and results:
        groups = {r.group: r for r in results}
        for label, r in groups.items():
            typer.echo(
                f"group {label}: {r.group_records:,} records in {r.group_seconds:.1f}s, "
                f"peak RSS {r.peak_rss_mb:.0f} MB",
                err=True,
            )
        r = results[0]
        per = sum(x.events for x in results)
        typer.echo(
            f"all: {sum(g.group_records for g in groups.values()):,} records read by "
            f"{len(groups)} groups in parallel in {r.seconds:.1f}s "
            f"({per / max(r.seconds, 1e-9):,.0f} projection-events/s), swapped in together",
            err=True,
        )
    elif all_ and results:
        r = results[0]
        typer.echo(
            f"all: {r.group_records:,} records in {r.seconds:.1f}s "
            f"({r.group_records / max(r.seconds, 1e-9):,.0f} records/s, each decoded once)",
            err=True,
        )
    for result in results:
        typer.echo(f"{result.name} {result.checksum}")


def _build_schemas(settings: Settings, names: list[str], *, locked: bool = False) -> dict[str, str]:
    """The build schemas of `names` left by a rebuild that did not finish
    (`rebuild.leftover_builds`, less those a running rebuild holds the lock of, unless
    this process holds their rebuild locks: `locked`); none if the database cannot say
    (the rebuild then reports that itself)."""
    import psycopg

    from projections.rebuild import leftover_builds, rebuilding

    try:
        with psycopg.connect(settings.dsn, connect_timeout=10) as conn:
            found = {n: s for n, s in leftover_builds(conn).items() if n in names}
            # under way, not left (it refuses); with `locked` the holder is this rebuild
            running = set() if locked else rebuilding(conn, sorted(found))
    except psycopg.Error:
        return {}
    return {n: s for n, s in found.items() if n not in running}


def _interrupted(settings: Settings, names: list[str]) -> str:
    """What an interrupted rebuild left: its build schemas are dropped on the way out
    (`rebuild.rebuild_many`, `rebuild_parallel`), the live projections untouched."""
    from projections.core import PROJECTIONS
    from projections.store import REBUILD_SUFFIX

    if len(names) == 1:
        built, live = PROJECTIONS[names[0]].schema + REBUILD_SUFFIX, "projection is as it was"
    else:
        built, live = f"schemas of {len(names)} projections", "projections are as they were"
    left = _build_schemas(settings, names)
    if left:
        return (
            f"rebuild interrupted: could not drop {', '.join(sorted(left.values()))} (the next"
            f" rebuild drops them); the live {live}"
        )
    return f"rebuild interrupted: dropped the half-built {built}; the live {live}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def database_address(dsn: str) -> str:
    """host:port of a DSN (libpq's defaults where it names none), for error lines."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(dsn)
    except Exception:
        return "(unparsable DSN)"
    host = str(params.get("host") or params.get("hostaddr") or "localhost")
    return f"{host}:{params.get('port') or 5432}"


KAFKA_UNREACHABLE = ("_TRANSPORT", "_ALL_BROKERS_DOWN", "_TIMED_OUT", "_RESOLVE", "_WAIT_COORD")
"""librdkafka error names that mean the broker could not be reached (or did not answer)."""


def unreachable(settings: Settings, exc: BaseException) -> str | None:
    """The one error line for a database or Kafka failure (naming what could not be
    reached, host:port), or None for any other exception (which stays a traceback: a bug)."""
    import psycopg
    from confluent_kafka import KafkaException

    from deploy.kafka import kafka_error

    if isinstance(exc, psycopg.OperationalError):
        where = database_address(settings.dsn)
        if type(exc) is psycopg.OperationalError:  # a failed or lost connection
            return f"cannot reach the database at {where}: {_first_line(exc)}"
        return f"database at {where}: {_first_line(exc)}"
    if isinstance(exc, KafkaException):
        err = kafka_error(exc)
        if err is not None:
            detail = err.str()
            if err.name() in KAFKA_UNREACHABLE:
                return f"cannot reach the Kafka broker at {settings.bootstrap}: {detail}"
            return f"Kafka at {settings.bootstrap}: {detail}"
        return f"Kafka at {settings.bootstrap}: {_first_line(exc)}"
    return None


def partitions_changed(settings: Settings, names: list[str]) -> str | None:
    """Why these projections cannot be rebuilt reproducibly: a topic they read has another
    partition count than the declared one (`deploy.kafka.partition_changes`: a key's
    events before and after the change lie on different partitions and a replay reads them
    in no fixed order), or None. The live projection stays as it is, DEGRADED in status."""
    from deploy.kafka import (
        PartitionsChanged,
        check_partitions,
        describe_partition_changes,
        listed_partition_counts,
    )
    from projections.core import PROJECTIONS

    topics = sorted({t for n in names for t in PROJECTIONS[n].topics})
    try:
        check_partitions(settings, listed_partition_counts(settings, topics), who="rebuild")
    except PartitionsChanged as exc:
        return (
            f"rebuild refused: {describe_partition_changes(exc.changed)}; a replay would read "
            "a key's events from before and after the change in no fixed order "
            "(docs/operations.md, Adding partitions)"
        )
    return None


def preflight(settings: Settings) -> str | None:
    """Why a rebuild cannot start (the database or every bootstrap broker unreachable:
    the one error line), or None. Checked in this process before any build process is
    forked, with no librdkafka handle left open (a TCP connection to the broker): a build
    process's failure reaches the command only as a message, with its traceback logged.
    """
    import psycopg

    from deploy.kafka import broker_unreachable

    try:
        psycopg.connect(settings.dsn, connect_timeout=10).close()
    except psycopg.OperationalError as exc:
        return unreachable(settings, exc)
    return broker_unreachable(settings)


def _rebuild_with_bar(
    settings: Settings, names: list[str], on_locked: Callable[[], None] | None = None
) -> list[RebuildResult]:
    """Rebuild `names` on one consumer under a progress bar showing records per second."""
    import time

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from projections.core import PROJECTIONS
    from projections.projector import Projector
    from projections.rebuild import rebuild_many

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f} records"),
        TextColumn("{task.fields[rate]:,.0f} records/s"),
        TimeElapsedColumn(),
    ) as bar:
        task = bar.add_task(f"rebuild {', '.join(names)}", total=None, rate=0.0)
        started: list[float] = []  # monotonic seconds, not money

        def progress(count: int, proj: Projector) -> None:
            now = time.monotonic()
            if not started:
                started.append(now)
                bar.update(task, total=proj.log_size())
            done = bar.tasks[0].completed + count
            bar.update(task, completed=done, rate=done / max(now - started[0], 1e-3))

        return rebuild_many(
            settings, [PROJECTIONS[n] for n in names], progress=progress, on_locked=on_locked
        )


def _rebuild_parallel_with_bars(
    settings: Settings, names: list[str], on_locked: Callable[[], None] | None = None
) -> list[RebuildResult]:
    """Rebuild `names` one process per topic group, a progress bar per group."""
    import time

    from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    from projections.core import PROJECTIONS
    from projections.rebuild import GroupBuild, rebuild_parallel

    bar = Progress(
        TextColumn("[bold]{task.description:40}"),
        BarColumn(),
        TextColumn("{task.completed:>11,.0f} records"),
        TextColumn("{task.fields[rate]:>8,.0f} records/s"),
        TimeElapsedColumn(),
    )
    tasks: dict[str, TaskID] = {}
    started = time.monotonic()

    def on_start(groups: list[GroupBuild]) -> None:
        # The bar's refresh thread starts after the group processes are forked.
        for g in groups:
            tasks[g.label] = bar.add_task(g.label, total=None, rate=0.0)
        bar.start()

    def progress(_count: int, g: GroupBuild) -> None:
        elapsed = max(time.monotonic() - started, 1e-3)
        bar.update(
            tasks[g.label], total=g.total or None, completed=g.records, rate=g.records / elapsed
        )

    try:
        return rebuild_parallel(
            settings,
            [PROJECTIONS[n] for n in names],
            on_start=on_start,
            progress=progress,
            on_locked=on_locked,
        )
    finally:
        bar.stop()


def checksum(
    name: Annotated[
        str,
        typer.Argument(
            help="Projection: orders, fills, positions, balances, decisions, ..."
            " (`tradetape status` lists them)"
        ),
    ],
) -> None:
    """Print the checksum (sha256 over rows in primary-key order, then quarantined records) of the live projection.

    Every table and the stored offsets are read in one REPEATABLE READ transaction; the offsets (the log position the checksum describes) go to stderr with the row counts. The same log read to the same offsets gives the same checksum: compare it with the one `rebuild` prints.

    Example: tradetape checksum positions
    """
    import psycopg

    from deploy.settings import get_settings
    from projections.checksum import SnapshotMoved, checksum_snapshot, offsets_line
    from projections.core import PROJECTIONS

    if name not in PROJECTIONS:
        typer.echo(f"error: unknown projection {name!r}; known: {', '.join(PROJECTIONS)}", err=True)
        raise typer.Exit(2)
    settings = get_settings()
    try:
        with psycopg.connect(settings.dsn) as conn:
            snap = checksum_snapshot(conn, PROJECTIONS[name])
    except psycopg.OperationalError as exc:
        typer.echo(f"error: {unreachable(settings, exc)}", err=True)
        raise typer.Exit(1) from exc
    except SnapshotMoved as exc:
        typer.echo(f"error: {exc}; try again", err=True)
        raise typer.Exit(1) from exc
    typer.echo(", ".join(f"{t}={c}" for t, c in sorted(snap.counts.items())), err=True)
    typer.echo(f"offsets: {offsets_line(snap.offsets)}", err=True)
    typer.echo(f"{name} {snap.digest}")


def query(
    name: Annotated[
        str | None,
        typer.Argument(help="Named query (positions, pnl, orders, ...: --list shows them)"),
    ] = None,
    sql_text: Annotated[
        str | None, typer.Option("--sql", help="Raw read-only SQL, instead of a NAME")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv, json or parquet")] = "table",
    out: Annotated[Path | None, typer.Option("--out", help="Write to FILE, not stdout")] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="Filter KEY=VALUE of a named query (repeatable; default: no filter)",
        ),
    ] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the named queries")] = False,
    timeout: Annotated[
        float | None,  # seconds, not money
        typer.Option("--timeout", help="Time limit of the query, seconds (default 60)", min=0.001),
    ] = None,
) -> None:
    """Run a named query or raw SQL (as the read-only role) and print or save the result.

    Exits 2 on bad arguments (an unknown query among them), 1 if the query failed.

    Examples: tradetape query orders -p account=ACC1 --format csv; tradetape query --sql "select account, outcome, reason_codes from proj_decisions.decisions" --format json
    """
    import psycopg

    from deploy.settings import get_settings
    from projections import query as q

    if list_:
        width = max(map(len, q.NAMED))  # a fixed 14 let drawdown_history run on
        for qname, nq in sorted(q.NAMED.items()):
            typer.echo(f"{qname:{width}} {nq.description}  [{', '.join(nq.params)}]")
        return
    if (name is None) == (sql_text is None):
        both = ", not both" if name is not None else ""
        typer.echo(f'error: give a query NAME or --sql "..."{both} (see --list)', err=True)
        raise typer.Exit(2)
    if sql_text is not None and not sql_text.strip():
        # not "the last operation didn't produce records (result status: EMPTY_QUERY)"
        typer.echo("error: --sql is empty: give one SELECT statement", err=True)
        raise typer.Exit(2)
    if sql_text is not None and param:
        typer.echo(
            "error: --param filters a named query; raw --sql takes no parameters "
            "(write the filter into the SQL, or use a named query: see --list)",
            err=True,
        )
        raise typer.Exit(2)
    params: dict[str, str | None] = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep:
            typer.echo(f"error: --param wants KEY=VALUE, got {item!r}", err=True)
            raise typer.Exit(2)
        params[key] = value
    if name is not None and name not in q.NAMED:
        typer.echo(f"error: unknown query {name!r}; known: {', '.join(sorted(q.NAMED))}", err=True)
        raise typer.Exit(2)
    try:  # usage errors, before the query runs (they exited 1, the format ones after it ran)
        if timeout is not None:
            q.check_timeout(timeout)
        q.check_format(fmt, str(out) if out else None)
        if name is not None:
            q.named(name, params)
    except q.QueryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    limit = q.QUERY_TIMEOUT_S if timeout is None else timeout
    try:
        df = (
            q.frame(name, None, limit, **params)
            if name is not None
            else q.raw(str(sql_text), timeout_s=limit)
        )
        text = q.write(df, fmt, str(out) if out else None)
    except q.QueryError as exc:
        # a refused connection: one line naming the database, as checksum and rebuild say
        # it (a cancelled query is an OperationalError too, and keeps its own message)
        cause = exc.__cause__
        why = (
            unreachable(get_settings(), cause) if type(cause) is psycopg.OperationalError else None
        )
        typer.echo(f"error: {why or exc}", err=True)
        raise typer.Exit(1) from exc
    if text is not None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        typer.echo(f"wrote {df.height} rows to {out}", err=True)
