"""`tradetape signer keygen|dkg|identity` and `tradetape sign FILE`."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from signer_ffi.group import SignerGroup

signer_app = typer.Typer(help="Threshold (FROST k-of-n) signer groups.", no_args_is_help=True)

AllowedRequesters = Annotated[
    list[str] | None,
    typer.Option(
        "--requester",
        help='Registered producer (`tradetape producer add NAME --accounts ""`) allowed '
        "to request signatures; repeat for several (default signing-coordinator)",
    ),
]
"""`--requester` of keygen and dkg: who goes into group.json's requesters."""


def _key_dir(out: Path | None) -> Path:
    from deploy.settings import get_settings

    return out or get_settings().resolved_data_dir / "signers"


def _load_group(directory: Path) -> SignerGroup:
    """The group in `directory`; a missing or unreadable group.json is an `error:` line
    and exit 1 (it was a FileNotFoundError or JSONDecodeError traceback in `sign`)."""
    from signer_ffi.errors import SignerError
    from signer_ffi.group import GROUP_FILE, SignerGroup

    try:
        return SignerGroup.load(directory)
    except FileNotFoundError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except OSError as exc:
        typer.echo(f"error: cannot read {directory / GROUP_FILE}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from exc
    except (ValueError, KeyError, TypeError, SignerError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        typer.echo(f"error: {directory / GROUP_FILE} is not a valid group file: {what}", err=True)
        raise typer.Exit(1) from exc


def _missing_passphrases(signers: int) -> list[int]:
    """The participants (1..signers) no passphrase source covers."""
    from signer_ffi.group import PassphraseMissingError, passphrase_for

    missing = []
    for i in range(1, signers + 1):
        try:
            found = passphrase_for(i)
        except PassphraseMissingError:
            missing.append(i)
            continue
        except OSError:
            return []  # an unreadable passphrase file: keygen's own error says so
        found[:] = b"\x00" * len(found)
    return missing


@signer_app.command("keygen")
def keygen(
    threshold: Annotated[
        int, typer.Option("--threshold", "-t", help="Signatures need this many signers")
    ] = 2,
    signers: Annotated[int, typer.Option("--signers", "-n", help="Number of key shares")] = 3,
    out: Annotated[
        Path | None, typer.Option("--out", help="Key directory (default <data>/signers)")
    ] = None,
    requester: AllowedRequesters = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Replace a key directory that already holds a group (deletes it)"
        ),
    ] = False,
) -> None:
    """Trusted-dealer keygen: encrypted key shares and identity keys, plus group.json.

    Each participant gets its key share and an Ed25519 identity key (which signs its round messages), both encrypted with its passphrase. group.json lists the identity keys and the allowed requesters.

    Passphrases come from TRADETAPE_SIGNER_PASSPHRASE_<id>, TRADETAPE_SIGNER_PASSPHRASE or the file named by TRADETAPE_SIGNER_PASSPHRASE_FILE. A directory that already holds a group is refused unless --force.

    Example (with TRADETAPE_SIGNER_PASSPHRASE set): tradetape signer keygen --threshold 2 --signers 3; then `tradetape run signer --id I` for each
    """
    from signer_ffi.ceremony import dealer_keygen
    from signer_ffi.group import PassphraseMissingError

    directory = _key_dir(out)
    if signers >= 1 and (missing := _missing_passphrases(signers)):
        from signer_ffi.group import PASSPHRASE_ENV, PASSPHRASE_FILE_ENV

        typer.echo(
            f"error: no passphrase for participant{'s' if len(missing) > 1 else ''} "
            f"{', '.join(map(str, missing))}: set "
            f"{', '.join(f'{PASSPHRASE_ENV}_{i}' for i in missing)} (one per participant), "
            f"or {PASSPHRASE_ENV} or {PASSPHRASE_FILE_ENV} (one for all)",
            err=True,
        )
        raise typer.Exit(1)
    try:
        group = dealer_keygen(threshold, signers, directory, _requesters(requester), force=force)
    except (PassphraseMissingError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(
        f"{threshold}-of-{signers} group in {directory}; group key {group.verifying_key.hex()}"
    )


@signer_app.command("dkg")
def dkg(
    identifier: Annotated[int, typer.Option("--id", help="This participant's identifier (1..n)")],
    ceremony: Annotated[
        str, typer.Option("--ceremony", help="Ceremony id shared by all participants")
    ],
    threshold: Annotated[
        int,
        typer.Option(
            "--threshold", "-t", help="Signatures need this many signers (the same for all)"
        ),
    ] = 2,
    signers: Annotated[
        int,
        typer.Option("--signers", "-n", help="Number of participants (the same for all)"),
    ] = 3,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Where this participant's key share and group.json go (default <data>/signers)",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the others")
    ] = 120.0,
    requester: AllowedRequesters = None,
) -> None:
    """Distributed key generation over Kafka; run once per participant, concurrently.

    No dealer ever holds the whole key. Each participant's passphrase comes as for `signer keygen`.

    Example (three terminals, ids 1, 2 and 3): tradetape signer dkg --id 1 --ceremony 2026-12-ceremony -t 2 -n 3
    """
    from deploy.settings import get_settings
    from signer_ffi.ceremony import CeremonyError, run_dkg_participant

    try:
        group = run_dkg_participant(
            get_settings(),
            ceremony_id=ceremony,
            identifier=identifier,
            signers=signers,
            threshold=threshold,
            out_dir=_key_dir(out),
            timeout=timeout,
            echo=lambda m: typer.echo(m, err=True),
            requesters=_requesters(requester),
        )
    except CeremonyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"participant {identifier}: group key {group.verifying_key.hex()}")


