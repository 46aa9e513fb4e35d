"""One signer process: holds exactly one key share and answers signing rounds over Kafka.

`tradetape run signer --id I`. It reads requests and coordinator messages from the
current end of the topics (old rounds are never answered again), keeps round-1 nonces
only in Rust memory, uses each nonce handle for one share, and drops unanswered nonces
after `nonce_ttl` seconds. A restart therefore loses in-flight rounds, by design.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer

from deploy.deadletter import dead_letter_for
from deploy.kafka import assign_from_end, consumer_config, producer_config
from deploy.settings import Settings
from schemas import Envelope, MalformedEventError, decode, encode, new_event
from schemas.events import (
    SignatureSharePublished,
    SigningCommitmentPublished,
    SigningPackageIssued,
    SigningRequested,
)
from schemas.topics import Topic
from signer_ffi.coordinator import LOW_LATENCY
from signer_ffi.errors import SignerError
from signer_ffi.frost import KeyShare, SigningNonces, SigningPackage, commit, sign
from signer_ffi.group import SignerGroup, load_share

log = logging.getLogger("tradetape.signer")


@dataclass
class ParticipantState:
    """Pure round bookkeeping for one participant."""

    share: KeyShare
    group: SignerGroup
    nonce_ttl: float = 60.0
    pending: dict[str, tuple[SigningNonces, float]] = field(default_factory=dict)

    @property
    def identifier(self) -> int:
        return self.share.identifier

    def on_request(self, req: SigningRequested, now: float) -> SigningCommitmentPublished | None:
        if (
            self.identifier not in req.signers
            or req.group_public_key != self.group.verifying_key.hex()
        ):
            return None
        if req.request_id in self.pending:
            return None
        nonces, commitments = commit(self.share)
        self.pending[req.request_id] = (nonces, now)
        return SigningCommitmentPublished(
            request_id=req.request_id,
            participant=self.identifier,
            commitments_hex=commitments.data.hex(),
        )

    def on_package(self, issued: SigningPackageIssued) -> SignatureSharePublished | None:
        if self.identifier not in issued.participants:
            entry = self.pending.pop(issued.request_id, None)
            if entry is not None:
                entry[0].close()  # not chosen: discard the nonces
            return None
        entry = self.pending.pop(issued.request_id, None)
        if entry is None:
            return None
        nonces, _at = entry
        try:
            share = sign(
                SigningPackage(bytes.fromhex(issued.signing_package_hex)), nonces, self.share
            )
        finally:
            nonces.close()
        return SignatureSharePublished(
            request_id=issued.request_id, participant=self.identifier, share_hex=share.data.hex()
        )

    def expire(self, now: float) -> list[str]:
        old = [rid for rid, (_n, at) in self.pending.items() if now - at > self.nonce_ttl]
        for rid in old:
            self.pending.pop(rid)[0].close()
        return old


def serve(
    settings: Settings,
    state: ParticipantState,
    stop: threading.Event,
    ready: threading.Event | None = None,
) -> None:
    producer_name = f"signer-{state.identifier}"
    producer = Producer({**producer_config(settings), "linger.ms": 0})
    consumer = Consumer(
        consumer_config(
            settings,
            group_id=f"{producer_name}-{os.getpid()}",
            **LOW_LATENCY,
        )
    )
    assign_from_end(consumer, settings, [Topic.SIGNING_REQUESTS, Topic.SIGNING_MESSAGES])
    if ready is not None:
        ready.set()

    def publish(event: Envelope[Any]) -> None:
        key, value, headers = encode(event)
        producer.produce(settings.topic(event.payload.TOPIC), key=key, value=value, headers=headers)
        producer.flush(10)

    try:
        while not stop.is_set():
            msg = consumer.poll(0.05)
            state.expire(time.monotonic())
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
            except MalformedEventError as exc:
                publish(dead_letter_for(msg, exc, stage=producer_name, producer=producer_name))
                continue
            try:
                if isinstance(ev.payload, SigningRequested):
                    out: Any = state.on_request(ev.payload, time.monotonic())
                elif isinstance(ev.payload, SigningPackageIssued):
                    out = state.on_package(ev.payload)
                else:
                    continue
            except SignerError as exc:
                log.warning("signer %s refused %s: %s", state.identifier, ev.event_type, exc)
                continue
            if out is not None:
                publish(new_event(out, producer=producer_name, causation=ev))
    finally:
        for nonces, _at in state.pending.values():
            nonces.close()
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
    except Exception as exc:
        print(f"error: cannot load signer {raw_id} from {key_dir}: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ready = threading.Event()
    threading.Thread(
        target=lambda: (
            ready.wait(60)
            and print(
                f"signer {share.identifier} serving group {group.verifying_key.hex()[:16]}",
                file=sys.stderr,
                flush=True,
            )
        ),
        daemon=True,
    ).start()
    serve(settings, ParticipantState(share=share, group=group), stop, ready)
    share.wipe()
    return 0
