"""What a participant and the coordinator refuse, without a broker.

A participant answers only an authorised requester's signed request, and signs only a
package whose message is the digest it committed to, that holds its own commitments and
names only the request's signers. The coordinator counts only commitments and shares
signed by the participant's identity key. Every refusal is a `SigningMessageRejected`
with the reason, and no share.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import Envelope, new_event
from schemas.events import (
    ProducerRegistered,
    SignatureSharePublished,
    SigningCommitmentPublished,
    SigningMessageRejected,
    SigningPackageIssued,
    SigningRequested,
)
from signer_ffi.artefacts import ArtefactStore
from signer_ffi.authn import (
    Requester,
    RequesterRegistry,
    public_hex,
    read_identity,
    sign_round_message,
    verify_round_message,
    write_identity,
)
from signer_ffi.coordinator import SigningRound, rejection
from signer_ffi.frost import (
    KeyShare,
    SigningCommitments,
    SigningPackage,
    commit,
    generate_with_dealer,
    signing_package,
)
from signer_ffi.group import SignerGroup
from signer_ffi.keyfile import KeyFileError, WrongPassphraseError
from signer_ffi.participant import ParticipantState

REQUESTER = "coord"
DIGEST = bytes(range(32))


@dataclass
class World:
    group: SignerGroup
    shares: dict[int, KeyShare]
    identities: dict[int, Ed25519PrivateKey]
    requester: Requester
    registry: RequesterRegistry

    def participant(self, i: int) -> ParticipantState:
        return ParticipantState(
            share=self.shares[i],
            group=self.group,
            identity=self.identities[i],
            registry=self.registry,
        )

    def request(
        self,
        request_id: str = "r1",
        *,
        digest: bytes = DIGEST,
        signers: tuple[int, ...] | None = None,
        requester: Requester | None = None,
    ) -> Envelope[SigningRequested]:
        who = requester or self.requester
        payload = SigningRequested(
            request_id=request_id,
            digest_hex=digest.hex(),
            purpose="test",
            signers=signers or self.group.identifiers,
            group_public_key=self.group.verifying_key.hex(),
            requester=who.name,
        )
        return new_event(sign_round_message(payload, who.key), producer=who.name)


@pytest.fixture(scope="module")
def world() -> World:
    shares, public = generate_with_dealer(2, 3)
    identities = {s.identifier: Ed25519PrivateKey.generate() for s in shares}
    group = SignerGroup(
        threshold=2,
        identifiers=public.identifiers,
        public_key_package=public,
        identity_keys={i: public_hex(k) for i, k in identities.items()},
        requesters=(REQUESTER,),
    )
    requester = Requester(REQUESTER, Ed25519PrivateKey.generate())
    registry = RequesterRegistry()
    assert registry.apply(
        new_event(
            ProducerRegistered(
                producer_id=REQUESTER,
                public_key=requester.public_key,
                accounts=(),
                registered_by="admin",
            ),
            producer="engine",
        )
    )
    return World(group, {s.identifier: s for s in shares}, identities, requester, registry)


def ev(payload: Any, producer: str = "x") -> Envelope[Any]:
    return new_event(payload, producer=producer)


def issued(
    world: World,
    request_id: str,
    commitments: dict[int, Any],
    message: bytes = DIGEST,
    key: Ed25519PrivateKey | None = None,
) -> Envelope[SigningPackageIssued]:
    pkg = signing_package(commitments, message)
    payload = SigningPackageIssued(
        request_id=request_id,
        participants=tuple(sorted(commitments)),
        signing_package_hex=pkg.data.hex(),
    )
    return ev(sign_round_message(payload, key or world.requester.key), REQUESTER)


def committed(
    world: World, request: Envelope[SigningRequested], ids: tuple[int, ...]
) -> tuple[dict[int, ParticipantState], dict[int, Any]]:
    states, coms = {}, {}
    for i in ids:
        st_ = world.participant(i)
        out = st_.on_request(request, 0.0)
        assert isinstance(out, SigningCommitmentPublished), out
        assert verify_round_message(out, world.group.identity_keys[i])
        states[i] = st_
        coms[i] = SigningCommitments(bytes.fromhex(out.commitments_hex))
    return states, coms


# ---- the happy path, in process ---------------------------------------------------------


def test_an_authorised_round_signs_and_verifies_as_plain_ed25519(world: World) -> None:
    request = world.request("ok")
    rnd = SigningRound(
        request=request.payload, group=world.group, message=DIGEST, requester=world.requester
    )
    package = None
    for i in (1, 2, 3):
        out = world.participant(i).on_request(request, 0.0)
        assert isinstance(out, SigningCommitmentPublished)
        got = rnd.on_commitment(ev(out, f"signer-{i}"))
        if isinstance(got, SigningPackageIssued):
            package = got
    assert package is not None and package.participants == (1, 2)
    assert verify_round_message(package, world.requester.public_key)


def test_two_participants_sign_through_every_check(world: World) -> None:
    request = world.request("full")
    rnd = SigningRound(
        request=request.payload, group=world.group, message=DIGEST, requester=world.requester
    )
    states = {i: world.participant(i) for i in (1, 2)}
    package = None
    for i, s in states.items():
        out = s.on_request(request, 0.0)
        package = rnd.on_commitment(ev(out, f"signer-{i}")) or package
    assert isinstance(package, SigningPackageIssued)
    signature = None
    for i, s in states.items():
        share = s.on_package(ev(package, REQUESTER))
        assert isinstance(share, SignatureSharePublished)
        result = rnd.on_share(ev(share, f"signer-{i}"))
        if isinstance(result, bytes):
            signature = result
    assert signature is not None
    Ed25519PublicKey.from_public_bytes(world.group.verifying_key).verify(signature, DIGEST)


# ---- a participant refuses packages -----------------------------------------------------


def test_a_substituted_message_gets_no_share_and_a_clear_rejection(world: World) -> None:
    """The requester's key signed it (a compromised coordinator): the message still decides."""
    request = world.request("subst")
    states, coms = committed(world, request, (1, 2))
    evil = issued(world, "subst", coms, message=b"pay mallory 1000 BTC")
    out = states[1].on_package(evil)
    assert isinstance(out, SigningMessageRejected)
    assert "is not the requested digest" in out.reason
    assert out.rejected_by == "signer-1" and out.message_type == "SigningPackageIssued"
    assert "subst" not in states[1].pending  # the round is dead: nonces discarded
    assert states[1].on_package(issued(world, "subst", coms)) is None  # and never signed later


