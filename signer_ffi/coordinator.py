"""The signing coordinator: gathers commitments and shares over Kafka, then aggregates.

It holds no share of the group key, only its requester key, which signs its requests
and packages (`signer_ffi.authn`). It asks every participant for commitments, picks the
first `threshold` authentic commitments to arrive (the package is issued the moment there
are enough, so which signers depends on who answers first), issues the signing
package, collects the shares and aggregates them. If a signer is missing when the
timeout expires, the operation fails with a clear error and a `SigningFailed` event —
never with a partial signature. Every outcome is recorded on `signing.events`.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from confluent_kafka import Consumer, KafkaException, Producer
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from deploy import groups
from deploy.groups import group_id
from deploy.kafka import assign_from_end, consumer_config, producer_config
from deploy.settings import Settings
from schemas import Envelope, decode_message, encode, new_event
from schemas.events import (
    SignatureSharePublished,
    SigningCommitmentPublished,
    SigningCompleted,
    SigningFailed,
    SigningMessageRejected,
    SigningPackageIssued,
    SigningRequested,
)
from schemas.topics import Topic
from signer_ffi.authn import (
    DEFAULT_REQUESTER,
    Requester,
    sign_round_message,
    verify_round_message,
)
from signer_ffi.errors import InvalidSignatureShareError, SignerError
from signer_ffi.frost import (
    SignatureShare,
    SigningCommitments,
    SigningPackage,
    aggregate,
    signing_package,
)
from signer_ffi.group import SignerGroup

PRODUCER = "signing-coordinator"


class SigningFailedError(RuntimeError):
    """A signing round that produced no signature; `event` is what was recorded."""

    def __init__(self, message: str, event: Envelope[SigningFailed]) -> None:
        super().__init__(message)
        self.event = event


class PublishError(RuntimeError):
    """A record the broker did not acknowledge."""


RoundOutput = SigningPackageIssued | SigningMessageRejected | None


def rejection(
    event: Envelope[Any], rejected_by: str, reason: str, request_id: str | None = None
) -> SigningMessageRejected:
    """The typed record of a refused round message."""
    return SigningMessageRejected(
        request_id=request_id or getattr(event.payload, "request_id", "") or "-",
        rejected_by=rejected_by,
        message_type=event.event_type,
        message_event_id=event.event_id,
        sender=event.producer,
        reason=reason[:2000],
    )


ED25519_ORDER = 2**252 + 27742317777372353535851937790883648493
"""l: a signature share is a canonical scalar, 32 bytes little-endian, below l."""


def share_problem(share_hex: str) -> str | None:
    """Why `share_hex` cannot be a FROST(Ed25519) signature share (what frost's
    `SignatureShare::deserialize` would refuse), or None: checked on arrival, so a faulty
    signer is named at once instead of failing aggregation for everyone."""
    try:
        raw = bytes.fromhex(share_hex)
    except ValueError as exc:
        return f"not hex: {exc}"
    if len(raw) != 32:
        return f"{len(raw)} bytes, not 32"
    if int.from_bytes(raw, "little") >= ED25519_ORDER:
        return "not a canonical scalar (>= the group order)"
    return None


@dataclass
class SigningRound:
    """Pure state of one round; the Kafka loop feeds it messages.

    Only commitments and shares signed by a participant's identity key (group.json)
    count; anything else becomes a `SigningMessageRejected` and the round goes on, so a
    forged message can neither take an honest participant's place nor get it blamed.
    """

    request: SigningRequested
    group: SignerGroup
    message: bytes
    requester: Requester
    commitments: dict[int, SigningCommitments] = field(default_factory=dict)
    package: SigningPackageIssued | None = None
    shares: dict[int, SignatureShare] = field(default_factory=dict)
    rejected: list[SigningMessageRejected] = field(default_factory=list)
    refusals: dict[str, str] = field(default_factory=dict)
    """Participants' refusals of this round's own messages: who -> why."""
    sent: set[UUID] = field(default_factory=set)
    """Event ids of the request and package this coordinator published."""
    _commitment_events: dict[int, Envelope[Any]] = field(default_factory=dict, repr=False)
    broken: tuple[str, tuple[int, ...]] | None = None
    """Why the round can no longer succeed, and whose fault, once a chosen signer's
    authentic share turned out malformed."""

    def _reject(self, event: Envelope[Any], reason: str) -> SigningMessageRejected:
        out = rejection(event, PRODUCER, reason, self.request.request_id)
        self.rejected.append(out)
        return out

    def _unauthentic(self, payload: Any, participant: int) -> str | None:
        key = self.group.identity_keys.get(participant)
        if key is None:
            return f"group.json has no identity key for participant {participant}"
        if not verify_round_message(payload, key):
            return f"signature missing or not by participant {participant}'s identity key"
        return None

    def on_commitment(self, event: Envelope[SigningCommitmentPublished]) -> RoundOutput:
        msg = event.payload
        if msg.participant not in self.request.signers:
            return self._reject(event, f"participant {msg.participant} was not asked to sign")
        if (why := self._unauthentic(msg, msg.participant)) is not None:
            return self._reject(event, why)
        if self.package is not None or msg.participant in self.commitments:
            return None  # authentic, but the round has moved on / it is already counted
        try:
            commitments = SigningCommitments(bytes.fromhex(msg.commitments_hex))
        except ValueError as exc:
            return self._reject(event, f"malformed commitments: {exc}")
        self.commitments[msg.participant] = commitments
        self._commitment_events[msg.participant] = event
        if len(self.commitments) < self.group.threshold:
            return None
        chosen = sorted(self.commitments)[: self.group.threshold]
        try:
            pkg = signing_package({i: self.commitments[i] for i in chosen}, self.message)
        except SignerError:
            # Authentic but unparsable commitments (a faulty signer): drop whose they are
            # and wait for another signer. Parsed one by one only on this rare path.
            for i in chosen:
                try:
                    signing_package({i: self.commitments[i]}, b"")
                except SignerError as exc:
                    del self.commitments[i]
                    return self._reject(
                        self._commitment_events.pop(i), f"malformed commitments: {exc}"
                    )
            raise
        self.package = sign_round_message(
            SigningPackageIssued(
                request_id=self.request.request_id,
                participants=tuple(chosen),
                signing_package_hex=pkg.data.hex(),
            ),
            self.requester.key,
        )
        return self.package

    def on_share(
        self, event: Envelope[SignatureSharePublished]
    ) -> bytes | SigningMessageRejected | None:
        """The aggregate signature once every chosen share is in, a rejection, or None."""
        msg = event.payload
        if msg.participant not in self.request.signers:
            return self._reject(event, f"participant {msg.participant} was not asked to sign")
        if (why := self._unauthentic(msg, msg.participant)) is not None:
            return self._reject(event, why)
        if (
            self.package is None
            or msg.participant not in self.package.participants
            or msg.participant in self.shares
        ):
            return None  # authentic, but not (or no longer) expected
        problem = share_problem(msg.share_hex)
        if problem is not None:
            # Authentic and chosen, so the package can never be completed without it.
            self.broken = (
                f"malformed signature share from participant {msg.participant}: {problem}",
                (msg.participant,),
            )
            return self._reject(event, f"malformed share: {problem}")
        self.shares[msg.participant] = SignatureShare(bytes.fromhex(msg.share_hex))
        if len(self.shares) < len(self.package.participants):
            return None
        pkg = SigningPackage(bytes.fromhex(self.package.signing_package_hex))
        return aggregate(pkg, self.shares, self.group.public_key_package)

    def on_refusal(self, refused: SigningMessageRejected) -> str | None:
        """Why the round cannot succeed any more, or None.

        Only refusals of this coordinator's own request and package count (by event id):
        a participant refusing a forged request or package that reuses the request id
        says nothing about this round, and must not end it.
        """
        if refused.message_event_id not in self.sent or refused.rejected_by == PRODUCER:
            return None
        self.refusals[refused.rejected_by] = refused.reason
        n = len(self.group.identifiers)
        if (
            refused.message_type == SigningPackageIssued.EVENT_TYPE
            or len(self.refusals) > n - self.group.threshold
        ):  # a chosen signer refused the package, or too few can still answer
            return f"{len(self.refusals)} of {n} signers refused{self.refusal_text()}"
        return None

    def refusal_text(self) -> str:
        parts = [f"{who}: {why}" for who, why in sorted(self.refusals.items())]
        if self.rejected:
            parts.append(f"{len(self.rejected)} forged or unauthorised message(s) ignored")
        return ("; " + "; ".join(parts)) if parts else ""

    def missing(self) -> list[int]:
        if self.package is None:
            return [i for i in self.group.identifiers if i not in self.commitments]
        return [i for i in self.package.participants if i not in self.shares]


LOW_LATENCY = {"fetch.wait.max.ms": 5, "fetch.error.backoff.ms": 5}
"""Signing traffic is tiny and latency-bound: do not let the broker park fetches."""


class SigningCoordinator:
    """Runs signing rounds for one group; reuse it to keep Kafka connections warm.

    It signs its requests and packages as `requester`, a producer registered with
    `ProducerRegistered` and listed in the group's `requesters`; participants refuse
    anything else. It also reads `signing.events`, so a participant's refusal ends the
    round at once with that participant's reason instead of a bare timeout.
    """

    def __init__(self, settings: Settings, group: SignerGroup, requester: Requester) -> None:
        self.settings = settings
        self.group = group
        self.requester = requester
        self._producer = Producer({**producer_config(settings), "linger.ms": 0})
        self._consumer = Consumer(
            consumer_config(
                settings,
                group_id=group_id(settings.topic_prefix, groups.COORDINATOR, uuid.uuid4().hex),
                **LOW_LATENCY,
            )
        )
        assign_from_end(self._consumer, settings, [Topic.SIGNING_MESSAGES, Topic.SIGNING])

    def close(self) -> None:
        self._consumer.close()
        self._producer.flush(10)
        self._producer.close()  # else its threads live on, reconnecting to the broker

    def __enter__(self) -> SigningCoordinator:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _publish(self, event: Envelope[Any]) -> None:
        """Produce and wait for the broker's acknowledgement; PublishError otherwise."""
        key, value, headers = encode(event)
        failed: list[str] = []
        try:
            self._producer.produce(
                self.settings.topic(event.payload.TOPIC),
                key=key,
                value=value,
                headers=headers,
                on_delivery=lambda err, _m: failed.append(str(err)) if err is not None else None,
            )
            unsent = self._producer.flush(10)
        except (KafkaException, BufferError) as exc:
            raise PublishError(f"{event.event_type} not published: {exc}") from exc
        if unsent or failed:
            raise PublishError(
                f"{event.event_type} not delivered: "
                f"{failed[0] if failed else f'{unsent} record(s) unacknowledged after 10 s'}"
            )

    def sign(
        self,
        message: bytes,
        *,
        purpose: str,
        timeout: float = 10.0,
        request_id: str | None = None,
        artefact: str | None = None,
    ) -> Envelope[SigningCompleted]:
        """One FROST round across the live signer processes; raises SigningFailedError.

        `artefact` names the signed bytes in the artefact store (`message` is then their
        SHA-256), for participants that recompute it."""
        group = self.group
        request_id = request_id or uuid.uuid4().hex
        request = new_event(
            sign_round_message(
                SigningRequested(
                    request_id=request_id,
                    digest_hex=message.hex(),
                    purpose=purpose,
                    signers=group.identifiers,
                    group_public_key=group.verifying_key.hex(),
                    requester=self.requester.name,
                    artefact=artefact,
                ),
                self.requester.key,
            ),
            producer=self.requester.name,
        )
        state = SigningRound(
            request=request.payload, group=group, message=message, requester=self.requester
        )
        state.sent.add(request.event_id)
        started = time.monotonic()
        signature: bytes | None = None
        failure: tuple[str, tuple[int, ...]] | None = None
        try:
            self._publish(request)
            while signature is None and failure is None:
                if time.monotonic() - started > timeout:
                    stage = "commitments" if state.package is None else "signature shares"
                    failure = (
                        f"timed out after {timeout:.1f}s waiting for {stage} from signer(s) "
                        f"{state.missing()}{state.refusal_text()}",
                        (),
                    )
                    break
                msg = self._consumer.poll(0.05)
                if msg is None or msg.error():
                    continue
                try:
                    ev = decode_message(msg)
                except Exception:
                    continue  # not ours to judge; participants dead-letter malformed records
                payload = ev.payload
                if getattr(payload, "request_id", None) != request_id:
                    continue
                out: Any = None
                try:
                    if isinstance(payload, SigningCommitmentPublished):
                        out = state.on_commitment(ev)
                    elif isinstance(payload, SignatureSharePublished):
                        out = state.on_share(ev)
                        if isinstance(out, bytes):
                            signature, out = out, None
                    elif isinstance(payload, SigningMessageRejected):
                        if (why := state.on_refusal(payload)) is not None:
                            failure = (why, ())
                except InvalidSignatureShareError as exc:
                    failure = (
                        f"invalid signature share(s) from {list(exc.culprits)}",
                        tuple(exc.culprits),
                    )
                except SignerError as exc:  # any other FROST failure ends the round, recorded
                    culprits = tuple(getattr(exc, "culprits", ()))
                    failure = (f"{type(exc).__name__} from the signing library: {exc}", culprits)
                if out is not None:
                    published = new_event(out, producer=self.requester.name, causation=ev)
                    state.sent.add(published.event_id)
                    self._publish(published)
                if failure is None and state.broken is not None:
                    failure = state.broken
        except PublishError as exc:  # the round cannot go on unheard
            failure = (str(exc), ())
        if failure is not None:
            raise self._failed(request, state, message, purpose, *failure)
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
        try:
            self._publish(done)
        except PublishError as exc:
            # A signature nobody can trace on the log is not handed out.
            raise self._failed(
                request,
                state,
                message,
                purpose,
                f"the signature was aggregated but SigningCompleted was not recorded: {exc}",
                (),
            ) from exc
        return done

    def _failed(
        self,
        request: Envelope[SigningRequested],
        state: SigningRound,
        message: bytes,
        purpose: str,
        reason: str,
        culprits: tuple[int, ...],
    ) -> SigningFailedError:
        """Record `SigningFailed` (if the log can still be written) and the error to raise."""
        failed = new_event(
            SigningFailed(
                request_id=request.payload.request_id,
                digest_hex=message.hex(),
                purpose=purpose,
                participants=tuple(sorted(state.commitments)),
                reason=reason[:2000],
                culprits=culprits,
            ),
            producer=PRODUCER,
            causation=request,
        )
        try:
            self._publish(failed)
        except PublishError as exc:
            reason = f"{reason} (SigningFailed not recorded either: {exc})"
        return SigningFailedError(reason, failed)


def load_requester(
    settings: Settings, name: str = DEFAULT_REQUESTER, key_file: Path | None = None
) -> Requester:
    """The requester's private key, where `tradetape producer add NAME` wrote it."""
    from engine.auth import key_path, read_private_key

    path = key_file or key_path(settings.resolved_data_dir, name)
    if not path.is_file():
        raise FileNotFoundError(
            f"no key for requester {name!r} at {path}: register it with "
            f'`tradetape producer add {name} --accounts ""` (or pass --requester-key)'
        )
    return Requester(name=name, key=read_private_key(path))


def sign_message(
    settings: Settings,
    group: SignerGroup,
    message: bytes,
    *,
    purpose: str,
    requester: Requester,
    timeout: float = 10.0,
    request_id: str | None = None,
    artefact: str | None = None,
) -> Envelope[SigningCompleted]:
    """One signing round with a fresh coordinator."""
    with SigningCoordinator(settings, group, requester) as coordinator:
        return coordinator.sign(
            message, purpose=purpose, timeout=timeout, request_id=request_id, artefact=artefact
        )


def file_digest(data: bytes) -> bytes:
    """What gets signed for a file: its SHA-256 digest."""
    return hashlib.sha256(data).digest()
