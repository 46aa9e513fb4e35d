"""One signer process: holds exactly one key share and answers signing rounds over Kafka.

`tradetape run signer --id I`. At start it folds the requesters' registered keys from the
accounts topic (`ProducerRegistered`, the engine's accepted facts), then reads requests
and coordinator messages from the current end of the topics (old rounds are never
answered again). It answers only authenticated, authorised requests and signs only a
package whose message is the digest it committed to (see `ParticipantState`). It keeps
round-1 nonces only in Rust memory, uses each nonce handle for one share, and drops
unanswered nonces after `nonce_ttl` seconds. A restart therefore loses in-flight rounds, by design.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from deploy import groups
from deploy.deadletter import redelivered_dead_letter
from deploy.groups import group_id
from deploy.kafka import admin_client, consumer_config, end_offsets, partitions_of, producer_config
from deploy.settings import Settings
from schemas import Envelope, MalformedEventError, decode_message, encode, new_event
from schemas.events import (
    ProducerKeyRotated,
    ProducerRegistered,
    ProducerRevoked,
    SignatureSharePublished,
    SigningCommitmentPublished,
    SigningMessageRejected,
    SigningPackageIssued,
    SigningRequested,
)
from schemas.serde import HEADER_EVENT_TYPE
from schemas.topics import Topic
from signer_ffi.artefacts import ROOT_ENV, ArtefactStore
from signer_ffi.authn import (
    RequesterRegistry,
    public_hex,
    sign_round_message,
    verify_round_message,
)
from signer_ffi.coordinator import LOW_LATENCY, rejection
from signer_ffi.errors import SignerError
from signer_ffi.frost import (
    KeyShare,
    SigningCommitments,
    SigningNonces,
    SigningPackage,
    commit,
    sign,
)
from signer_ffi.group import SignerGroup, load_identity, load_share

log = logging.getLogger("tradetape.signer")


Answer = SigningCommitmentPublished | SignatureSharePublished | SigningMessageRejected | None


@dataclass
class _Accepted:
    """A request this participant committed to: what it asked, who asked, our commitments."""

    request: SigningRequested
    nonces: SigningNonces
    commitments: SigningCommitments
    at: float


@dataclass
class ParticipantState:
    """Round bookkeeping for one participant (no Kafka): what it answers and what it refuses.

    A request is answered only if a requester the group allows signed it with the key
    the engine registered for it. A package is signed only if that same requester signed
    it, its message is the digest of the request we committed to, it holds our own
    round-1 commitments, and it names only signers the request asked. Anything else is a
    `SigningMessageRejected` with the reason, and no share.
    """

    share: KeyShare
    group: SignerGroup
    identity: Ed25519PrivateKey
    registry: RequesterRegistry = field(default_factory=RequesterRegistry)
    artefacts: ArtefactStore | None = None
    """If set, a digest is signed only if it is the SHA-256 of the artefact it names."""
    nonce_ttl: float = 60.0
    pending: dict[str, _Accepted] = field(default_factory=dict)
    seen: OrderedDict[str, UUID] = field(default_factory=OrderedDict)
    """Request ids committed to, with the event id of the request that carried each."""
    seen_limit: int = 100_000

    @property
    def identifier(self) -> int:
        return self.share.identifier

    @property
    def name(self) -> str:
        return f"signer-{self.identifier}"

    def _reject(self, event: Envelope[Any], reason: str) -> SigningMessageRejected:
        log.warning("%s refused %s %s: %s", self.name, event.event_type, event.event_id, reason)
        return rejection(event, self.name, reason)

    def _remember(self, request_id: str, event_id: UUID) -> None:
        self.seen[request_id] = event_id
        while len(self.seen) > self.seen_limit:
            self.seen.popitem(last=False)

    def on_request(self, event: Envelope[SigningRequested], now: float) -> Answer:
        req = event.payload
        if (
            self.identifier not in req.signers
            or req.group_public_key != self.group.verifying_key.hex()
        ):
            return None  # another group's round (identifiers repeat across groups)
        if req.request_id in self.seen:
            if self.seen[req.request_id] == event.event_id:
                # The same record delivered again (a producer retry, a consumer rewind):
                # already answered; refusing it would end the genuine round.
                log.info(
                    "%s: request %s delivered again (event %s), already answered",
                    self.name,
                    req.request_id,
                    event.event_id,
                )
                return None
            return self._reject(event, f"request id {req.request_id} was already seen (replay)")
        if req.requester is None:
            return self._reject(event, "unsigned request: it names no requester")
        if req.requester not in self.group.requesters:
            return self._reject(
                event,
                f"requester {req.requester!r} is not allowed by this group "
                f"(group.json requesters: {list(self.group.requesters)})",
            )
        key = self.registry.key_of(req.requester)
        if key is None:
            return self._reject(
                event, f"requester {req.requester!r} has no registered key (ProducerRegistered)"
            )
        if not verify_round_message(req, key):
            return self._reject(
                event, f"signature missing or not by {req.requester!r}'s registered key"
            )
        if len(req.digest_hex) % 2:
            return self._reject(event, "digest_hex is not a whole number of bytes")
        if self.artefacts is not None and (why := self.artefacts.problem(req)) is not None:
            return self._reject(event, why)
        self._remember(req.request_id, event.event_id)
        nonces, commitments = commit(self.share)
        self.pending[req.request_id] = _Accepted(req, nonces, commitments, now)
        return sign_round_message(
            SigningCommitmentPublished(
                request_id=req.request_id,
                participant=self.identifier,
                commitments_hex=commitments.data.hex(),
            ),
            self.identity,
        )

    def _package_problem(
        self, issued: SigningPackageIssued, accepted: _Accepted
    ) -> tuple[str | None, SigningPackage | None]:
        """Why the package must not be signed (or None), and the parsed package.

        Pure checks before any nonce use, on one parse of the package."""
        req = accepted.request
        try:
            pkg = SigningPackage(bytes.fromhex(issued.signing_package_hex))
            held = pkg.contents(self.identifier)
        except (ValueError, SignerError) as exc:
            return f"malformed signing package: {exc}", None
        message, signers = held.message, held.signers
        if message != bytes.fromhex(req.digest_hex):
            return (
                f"the package's message ({len(message)} bytes, sha256 "
                f"{hashlib.sha256(message).hexdigest()[:16]}…) is not the requested digest "
                f"{req.digest_hex[:16]}…"
            ), None
        if signers != tuple(sorted(issued.participants)):
            return (
                f"the package's signers {list(signers)} differ from the issued "
                f"{list(issued.participants)}"
            ), None
        strangers = sorted(set(signers) - set(req.signers))
        if strangers:
            return f"the package names signers {strangers} that the request did not ask", None
        if len(signers) < self.group.threshold:
            return (
                f"the package has {len(signers)} signers, fewer than the threshold "
                f"{self.group.threshold}"
            ), None
        if held.commitments is None:
            return "the package holds no commitments of ours", None
        if held.commitments.data != accepted.commitments.data:
            return (
                "the package carries round-1 commitments that are not the ones we published",
                None,
            )
        return None, pkg

    def on_package(self, event: Envelope[SigningPackageIssued]) -> Answer:
        issued = event.payload
        accepted = self.pending.get(issued.request_id)
        if accepted is None:
            return None  # not a round we committed to (or expired, or already answered)
        requester = accepted.request.requester
        key = self.registry.key_of(requester) if requester else None
        if key is None or not verify_round_message(issued, key):
            # Forged: keep the nonces, the requester's real package may still come.
            return self._reject(
                event, f"signature missing or not by the requester {requester!r}'s key"
            )
        del self.pending[issued.request_id]
        try:
            if self.identifier not in issued.participants:
                return None  # not chosen: the nonces are discarded below
            why, pkg = self._package_problem(issued, accepted)
            if why is not None or pkg is None:
                return self._reject(event, why or "unreadable signing package")
            share = sign(pkg, accepted.nonces, self.share)
        finally:
            accepted.nonces.close()
        return sign_round_message(
            SignatureSharePublished(
                request_id=issued.request_id,
                participant=self.identifier,
                share_hex=share.data.hex(),
            ),
            self.identity,
        )

    def expire(self, now: float) -> list[str]:
        old = [rid for rid, a in self.pending.items() if now - a.at > self.nonce_ttl]
        for rid in old:
            self.pending.pop(rid).nonces.close()
        return old


REGISTRY_TYPES = frozenset(
    t
    for cls in (ProducerRegistered, ProducerKeyRotated, ProducerRevoked)
    for t in (cls.EVENT_TYPE, cls.EVENT_TYPE.encode())
)
"""The accounts topic's facts the requester registry folds (their header, text or bytes)."""