def test_a_package_without_our_own_commitments_is_refused(world: World) -> None:
    request = world.request("notours")
    states, coms = committed(world, request, (1, 2))
    _nonces, fresh = commit(world.shares[1])  # valid commitments, but not the ones published
    out = states[1].on_package(issued(world, "notours", {1: fresh, 2: coms[2]}))
    assert isinstance(out, SigningMessageRejected)
    assert "not the ones we published" in out.reason


def test_a_package_naming_signers_the_request_did_not_ask_is_refused(world: World) -> None:
    request = world.request("strangers", signers=(1, 2))
    states, coms = committed(world, request, (1, 2))
    _n3, c3 = commit(world.shares[3])
    out = states[1].on_package(issued(world, "strangers", {1: coms[1], 3: c3}))
    assert isinstance(out, SigningMessageRejected)
    assert "did not ask" in out.reason and "[3]" in out.reason


def test_a_package_whose_signer_list_disagrees_with_its_header_is_refused(world: World) -> None:
    request = world.request("header")
    states, coms = committed(world, request, (1, 2))
    pkg = signing_package(coms, DIGEST)
    lying = SigningPackageIssued(
        request_id="header", participants=(1, 3), signing_package_hex=pkg.data.hex()
    )
    out = states[1].on_package(ev(sign_round_message(lying, world.requester.key)))
    assert isinstance(out, SigningMessageRejected) and "differ from the issued" in out.reason


