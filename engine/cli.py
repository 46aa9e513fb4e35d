"""Engine commands: producers, publishing, market data and admin helpers.

Heavy imports happen inside the commands so `tradetape --help` stays fast.
"""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from deploy.settings import Settings

ADMIN = "admin"
ADMIN_WAIT = {"seconds": 30.0}
"""How long an admin command (and `producer add`, `revoke`, `rotate`) waits for the
engine's answer (`tradetape admin --wait S ...`; the producer commands take no --wait)."""


STALE_ATTEMPTS = 3
"""How many times an admin command is sent when the engine refuses it as decided on a
possibly stale view (`engine.control.STALE_ADMIN_PREFIX`): such a refusal has no effect,
and the view catches up within a batch or two."""
STALE_BACKOFF_SECONDS = 0.5


def _settings() -> Any:
    from deploy.settings import get_settings

    return get_settings()


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _need_broker(settings: Settings) -> None:
    """Exit 1 at once, before anything is sent, if no bootstrap broker answers: a Kafka
    producer retries an absent broker until its records time out (`marketdata load` and
    `simulate` printed a minute of connection failures, then `N records not acknowledged
    by the broker within 60 s`)."""
    from deploy.kafka import broker_unreachable

    if (why := broker_unreachable(settings)) is not None:
        _fail(f"nothing sent: {why}")


def _producer_key_path(name: str) -> Path:
    """The producer's key file in the data directory; a malformed name is a usage error."""
    from engine import auth

    try:
        auth.check_producer_id(name)
    except ValueError as exc:
        _fail(str(exc), 2)
    return auth.key_path(_settings().resolved_data_dir, name)


def _build(make: Any) -> Any:
    """A payload built from command-line values; a validation error is an `error:` line."""
    from pydantic import ValidationError

    try:
        return make()
    except ValidationError as exc:
        why = "; ".join(
            f"{'.'.join(str(x) for x in e.get('loc', ())) or 'value'}: {e.get('msg', '')}"
            for e in exc.errors(include_url=False)
        )
        _fail(why[:2000], 2)
    except (ValueError, ArithmeticError) as exc:
        _fail(str(exc)[:2000], 2)


def _publish_admin(payload: Any, *, refused: Any = None) -> Any:
    """Publish one admin command and wait for the engine's answer: the accepted fact
    (printed as `accepted: ...` on stderr) or `AdminCommandRejected`. Exits 1 with an
    `error:` line when the broker did not take the command, the engine rejected it, or
    no answer came within the wait (the command is then on the log, to be decided when
    an engine reads it). A refusal only for a possibly stale view (`STALE_STATE: ...`,
    no effect) is answered by sending the command again, as a new command, up to
    `STALE_ATTEMPTS` times. `refused()`, if given, runs first when the command certainly
    takes no effect (not sent, or rejected), never when its fate is unknown."""
    from confluent_kafka import KafkaException

    from deploy.kafka import broker_unreachable
    from engine.client import IntentPublisher
    from engine.control import STALE_ADMIN_PREFIX

    wait = ADMIN_WAIT["seconds"]
    what = payload.EVENT_TYPE
    settings = _settings()
    if (why := broker_unreachable(settings)) is not None:  # at once, not after 10 s of retries
        if refused is not None:
            refused()
        _fail(f"{what} not sent: {why}")
    try:
        pub = IntentPublisher(settings, ADMIN)  # its watcher reads from the end: now
    except (KafkaException, RuntimeError) as exc:
        if refused is not None:
            refused()
        _fail(f"{what} not sent: cannot read the engine's answers from the broker: {exc}")
    try:
        for attempt in range(1, STALE_ATTEMPTS + 1):
            event = pub.publish(payload, admin=True)
            what = f"{event.event_type} {event.event_id}"
            if pub.flush(wait) or pub.undelivered:
                why = (
                    pub.delivery_errors[0]
                    if pub.delivery_errors
                    else f"no acknowledgement in {wait:g} s"
                )
                _fail(f"{what} not delivered to the broker: {why}")
            answer = pub.await_decision(event.correlation_id, wait)
            if (
                answer is None
                or answer.event_type != "AdminCommandRejected"
                or not answer.payload.reason.startswith(STALE_ADMIN_PREFIX)
                or attempt == STALE_ATTEMPTS
            ):
                break
            # Refused unseen (no effect), only because the engine's view of the control
            # topics may have been behind: what an operator would do is send it again.
            typer.echo(
                f"note: the engine refused {what} as stale ({answer.payload.reason}); "
                f"sending it again (attempt {attempt + 1} of {STALE_ATTEMPTS})",
                err=True,
            )
            time.sleep(STALE_BACKOFF_SECONDS * attempt)
    finally:
        pub.close()
    if answer is None:
        _fail(
            f"no answer from the engine to {what} within {wait:g} s (is an engine running? "
            "the command is on the log and is decided when an engine reads it)"
        )
    if answer.event_type == "AdminCommandRejected":
        if refused is not None:
            refused()
        _fail(f"the engine rejected {what}: {answer.payload.reason}")
    typer.echo(f"accepted: {what}", err=True)
    return event