def _is_registration(msg: Message) -> bool:
    """Cheap header test, so the accounts topic's other facts are never decoded."""
    headers = msg.headers() or []
    items = headers.items() if isinstance(headers, dict) else headers
    for k, v in items:
        if k == HEADER_EVENT_TYPE:
            return v in REGISTRY_TYPES
    return True  # no header: decode and let the registry decide


def _load_registry(
    consumer: Consumer, settings: Settings, state: ParticipantState, timeout: float
) -> None:
    """Fold every registration up to the accounts topic's current end before serving:
    until then a request could be refused for a key that is in fact registered."""
    tps = [
        TopicPartition(settings.topic(Topic.ACCOUNTS), p, OFFSET_BEGINNING)
        for p in partitions_of(consumer, settings, Topic.ACCOUNTS)
    ]
    ends = end_offsets(admin_client(settings), tps)
    consumer.assign(tps)
    deadline = time.monotonic() + timeout
    while True:
        positions = consumer.position([TopicPartition(tp.topic, tp.partition) for tp in tps])
        if all(
            p.offset >= ends[(p.topic, p.partition)] or ends[(p.topic, p.partition)] == 0
            for p in positions
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"accounts topic not read to its end within {timeout:.0f}s")
        msg = consumer.poll(0.1)
        if msg is not None and not msg.error():
            _fold_registration(msg, state)


