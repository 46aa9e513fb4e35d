"""`tradetape signer keygen|dkg` and `tradetape sign FILE`."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Annotated

import typer

signer_app = typer.Typer(help="Threshold (FROST k-of-n) signer groups.", no_args_is_help=True)


def _key_dir(out: Path | None) -> Path:
    from deploy.settings import get_settings

    return out or get_settings().resolved_data_dir / "signers"


@signer_app.command("keygen")
def keygen(
    threshold: Annotated[
        int, typer.Option("--threshold", "-t", help="Signatures need this many signers")
    ] = 2,
    signers: Annotated[int, typer.Option("--signers", "-n", help="Number of key shares")] = 3,
    out: Annotated[
        Path | None, typer.Option("--out", help="Key directory (default <data>/signers)")
    ] = None,
) -> None:
    """Trusted-dealer keygen: one encrypted key file per participant plus group.json.

    Passphrases come from TRADETAPE_SIGNER_PASSPHRASE_<id>, TRADETAPE_SIGNER_PASSPHRASE
    or the file named by TRADETAPE_SIGNER_PASSPHRASE_FILE.
    """
    from signer_ffi.ceremony import dealer_keygen
    from signer_ffi.group import PassphraseMissingError

    directory = _key_dir(out)
    try:
        group = dealer_keygen(threshold, signers, directory)
    except (PassphraseMissingError, ValueError) as exc:
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
    threshold: Annotated[int, typer.Option("--threshold", "-t")] = 2,
    signers: Annotated[int, typer.Option("--signers", "-n")] = 3,
    out: Annotated[Path | None, typer.Option("--out")] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the others")
    ] = 120.0,
) -> None:
    """Distributed key generation over Kafka; run once per participant, concurrently."""
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
        Path | None, typer.Option("--key-dir", help="Directory holding group.json")
    ] = None,
    purpose: Annotated[
        str, typer.Option("--purpose", help="Recorded with the signing event")
    ] = "file",
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the signers")
    ] = 10.0,
) -> None:
    """Sign a file's SHA-256 with the live signer processes (k of n); prints JSON."""
    from deploy.settings import get_settings
    from signer_ffi.coordinator import SigningFailedError, file_digest, sign_message
    from signer_ffi.group import SignerGroup

    group = SignerGroup.load(_key_dir(key_dir))
    digest = file_digest(file.read_bytes())
    try:
        done = sign_message(
            get_settings(),
            group,
            digest,
            purpose=purpose,
            timeout=timeout,
            request_id=uuid.uuid4().hex,
        )
    except SigningFailedError as exc:
        typer.echo(f"error: signing failed: {exc}", err=True)
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


def register(app: typer.Typer) -> None:
    app.add_typer(signer_app, name="signer")
    app.command("sign")(sign_file)
