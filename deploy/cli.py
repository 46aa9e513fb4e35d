"""The `tradetape` command line.

Each package contributes its own commands through a `register(app)` function in its
`cli` module (engine, projections, streams, signer_ffi); this module owns only the
stack, topics, `run` and `demo`.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from typer._click.core import Context  # typer runs on its own copy of click
from typer._click.exceptions import NoSuchOption
from typer._click.types import _NumberParamTypeBase
from typer.core import TyperArgument, TyperCommand, TyperOption

from deploy.runner import COMPONENTS, EXTRA_COMPONENTS
from deploy.settings import Settings, SettingsError, get_settings, use_data_dir

app = typer.Typer(
    name="tradetape",
    help="Event-sourced crypto trading engine on Kafka, with replayable compliance projections.",
    epilog="First steps: `make demo` (README.md), then `tradetape up`, `tradetape run` and"
    " `tradetape status`; `tradetape COMMAND --help` for each command. Runbook:"
    " docs/operations.md.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

PACKAGE_CLIS = (
    "engine.cli",
    "projections.cli",
    "projections.reports.cli",
    "streams.cli",
    "streams.travel_rule.cli",
    "signer_ffi.cli",
)

DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Stack data directory: broker, database, keys (default: the nearest"
        " .tradetape/ in the working directory or above it, up to the project root, if you"
        " own it; else ./.tradetape/; TRADETAPE_DATA_DIR)",
    ),
]

"""Every command takes `--data-dir`, one rule (`_add_data_dir_option`): the commands of
the other packages get it here, so their modules need no plumbing of their own. Before
session 15 only `producer add`, `publish` and `sign` of theirs had it, though admin keys
and signer groups live in the data directory too."""

SETTINGS_ERROR = 2
"""Exit code for settings that cannot be used: like bad arguments, no retry cures them
(a `tradetape run` group stops on it)."""


def _settings(data_dir: Path | None = None) -> Settings:
    if data_dir is not None:
        use_data_dir(data_dir)
    return get_settings()


@app.callback()
def _check_settings() -> None:
    """Load the settings before any command runs: a mistake in them is one `error:` line
    and exit 2, whatever the command."""
    try:
        get_settings()
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(SETTINGS_ERROR) from exc


def _echo(msg: str) -> None:
    typer.echo(msg, err=True)


SetupDataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="The stack data directory `up` will use (default: found as for every"
        " command; TRADETAPE_DATA_DIR). Setup only reports it: the jars and binaries it"
        " fetches are shared by every data directory.",
    ),
]
"""`--data-dir` as setup takes it (every command takes it): the stack commands' text,
"broker, database, keys", promised what setup does not keep there."""


@app.command()
def setup(data_dir: SetupDataDirOpt = None) -> None:
    """Fetch what the local stack needs once: the Kafka jars and the PostgreSQL binaries.

    Then print where they are and the data directory `up` will use (without creating it).
    """
    from deploy.local.kafka_node import KafkaStartError, ensure_jars
    from deploy.local.postgres_node import pg_bin_dir

    s = _settings(data_dir)
    try:
        libs = ensure_jars(s, echo=_echo)
    except KafkaStartError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    bins = pg_bin_dir()
    if not (bins / "postgres").exists():
        typer.echo(f"error: PostgreSQL binaries missing under {bins}", err=True)
        raise typer.Exit(1)
    typer.echo(f"kafka jars: {libs}\npostgres binaries: {bins}")
    where = s.resolved_data_dir
    typer.echo(
        f"data dir: {where}"
        + ("" if where.exists() else " (not there yet: `tradetape up` creates it)")
    )


@app.command()
def up(data_dir: DataDirOpt = None) -> None:
    """Start the local Kafka broker and PostgreSQL (idempotent), create topics, migrate.

    With TRADETAPE_KAFKA_BOOTSTRAP or TRADETAPE_POSTGRES_DSN set, that one is checked and used instead of a local one.
    """
    from deploy.local import LocalStack, StackError

    s = _settings(data_dir)
    stack = LocalStack(s, echo=_echo)
    try:
        started = stack.up()
    except StackError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if not any(started.values()) and not (s.kafka_bootstrap or s.postgres_dsn):
        typer.echo("stack is already up")
    else:
        typer.echo("stack is up")


@app.command()
def down(data_dir: DataDirOpt = None) -> None:
    """Stop the broker and database this data directory started, and nothing else."""
    from deploy.local import LocalStack

    stopped = LocalStack(_settings(data_dir), echo=_echo).down()
    if not any(stopped.values()):
        typer.echo("nothing was running")
    else:
        typer.echo("stopped " + ", ".join(k for k, v in stopped.items() if v))


def _topic_counts(kafka: dict[str, Any]) -> str:
    """`15 of 15 catalogue topics; 8 internal to surveillance (faust's)`: what `status`
    counts, named (it said `23 topics`, faust's changelogs and repartitions among them)."""
    present, missing = len(kafka["topics"]), kafka["missing_topics"]
    text = f"{present} of {present + len(missing)} catalogue topics"
    if missing and kafka["ok"]:
        text += f", missing {', '.join(missing)}"
    more = []
    if kafka["internal_topics"]:
        more.append(f"{len(kafka['internal_topics'])} internal to surveillance (faust's)")
    if kafka["other_topics"]:
        more.append(f"{len(kafka['other_topics'])} other")
    return f"{text}; {', '.join(more)}" if more else text


def _engine_line(eng: dict[str, Any]) -> str:
    """`status`'s line for the engine group: who runs, and what it has not decided yet."""
    if "error" in eng:
        return f"unknown ({eng['error']})"
    inputs = ", ".join(f"{t} {n}" for t, n in sorted(eng["inputs"].items()))
    members = eng["members"]
    text = (
        f"group {eng['group']}: {eng['state'].lower()}, {members}"
        f" worker{'' if members == 1 else 's'}; undecided {eng['lag']} ({inputs})"
    )
    if eng["lag"] and not members:
        text += " - no worker runs: `tradetape run engine`"
    return text


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Health of Kafka, PostgreSQL and the projections. Exits 1 if anything is down."""
    from deploy.local import LocalStack

    st = LocalStack(_settings(data_dir), echo=_echo).status()
    if as_json:
        typer.echo(json.dumps(st, sort_keys=True))
    else:
        k, p = st["kafka"], st["postgres"]
        typer.echo(f"data dir  {st['data_dir']}")
        typer.echo(
            f"kafka     {'up' if k['ok'] else 'DOWN':5} {k['bootstrap']}  ({_topic_counts(k)})"
            + (f"; {k['elsewhere']}" if k.get("elsewhere") else "")
        )
        typer.echo(
            f"postgres  {'up' if p['ok'] else 'DOWN':5} {p['dsn']}"
            + (f"; {p['elsewhere']}" if p.get("elsewhere") else "")
        )
        if st.get("hint"):
            typer.echo(f"({st['hint']})")
        if k.get("partitions_changed"):
            typer.echo(
                f"topics    PARTITIONS CHANGED: {k['partitions_changed']} (the engine decides"
                " every intent as STALE_STATE; the projections of these topics are DEGRADED;"
                " docs/operations.md, Adding partitions)"
            )
        for name, info in sorted(st.get("projections", {}).items()):
            flag = "DEGRADED" if info.get("degraded") else "ok"
            lag = info.get("lag")  # None: Kafka down or not measurable
            unread = info.get("unread_partitions") or []
            typer.echo(
                f"projection {name:24} {flag:8} consumed={info.get('consumed', 0)}"
                f" quarantined={info.get('quarantined', 0)}"
                f" lag={'unknown' if lag is None else lag}"
                + (f" unread partitions: {', '.join(unread)}" if unread else "")
                + (
                    f" partitions changed: {info['partitions_changed']}"
                    if info.get("partitions_changed")
                    else ""
                )
                + (
                    f" REBUILD NEEDED ({info['rebuild_needed']}: tradetape rebuild {name})"
                    if info.get("rebuild_needed")
                    else ""
                )
                + (
                    f" build schema {info['build_schema']} (a rebuild under way, or left by"
                    " one that did not finish: the next rebuild drops it)"
                    if info.get("build_schema")
                    else ""
                )
                + (
                    f" OFFSETS OUT OF RANGE ({info['offsets_out_of_range']}: the log was"
                    f" recreated, truncated or cut; tradetape rebuild {name})"
                    if info.get("offsets_out_of_range")
                    else ""
                )
            )
        eng = st.get("engine")
        if eng is not None:
            typer.echo(f"engine    {_engine_line(eng)}")
        snaps = st.get("engine_snapshots") or {}
        if "error" in snaps:
            typer.echo(f"engine snapshots: unknown ({snaps['error']})")
        elif snaps:
            typer.echo(
                "engine snapshots (newest usable slice; own-topic offsets a worker taking the"
                " partition now would replay):"
            )
            for part, info in sorted(snaps.items(), key=lambda kv: int(kv[0])):
                typer.echo(
                    f"  partition {part}: {info['slice'] or 'no slice':16} behind={info['behind']}"
                )
    if not st["ok"]:
        raise typer.Exit(1)


@app.command()
def topics(data_dir: DataDirOpt = None) -> None:
    """Create any missing catalogue topics and list them with their event types."""
    from confluent_kafka import KafkaException

    from deploy.kafka import (
        broker_unreachable,
        create_topics,
        declared_partitions_error,
        error_detail,
        partition_count,
    )
    from schemas.events.admin import ADMIN_COMMAND_TYPES
    from schemas.registry import event_types_for
    from schemas.topics import TOPICS, Topic

    s = _settings(data_dir)
    if (why := broker_unreachable(s)) is not None:
        typer.echo(f"error: cannot create topics: {why}", err=True)
        raise typer.Exit(1)
    try:
        created = create_topics(s)
    except KafkaException as exc:
        detail = error_detail(exc)
        typer.echo(
            f"error: cannot create topics on the Kafka broker at {s.bootstrap}: {detail}", err=True
        )
        raise typer.Exit(1) from exc
    for spec in TOPICS.values():
        mark = "+" if spec.full_name(s.topic_prefix) in created else " "
        # admin.commands carries the commands, typed as the facts they ask for (they
        # were listed as "-", as if the topic carried nothing)
        names = ADMIN_COMMAND_TYPES if spec.topic is Topic.ADMIN else event_types_for(spec.topic)
        types = ", ".join(names) or "-"
        typer.echo(
            f"{mark} {spec.full_name(s.topic_prefix):28} p={partition_count(s, spec):<2} {types}"
        )
    if (why := declared_partitions_error(s)) is not None:
        typer.echo(f"error: {why}", err=True)
        raise typer.Exit(1)


@app.command()
def run(
    components: Annotated[
        list[str] | None,
        typer.Argument(
            help=f"{', '.join([*COMPONENTS, *EXTRA_COMPONENTS])} (default: all but"
            f" {', '.join(EXTRA_COMPONENTS)})"
        ),
    ] = None,
    signer_id: Annotated[
        int | None,
        typer.Option(
            "--id",
            help="Participant id for `run signer`, which needs it (default: TRADETAPE_SIGNER_ID)",
        ),
    ] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Run components in the foreground. Several run as one supervised process group.

    A component that dies is restarted (after 1 s, then up to 30 s while it keeps dying); Ctrl-C or SIGTERM stops the group (docs/operations.md, `tradetape run`: the supervised group). `producer`, `admin` and `publish` need the engine running to get their answers.

    Examples: tradetape run (everything but the signers); tradetape run engine projections; tradetape run signer --id 1
    """
    import os

    from deploy.runner import run_components

    if signer_id is not None:
        os.environ["TRADETAPE_SIGNER_ID"] = str(signer_id)

    # _settings also puts --data-dir in the environment the group's children inherit.
    raise typer.Exit(run_components(components or [], _settings(data_dir)))


@app.command()
def demo(data_dir: DataDirOpt = None) -> None:
    """Bring the stack up and run the end-to-end demo flow, then print a summary.

    Stages (README.md, what it prints): a transactional smoke test, the engine on a replayed market (a real Binance capture in ../shared/reference/marketdata/ if there, else a simulated one) with a toy strategy and some deliberately bad intents, three withdrawals answered by the travel-rule processor, the projections and a rebuild, a Form 8949 summary from the tax lots, the fills as an ISO 20022 auth.016 report, surveillance on labelled abusive episodes and a STOR draft, a 2-of-3 FROST signature of that report. About a minute or two; the stack stays up (`tradetape down` stops it).
    """
    from deploy.demo import run_demo

    raise typer.Exit(run_demo(_settings(data_dir)))


acls_app = typer.Typer(
    help="Kafka ACLs: which principal may write and read which topic (docs/operations.md, Securing the broker).",
    no_args_is_help=True,
)
app.add_typer(acls_app, name="acls")

PrincipalOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--principal",
        help="ROLE=PRINCIPAL: the principal of a role (default User:ROLE; a bare name gets User:). Repeat for several roles.",
    ),
]