def _event_types(text: str) -> set[str]:
    """The `event_type`s a JSONL file's readable lines name (`publish` reads the rest
    again, line by line, and reports the ones it cannot)."""
    found: set[str] = set()
    for line in text.splitlines():
        try:
            raw = json.loads(line)
        except ValueError:
            continue
        if isinstance(raw, dict) and isinstance(raw.get("event_type"), str):
            found.add(raw["event_type"])
    return found


def _why_skipped(exc: Exception) -> str:
    """A bad line's reason on one line: a validation error as `field: message; ...`
    (pydantic's own text took three lines a field, each with a web address)."""
    from pydantic import ValidationError

    from schemas.errors import UnknownEventTypeError

    if isinstance(exc, UnknownEventTypeError):
        # not "malformed event at None[None]@None: ...": a line has no topic coordinates
        return f"{exc.reason} (docs/events.md lists the event types)"
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON ({exc})"
    if not isinstance(exc, ValidationError):
        return str(exc)
    fields = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(payload)'}: {err['msg']}"
        for err in exc.errors(include_url=False)
    )
    return f"not a valid {exc.title}: {fields}"


def _line_list(lines: list[int], most: int = 50) -> str:
    """`3, 5, 9` (the first `most`, then `and N more`)."""
    shown = ", ".join(str(n) for n in lines[:most])
    return shown if len(lines) <= most else f"{shown} and {len(lines) - most} more"


def _check_instrument(value: str, option: str) -> None:
    from pydantic import TypeAdapter, ValidationError

    from schemas.types import Instrument

    try:
        TypeAdapter(Instrument).validate_python(value)
    except ValidationError:
        _fail(f"{option} {value!r}: expected BASE/QUOTE in capitals, e.g. BTC/USDC", 2)


HELP_LOAD = (
    "Replay a raw Binance capture (trade + bookTicker) onto the market-data topic.\n\n"
    "Each malformed line becomes a dead letter with its reason. Prints a JSON report; "
    "exits 1 if no broker answers (nothing is sent), if the file could not be read to its "
    "end (`file corrupt after line N`), if no line of it is a trade or bookTicker message "
    "(the wrong file), or if any record was not delivered (the report's `not_delivered`).\n\n"
    "Example: tradetape marketdata load capture.jsonl.gz --instrument BTC/USDC "
    "--as-fast-as-possible"
)
HELP_SIMULATE = (
    "Publish a seeded synthetic stream of quotes and trades (5 quotes a second).\n\n"
    "The same --seed and --start give the same payloads. Exits 1 if no broker answers "
    "(nothing is sent) or if any record was not delivered.\n\n"
    "Example: tradetape marketdata simulate --symbol BTC/USDC --minutes 0.5"
)
HELP_ADD = (
    "Create a keypair (private key 0600 in <data_dir>/keys/NAME.ed25519) and register the "
    "producer.\n\nWaits up to 30 s for the engine to accept the registration (exit 1 if "
    "it does not). An existing key file is reused.\n\n"
    "Example: tradetape producer add alpha --accounts ACC1,ACC2"
)


HELP_REVOKE = (
    "Revoke a producer's key at once (ProducerRevoked).\n\n"
    "The engine then rejects its intents (PRODUCER_REVOKED) and cancels every open order it "
    "placed, on every account. Decided even when the engine's view of the control topics "
    "is stale (it only stops trading). The key file stays: `producer rotate` names the "
    "revoked key to bring the producer back with a new one. Waits for the engine's answer "
    "like `admin` (exit 1 on a rejection or none).\n\n"
    'Example: tradetape producer revoke alpha --reason "key leaked"'
)
HELP_ROTATE = (
    "Give a producer a new keypair (ProducerKeyRotated); its accounts stay.\n\n"
    "The new private key is written 0600 to <data_dir>/keys/NAME.ed25519.next, the "
    "command names the current key (the key file's, or --previous-key) and, once the "
    "engine accepts it, the new key replaces the key file; the old key stops working when "
    "the engine has folded the rotation. A revoked producer comes back with the new key. "
    "On a rejection the .next file is removed; with no answer it is kept (the command may "
    "still be decided) and the key file is left as it was.\n\n"
    "Example: tradetape producer rotate alpha"
)