def test_a_forged_package_is_refused_and_the_real_one_still_signs(world: World) -> None:
    request = world.request("forged")
    states, coms = committed(world, request, (1, 2))
    forged = issued(world, "forged", coms, key=Ed25519PrivateKey.generate())
    out = states[1].on_package(forged)
    assert isinstance(out, SigningMessageRejected) and "not by the requester" in out.reason
    assert "forged" in states[1].pending  # nonces kept for the genuine package
    assert isinstance(states[1].on_package(issued(world, "forged", coms)), SignatureSharePublished)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_other_package_bytes_get_a_rejection_never_a_share(world: World, data: Any) -> None:
    """Requester-signed packages of random or mutated bytes: a reason and no share unless the
    message, signers and own commitments are intact; never a crash."""
    request = world.request(f"fuzz-{data.draw(st.integers(0, 10**12))}")
    states, coms = committed(world, request, (1, 2))
    good = signing_package(coms, DIGEST).data
    raw = data.draw(
        st.one_of(
            st.binary(max_size=300),
            st.tuples(st.integers(0, len(good) - 1), st.integers(1, 255)).map(
                lambda a: good[: a[0]] + bytes([good[a[0]] ^ a[1]]) + good[a[0] + 1 :]
            ),
        )
    )
    payload = SigningPackageIssued(
        request_id=request.payload.request_id,
        participants=(1, 2),
        signing_package_hex=raw.hex() or "00",
    )
    out = states[1].on_package(ev(sign_round_message(payload, world.requester.key)))
    if raw == good:
        assert isinstance(out, SignatureSharePublished)
    elif isinstance(out, SignatureSharePublished):
        # Signed only if everything participant 1 can check is intact: a flipped byte in
        # participant 2's commitments can still be a valid point, and participant 1 has no
        # way (and, for FROST's unforgeability, no need) to know 2's commitments.
        held = SigningPackage(raw).contents(1)
        assert held.message == DIGEST and held.signers == (1, 2)
        assert held.commitments == coms[1]
    else:
        assert isinstance(out, SigningMessageRejected), out


# ---- a participant refuses requests -----------------------------------------------------


def _unsigned(world: World) -> Envelope[SigningRequested]:
    r = world.request("unsigned").payload.model_copy(update={"signature": None})
    return ev(r)


def _no_requester(world: World) -> Envelope[SigningRequested]:
    r = world.request("anon").payload.model_copy(update={"requester": None, "signature": None})
    return ev(r)


def _tampered(world: World) -> Envelope[SigningRequested]:
    r = world.request("tampered").payload.model_copy(update={"digest_hex": "ab" * 32})
    return ev(r)


def _wrong_key(world: World) -> Envelope[SigningRequested]:
    return world.request("wrongkey", requester=Requester(REQUESTER, Ed25519PrivateKey.generate()))


def _not_allowed(world: World) -> Envelope[SigningRequested]:
    return world.request("mallory", requester=Requester("mallory", Ed25519PrivateKey.generate()))


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_unsigned, "signature missing or not by"),
        (_no_requester, "names no requester"),
        (_tampered, "signature missing or not by"),
        (_wrong_key, "signature missing or not by"),
        (_not_allowed, "is not allowed by this group"),
    ],
)
def test_unauthenticated_or_unauthorised_requests_are_refused(
    world: World, make: Any, reason: str
) -> None:
    p = world.participant(1)
    out = p.on_request(make(world), 0.0)
    assert isinstance(out, SigningMessageRejected), out
    assert reason in out.reason
    assert not p.pending  # no nonces, no commitments


def test_an_allowed_requester_without_a_registered_key_is_refused(world: World) -> None:
    p = ParticipantState(
        share=world.shares[1],
        group=world.group,
        identity=world.identities[1],
        registry=RequesterRegistry(),
    )
    out = p.on_request(world.request("noreg"), 0.0)
    assert isinstance(out, SigningMessageRejected) and "no registered key" in out.reason


def test_a_replayed_request_is_refused(world: World) -> None:
    """The signed payload again under a new envelope (the event id is not signed)."""
    p = world.participant(1)
    request = world.request("replay")
    assert isinstance(p.on_request(request, 0.0), SigningCommitmentPublished)
    p.pending.pop("replay").nonces.close()
    out = p.on_request(new_event(request.payload, producer=request.producer), 1.0)
    assert isinstance(out, SigningMessageRejected) and "replay" in out.reason


def test_a_redelivered_request_is_ignored_not_refused(world: World) -> None:
    """review helper-46 d10: the same record delivered twice (a producer retry, a
    rewind) was refused as a replay, and the refusals of every participant ended the
    genuine round. Now it is ignored: no second commitment, no refusal."""
    p = world.participant(1)
    request = world.request("twice")
    first = p.on_request(request, 0.0)
    assert isinstance(first, SigningCommitmentPublished)
    assert p.on_request(request, 0.5) is None
    assert p.pending["twice"].commitments.data.hex() == first.commitments_hex
    p.pending.pop("twice").nonces.close()
    assert p.on_request(request, 1.0) is None  # also after the round is over