def _fold_registration(msg: Message, state: ParticipantState) -> None:
    if not _is_registration(msg):
        return
    try:
        ev = decode_message(msg)
    except MalformedEventError:
        return  # the engine's topic: its own readers dead-letter what it cannot parse
    if state.registry.apply(ev):
        log.info("%s: %s for %s", state.name, ev.event_type, ev.payload.producer_id)


def serve(
    settings: Settings,
    state: ParticipantState,
    stop: threading.Event,
    ready: threading.Event | None = None,
    registry_timeout: float = 120.0,
) -> None:
    producer_name = state.name
    producer = Producer({**producer_config(settings), "linger.ms": 0})
    consumer = Consumer(
        consumer_config(
            settings,
            group_id=group_id(
                settings.topic_prefix, groups.SIGNER, f"{state.identifier}-{os.getpid()}"
            ),
            **LOW_LATENCY,
        )
    )
    accounts = settings.topic(Topic.ACCOUNTS)

    def publish(event: Envelope[Any]) -> bool:
        """Produce and wait for the broker's acknowledgement; a failure is logged, never
        fatal (one unpublishable answer must not take the signer down), and for a share
        the coordinator's timeout names this participant."""
        key, value, headers = encode(event)
        failed: list[str] = []
        try:
            producer.produce(
                settings.topic(event.payload.TOPIC),
                key=key,
                value=value,
                headers=headers,
                on_delivery=lambda err, _m: failed.append(str(err)) if err is not None else None,
            )
            unsent = producer.flush(10)
        except (KafkaException, BufferError) as exc:
            failed.append(f"{type(exc).__name__}: {exc}")
            unsent = 0
        if unsent or failed:
            log.error(
                "%s could not publish %s %s: %s",
                producer_name,
                event.event_type,
                event.event_id,
                failed[0] if failed else f"{unsent} record(s) unacknowledged after 10 s",
            )
            return False
        return True

    try:
        _load_registry(consumer, settings, state, registry_timeout)
        round_tps = [
            TopicPartition(settings.topic(t), p)
            for t in (Topic.SIGNING_REQUESTS, Topic.SIGNING_MESSAGES)
            for p in partitions_of(consumer, settings, t)
        ]
        ends = end_offsets(admin_client(settings), round_tps)
        consumer.incremental_assign(
            [
                TopicPartition(tp.topic, tp.partition, ends[(tp.topic, tp.partition)])
                for tp in round_tps
            ]
        )
        if ready is not None:
            ready.set()
        while not stop.is_set():
            msg = consumer.poll(0.05)
            state.expire(time.monotonic())
            if msg is None or msg.error():
                continue
            if msg.topic() == accounts:
                _fold_registration(msg, state)  # a new requester or a rotated key
                continue
            try:
                ev = decode_message(msg)
            except MalformedEventError as exc:
                try:
                    letter = redelivered_dead_letter(  # the same event if read again
                        msg, exc, stage=producer_name, producer=producer_name
                    )
                except Exception:  # never crash on one record
                    log.exception("%s could not dead-letter a malformed record", producer_name)
                    continue
                publish(letter)
                continue
            try:
                if isinstance(ev.payload, SigningRequested):
                    out: Answer = state.on_request(ev, time.monotonic())
                elif isinstance(ev.payload, SigningPackageIssued):
                    out = state.on_package(ev)
                else:
                    continue
            except Exception as exc:  # never crash on one message; record why instead
                log.exception("%s failed on %s", producer_name, ev.event_type)
                out = rejection(ev, producer_name, f"{type(exc).__name__}: {exc}")
            if out is not None:
                publish(new_event(out, producer=producer_name, causation=ev))
    finally:
        for accepted in state.pending.values():
            accepted.nonces.close()
        state.pending.clear()
        consumer.close()