def sign_file(
    file: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, help="File whose SHA-256 digest is signed"),
    ],
    key_dir: Annotated[
        Path | None,
        typer.Option("--key-dir", help="Directory holding group.json (default <data>/signers)"),
    ] = None,
    purpose: Annotated[
        str, typer.Option("--purpose", help="Recorded with the signing event")
    ] = "file",
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the signers")
    ] = 10.0,
    requester: Annotated[
        str,
        typer.Option(
            "--requester",
            help="Registered producer whose key signs the request; it must be in the "
            "group's requesters",
        ),
    ] = "signing-coordinator",
    requester_key: Annotated[
        Path | None,
        typer.Option(
            "--requester-key",
            help="Its private key file (default <data>/keys/<requester>.ed25519, where "
            "`tradetape producer add` writes it)",
        ),
    ] = None,
    artefact: Annotated[
        str | None,
        typer.Option(
            "--artefact",
            help="The file's path in the artefact store, for signers that recompute the "
            "digest (TRADETAPE_SIGNER_ARTEFACT_ROOT); without it, none is named and such "
            "signers refuse",
        ),
    ] = None,
) -> None:
    """Sign a file's SHA-256 with the live signer processes (k of n); prints JSON.

    The request and the signing package are signed with the requester's registered key: run `tradetape producer add signing-coordinator --accounts ""` once, with the engine running. Participants refuse unsigned or unregistered requesters, and each signs only a package whose message is this digest.

    Example (with `tradetape run signer --id I` running for at least k signers): tradetape sign report.xml --purpose iso20022-auth016
    """
    from confluent_kafka import KafkaException

    from deploy.settings import get_settings
    from signer_ffi.coordinator import (
        SigningFailedError,
        file_digest,
        load_requester,
        sign_message,
    )
    from signer_ffi.errors import SignerError

    settings = get_settings()
    group = _load_group(_key_dir(key_dir))
    if requester not in group.requesters:
        typer.echo(
            f"error: {requester!r} is not among the group's requesters {list(group.requesters)}",
            err=True,
        )
        raise typer.Exit(2)
    try:
        who = load_requester(settings, requester, requester_key)
    except (OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    digest = file_digest(file.read_bytes())
    from deploy.kafka import broker_unreachable

    if (why := broker_unreachable(settings)) is not None:  # at once, not a KafkaError later
        typer.echo(f"error: nothing signed: {why}", err=True)
        raise typer.Exit(1)
    try:
        done = sign_message(
            settings,
            group,
            digest,
            purpose=purpose,
            requester=who,
            timeout=timeout,
            request_id=uuid.uuid4().hex,
            artefact=artefact,
        )
    except SigningFailedError as exc:
        typer.echo(f"error: signing failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    except (SignerError, KafkaException, RuntimeError, OSError) as exc:
        typer.echo(f"error: signing failed: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from exc
    p = done.payload
    typer.echo(
        json.dumps(
            {
                "request_id": p.request_id,
                "digest_sha256": p.digest_hex,
                "participants": list(p.participants),
                "group_public_key": p.group_public_key,
                "signature": p.signature_hex,
            },
            sort_keys=True,
        )
    )


@signer_app.command("identity")
def identity(
    identifier: Annotated[int, typer.Option("--id", help="The participant's identifier")],
    key_dir: Annotated[
        Path | None,
        typer.Option(
            "--key-dir",
            help="Directory with its key file and group.json (default <data>/signers)",
        ),
    ] = None,
) -> None:
    """Create a participant's identity key (for groups made before identity keys).

    The key is written encrypted next to the key share (same passphrase); its public half is added to this group.json and printed. Copy it into every group.json of the group: the coordinator refuses commitments and shares it cannot verify.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from signer_ffi.authn import identity_file, public_hex, write_identity
    from signer_ffi.group import PassphraseMissingError, SignerGroup, load_share, passphrase_for
    from signer_ffi.keyfile import KeyFileError

    directory = _key_dir(key_dir)
    if identity_file(directory, identifier).exists():
        typer.echo(f"error: {identity_file(directory, identifier)} already exists", err=True)
        raise typer.Exit(1)
    group = _load_group(directory)
    try:
        load_share(directory, identifier).wipe()  # proves the passphrase first
        passphrase = passphrase_for(identifier)
    except (PassphraseMissingError, KeyFileError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    key = Ed25519PrivateKey.generate()
    try:
        write_identity(directory, identifier, key, passphrase)
    finally:
        passphrase[:] = b"\x00" * len(passphrase)
    keys = {**group.identity_keys, identifier: public_hex(key)}
    SignerGroup(
        threshold=group.threshold,
        identifiers=group.identifiers,
        public_key_package=group.public_key_package,
        identity_keys=keys,
        requesters=group.requesters,
    ).save(directory)
    typer.echo(json.dumps({"participant": identifier, "identity_key": public_hex(key)}))


def _requesters(given: list[str] | None) -> tuple[str, ...]:
    from signer_ffi.authn import DEFAULT_REQUESTER

    return tuple(given) if given else (DEFAULT_REQUESTER,)


def register(app: typer.Typer) -> None:
    app.add_typer(signer_app, name="signer")
    app.command("sign")(sign_file)