def test_another_groups_request_is_not_ours_to_judge(world: World) -> None:
    r = world.request("other").payload.model_copy(update={"group_public_key": "00" * 32})
    assert world.participant(1).on_request(ev(r), 0.0) is None


def test_the_registry_counts_only_the_engines_facts_and_the_latest_key() -> None:
    reg = RequesterRegistry()
    k1, k2 = (public_hex(Ed25519PrivateKey.generate()) for _ in range(2))

    def registration(key: str, producer: str) -> Envelope[Any]:
        return new_event(
            ProducerRegistered(producer_id="c", public_key=key, accounts=(), registered_by="a"),
            producer=producer,
        )

    assert not reg.apply(registration(k1, "admin"))  # a raw admin command is not a fact
    assert reg.key_of("c") is None
    assert reg.apply(registration(k1, "engine")) and reg.apply(registration(k2, "engine"))
    assert reg.key_of("c") == k2


# ---- the coordinator refuses forged commitments and shares -----------------------------


def test_a_forged_commitment_is_refused_and_cannot_take_an_honest_signers_place(
    world: World,
) -> None:
    request = world.request("fc")
    rnd = SigningRound(
        request=request.payload, group=world.group, message=DIGEST, requester=world.requester
    )
    _n, fake = commit(world.shares[1])
    forged = SigningCommitmentPublished(
        request_id="fc", participant=1, commitments_hex=fake.data.hex()
    )
    for bad in (forged, sign_round_message(forged, Ed25519PrivateKey.generate())):
        out = rnd.on_commitment(ev(bad, "mallory"))
        assert isinstance(out, SigningMessageRejected)
        assert "not by participant 1's identity key" in out.reason
        assert out.sender == "mallory" and out.rejected_by == "signing-coordinator"
    assert rnd.commitments == {}
    pkg = None
    for i in (1, 2):
        honest = world.participant(i).on_request(request, 0.0)
        pkg = rnd.on_commitment(ev(honest, f"signer-{i}")) or pkg
    assert isinstance(pkg, SigningPackageIssued) and pkg.participants == (1, 2)
    assert len(rnd.rejected) == 2


def test_a_forged_share_is_refused_and_the_honest_share_aggregates(world: World) -> None:
    request = world.request("fs")
    rnd = SigningRound(
        request=request.payload, group=world.group, message=DIGEST, requester=world.requester
    )
    states = {i: world.participant(i) for i in (1, 2)}
    pkg = None
    for i, s in states.items():
        pkg = rnd.on_commitment(ev(s.on_request(request, 0.0), f"signer-{i}")) or pkg
    assert isinstance(pkg, SigningPackageIssued)
    shares = {i: s.on_package(ev(pkg, REQUESTER)) for i, s in states.items()}
    assert all(isinstance(x, SignatureSharePublished) for x in shares.values())
    share1 = shares[1]
    assert isinstance(share1, SignatureSharePublished)
    garbage = share1.model_copy(update={"share_hex": "11" * 32, "signature": None})
    out = rnd.on_share(ev(sign_round_message(garbage, world.identities[2]), "mallory"))
    assert isinstance(out, SigningMessageRejected)  # signed, but by participant 2's key
    assert rnd.on_share(ev(share1, "signer-1")) is None
    sig = rnd.on_share(ev(shares[2], "signer-2"))
    assert isinstance(sig, bytes)
    Ed25519PublicKey.from_public_bytes(world.group.verifying_key).verify(sig, DIGEST)


def test_a_participant_without_an_identity_key_in_group_json_is_refused(world: World) -> None:
    group = SignerGroup(
        threshold=2,
        identifiers=world.group.identifiers,
        public_key_package=world.group.public_key_package,
        identity_keys={},
        requesters=(REQUESTER,),
    )
    request = world.request("noid")
    rnd = SigningRound(
        request=request.payload, group=group, message=DIGEST, requester=world.requester
    )
    out = world.participant(1).on_request(request, 0.0)
    got = rnd.on_commitment(ev(out))
    assert isinstance(got, SigningMessageRejected) and "no identity key" in got.reason


