//! Plain Ed25519 verification of many (key, message, signature) triples in one call,
//! for the engine's producer authentication (not FROST: single-key signatures).
//!
//! One `ed25519_dalek::verify_batch` over the candidates first (a random linear
//! combination: about half the cost per signature of checking each alone); if the batch
//! fails, every signature is checked alone with `verify_strict`, so one bad signature
//! only costs its batch the slow path and never changes the others' verdicts.
//! Small-order ("weak") public keys and non-canonical scalars are refused outright, as
//! libsodium refuses them.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ed25519_dalek::{Signature, VerifyingKey};

use crate::{TtSlice, TT_ERR_NULL_POINTER, TT_ERR_PANIC, TT_OK};

/// `out_verdicts[i]` = 1 if signature i (64 bytes at `signatures + 64 i`) is valid for
/// message i under public key i (32 bytes at `public_keys + 32 i`), else 0.
#[no_mangle]
pub unsafe extern "C" fn tt_ed25519_verify_many(
    public_keys: *const u8,
    messages: *const TtSlice,
    signatures: *const u8,
    n: usize,
    out_verdicts: *mut u8,
) -> i32 {
    if n == 0 {
        return TT_OK;
    }
    if public_keys.is_null() || messages.is_null() || signatures.is_null() || out_verdicts.is_null()
    {
        return TT_ERR_NULL_POINTER;
    }
    let run = AssertUnwindSafe(|| {
        let keys = std::slice::from_raw_parts(public_keys, 32 * n);
        let sigs = std::slice::from_raw_parts(signatures, 64 * n);
        let msgs = std::slice::from_raw_parts(messages, n);
        let out = std::slice::from_raw_parts_mut(out_verdicts, n);
        let mut idx: Vec<usize> = Vec::with_capacity(n);
        let mut ks: Vec<VerifyingKey> = Vec::with_capacity(n);
        let mut ss: Vec<Signature> = Vec::with_capacity(n);
        let mut ms: Vec<&[u8]> = Vec::with_capacity(n);
        for i in 0..n {
            out[i] = 0;
            let m = &msgs[i];
            if m.ptr.is_null() && m.len != 0 {
                continue;
            }
            let kb: [u8; 32] = keys[32 * i..32 * i + 32].try_into().expect("32 bytes");
            let sb: [u8; 64] = sigs[64 * i..64 * i + 64].try_into().expect("64 bytes");
            let key = match VerifyingKey::from_bytes(&kb) {
                Ok(k) if !k.is_weak() => k,
                _ => continue,
            };
            // A non-canonical S (>= l) is refused by both verify_batch and verify_strict.
            let sig = Signature::from_bytes(&sb);
            let msg: &[u8] = if m.len == 0 { &[] } else { std::slice::from_raw_parts(m.ptr, m.len) };
            idx.push(i);
            ks.push(key);
            ss.push(sig);
            ms.push(msg);
        }
        if idx.is_empty() {
            return;
        }
        if ed25519_dalek::verify_batch(&ms, &ss, &ks).is_ok() {
            for &i in &idx {
                out[i] = 1;
            }
        } else {
            for (j, &i) in idx.iter().enumerate() {
                out[i] = u8::from(ks[j].verify_strict(ms[j], &ss[j]).is_ok());
            }
        }
    });
    match catch_unwind(run) {
        Ok(()) => TT_OK,
        Err(_) => TT_ERR_PANIC,
    }
}
