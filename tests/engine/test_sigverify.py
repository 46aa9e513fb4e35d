"""Batched signature checks give libsodium's verdicts, and the processor's outputs with
pre-verified batches equal its outputs with one-by-one checks."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import SigningKey

from engine import auth
from engine.processor import Context, preverify, process
from engine.sigverify import verify_many
from schemas import encode, new_event
from schemas.events import RiskLimits, Side
from tests.engine.pure import Harness
from tests.schemas.payloads import order_intent

KEYS = [SigningKey(bytes([i + 1]) * 32) for i in range(3)]
L = 2**252 + 27742317777372353535851937790883648493
SMALL_ORDER_KEY = bytes([1] + [0] * 31)  # the identity point: every signature "fits"


def libsodium(key: bytes, msg: bytes, sig: bytes) -> bool:
    try:
        crypto_sign_open(sig + msg, key)
    except (BadSignatureError, CryptoError, ValueError, TypeError):
        return False
    return True


@st.composite
def triples(draw: Any) -> tuple[bytes, bytes, bytes]:
    signer = draw(st.sampled_from(KEYS))
    msg = draw(st.binary(max_size=300))
    sig = signer.sign(msg).signature
    key = bytes(signer.verify_key)
    how = draw(st.sampled_from(["good", "good", "good", "msg", "sig", "key", "weak", "s+l", "len"]))
    if how == "msg":
        msg = msg + b"x"
    elif how == "sig":
        i = draw(st.integers(0, 63))
        sig = sig[:i] + bytes([sig[i] ^ (1 << draw(st.integers(0, 7)))]) + sig[i + 1 :]
    elif how == "key":
        key = bytes(draw(st.sampled_from([k for k in KEYS if k is not signer])).verify_key)
    elif how == "weak":
        key = SMALL_ORDER_KEY
    elif how == "s+l":  # the same signature with a non-canonical S (S + l)
        s = int.from_bytes(sig[32:], "little") + L
        if s < 2**256:
            sig = sig[:32] + s.to_bytes(32, "little")
    elif how == "len":
        sig = sig[:63]
    return key, msg, sig


@settings(max_examples=60, deadline=None)
@given(st.lists(triples(), min_size=1, max_size=40))
def test_verdicts_equal_libsodium(items: list[tuple[bytes, bytes, bytes]]) -> None:
    assert verify_many(items) == [libsodium(*t) for t in items]


def test_one_bad_signature_does_not_condemn_its_batch() -> None:
    good = [
        (bytes(k.verify_key), b"m%d" % i, k.sign(b"m%d" % i).signature)
        for i, k in enumerate(KEYS * 20)
    ]
    bad = (good[0][0], b"forged", good[0][2])
    assert verify_many([*good, bad, *good]) == [True] * 60 + [False] + [True] * 60
    assert verify_many([]) == []


def test_preverified_batch_gives_the_same_outputs() -> None:
    """The same inputs through `process` from the same state, with and without a batched
    check ahead: the same output bytes."""
    h = Harness(RiskLimits(max_price_age_seconds=86400), accounts=("A1", "A2"))
    h.quote(Decimal("60000"), Decimal("60001"), Decimal("5"))
    intents = []
    for i in range(30):
        payload = order_intent(
            account="A1" if i % 3 else "A3",  # A3: not entitled
            client_order_id=f"c{i}",
            side=Side.BUY if i % 2 else Side.SELL,
            quantity=Decimal("0.01"),
            limit_price=Decimal("59990"),
        )
        signed = auth.sign(payload, h.key)
        if i % 7 == 0:  # a signature over other bytes
            signed = signed.model_copy(update={"client_order_id": f"x{i}"})
        intents.append(new_event(signed, producer="p1", occurred_at=h.tick()))
    runs = []
    for preverified in (False, True):
        state, ctx = copy.deepcopy(h.state), Context(event_time_is_arrival=True)
        if preverified:
            preverify(state, intents, ctx)
            assert len(ctx.preverified) == len(intents), "the batch was checked ahead"
        out = [e for ev in intents for e in process(state, ev, ctx)]
        assert not ctx.preverified, "every verdict was used"
        runs.append([encode(e)[:2] for e in out])
    assert runs[0] == runs[1]
    assert any(b"BAD_SIGNATURE" in v for _k, v in runs[0])
    assert any(b"NOT_ENTITLED" in v for _k, v in runs[0])
    assert any(b"APPROVED" in v for _k, v in runs[0])


def test_a_verdict_is_only_used_for_the_key_it_was_checked_against() -> None:
    h = Harness(RiskLimits(max_price_age_seconds=86400))
    h.quote(Decimal("60000"), Decimal("60001"), Decimal("5"))
    payload = auth.sign(
        order_intent(quantity=Decimal("0.01"), limit_price=Decimal("59990")),
        h.key,
    )
    event = new_event(payload, producer="p1", occurred_at=h.tick())
    # A verdict for another key (here: "invalid") must not be used; the real check
    # against the registered key accepts the intent.
    h.ctx.preverified[id(payload)] = (payload, "00" * 32, False, auth.signing_bytes_fast(payload))
    out = process(h.state, event, h.ctx)
    assert [e.event_type for e in out][:1] == ["RiskDecision"]
    assert out[0].payload.outcome == "APPROVED"
    # And the verdict for the right key is what decides (here a deliberate "invalid").
    h.ctx.preverified[id(payload)] = (
        payload,
        h.state.producers["p1"].public_key,
        False,
        auth.signing_bytes_fast(payload),
    )
    again = new_event(payload.model_copy(update={"client_order_id": "c2"}), producer="p1")
    h.ctx.preverified[id(again.payload)] = (
        again.payload,
        h.state.producers["p1"].public_key,
        False,
        auth.signing_bytes_fast(again.payload),
    )
    out2 = process(h.state, again, h.ctx)
    assert out2[0].payload.reason == "BAD_SIGNATURE"