def test_round_signatures_are_bound_to_the_message_kind(world: World) -> None:
    """A share's signature does not verify as a commitment with the same fields."""
    share = sign_round_message(
        SignatureSharePublished(request_id="k", participant=1, share_hex="ab"), world.identities[1]
    )
    as_commitment = SigningCommitmentPublished(
        request_id="k", participant=1, commitments_hex="ab", signature=share.signature
    )
    assert verify_round_message(share, world.group.identity_keys[1])
    assert not verify_round_message(as_commitment, world.group.identity_keys[1])


# ---- identity key files -----------------------------------------------------------------


def test_identity_keys_decrypt_only_with_the_right_passphrase(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    write_identity(tmp_path, 4, key, b"right")
    assert public_hex(read_identity(tmp_path, 4, b"right")) == public_hex(key)
    with pytest.raises(WrongPassphraseError):
        read_identity(tmp_path, 4, b"wrong")
    (tmp_path / "participant-5.identity").write_bytes(
        (tmp_path / "participant-4.identity").read_bytes().replace(b"TTID", b"TTKS", 1)
    )
    with pytest.raises(KeyFileError):
        read_identity(tmp_path, 5, b"right")


# ---- the artefact policy ----------------------------------------------------------------


def test_a_signer_with_the_artefact_store_signs_only_its_digest(
    world: World, tmp_path: Path
) -> None:
    store = tmp_path / "reports"
    (store / "2026").mkdir(parents=True)
    report = store / "2026" / "1099-da.xml"
    report.write_bytes(b"<report>42</report>")
    (tmp_path / "secret.txt").write_bytes(b"not in the store")
    p = ParticipantState(
        share=world.shares[1],
        group=world.group,
        identity=world.identities[1],
        registry=world.registry,
        artefacts=ArtefactStore(store),
    )

    def ask(rid: str, digest: bytes, artefact: str | None) -> Any:
        payload = SigningRequested(
            request_id=rid,
            digest_hex=digest.hex(),
            purpose="1099-DA",
            signers=world.group.identifiers,
            group_public_key=world.group.verifying_key.hex(),
            requester=REQUESTER,
            artefact=artefact,
        )
        return p.on_request(ev(sign_round_message(payload, world.requester.key)), 0.0)

    right = hashlib.sha256(report.read_bytes()).digest()
    assert isinstance(ask("a1", right, "2026/1099-da.xml"), SigningCommitmentPublished)
    cases = {
        "a2": (DIGEST, "2026/1099-da.xml", "is not the SHA-256 of artefact"),
        "a3": (right, None, "names no artefact"),
        "a4": (hashlib.sha256(b"not in the store").digest(), "../secret.txt", "outside"),
        "a5": (right, "2026/missing.xml", "cannot be read"),
    }
    for rid, (digest, artefact, reason) in cases.items():
        out = ask(rid, digest, artefact)
        assert isinstance(out, SigningMessageRejected) and reason in out.reason, out
    assert set(p.pending) == {"a1"}


def test_only_refusals_of_the_rounds_own_messages_end_it(world: World) -> None:
    """A signer refusing a forged request or package that reuses the request id (it will)
    must not end the genuine round; refusals of the coordinator's own messages do."""
    request = world.request("refusals")
    rnd = SigningRound(
        request=request.payload, group=world.group, message=DIGEST, requester=world.requester
    )
    rnd.sent.add(request.event_id)
    forged = world.request("refusals", requester=Requester("mallory", Ed25519PrivateKey.generate()))
    for i in (1, 2, 3):
        refused = world.participant(i).on_request(forged, 0.0)
        assert isinstance(refused, SigningMessageRejected)
        assert rnd.on_refusal(refused) is None
    assert rnd.refusals == {}
    first = rejection_of(request, "signer-1", "no")
    assert rnd.on_refusal(first) is None  # 2 of 3 can still answer
    why = rnd.on_refusal(rejection_of(request, "signer-2", "no either"))
    assert why is not None and "2 of 3 signers refused" in why and "no either" in why


def rejection_of(event: Envelope[Any], who: str, reason: str) -> SigningMessageRejected:
    return rejection(event, who, reason)
