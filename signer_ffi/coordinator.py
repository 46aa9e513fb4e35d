"""The signing coordinator: gathers commitments and shares over Kafka, then aggregates.

It never holds a secret. It asks every participant for commitments, picks the first
`threshold` that answer (lowest ids first among those present), issues the signing
package, collects the shares and aggregates them. If a signer is missing when the
timeout expires, the operation fails with a clear error and a `SigningFailed` event —
never with a partial signature. Every outcome is recorded on `signing.events`.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, Producer
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from deploy.kafka import assign_from_end, consumer_config, producer_config
from deploy.settings import Settings
from schemas import Envelope, decode, encode, new_event
from schemas.events import (
    SignatureSharePublished,
    SigningCommitmentPublished,
    SigningCompleted,
    SigningFailed,
    SigningPackageIssued,
    SigningRequested,
)
from schemas.topics import Topic
from signer_ffi.errors import InvalidSignatureShareError
from signer_ffi.frost import SignatureShare, SigningCommitments, aggregate, signing_package
from signer_ffi.group import SignerGroup

PRODUCER = "signing-coordinator"


class SigningFailedError(RuntimeError):
    """A signing round that produced no signature; `event` is what was recorded."""

    def __init__(self, message: str, event: Envelope[SigningFailed]) -> None:
        super().__init__(message)
        self.event = event


@dataclass
class SigningRound:
    """Pure state of one round; the Kafka loop feeds it messages."""

    request: SigningRequested
    group: SignerGroup
    message: bytes
    commitments: dict[int, SigningCommitments] = field(default_factory=dict)
    package: SigningPackageIssued | None = None
    shares: dict[int, SignatureShare] = field(default_factory=dict)

    def on_commitment(self, msg: SigningCommitmentPublished) -> SigningPackageIssued | None:
        if self.package is not None or msg.participant not in self.group.identifiers:
            return None
        self.commitments.setdefault(
            msg.participant, SigningCommitments(bytes.fromhex(msg.commitments_hex))
        )
        if len(self.commitments) < self.group.threshold:
            return None
        chosen = sorted(self.commitments)[: self.group.threshold]
        pkg = signing_package({i: self.commitments[i] for i in chosen}, self.message)
        self.package = SigningPackageIssued(
            request_id=self.request.request_id,
            participants=tuple(chosen),
            signing_package_hex=pkg.data.hex(),
        )
        return self.package

    def on_share(self, msg: SignatureSharePublished) -> bytes | None:
        if self.package is None or msg.participant not in self.package.participants:
            return None
        self.shares.setdefault(msg.participant, SignatureShare(bytes.fromhex(msg.share_hex)))
        if len(self.shares) < len(self.package.participants):
            return None
        from signer_ffi.frost import SigningPackage

        pkg = SigningPackage(bytes.fromhex(self.package.signing_package_hex))
        return aggregate(pkg, self.shares, self.group.public_key_package)

    def missing(self) -> list[int]:
        if self.package is None:
            return [i for i in self.group.identifiers if i not in self.commitments]
        return [i for i in self.package.participants if i not in self.shares]


LOW_LATENCY = {"fetch.wait.max.ms": 5, "fetch.error.backoff.ms": 5}
"""Signing traffic is tiny and latency-bound: do not let the broker park fetches."""


class SigningCoordinator:
    """Runs signing rounds for one group; reuse it to keep Kafka connections warm."""

    def __init__(self, settings: Settings, group: SignerGroup) -> None:
        self.settings = settings
        self.group = group
        self._producer = Producer({**producer_config(settings), "linger.ms": 0})
        self._consumer = Consumer(
            consumer_config(settings, group_id=f"coordinator-{uuid.uuid4().hex}", **LOW_LATENCY)
        )
        assign_from_end(self._consumer, settings, [Topic.SIGNING_MESSAGES])

    def close(self) -> None:
        self._consumer.close()
        self._producer.flush(10)

    def __enter__(self) -> SigningCoordinator:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _publish(self, event: Envelope[Any]) -> None:
        key, value, headers = encode(event)
        self._producer.produce(
            self.settings.topic(event.payload.TOPIC), key=key, value=value, headers=headers
        )
        self._producer.flush(10)

    def sign(
        self, message: bytes, *, purpose: str, timeout: float = 10.0, request_id: str | None = None
    ) -> Envelope[SigningCompleted]:
        """One FROST round across the live signer processes; raises SigningFailedError."""
        group = self.group
        request_id = request_id or uuid.uuid4().hex
        request = new_event(
            SigningRequested(
                request_id=request_id,
                digest_hex=message.hex(),
                purpose=purpose,
                signers=group.identifiers,
                group_public_key=group.verifying_key.hex(),
            ),
            producer=PRODUCER,
        )
        state = SigningRound(request=request.payload, group=group, message=message)
        started = time.monotonic()
        self._publish(request)
        signature: bytes | None = None
        failure: tuple[str, tuple[int, ...]] | None = None
        while signature is None and failure is None:
            if time.monotonic() - started > timeout:
                stage = "commitments" if state.package is None else "signature shares"
                failure = (
                    f"timed out after {timeout:.1f}s waiting for {stage} from signer(s) {state.missing()}",
                    (),
                )
                break
            msg = self._consumer.poll(0.05)
            if msg is None or msg.error():
                continue
            try:
                ev = decode(
                    msg.value(),
                    msg.headers(),
                    topic=msg.topic(),
                    partition=msg.partition(),
                    offset=msg.offset(),
                )
            except Exception:
                continue  # not ours to judge; participants dead-letter malformed records
            payload = ev.payload
            if getattr(payload, "request_id", None) != request_id:
                continue
            if isinstance(payload, SigningCommitmentPublished):
                issued = state.on_commitment(payload)
                if issued is not None:
                    self._publish(new_event(issued, producer=PRODUCER, causation=request))
            elif isinstance(payload, SignatureSharePublished):
                try:
                    signature = state.on_share(payload)
                except InvalidSignatureShareError as exc:
                    failure = (
                        f"invalid signature share(s) from {list(exc.culprits)}",
                        tuple(exc.culprits),
                    )
        if failure is not None:
            failed = new_event(
                SigningFailed(
                    request_id=request_id,
                    digest_hex=message.hex(),
                    purpose=purpose,
                    participants=tuple(sorted(state.commitments)),
                    reason=failure[0],
                    culprits=failure[1],
                ),
                producer=PRODUCER,
                causation=request,
            )
            self._publish(failed)
            raise SigningFailedError(failure[0], failed)
        assert signature is not None and state.package is not None
        try:
            Ed25519PublicKey.from_public_bytes(group.verifying_key).verify(signature, message)
        except InvalidSignature as exc:  # pragma: no cover - aggregate already verified
            raise RuntimeError("aggregate signature does not verify") from exc
        done = new_event(
            SigningCompleted(
                request_id=request_id,
                digest_hex=message.hex(),
                purpose=purpose,
                participants=state.package.participants,
                group_public_key=group.verifying_key.hex(),
                signature_hex=signature.hex(),
            ),
            producer=PRODUCER,
            causation=request,
        )
        self._publish(done)
        return done


def sign_message(
    settings: Settings,
    group: SignerGroup,
    message: bytes,
    *,
    purpose: str,
    timeout: float = 10.0,
    request_id: str | None = None,
) -> Envelope[SigningCompleted]:
    """One signing round with a fresh coordinator."""
    with SigningCoordinator(settings, group) as coordinator:
        return coordinator.sign(message, purpose=purpose, timeout=timeout, request_id=request_id)


def file_digest(data: bytes) -> bytes:
    """What gets signed for a file: its SHA-256 digest."""
    return hashlib.sha256(data).digest()