def _acl_plan(s: Settings, principal: list[str] | None) -> list[Any]:
    from deploy.acls import PlanError, plan, principals

    try:
        return plan(s.topic_prefix, principals(principal or []))
    except PlanError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(SETTINGS_ERROR) from exc


@acls_app.command("plan")
def acls_plan(
    principal: PrincipalOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array of bindings")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Print the ALLOW bindings each role needs for this topic prefix (TRADETAPE_TOPIC_PREFIX), one a line; nothing is sent to the broker.

    Roles: engine (the engine and the snapshotter), strategy, admin, marketdata, transfers, travelrule, projector, surveillance, signer, requester, reporter (`export auth016`). Every role writes only the topics its components produce to: only the engine writes risk.decisions, orders.lifecycle, accounts.events and risk.config.
    """
    bindings = _acl_plan(_settings(data_dir), principal)
    if as_json:
        typer.echo(json.dumps([b.as_dict() for b in bindings], indent=2))
        return
    for b in bindings:
        typer.echo(b.line())


@acls_app.command("apply")
def acls_apply(principal: PrincipalOpt = None, data_dir: DataDirOpt = None) -> None:
    """Create the planned bindings the broker lacks (as `acls plan` prints them) and wait until it shows them; run as a super user (TRADETAPE_KAFKA_SASL_USERNAME).

    Idempotent: a second run creates nothing. Nothing is removed: bindings the broker holds for these principals beyond the plan are listed as a warning.
    """
    from confluent_kafka import KafkaException

    from deploy.acls import apply
    from deploy.kafka import admin_client, broker_unreachable, error_detail

    s = _settings(data_dir)
    bindings = _acl_plan(s, principal)
    if (why := broker_unreachable(s)) is not None:
        typer.echo(f"error: cannot apply ACLs: {why}", err=True)
        raise typer.Exit(1)
    try:
        done = apply(admin_client(s), bindings)
    except (KafkaException, RuntimeError) as exc:
        detail = error_detail(exc)
        if "No Authorizer is configured" in detail:
            # the local stack's broker is open unless it was formatted with SASL
            detail += (
                " (the broker checks no ACLs: the local one does only when started on a fresh"
                " data directory with TRADETAPE_KAFKA_LOCAL_SASL=true; docs/operations.md,"
                " Securing the broker)"
            )
        typer.echo(f"error: cannot apply ACLs on the broker at {s.bootstrap}: {detail}", err=True)
        raise typer.Exit(1) from exc
    for b in done.created:
        typer.echo(f"+ {b.line()}")
    typer.echo(f"acls: {len(done.created)} created, {len(done.already)} already present")
    for line in done.extra:
        typer.echo(f"warning: not in the plan: {line}", err=True)


@acls_app.command("user")
def acls_user(
    name: Annotated[str, typer.Argument(help="The SCRAM user to create or change")],
    data_dir: DataDirOpt = None,
) -> None:
    """Create a SCRAM user (or set its password), reading the password from standard input; run as a super user.

    The mechanism is TRADETAPE_KAFKA_SASL_MECHANISM (SCRAM-SHA-512). The user's principal is User:NAME.
    """
    from confluent_kafka import KafkaException

    from deploy.acls import upsert_scram_user
    from deploy.kafka import admin_client, broker_unreachable, error_detail

    s = _settings(data_dir)
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        typer.echo("error: no password on standard input", err=True)
        raise typer.Exit(SETTINGS_ERROR)
    if (why := broker_unreachable(s)) is not None:
        # at once: librdkafka's failures for ~30 s, then "waiting for controller: Timed out"
        typer.echo(f"error: cannot set user {name}: {why}", err=True)
        raise typer.Exit(1)
    try:
        upsert_scram_user(admin_client(s), name, password, mechanism=s.kafka_sasl_mechanism)
    except KafkaException as exc:
        detail = error_detail(exc)
        typer.echo(f"error: cannot set user {name} on {s.bootstrap}: {detail}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"acls: SCRAM user {name} set ({s.kafka_sasl_mechanism})")


def _register_packages() -> None:
    for name in PACKAGE_CLIS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
                continue  # that package is not installed in this build
            raise
        module.register(app)


def _with_data_dir(callback: Callable[..., Any]) -> Callable[..., Any]:
    """`callback` with a `--data-dir` option that sets the data directory (`use_data_dir`)
    before it runs."""
    sig = inspect.signature(callback, eval_str=True)
    if "data_dir" in sig.parameters:
        return callback

    @functools.wraps(callback)
    def wrapper(*args: Any, data_dir: Path | None = None, **kwargs: Any) -> Any:
        if data_dir is not None:
            use_data_dir(data_dir)
        return callback(*args, **kwargs)

    param = inspect.Parameter(
        "data_dir", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=DataDirOpt
    )
    wrapper.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[*sig.parameters.values(), param]
    )
    wrapper.__annotations__ = {
        **{n: p.annotation for n, p in sig.parameters.items()},
        "data_dir": DataDirOpt,
    }
    return wrapper


NEGATIVE_NUMBER = re.compile(r"-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class Command(TyperCommand):
    """Every command's class: a negative number where an argument goes is one `error:`
    line (exit 2) saying what the argument must be. click reads `-5` as an option, so
    `admin deposit ACC1 USDC -5 dep-1` said `No such option: -5` in a usage box. Its
    usage line names the arguments in capitals (`collect_usage_pieces`)."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        given = list(args)  # click's parser consumes `args`
        try:
            return super().parse_args(ctx, args)
        except NoSuchOption as exc:
            # click names the short option it failed on: `-0` of `-0.5`
            token = next((a for a in given if a == "--" or NEGATIVE_NUMBER.fullmatch(a)), "--")
            param = self._argument_at(given, token) if token.startswith(exc.option_name) else None
            if param is None:
                raise
            name = (param.name or "value").upper()
            numeric = isinstance(param.type, _NumberParamTypeBase) or (
                "positive" in (getattr(param, "help", None) or "")
            )
            typer.echo(
                f"error: {name} must be positive, not {token}"
                if numeric
                else f"error: no such option: {token} (if it is the {name}, put -- before"
                " the arguments)",
                err=True,
            )
            raise typer.Exit(SETTINGS_ERROR) from exc

    def collect_usage_pieces(self, ctx: Context) -> list[str]:
        """The usage line's arguments as the docs, examples and error lines name them,
        `ACCOUNT ASSET` (`[NAME]` if optional): typer 0.28 wrote `{account} {asset}`."""
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if not isinstance(param, TyperArgument):
                pieces.extend(param.get_usage_pieces(ctx))
                continue
            var = param.metavar or (param.name or "value").upper()
            var = var if param.required or var.startswith("[") else f"[{var}]"
            pieces.append(var + ("..." if param.nargs != 1 else ""))
        return pieces

    def _argument_at(self, args: list[str], token: str) -> TyperArgument | None:
        """The positional argument `token` stands in the place of in `args`, if any."""
        takes_value = {
            opt: not (p.is_flag or p.count)
            for p in self.params
            if isinstance(p, TyperOption)
            for opt in (*p.opts, *p.secondary_opts)
        }
        position = 0
        rest = iter(args)
        for arg in rest:
            if arg == token:
                break
            if arg.startswith("-") and len(arg) > 1:
                if "=" not in arg and takes_value.get(arg):
                    next(rest, None)
                continue
            position += 1
        for p in self.params:
            if not isinstance(p, TyperArgument):
                continue
            if p.nargs < 0 or position < p.nargs:
                return p
            position -= p.nargs
        return None


def _add_data_dir_option(typer_app: typer.Typer) -> None:
    """`--data-dir` on every command of `typer_app` and its groups that has none, and
    `Command` as every command's class."""
    for info in typer_app.registered_commands:
        if info.callback is not None:
            info.callback = _with_data_dir(info.callback)
        if info.cls in (None, TyperCommand):  # typer's default
            info.cls = Command
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _add_data_dir_option(group.typer_instance)


_register_packages()
_add_data_dir_option(app)


def _interrupt_exit(exc: SystemExit) -> bool:
    """Whether `exc` is typer's exit for a Ctrl-C during a command (it turns the
    KeyboardInterrupt into a silent exit 130)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def main() -> None:
    from deploy.cli_entry import interrupted

    # Before: a Ctrl-C exited 130 without a word. What a command had sent stays on the
    # log; a rebuild leaves the live projection as it was.
    try:
        app()
    except KeyboardInterrupt:
        interrupted()
    except SystemExit as exc:
        if _interrupt_exit(exc):
            interrupted()
        raise
    except SettingsError as exc:  # a command that loaded them itself, after an override
        typer.echo(f"error: {exc}", err=True)
        sys.exit(SETTINGS_ERROR)
