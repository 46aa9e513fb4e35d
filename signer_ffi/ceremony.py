"""Creating a signer group: a trusted dealer, or a distributed key generation over Kafka.

With DKG no machine ever sees the whole key. Round-1 packages are public broadcasts; each
round-2 package is secret to its recipient, so it is sealed on the wire with X25519
(ephemeral keys announced in round 1), HKDF-SHA256 and AES-GCM, bound to the ceremony,
sender and recipient.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from deploy import groups
from deploy.groups import group_id
from deploy.kafka import (
    admin_client,
    consumer_config,
    end_offsets,
    partitions_of,
    producer_config,
)
from deploy.settings import Settings
from schemas import Envelope, decode_message, encode, new_event
from schemas.events import DkgCompleted, DkgRound1Published, DkgRound2Published
from schemas.topics import Topic
from signer_ffi.authn import DEFAULT_REQUESTER, identity_file, public_hex, write_identity
from signer_ffi.errors import SignerError
from signer_ffi.frost import dkg_part1, dkg_part2, dkg_part3, generate_with_dealer
from signer_ffi.group import (
    GROUP_FILE,
    PassphraseMissingError,
    SignerGroup,
    key_file,
    passphrase_for,
)
from signer_ffi.keyfile import write_key_file


class CeremonyError(RuntimeError):
    pass


class KeyDirectoryExistsError(FileExistsError):
    """The key directory already holds a group or key files: keygen would destroy them."""


def _holds_keys(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(
        p.name
        for p in directory.iterdir()
        if p.name == GROUP_FILE or p.name.startswith("participant-")
    )


def dealer_keygen(
    threshold: int,
    signers: int,
    out_dir: Path,
    requesters: tuple[str, ...] = (DEFAULT_REQUESTER,),
    *,
    force: bool = False,
) -> SignerGroup:
    """Trusted-dealer keygen into `out_dir`: group.json plus, per share, its encrypted key
    file and an encrypted Ed25519 identity key (which signs that participant's messages).

    A directory that already holds a group or key files is refused (KeyDirectoryExistsError)
    unless `force`: it may be a live group. Every passphrase is resolved before any key
    exists, and the files are written into a temporary sibling directory that is renamed
    into place only when complete, so a failure leaves `out_dir` as it was. With `force`
    the old directory is replaced as a whole (its files are deleted)."""
    if not 2 <= threshold <= signers:
        raise ValueError("need 2 <= threshold <= signers")
    if not requesters:
        raise ValueError("a group needs at least one allowed requester")
    if (existing := _holds_keys(out_dir)) and not force:
        raise KeyDirectoryExistsError(
            f"{out_dir} already holds {', '.join(existing[:4])}"
            f"{' …' if len(existing) > 4 else ''}: refusing to overwrite a signer group "
            "(use --force to replace it)"
        )
    passphrases: dict[int, bytearray] = {}
    try:
        for i in range(1, signers + 1):
            passphrases[i] = passphrase_for(i)
            if not passphrases[i]:
                raise ValueError(f"the passphrase for participant {i} is empty")
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.keygen-"))
        try:
            group = _dealer_keygen_into(staging, threshold, signers, requesters, passphrases)
            _install_dir(staging, out_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    finally:
        for p in passphrases.values():
            p[:] = b"\x00" * len(p)
    return group


def _dealer_keygen_into(
    directory: Path,
    threshold: int,
    signers: int,
    requesters: tuple[str, ...],
    passphrases: dict[int, bytearray],
) -> SignerGroup:
    shares, public = generate_with_dealer(threshold, signers)
    identities: dict[int, str] = {}
    try:
        for share in shares:
            passphrase = passphrases[share.identifier]
            write_key_file(key_file(directory, share.identifier), share, passphrase)
            identity = Ed25519PrivateKey.generate()
            write_identity(directory, share.identifier, identity, passphrase)
            identities[share.identifier] = public_hex(identity)
    finally:
        for share in shares:
            share.wipe()
    group = SignerGroup(
        threshold=threshold,
        identifiers=public.identifiers,
        public_key_package=public,
        identity_keys=identities,
        requesters=tuple(requesters),
    )
    group.save(directory)
    return group


def _install_dir(staging: Path, out_dir: Path) -> None:
    """Move the complete `staging` directory to `out_dir` (renames in one file system)."""
    os.chmod(staging, 0o700)
    old: Path | None = None
    if out_dir.exists() or out_dir.is_symlink():
        if out_dir.is_dir() and not out_dir.is_symlink() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        else:
            old = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.old-"))
            os.replace(out_dir, old / "dir")
    os.replace(staging, out_dir)
    _fsync_dir(out_dir.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _seal_key(
    own: X25519PrivateKey, peer_public: bytes, ceremony: str, sender: int, recipient: int
) -> bytes:
    shared = own.exchange(X25519PublicKey.from_public_bytes(peer_public))
    info = f"tradetape-dkg|{ceremony}|{sender}->{recipient}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)


def seal(
    own: X25519PrivateKey,
    peer_public: bytes,
    ceremony: str,
    sender: int,
    recipient: int,
    plain: bytes,
) -> bytes:
    key = _seal_key(own, peer_public, ceremony, sender, recipient)
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, plain, f"{ceremony}|{sender}|{recipient}".encode())


def unseal(
    own: X25519PrivateKey,
    peer_public: bytes,
    ceremony: str,
    sender: int,
    recipient: int,
    sealed: bytes,
) -> bytes:
    key = _seal_key(own, peer_public, ceremony, sender, recipient)
    return AESGCM(key).decrypt(
        sealed[:12], sealed[12:], f"{ceremony}|{sender}|{recipient}".encode()
    )


def _prepare_dkg_output(out_dir: Path, identifier: int) -> None:
    """Fail before the ceremony, not after it: the directory must be writable and must not
    already hold this participant's key material (a share exists nowhere else)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for path in (key_file(out_dir, identifier), identity_file(out_dir, identifier)):
            if path.exists() or path.is_symlink():
                raise CeremonyError(
                    f"{path} already exists: move it away (or use another --out) first"
                )
        fd, probe = tempfile.mkstemp(dir=out_dir, prefix=".dkg-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CeremonyError(f"cannot write the key directory {out_dir}: {exc}") from exc


def _ceremony_passphrase(identifier: int) -> bytearray:
    try:
        passphrase = passphrase_for(identifier)
    except (PassphraseMissingError, OSError) as exc:
        raise CeremonyError(f"participant {identifier}: {exc}") from exc
    if not passphrase:
        raise CeremonyError(f"participant {identifier}: the passphrase is empty")
    return passphrase


def _log_ends(settings: Settings, tps: list[TopicPartition]) -> dict[tuple[str, int], int]:
    """Each partition's end offset now (retried while a new topic gets its leader)."""
    return end_offsets(admin_client(settings), tps)


def _earlier_use(p: Any, ceremony_id: str, identifier: int) -> str | None:
    """Why a record already on the log when we start means this ceremony id was used."""
    if getattr(p, "ceremony_id", None) != ceremony_id:
        return None
    if isinstance(p, DkgRound1Published) and p.participant == identifier:
        return f"participant {identifier} already published a round-1 package under it"
    if isinstance(p, DkgRound2Published | DkgCompleted):
        return f"it already has {type(p).__name__} records"
    return None


def run_dkg_participant(
    settings: Settings,
    *,
    ceremony_id: str,
    identifier: int,
    signers: int,
    threshold: int,
    out_dir: Path,
    timeout: float = 60.0,
    echo: Callable[[str], None] = lambda _m: None,
    requesters: tuple[str, ...] = (DEFAULT_REQUESTER,),
) -> SignerGroup:
    """One participant's side of a DKG ceremony, exchanging packages on `signing.messages`.

    Everything that could stop this participant from saving its share (its passphrase,
    the output directory) is checked before it publishes anything, and a ceremony id
    already used on the log is refused: its old packages would be mixed with the new.
    Every failure is a CeremonyError naming the participant or sender at fault."""
    _prepare_dkg_output(out_dir, identifier)
    passphrase = _ceremony_passphrase(identifier)
    try:
        return _run_dkg(
            settings,
            ceremony_id=ceremony_id,
            identifier=identifier,
            signers=signers,
            threshold=threshold,
            out_dir=out_dir,
            timeout=timeout,
            echo=echo,
            requesters=requesters,
            passphrase=passphrase,
        )
    finally:
        passphrase[:] = b"\x00" * len(passphrase)


def _run_dkg(
    settings: Settings,
    *,
    ceremony_id: str,
    identifier: int,
    signers: int,
    threshold: int,
    out_dir: Path,
    timeout: float,
    echo: Callable[[str], None],
    requesters: tuple[str, ...],
    passphrase: bytearray,
) -> SignerGroup:
    topic = settings.topic(Topic.SIGNING_MESSAGES)
    producer = Producer(producer_config(settings))
    consumer = Consumer(
        consumer_config(
            settings,
            group_id=group_id(
                settings.topic_prefix, groups.DKG, f"{ceremony_id}-{identifier}-{os.getpid()}"
            ),
        )
    )
    # A topic created moments ago may list no partitions yet: assigning from that answer
    # would read nothing, and the ceremony would time out seeing no one.
    try:
        parts = partitions_of(consumer, settings, Topic.SIGNING_MESSAGES)
    except (RuntimeError, KafkaException) as exc:
        consumer.close()
        raise CeremonyError(f"DKG {ceremony_id}: {exc}") from exc
    tps = [TopicPartition(topic, p, 0) for p in parts]
    consumer.assign(tps)  # a late joiner still sees round 1
    name = f"dkg-{identifier}"

    def publish(event: Envelope[Any]) -> None:
        key, value, headers = encode(event)
        failed: list[str] = []
        producer.produce(
            settings.topic(event.payload.TOPIC),
            key=key,
            value=value,
            headers=headers,
            on_delivery=lambda err, _msg: failed.append(str(err)) if err is not None else None,
        )
        if producer.flush(10) != 0 or failed:
            raise CeremonyError(
                f"participant {identifier}: {event.event_type} not delivered: "
                f"{failed[0] if failed else 'flush timed out'}"
            )

    def decoded(msg: Any) -> Any:
        if msg is None or msg.error():
            return None
        try:
            return decode_message(msg).payload
        except Exception:
            return None

    # What is on the log before we publish: an earlier attempt with this ceremony id?
    try:
        ends = {p: end for (_t, p), end in _log_ends(settings, tps).items()}
    except KafkaException as exc:
        consumer.close()
        raise CeremonyError(f"DKG {ceremony_id}: cannot read {topic}'s end: {exc}") from exc
    backlog: list[Any] = []
    deadline = time.monotonic() + timeout
    while True:
        positions = consumer.position([TopicPartition(topic, p) for p in ends])
        if all(pos.offset >= ends[pos.partition] or ends[pos.partition] == 0 for pos in positions):
            break
        if time.monotonic() > deadline:
            consumer.close()
            raise CeremonyError(f"DKG {ceremony_id}: could not read {topic} to its end")
        msg = consumer.poll(0.1)
        if msg is None or msg.error():
            continue
        earlier = (msg.offset() or 0) < ends.get(msg.partition() or 0, 0)
        p = decoded(msg)
        if p is None:
            continue
        if earlier and (why := _earlier_use(p, ceremony_id, identifier)) is not None:
            consumer.close()
            raise CeremonyError(
                f"ceremony id {ceremony_id!r} was already used on {topic} ({why}): "
                "start every participant again with a new --ceremony"
            )
        backlog.append(p)

    x_priv = X25519PrivateKey.generate()
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    x_pub = x_priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    identity = Ed25519PrivateKey.generate()
    secret1, package1 = dkg_part1(identifier, signers, threshold)
    round1: dict[int, DkgRound1Published] = {}
    round2: dict[int, bytes] = {}
    secret2 = None
    try:
        publish(
            new_event(
                DkgRound1Published(
                    ceremony_id=ceremony_id,
                    participant=identifier,
                    package_hex=package1.hex(),
                    x25519_public_hex=x_pub.hex(),
                    identity_public_hex=public_hex(identity),
                ),
                producer=name,
            )
        )
        echo(f"participant {identifier}: round 1 published")
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() > deadline:
                missing = sorted(set(range(1, signers + 1)) - set(round1) - {identifier})
                raise CeremonyError(
                    f"DKG {ceremony_id} timed out; no round-1 package yet from {missing}"
                    if missing
                    else f"DKG {ceremony_id} timed out; no round-2 package yet from "
                    f"{sorted(set(round1) - set(round2))}"
                )
            p = backlog.pop(0) if backlog else decoded(consumer.poll(0.1))
            if p is None:
                continue
            if (
                isinstance(p, DkgRound1Published)
                and p.ceremony_id == ceremony_id
                and p.participant != identifier
            ):
                round1.setdefault(p.participant, p)
            elif (
                isinstance(p, DkgRound2Published)
                and p.ceremony_id == ceremony_id
                and p.recipient == identifier
            ):
                if p.sender in round1 and p.sender not in round2:
                    peer = bytes.fromhex(round1[p.sender].x25519_public_hex)
                    try:
                        round2[p.sender] = unseal(
                            x_priv,
                            peer,
                            ceremony_id,
                            p.sender,
                            identifier,
                            bytes.fromhex(p.sealed_package_hex),
                        )
                    except (InvalidTag, ValueError) as exc:
                        raise CeremonyError(
                            f"DKG {ceremony_id}: the round-2 package from participant "
                            f"{p.sender} does not open with its round-1 key (forged, or "
                            f"from another attempt with this ceremony id): "
                            f"{type(exc).__name__}"
                        ) from exc
            if secret2 is None and len(round1) == signers - 1:
                packages = {i: bytes.fromhex(r.package_hex) for i, r in round1.items()}
                try:
                    secret2, outgoing = dkg_part2(secret1, packages)
                except SignerError as exc:
                    raise CeremonyError(
                        f"DKG {ceremony_id}: bad round-1 package(s) from "
                        f"{list(getattr(exc, 'culprits', ())) or 'an unnamed participant'}: "
                        f"{exc}"
                    ) from exc
                for recipient, pkg in sorted(outgoing.items()):
                    peer = bytes.fromhex(round1[recipient].x25519_public_hex)
                    sealed = seal(x_priv, peer, ceremony_id, identifier, recipient, pkg)
                    publish(
                        new_event(
                            DkgRound2Published(
                                ceremony_id=ceremony_id,
                                sender=identifier,
                                recipient=recipient,
                                sealed_package_hex=sealed.hex(),
                            ),
                            producer=name,
                        )
                    )
                echo(f"participant {identifier}: round 2 sealed to {sorted(outgoing)}")
            if secret2 is not None and len(round2) == signers - 1:
                break
        packages1 = {i: bytes.fromhex(r.package_hex) for i, r in round1.items()}
        try:
            share, public = dkg_part3(secret2, packages1, round2)
        except SignerError as exc:
            raise CeremonyError(
                f"DKG {ceremony_id}: bad round-2 package(s) from "
                f"{list(getattr(exc, 'culprits', ())) or 'an unnamed participant'}: {exc}"
            ) from exc
    finally:
        secret1.wipe()
        if secret2 is not None:
            secret2.wipe()
        consumer.close()
    identities = {i: r.identity_public_hex for i, r in round1.items() if r.identity_public_hex}
    identities[identifier] = public_hex(identity)
    group = SignerGroup(
        threshold=threshold,
        identifiers=public.identifiers,
        public_key_package=public,
        identity_keys=identities,
        requesters=tuple(requesters),
    )
    try:
        write_key_file(key_file(out_dir, identifier), share, passphrase)
        write_identity(out_dir, identifier, identity, passphrase)
        group.save(out_dir)
    except (OSError, ValueError) as exc:
        raise CeremonyError(
            f"participant {identifier}: DKG {ceremony_id} completed but its key files could "
            f"not be written to {out_dir}: {exc}"
        ) from exc
    finally:
        share.wipe()
    publish(
        new_event(
            DkgCompleted(
                ceremony_id=ceremony_id,
                participant=identifier,
                group_public_key=group.verifying_key.hex(),
            ),
            producer=name,
        )
    )
    echo(f"participant {identifier}: done, group key {group.verifying_key.hex()}")
    return group