def register(app: typer.Typer) -> None:
    producer_app = typer.Typer(help="Strategy producers and their Ed25519 keys.")
    marketdata_app = typer.Typer(help="Feed the market-data topic.")
    admin_app = typer.Typer(help="Admin commands, published on admin.commands.")
    app.add_typer(producer_app, name="producer")
    app.add_typer(marketdata_app, name="marketdata")
    app.add_typer(admin_app, name="admin")

    @admin_app.callback()
    def admin_options(
        wait: Annotated[
            float,  # seconds, not money
            typer.Option(
                "--wait",
                help="Seconds to wait for the engine's answer; exit 1 if none comes, "
                "if the engine rejects the command, or if the broker did not take it.",
            ),
        ] = 30.0,
    ) -> None:
        """Admin commands, published on admin.commands; each waits for the engine's answer."""
        if not (math.isfinite(wait) and wait > 0):
            _fail("--wait must be a positive number of seconds", 2)
        ADMIN_WAIT["seconds"] = wait

    @producer_app.command("add", help=HELP_ADD)
    def producer_add(
        name: Annotated[
            str,
            typer.Argument(
                help="The producer id (the strategy's publisher; 1-64 letters, digits, _.:-)"
            ),
        ],
        accounts: Annotated[str, typer.Option("--accounts", help='A1,A2,... ("" for none)')],
    ) -> None:
        from engine import auth
        from schemas.events import ProducerRegistered

        path = _producer_key_path(name)
        existing = path.exists()
        if existing:
            try:
                key = auth.read_private_key(path)
            except (OSError, ValueError) as exc:
                _fail(f"cannot read the existing key file {path}: {exc}")
        else:
            key, _ = auth.new_keypair()
        accs = tuple(a.strip() for a in accounts.split(",") if a.strip())
        payload = _build(
            lambda: ProducerRegistered(
                producer_id=name,
                public_key=auth.public_hex(key),
                accounts=accs,
                registered_by=ADMIN,
            )
        )
        if existing:
            typer.echo(f"reusing the existing key in {path}", err=True)
        else:
            try:
                auth.write_private_key(path, key, exclusive=True)
            except FileExistsError:
                _fail(f"{path} appeared meanwhile (another producer add?); run it again")
            except OSError as exc:
                _fail(f"cannot write the key file {path}: {exc}")
        _publish_admin(payload)
        typer.echo(
            json.dumps(
                {
                    "producer": name,
                    "public_key": auth.public_hex(key),
                    "accounts": list(accs),
                    "key_file": str(path),
                }
            )
        )

    @producer_app.command("revoke", help=HELP_REVOKE)
    def producer_revoke(
        name: Annotated[str, typer.Argument(help="The producer id to revoke")],
        reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the fact)")] = "",
    ) -> None:
        from schemas.events import ProducerRevoked

        _producer_key_path(name)  # checks the name (usage error: exit 2)
        payload = _build(lambda: ProducerRevoked(producer_id=name, reason=reason, revoked_by=ADMIN))
        event = _publish_admin(payload)
        typer.echo(
            json.dumps(
                {
                    "producer": name,
                    "revoked": True,
                    "reason": reason,
                    "event_id": str(event.event_id),
                }
            )
        )

    @producer_app.command("rotate", help=HELP_ROTATE)
    def producer_rotate(
        name: Annotated[str, typer.Argument(help="The producer id whose key is replaced")],
        previous_key: Annotated[
            str | None,
            typer.Option(
                "--previous-key",
                help="The current public key (hex), if its key file is not in the data directory "
                "(default: the key file's, <data>/keys/NAME.ed25519)",
            ),
        ] = None,
    ) -> None:
        import os

        from engine import auth
        from schemas.events import ProducerKeyRotated

        path = _producer_key_path(name)
        if previous_key is None:
            try:
                previous_key = auth.public_hex(auth.read_private_key(path))
            except (OSError, ValueError) as exc:
                _fail(
                    f"cannot read the current key file {path} ({exc}); name the current "
                    "public key with --previous-key",
                    2,
                )
        key, public = auth.new_keypair()
        old = previous_key
        payload = _build(
            lambda: ProducerKeyRotated(
                producer_id=name, public_key=public, previous_key=old, rotated_by=ADMIN
            )
        )
        pending = path.with_name(path.name + ".next")
        try:
            auth.write_private_key(pending, key, exclusive=True)
        except FileExistsError:
            _fail(
                f"{pending} exists: an earlier rotation got no answer (it may still be "
                "decided); check `tradetape query producers`, then move it into place or remove it"
            )
        except OSError as exc:
            _fail(f"cannot write the key file {pending}: {exc}")
        _publish_admin(payload, refused=lambda: pending.unlink(missing_ok=True))
        try:
            os.replace(pending, path)
        except OSError as exc:
            _fail(f"the rotation is accepted but {pending} could not replace {path}: {exc}")
        typer.echo(
            json.dumps(
                {
                    "producer": name,
                    "public_key": public,
                    "previous_key": old,
                    "key_file": str(path),
                }
            )
        )

    @app.command("publish")
    def publish(
        file: Annotated[
            Path,
            typer.Argument(
                help="JSONL file: one event a line (docs/examples/intents.jsonl is one)"
            ),
        ],
        wait: Annotated[
            float,  # seconds, not money
            typer.Option(
                help="Seconds to wait for answers: those an admin command must follow (the"
                " lines after are not sent without them), then the rest's at the end; exit 1"
                " if one is missing"
            ),
        ] = 30.0,
    ) -> None:
        """Publish each JSONL line (an intent or an admin command) and print the decisions.

        A line is `{"event_type": "OrderIntent", "payload": {...}}` or just the payload with an `event_type` field. Intents are signed with their producer's key file (<data_dir>/keys/PRODUCER.ed25519, written by `producer add`).

        Example: tradetape publish docs/examples/intents.jsonl (README.md, A first publish; run it with `tradetape run` going)

        Exits 1 if the file has no lines, if any line could not be read or signed, an event was not delivered to the broker, or one got no answer within --wait (`"answer": null`; an `error:` line names their lines).

        An admin command is sent once the lines before it are answered, and the lines after it once it is: if such an answer does not come within --wait, the lines from there on are not sent (their order could not be kept; exit 1). Intents' answers are awaited at the end, together, for at most --wait.
        """
        from confluent_kafka import KafkaException

        from engine.client import (
            DecisionWatcher,
            IntentPublisher,
            admin_answer_topics,
            intent_key,
        )
        from schemas.events.admin import ADMIN_COMMAND_TYPES
        from schemas.registry import payload_class

        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"cannot read {file}: {exc}")
        if not text.strip():
            # an empty file (a generator that failed, a wrong redirect) was published as
            # nothing, silently, with exit 0
            _fail(f"nothing to publish: {file} has no lines")
        settings = _settings()
        from deploy.kafka import broker_unreachable

        if (why := broker_unreachable(settings)) is not None:  # at once, not after 10 s
            _fail(f"nothing sent: {why}")
        # Only the answers to this file's events are held (not every producer's).
        wanted: set[Any] = set()
        try:
            watcher = DecisionWatcher(
                settings,
                capacity=max(1, len(text.splitlines())),
                keep=lambda cid, key: cid in wanted or (key is not None and key in wanted),
                # An accepted DetectorConfigChanged answers on surveillance.config, which
                # only an admin reads: read it when the file has one (a strategy's file
                # of intents still needs only what a strategy may read).
                topics=admin_answer_topics(_event_types(text)),
            )
        except (KafkaException, RuntimeError) as exc:
            _fail(f"nothing sent: cannot read the engine's answers from the broker: {exc}")
        publishers: dict[str, IntentPublisher] = {}
        sent: list[Any] = []
        line_of: dict[Any, int] = {}
        answers: dict[Any, Any] = {}
        bad_lines: list[int] = []
        unsent: list[int] = []
        """Lines not sent because an answer an admin command must follow did not come."""

        def answer_of(event: Any, timeout: float) -> Any:  # seconds, not money
            # A resent intent (a new envelope) is answered with the original decision,
            # under the original's correlation id: matched by the intent's key and digest.
            # A copy of it sent elsewhere by someone else is refused under its correlation
            # id: only a refusal of the record the broker acknowledged for it answers.
            pub = publishers.get(event.producer)
            records = None if pub is None else pub.records_of(event.correlation_id)
            return watcher.wait(
                event.correlation_id, timeout, intent=intent_key(event), records=records
            )

        def await_answers(events: list[Any]) -> list[int]:
            """Answers to `events` not answered yet, at most --wait in all for them (not
            --wait each: with no engine running a 1,000-line file took hours); the lines
            still without one."""
            deadline = time.monotonic() + wait
            drained = False
            missing: list[int] = []
            for ev in events:
                if answers.get(ev.event_id) is not None:
                    continue
                left = deadline - time.monotonic()
                if left <= 0 and not drained:
                    for _ in range(50):  # what already came, without waiting for more
                        if not watcher.pump(0.2):
                            break
                    drained = True
                answers[ev.event_id] = got = answer_of(ev, max(0.0, left))
                if got is None:
                    missing.append(line_of[ev.event_id])
            return missing

        lines = text.splitlines()
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                if not isinstance(raw, dict):
                    raise ValueError(f"not a JSON object but a JSON {type(raw).__name__}")
                etype = raw.get("event_type")
                if not isinstance(etype, str):
                    raise ValueError('no "event_type" (`{"event_type": ..., "payload": {...}}`)')
                body = raw.get("payload", {k: v for k, v in raw.items() if k != "event_type"})
                cls = payload_class(etype, int(raw.get("schema_version", 1)))
                payload = cls.model_validate(body)
            except Exception as exc:  # a bad line is reported, the rest still go out
                typer.echo(f"error: line {n}: skipped: {_why_skipped(exc)}", err=True)
                bad_lines.append(n)
                continue
            is_admin = etype in ADMIN_COMMAND_TYPES
            who = ADMIN if is_admin else str(getattr(payload, "producer_id", ADMIN))
            pub = publishers.get(who)
            if pub is None:
                try:
                    pub = IntentPublisher(settings, who, watch=False, keep_records=len(lines))
                except (ValueError, OSError) as exc:  # a damaged or unreadable key file
                    typer.echo(f"error: line {n}: {exc}", err=True)
                    bad_lines.append(n)
                    continue
                publishers[who] = pub
            if is_admin:
                # Intents sent before an admin command are decided before it applies...
                for other in publishers.values():
                    other.flush()
                missing = await_answers(sent)
                if missing:  # fail closed: the file's order cannot be kept
                    unsent = [k for k in range(n, len(lines) + 1) if lines[k - 1].strip()]
                    typer.echo(
                        f"error: lines {_line_list(unsent)} not sent: an admin command (line "
                        f"{n}) must follow the answers to the lines before it, and lines "
                        f"{_line_list(missing)} got none within {wait:g} s (is an engine "
                        "running?)",
                        err=True,
                    )
                    break
            try:
                event = pub.publish(payload, admin=is_admin)
            except (ValueError, KafkaException) as exc:
                typer.echo(f"error: line {n}: {exc}", err=True)
                bad_lines.append(n)
                continue
            # (the watcher reads only inside `wait`, after this)
            wanted.add(event.correlation_id)
            if (key := intent_key(event)) is not None:
                wanted.add(key)
            sent.append(event)
            line_of[event.event_id] = n
            if is_admin:
                # ...and it takes effect before the lines after it are sent.
                pub.flush()
                if await_answers([event]):
                    unsent = [k for k in range(n + 1, len(lines) + 1) if lines[k - 1].strip()]
                    if unsent:
                        typer.echo(
                            f"error: lines {_line_list(unsent)} not sent: the admin command "
                            f"on line {n} got no answer within {wait:g} s, and they must "
                            "follow it (is an engine running?)",
                            err=True,
                        )
                    break
        undelivered = 0
        for pub in publishers.values():
            pub.close()
            undelivered += pub.undelivered
            for err in pub.delivery_errors[:3]:
                typer.echo(f"error: not delivered: {err}", err=True)
        unanswered: list[int] = []
        await_answers(sent)  # one last --wait for every answer still missing
        for event in sent:
            answer = answers.get(event.event_id)
            if answer is None:
                unanswered.append(line_of[event.event_id])
            p = None if answer is None else answer.payload
            typer.echo(
                json.dumps(
                    {
                        "line_event": event.event_type,
                        "event_id": str(event.event_id),
                        "answer": None if answer is None else answer.event_type,
                        "answer_event_id": None if answer is None else str(answer.event_id),
                        "outcome": None
                        if p is None
                        else (
                            "ACCEPTED"
                            if answer is not None
                            and answer.producer == "engine"
                            and answer.event_type == event.event_type
                            else getattr(p, "outcome", None) or getattr(p, "reason", None)
                        ),
                        "reasons": list(getattr(p, "reason_codes", ()) or []),
                    },
                    default=str,
                )
            )
        watcher.close()
        if undelivered:
            typer.echo(
                f"error: {undelivered} of {len(sent)} events were not delivered to the broker",
                err=True,
            )
        if unanswered:
            typer.echo(
                f"error: no answer from the engine within {wait:g} s to {len(unanswered)} of "
                f"{len(sent)} events, on lines {_line_list(unanswered)} (is an engine running? "
                "what was delivered is on the log and is decided when an engine reads it)",
                err=True,
            )
        if bad_lines:
            typer.echo(
                f"error: {len(bad_lines)} line{'s were' if len(bad_lines) > 1 else ' was'}"
                f" not published: line{'s' if len(bad_lines) > 1 else ''} {_line_list(bad_lines)}",
                err=True,
            )
        if undelivered or unanswered or bad_lines or unsent:
            raise typer.Exit(1)

    @marketdata_app.command("load", help=HELP_LOAD)
    def marketdata_load(
        file: Annotated[
            Path, typer.Argument(help="A capture: `<recv_ns> <json>` per line; .gz ok")
        ],
        speed: Annotated[
            float | None,  # a speed factor, not money
            typer.Option(
                help="Replay speed: 1.0 = real time (the default), 10 = ten times; a gap "
                "between records pauses at most 5 s (a line on stderr says so)"
            ),
        ] = None,
        as_fast_as_possible: Annotated[
            bool, typer.Option("--as-fast-as-possible", help="No pacing (not with --speed)")
        ] = False,
        instrument: Annotated[
            str | None,
            typer.Option(
                help="Publish under this instrument, e.g. BTC/USDC (default: the capture's "
                "own symbol, btcusdt as BTC/USDT)"
            ),
        ] = None,
        limit: Annotated[
            int | None, typer.Option(help="Only the first N lines (default: every line)")
        ] = None,
    ) -> None:
        from engine.marketdata.loader import load_capture

        if speed is not None and as_fast_as_possible:
            _fail("give either --speed or --as-fast-as-possible", 2)
        if speed is not None and not (math.isfinite(speed) and speed > 0):
            _fail("--speed must be a positive number (1.0 = real time)", 2)
        if limit is not None and limit < 1:
            _fail("--limit must be at least 1", 2)
        if instrument is not None:
            _check_instrument(instrument, "--instrument")
        try:
            with file.open("rb"):
                pass
        except OSError as exc:
            _fail(f"cannot read {file}: {exc.strerror or exc}")
        from deploy.progress import EVERY_SECONDS, Ticker, clock

        rate = None if as_fast_as_possible else (speed or 1.0)
        settings = _settings()
        _need_broker(settings)
        typer.echo(
            f"marketdata load: replaying {file}"
            + (
                f" paced at {rate:g}x its own time (a capture's minute takes"
                f" {60 / rate:.3g} s; --as-fast-as-possible sends it at once)"
                if rate is not None
                else " as fast as possible"
            )
            + f"; a progress line every {EVERY_SECONDS:g} s",
            err=True,
        )
        ticker = Ticker(
            lambda line, sent, at: (
                f"marketdata load: line {line:,}, {sent:,} records sent, capture time {clock(at)}"
            )
        )
        report = load_capture(
            settings, file, speed=rate, instrument=instrument, limit=limit, progress=ticker
        )
        typer.echo(
            json.dumps(
                {
                    "published": report.published,
                    "dead_letters": report.dead_letters,
                    "not_delivered": report.not_delivered,
                    "counts": report.counts,
                }
            )
        )
        if report.read_error is not None:
            typer.echo(f"error: {report.read_error}", err=True)
        if report.not_delivered:
            typer.echo(
                f"error: {report.not_delivered} records were not delivered to the broker: "
                f"{report.delivery_error}",
                err=True,
            )
        if report.interrupted_after is not None:
            typer.echo(
                f"error: interrupted (Ctrl-C) after line {report.interrupted_after} of {file}:"
                " what was read before is on the log (the report counts what the broker"
                " acknowledged); a load again from the start would publish those records twice",
                err=True,
            )
            raise typer.Exit(130)
        if report.nothing_usable:
            typer.echo(
                f"error: nothing published: no line of {file} is a Binance trade or "
                f"bookTicker message ({report.counts.get('rejected', 0)} rejected, each a "
                f"dead letter; the first: {report.first_rejection}). Is it a capture? "
                "(`<receive time in ns> <combined-stream JSON>` per line, gzip if it ends in .gz)",
                err=True,
            )
        if not report.ok:
            raise typer.Exit(1)

    @marketdata_app.command("simulate", help=HELP_SIMULATE)
    def marketdata_simulate(
        symbol: Annotated[str, typer.Option("--symbol", help="BASE/QUOTE, e.g. BTC/USDC")] = (
            "BTC/USDC"
        ),
        minutes: Annotated[
            float,  # minutes, not money
            typer.Option("--minutes", help="Length of the stream"),
        ] = 5.0,
        seed: Annotated[
            int, typer.Option("--seed", help="Random seed: another seed, another market")
        ] = 1,
        start: Annotated[
            str | None,
            typer.Option(
                "--start",
                help="Exchange time of the first event, ISO 8601 (UTC if no offset); "
                "default: now. The same --seed and --start give the same payloads.",
            ),
        ] = None,
        speed: Annotated[
            float | None,  # a speed factor, not money
            typer.Option(help="1.0 = real time; default: as fast as possible"),
        ] = None,
    ) -> None:
        from engine.marketdata.loader import run_simulation

        _check_instrument(symbol, "--symbol")
        if not (math.isfinite(minutes) and minutes > 0):
            _fail("--minutes must be a positive number", 2)
        if speed is not None and not (math.isfinite(speed) and speed > 0):
            _fail("--speed must be a positive number (1.0 = real time)", 2)
        if start is None:
            at = datetime.now(UTC)
        else:
            try:
                at = datetime.fromisoformat(start)
            except ValueError:
                _fail(f"--start {start!r} is not an ISO 8601 time (e.g. 2026-01-01T00:00:00Z)", 2)
            at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
        from deploy.progress import Ticker, clock, duration

        settings = _settings()
        _need_broker(settings)
        if speed is not None:  # as fast as possible (the default) takes seconds
            typer.echo(
                f"marketdata simulate: {minutes:g} min of {symbol} paced at {speed:g}x real"
                f" time, about {duration(minutes * 60 / speed)}",
                err=True,
            )
        ticker = Ticker(
            lambda n, t: (
                f"marketdata simulate: {n:,} records sent, market time {clock(t)}"
                f" of {clock(minutes * 60)}"
            )
        )
        report = run_simulation(
            settings, symbol, minutes, seed, start=at, speed=speed, progress=ticker
        )
        typer.echo(
            json.dumps(
                {
                    "published": report.published,
                    "not_delivered": report.not_delivered,
                    "symbol": symbol,
                    "seed": seed,
                    "start": at.isoformat(),
                }
            )
        )
        if not report.ok:
            _fail(
                f"{report.not_delivered} records were not delivered to the broker: "
                f"{report.delivery_error}"
            )

    @admin_app.command("open-account")
    def open_account(
        account: Annotated[str, typer.Argument(help="The new account's id, e.g. ACC1")],
        owner: Annotated[
            str,
            typer.Option(help="Beneficial owner's name (a natural person; owner id owner-ACCOUNT)"),
        ],
        country: Annotated[
            str, typer.Option(help="Owner's country, ISO 3166-1 alpha-2 (DE, FR, US, ...)")
        ] = "DE",
        currency: Annotated[
            str, typer.Option(help="Base currency: a permitted stablecoin (USDC, EURC)")
        ] = "USDC",
    ) -> None:
        """Open an account (prints the command's event id once the engine accepted it).

        Before it trades it needs a KYC (`admin kyc`) and a deposit (`admin deposit`), and a producer entitled to it (`producer add NAME --accounts ACCOUNT`).

        Example: tradetape admin open-account ACC1 --owner "Ada Lovelace" --country GB
        """
        from schemas.events import AccountOpened, BeneficialOwner, OwnerKind

        payload = _build(
            lambda: AccountOpened(
                account=account,
                beneficial_owner=BeneficialOwner(
                    owner_id=f"owner-{account}",
                    kind=OwnerKind.NATURAL,
                    name=owner,
                    country=country,
                ),
                base_currency=currency,
            )
        )
        typer.echo(str(_publish_admin(payload).event_id))

    @admin_app.command("kyc")
    def kyc(
        account: Annotated[str, typer.Argument(help="The account id, e.g. ACC1")],
        reference: Annotated[
            str, typer.Option(help="The KYC case or document reference, recorded in the fact")
        ] = "",
    ) -> None:
        """Mark an account's KYC as verified (an account trades only once it is).

        Example: tradetape admin kyc ACC1 --reference case-4711
        """
        from schemas.events import KycVerified

        payload = _build(
            lambda: KycVerified(account=account, verified_by=ADMIN, reference=reference)
        )
        typer.echo(str(_publish_admin(payload).event_id))

    @admin_app.command("deposit")
    def deposit(
        account: Annotated[str, typer.Argument(help="The account id, e.g. ACC1")],
        asset: Annotated[str, typer.Argument(help="The asset credited, e.g. USDC or BTC")],
        amount: Annotated[
            str, typer.Argument(help="A plain positive decimal, e.g. 100000 or 0.5 (not 1e5)")
        ],
        deposit_id: Annotated[
            str,
            typer.Argument(
                help="The deposit's own id (custody reference): the same id again is refused"
                " as already recorded, so a deposit is never credited twice"
            ),
        ],
    ) -> None:
        """Credit a deposit (AMOUNT a plain decimal, e.g. 100000 or 0.5).

        Example: tradetape admin deposit ACC1 USDC 100000 dep-2026-0001
        """
        from schemas.events import DepositReceived

        payload = _build(
            lambda: DepositReceived(
                deposit_id=deposit_id, account=account, asset=asset, amount=amount
            )
        )
        typer.echo(str(_publish_admin(payload).event_id))

    @admin_app.command("aml")
    def aml(
        account: Annotated[str, typer.Argument(help="The account id, e.g. ACC1")],
        flag_id: Annotated[
            str, typer.Argument(help="The flag's id: --clear names the flag raised with it")
        ],
        reason: Annotated[
            str, typer.Option(help="Why (recorded in the fact; with --clear, the note)")
        ] = "",
        clear: Annotated[
            bool, typer.Option("--clear", help="Clear the flag FLAG_ID instead of raising it")
        ] = False,
    ) -> None:
        """Raise an AML flag on an account, or clear it (--clear).

        Raising it cancels the account's open orders, and while it is open the engine refuses every order on the account (AML_FLAG_OPEN).

        Example: tradetape admin aml ACC1 aml-17 --reason "structuring alert"; later: tradetape admin aml ACC1 aml-17 --clear --reason "cleared by MLRO"
        """
        from schemas.events import AmlFlagCleared, AmlFlagRaised

        payload: Any = _build(
            lambda: (
                AmlFlagCleared(account=account, flag_id=flag_id, note=reason, cleared_by=ADMIN)
                if clear
                else AmlFlagRaised(account=account, flag_id=flag_id, reason=reason, raised_by=ADMIN)
            )
        )
        typer.echo(str(_publish_admin(payload).event_id))

    @admin_app.command("kill-switch")
    def kill(
        action: Annotated[str, typer.Argument(help="engage or release")],
        scope: Annotated[
            str, typer.Option(help="An account id, or '*' for every account (quote it)")
        ] = "*",
        reason: Annotated[str, typer.Option(help="Why (recorded in the fact)")] = "manual",
    ) -> None:
        """`engage` or `release` the kill switch for an account or '*' (everything).

        Engaging it cancels the scope's open orders that do not reduce risk, and the engine refuses new risk-increasing orders there until it is released.

        Example: tradetape admin kill-switch engage --scope ACC1 --reason "runaway strategy"
        """
        from schemas.events import KillSwitchEngaged, KillSwitchReleased

        if action not in ("engage", "release"):
            _fail("action must be engage or release", 2)
        payload: Any = _build(
            lambda: (
                KillSwitchEngaged(scope=scope, engaged_by=ADMIN, reason=reason)
                if action == "engage"
                else KillSwitchReleased(scope=scope, released_by=ADMIN, reason=reason)
            )
        )
        typer.echo(str(_publish_admin(payload).event_id))

    @admin_app.command("limits")
    def limits(
        scope: Annotated[
            str, typer.Argument(help="An account id, or '*' for the default of every account")
        ],
        version: Annotated[
            int,
            typer.Argument(
                help="The new config version: higher than the one in force for SCOPE"
                " (`tradetape query risk_config` shows it)"
            ),
        ],
        values: Annotated[
            str,
            typer.Option(
                help="JSON object of RiskLimits fields (max_order_notional, max_position,"
                " max_open_orders, price_collar_pct, drawdown_brake_pct, ...: docs/engine.md,"
                " Risk rules), numbers as strings. The whole set for SCOPE: a field not given"
                " takes its default, not the value in force"
            ),
        ] = "{}",
        reason: Annotated[str, typer.Option(help="Why (recorded in the fact)")] = "",
    ) -> None:
        """Publish new risk limits for an account or '*' with a higher config version.

        Example: tradetape admin limits '*' 2 --values '{"max_position": "5", "max_order_notional": "100000"}' --reason "risk committee 2026-12"
        """
        from schemas.events import RiskLimits, RiskLimitsChanged

        payload = _build(
            lambda: RiskLimitsChanged(
                scope=scope,
                config_version=version,
                limits=RiskLimits.model_validate(json.loads(values)),
                changed_by=ADMIN,
                reason=reason,
            )
        )
        typer.echo(str(_publish_admin(payload).event_id))