def main(settings: Settings) -> int:
    """`tradetape run signer --id I`."""
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(name)s %(message)s")
    raw_id = os.environ.get("TRADETAPE_SIGNER_ID")
    if not raw_id:
        print("error: `tradetape run signer` needs --id", file=sys.stderr)
        return 2
    key_dir = Path(
        os.environ.get("TRADETAPE_SIGNER_KEY_DIR", settings.resolved_data_dir / "signers")
    )
    try:
        group = SignerGroup.load(key_dir)
        share = load_share(key_dir, int(raw_id))
        identity = load_identity(key_dir, int(raw_id))
        if group.identity_keys.get(share.identifier) != public_hex(identity):
            raise ValueError(
                f"group.json does not list this participant's identity key "
                f"{public_hex(identity)}: the coordinator would refuse its messages"
            )
    except Exception as exc:  # a configuration error: no restart cures it (exit 2)
        print(f"error: cannot load signer {raw_id} from {key_dir}: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ready = threading.Event()
    threading.Thread(
        target=lambda: (
            ready.wait(60)
            and print(
                f"signer {share.identifier} serving group {group.verifying_key.hex()[:16]}"
                + (f", recomputing digests from {artefacts.root}" if artefacts else ""),
                file=sys.stderr,
                flush=True,
            )
        ),
        daemon=True,
    ).start()
    root = os.environ.get(ROOT_ENV)
    artefacts = ArtefactStore(Path(root)) if root else None
    state = ParticipantState(share=share, group=group, identity=identity, artefacts=artefacts)
    serve(settings, state, stop, ready)
    share.wipe()
    # as an engine worker's `engine worker N stopped`: it ended without a word
    print(f"signer {share.identifier} stopped", file=sys.stderr, flush=True)
    return 0
