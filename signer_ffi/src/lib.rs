//! C ABI over `frost-ed25519` (FROST, RFC 9591) for the tradetape signer.
//!
//! Design rules (see `include/signer_ffi.h`, which must match this file):
//! * Every payload crosses the boundary as the crate's own `serialize()` bytes.
//! * Rust owns every output buffer (`TtBuffer`); the caller hands it back to
//!   `tt_buffer_free`, which zeroizes the bytes before releasing them.
//! * Every exported function returns an `i32` status: 0 is success, positive
//!   codes are one per `frost_core::Error` variant, negative codes are FFI-level.
//! * Every exported function runs inside `catch_unwind`, so a panic never
//!   unwinds into C / Python; it becomes `TT_ERR_PANIC`.
//! * Signing nonces never leave Rust: round 1 returns an opaque handle that
//!   round 2 consumes atomically (the nonces are zeroized on use) and refuses to
//!   reuse, also against a concurrent call on the same handle.
//! * Nothing that fixes nonces or randomness is compiled into the release
//!   library; that lives in `vectors.rs` behind the `test-vectors` feature.
//!
//! # Safety (applies to every `unsafe extern "C"` function)
//! Pointer/length pairs must describe readable memory for the duration of the
//! call (a zero length may pass NULL); `out_*` pointers must be writable, and
//! array outputs must have room for the documented number of elements. Nonce
//! handles are tokens, never dereferenced: a released or unknown one is refused.
#![allow(clippy::missing_safety_doc)]

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use frost::keys::dkg;
use frost::keys::{IdentifierList, KeyPackage, PublicKeyPackage};
use frost::round1::{SigningCommitments, SigningNonces};
use frost::round2::SignatureShare;
use frost::{Identifier, Signature, SigningPackage, VerifyingKey};
use frost_ed25519 as frost;
use rand_core::OsRng;
use zeroize::Zeroize;

pub mod batch_verify;
#[cfg(feature = "test-vectors")]
pub mod vectors;

/// ABI version; bump on any incompatible change of the exported surface.
pub const TT_ABI_VERSION: u32 = 2;

// ---- status codes --------------------------------------------------------
pub const TT_OK: i32 = 0;
// One per frost_core::Error variant (frost-core 3.0.0).
pub const TT_ERR_INVALID_MIN_SIGNERS: i32 = 1;
pub const TT_ERR_INVALID_MAX_SIGNERS: i32 = 2;
pub const TT_ERR_INVALID_COEFFICIENTS: i32 = 3;
pub const TT_ERR_MALFORMED_IDENTIFIER: i32 = 4;
pub const TT_ERR_DUPLICATED_IDENTIFIER: i32 = 5;
pub const TT_ERR_UNKNOWN_IDENTIFIER: i32 = 6;
pub const TT_ERR_INCORRECT_NUMBER_OF_IDENTIFIERS: i32 = 7;
pub const TT_ERR_MALFORMED_SIGNING_KEY: i32 = 8;
pub const TT_ERR_MALFORMED_VERIFYING_KEY: i32 = 9;
pub const TT_ERR_MALFORMED_SIGNATURE: i32 = 10;
pub const TT_ERR_INVALID_SIGNATURE: i32 = 11;
pub const TT_ERR_DUPLICATED_SHARES: i32 = 12;
pub const TT_ERR_INCORRECT_NUMBER_OF_SHARES: i32 = 13;
pub const TT_ERR_IDENTITY_COMMITMENT: i32 = 14;
pub const TT_ERR_MISSING_COMMITMENT: i32 = 15;
pub const TT_ERR_INCORRECT_COMMITMENT: i32 = 16;
pub const TT_ERR_INCORRECT_NUMBER_OF_COMMITMENTS: i32 = 17;
pub const TT_ERR_INVALID_SIGNATURE_SHARE: i32 = 18;
pub const TT_ERR_INVALID_SECRET_SHARE: i32 = 19;
pub const TT_ERR_PACKAGE_NOT_FOUND: i32 = 20;
pub const TT_ERR_INCORRECT_NUMBER_OF_PACKAGES: i32 = 21;
pub const TT_ERR_INCORRECT_PACKAGE: i32 = 22;
pub const TT_ERR_DKG_NOT_SUPPORTED: i32 = 23;
pub const TT_ERR_INVALID_PROOF_OF_KNOWLEDGE: i32 = 24;
pub const TT_ERR_FIELD_ERROR: i32 = 25;
pub const TT_ERR_GROUP_ERROR: i32 = 26;
pub const TT_ERR_INVALID_COEFFICIENT: i32 = 27;
pub const TT_ERR_IDENTIFIER_DERIVATION_NOT_SUPPORTED: i32 = 28;
pub const TT_ERR_SERIALIZATION_ERROR: i32 = 29;
pub const TT_ERR_DESERIALIZATION_ERROR: i32 = 30;
/// A frost error variant this build does not know (the enum is non_exhaustive).
pub const TT_ERR_FROST_OTHER: i32 = 99;
// FFI-level.
pub const TT_ERR_NULL_POINTER: i32 = -1;
pub const TT_ERR_NONCE_REUSED: i32 = -2;
pub const TT_ERR_PANIC: i32 = -3;
pub const TT_ERR_INVALID_ARGUMENT: i32 = -4;

type FrostError = frost::Error;

fn error_code(e: &FrostError) -> i32 {
    use frost_core::Error as E;
    match e {
        E::InvalidMinSigners => TT_ERR_INVALID_MIN_SIGNERS,
        E::InvalidMaxSigners => TT_ERR_INVALID_MAX_SIGNERS,
        E::InvalidCoefficients => TT_ERR_INVALID_COEFFICIENTS,
        E::MalformedIdentifier => TT_ERR_MALFORMED_IDENTIFIER,
        E::DuplicatedIdentifier => TT_ERR_DUPLICATED_IDENTIFIER,
        E::UnknownIdentifier => TT_ERR_UNKNOWN_IDENTIFIER,
        E::IncorrectNumberOfIdentifiers => TT_ERR_INCORRECT_NUMBER_OF_IDENTIFIERS,
        E::MalformedSigningKey => TT_ERR_MALFORMED_SIGNING_KEY,
        E::MalformedVerifyingKey => TT_ERR_MALFORMED_VERIFYING_KEY,
        E::MalformedSignature => TT_ERR_MALFORMED_SIGNATURE,
        E::InvalidSignature => TT_ERR_INVALID_SIGNATURE,
        E::DuplicatedShares => TT_ERR_DUPLICATED_SHARES,
        E::IncorrectNumberOfShares => TT_ERR_INCORRECT_NUMBER_OF_SHARES,
        E::IdentityCommitment => TT_ERR_IDENTITY_COMMITMENT,
        E::MissingCommitment => TT_ERR_MISSING_COMMITMENT,
        E::IncorrectCommitment => TT_ERR_INCORRECT_COMMITMENT,
        E::IncorrectNumberOfCommitments => TT_ERR_INCORRECT_NUMBER_OF_COMMITMENTS,
        E::InvalidSignatureShare { .. } => TT_ERR_INVALID_SIGNATURE_SHARE,
        E::InvalidSecretShare { .. } => TT_ERR_INVALID_SECRET_SHARE,
        E::PackageNotFound => TT_ERR_PACKAGE_NOT_FOUND,
        E::IncorrectNumberOfPackages => TT_ERR_INCORRECT_NUMBER_OF_PACKAGES,
        E::IncorrectPackage => TT_ERR_INCORRECT_PACKAGE,
        E::DKGNotSupported => TT_ERR_DKG_NOT_SUPPORTED,
        E::InvalidProofOfKnowledge { .. } => TT_ERR_INVALID_PROOF_OF_KNOWLEDGE,
        E::FieldError(_) => TT_ERR_FIELD_ERROR,
        E::GroupError(_) => TT_ERR_GROUP_ERROR,
        E::InvalidCoefficient => TT_ERR_INVALID_COEFFICIENT,
        E::IdentifierDerivationNotSupported => TT_ERR_IDENTIFIER_DERIVATION_NOT_SUPPORTED,
        E::SerializationError => TT_ERR_SERIALIZATION_ERROR,
        E::DeserializationError => TT_ERR_DESERIALIZATION_ERROR,
        #[allow(unreachable_patterns)]
        _ => TT_ERR_FROST_OTHER,
    }
}

/// Internal error: a status code, plus culprits when frost named any.
pub(crate) struct Fail {
    code: i32,
    culprits: Vec<Identifier>,
}

impl From<FrostError> for Fail {
    fn from(e: FrostError) -> Self {
        Fail {
            code: error_code(&e),
            culprits: e.culprits(),
        }
    }
}

pub(crate) fn fail(code: i32) -> Fail {
    Fail {
        code,
        culprits: Vec::new(),
    }
}

pub(crate) type R<T> = Result<T, Fail>;

// ---- buffers ---------------------------------------------------------------

/// A byte buffer allocated by Rust. Release it with `tt_buffer_free`.
#[repr(C)]
pub struct TtBuffer {
    pub ptr: *mut u8,
    pub len: usize,
}

/// A borrowed input byte slice (caller-owned).
#[repr(C)]
pub struct TtSlice {
    pub ptr: *const u8,
    pub len: usize,
}

pub(crate) fn to_buffer(mut v: Vec<u8>) -> TtBuffer {
    // Exact-capacity boxed slice so free() can rebuild it; the Vec's bytes are
    // moved, not copied, but shrink may reallocate: wipe the original first.
    let mut exact = Vec::with_capacity(v.len());
    exact.extend_from_slice(&v);
    v.zeroize();
    let boxed = exact.into_boxed_slice();
    let len = boxed.len();
    let ptr = Box::into_raw(boxed) as *mut u8;
    TtBuffer { ptr, len }
}

pub(crate) unsafe fn put(out: *mut TtBuffer, v: Vec<u8>) {
    *out = to_buffer(v);
}

pub(crate) unsafe fn slice<'a>(ptr: *const u8, len: usize) -> R<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(fail(TT_ERR_NULL_POINTER));
    }
    Ok(std::slice::from_raw_parts(ptr, len))
}

pub(crate) unsafe fn slices<'a>(ptr: *const TtSlice, n: usize) -> R<Vec<&'a [u8]>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if ptr.is_null() {
        return Err(fail(TT_ERR_NULL_POINTER));
    }
    std::slice::from_raw_parts(ptr, n)
        .iter()
        .map(|s| slice(s.ptr, s.len))
        .collect()
}

pub(crate) fn check_out<T>(p: *mut T) -> R<()> {
    if p.is_null() {
        Err(fail(TT_ERR_NULL_POINTER))
    } else {
        Ok(())
    }
}

/// Release a buffer returned by this library: the bytes are zeroized first.
/// Safe to call on an empty / already-freed buffer.
#[no_mangle]
pub unsafe extern "C" fn tt_buffer_free(buf: *mut TtBuffer) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if buf.is_null() {
            return;
        }
        let b = &mut *buf;
        if !b.ptr.is_null() {
            let mut boxed: Box<[u8]> = Box::from_raw(ptr::slice_from_raw_parts_mut(b.ptr, b.len));
            boxed.zeroize();
            drop(boxed);
        }
        b.ptr = ptr::null_mut();
        b.len = 0;
    }));
}

/// Run `f`, convert errors and panics to status codes, and write culprits
/// (concatenated serialized identifiers) to `culprits_out` when given.
pub(crate) fn guard<F: FnOnce() -> R<()>>(culprits_out: *mut TtBuffer, f: F) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => TT_OK,
        Ok(Err(Fail { code, culprits })) => {
            if !culprits_out.is_null() && !culprits.is_empty() {
                let mut bytes = Vec::new();
                for c in &culprits {
                    bytes.extend(c.serialize());
                }
                unsafe { put(culprits_out, bytes) };
            }
            code
        }
        Err(_) => TT_ERR_PANIC,
    }
}

pub(crate) fn ident(bytes: &[u8]) -> R<Identifier> {
    Ok(Identifier::deserialize(bytes)?)
}

unsafe fn id_map<T, F: Fn(&[u8]) -> R<T>>(
    ids: *const TtSlice,
    items: *const TtSlice,
    n: usize,
    parse: F,
) -> R<BTreeMap<Identifier, T>> {
    let ids = slices(ids, n)?;
    let items = slices(items, n)?;
    let mut map = BTreeMap::new();
    for (i, item) in ids.iter().zip(items.iter()) {
        if map.insert(ident(i)?, parse(item)?).is_some() {
            return Err(fail(TT_ERR_DUPLICATED_IDENTIFIER));
        }
    }
    Ok(map)
}

#[no_mangle]
pub extern "C" fn tt_abi_version() -> u32 {
    TT_ABI_VERSION
}

// ---- key generation ---------------------------------------------------------

/// Trusted-dealer keygen. `out_key_packages` must have room for `max_signers`
/// buffers; each holds a serialized `KeyPackage`, every one validated through
/// `KeyPackage::try_from(SecretShare)` (which checks the share against the
/// dealer's VSS commitment) before it is returned.
#[no_mangle]
pub unsafe extern "C" fn tt_generate_with_dealer(
    max_signers: u16,
    min_signers: u16,
    out_key_packages: *mut TtBuffer,
    out_public_key_package: *mut TtBuffer,
) -> i32 {
    guard(ptr::null_mut(), || {
        check_out(out_key_packages)?;
        check_out(out_public_key_package)?;
        let (shares, pubkeys) = frost::keys::generate_with_dealer(
            max_signers,
            min_signers,
            IdentifierList::Default,
            OsRng,
        )?;
        let mut kps = Vec::with_capacity(shares.len());
        for (_, share) in shares {
            kps.push(KeyPackage::try_from(share)?.serialize()?);
        }
        let pk = pubkeys.serialize()?;
        for (i, kp) in kps.into_iter().enumerate() {
            put(out_key_packages.add(i), kp);
        }
        put(out_public_key_package, pk);
        Ok(())
    })
}

/// Public facts of a key package: identifier (32 bytes), verifying share,
/// group verifying key, and min_signers.
#[no_mangle]
pub unsafe extern "C" fn tt_key_package_info(
    key_package: *const u8,
    key_package_len: usize,
    out_identifier: *mut TtBuffer,
    out_verifying_share: *mut TtBuffer,
    out_verifying_key: *mut TtBuffer,
    out_min_signers: *mut u16,
) -> i32 {
    guard(ptr::null_mut(), || {
        check_out(out_identifier)?;
        check_out(out_verifying_share)?;
        check_out(out_verifying_key)?;
        check_out(out_min_signers)?;
        let kp = KeyPackage::deserialize(slice(key_package, key_package_len)?)?;
        let id = kp.identifier().serialize();
        let vs = kp.verifying_share().serialize()?;
        let vk = kp.verifying_key().serialize()?;
        put(out_identifier, id);
        put(out_verifying_share, vs);
        put(out_verifying_key, vk);
        *out_min_signers = *kp.min_signers();
        Ok(())
    })
}

/// Public facts of a public key package: group verifying key, min_signers
/// (0 when absent), and the participant identifiers concatenated (32 bytes each).
#[no_mangle]
pub unsafe extern "C" fn tt_public_key_package_info(
    public_key_package: *const u8,
    public_key_package_len: usize,
    out_verifying_key: *mut TtBuffer,
    out_identifiers: *mut TtBuffer,
    out_min_signers: *mut u16,
) -> i32 {
    guard(ptr::null_mut(), || {
        check_out(out_verifying_key)?;
        check_out(out_identifiers)?;
        check_out(out_min_signers)?;
        let pk = PublicKeyPackage::deserialize(slice(public_key_package, public_key_package_len)?)?;
        let vk = pk.verifying_key().serialize()?;
        let mut ids = Vec::new();
        for id in pk.verifying_shares().keys() {
            ids.extend(id.serialize());
        }
        put(out_verifying_key, vk);
        put(out_identifiers, ids);
        *out_min_signers = pk.min_signers().unwrap_or(0);
        Ok(())
    })
}

// ---- DKG ----------------------------------------------------------------------

/// DKG part 1. Outputs the round-1 secret package (keep private; wipe after
/// part 2) and the round-1 package to broadcast.
#[no_mangle]
pub unsafe extern "C" fn tt_dkg_part1(
    identifier: *const u8,
    identifier_len: usize,
    max_signers: u16,
    min_signers: u16,
    out_secret_package: *mut TtBuffer,
    out_package: *mut TtBuffer,
) -> i32 {
    guard(ptr::null_mut(), || {
        check_out(out_secret_package)?;
        check_out(out_package)?;
        let id = ident(slice(identifier, identifier_len)?)?;
        let (secret, package) = dkg::part1(id, max_signers, min_signers, OsRng)?;
        let s = secret.serialize()?;
        let p = package.serialize()?;
        put(out_secret_package, s);
        put(out_package, p);
        Ok(())
    })
}

/// DKG part 2. Inputs: the round-1 secret package and the other participants'
/// round-1 packages (`n` identifiers + packages). Outputs the round-2 secret
/// package and, in `out_ids[i]` / `out_packages[i]` for i < n, the round-2
/// package to send privately to each other participant. On
/// `TT_ERR_INVALID_PROOF_OF_KNOWLEDGE`, `out_culprits` names the sender.
#[no_mangle]
pub unsafe extern "C" fn tt_dkg_part2(
    secret_package: *const u8,
    secret_package_len: usize,
    round1_ids: *const TtSlice,
    round1_packages: *const TtSlice,
    n: usize,
    out_secret_package: *mut TtBuffer,
    out_ids: *mut TtBuffer,
    out_packages: *mut TtBuffer,
    out_culprits: *mut TtBuffer,
) -> i32 {
    guard(out_culprits, || {
        check_out(out_secret_package)?;
        check_out(out_ids)?;
        check_out(out_packages)?;
        let secret =
            dkg::round1::SecretPackage::deserialize(slice(secret_package, secret_package_len)?)?;
        let r1 = id_map(round1_ids, round1_packages, n, |b| {
            Ok(dkg::round1::Package::deserialize(b)?)
        })?;
        let (secret2, packages) = dkg::part2(secret, &r1)?;
        if packages.len() != n {
            return Err(fail(TT_ERR_INVALID_ARGUMENT));
        }
        let s = secret2.serialize()?;
        let mut outs = Vec::with_capacity(n);
        for (id, p) in packages {
            outs.push((id.serialize(), p.serialize()?));
        }
        put(out_secret_package, s);
        for (i, (id, p)) in outs.into_iter().enumerate() {
            put(out_ids.add(i), id);
            put(out_packages.add(i), p);
        }
        Ok(())
    })
}

/// DKG part 3: the final key package and public key package. On
/// `TT_ERR_INVALID_SECRET_SHARE`, `out_culprits` names the sender when known.
#[no_mangle]
pub unsafe extern "C" fn tt_dkg_part3(
    secret_package: *const u8,
    secret_package_len: usize,
    round1_ids: *const TtSlice,
    round1_packages: *const TtSlice,
    n1: usize,
    round2_ids: *const TtSlice,
    round2_packages: *const TtSlice,
    n2: usize,
    out_key_package: *mut TtBuffer,
    out_public_key_package: *mut TtBuffer,
    out_culprits: *mut TtBuffer,
) -> i32 {
    guard(out_culprits, || {
        check_out(out_key_package)?;
        check_out(out_public_key_package)?;
        let secret =
            dkg::round2::SecretPackage::deserialize(slice(secret_package, secret_package_len)?)?;
        let r1 = id_map(round1_ids, round1_packages, n1, |b| {
            Ok(dkg::round1::Package::deserialize(b)?)
        })?;
        let r2 = id_map(round2_ids, round2_packages, n2, |b| {
            Ok(dkg::round2::Package::deserialize(b)?)
        })?;
        let (kp, pk) = dkg::part3(&secret, &r1, &r2)?;
        let k = kp.serialize()?;
        let p = pk.serialize()?;
        put(out_key_package, k);
        put(out_public_key_package, p);
        Ok(())
    })
}

// ---- round 1: nonces ------------------------------------------------------------

/// Opaque nonce handle. Never dereferenced: its address is a token naming an entry of
/// `NONCES`, the one place signing nonces live. Taking them out of that map under its
/// lock is the single-use check, so two threads signing with one handle (cffi drops the
/// GIL during the call) cannot both get them, and a handle freed while another thread
/// signs with it, or freed twice, only finds no entry: nothing is read through a
/// dangling pointer. Tokens are never reused.
pub enum TtNonces {}

static NONCES: Mutex<BTreeMap<usize, SigningNonces>> = Mutex::new(BTreeMap::new());
static NEXT_HANDLE: AtomicUsize = AtomicUsize::new(1);

fn nonce_table() -> MutexGuard<'static, BTreeMap<usize, SigningNonces>> {
    // A panic while the lock was held cannot leave the map half-updated (insert and
    // remove are single calls): keep using it rather than refusing every later sign.
    NONCES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Remove the nonces behind `handle`, if any are left: at most one caller ever gets them.
pub(crate) fn take_nonces(handle: *mut TtNonces) -> Option<SigningNonces> {
    nonce_table().remove(&(handle as usize))
}

pub(crate) unsafe fn new_handle(out: *mut *mut TtNonces, nonces: SigningNonces) {
    let token = NEXT_HANDLE.fetch_add(1, Ordering::Relaxed);
    nonce_table().insert(token, nonces);
    *out = token as *mut TtNonces;
}

/// Round 1: fresh nonces from the OS RNG. The nonces stay inside Rust behind
/// `*out_nonces`; only the serialized commitments are returned.
#[no_mangle]
pub unsafe extern "C" fn tt_commit(
    key_package: *const u8,
    key_package_len: usize,
    out_nonces: *mut *mut TtNonces,
    out_commitments: *mut TtBuffer,
) -> i32 {
    guard(ptr::null_mut(), || {
        check_out(out_nonces)?;
        check_out(out_commitments)?;
        let kp = KeyPackage::deserialize(slice(key_package, key_package_len)?)?;
        let (nonces, commitments) = frost::round1::commit(kp.signing_share(), &mut OsRng);
        let c = commitments.serialize()?;
        new_handle(out_nonces, nonces);
        put(out_commitments, c);
        Ok(())
    })
}

/// Release a nonce handle (zeroizing any unused nonces). NULL, an already released
/// handle, and a release racing a `tt_sign` on the same handle are all safe.
#[no_mangle]
pub unsafe extern "C" fn tt_nonces_free(handle: *mut TtNonces) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if !handle.is_null() {
            if let Some(mut n) = take_nonces(handle) {
                n.zeroize();
            }
        }
    }));
}

/// Build a serialized `SigningPackage` from `n` (identifier, commitments) pairs
/// and the message.
#[no_mangle]
pub unsafe extern "C" fn tt_signing_package_new(
    ids: *const TtSlice,
    commitments: *const TtSlice,
    n: usize,
    message: *const u8,
    message_len: usize,
    out_signing_package: *mut TtBuffer,
) -> i32 {
    guard(ptr::null_mut(), || {
        check_out(out_signing_package)?;
        let map = id_map(ids, commitments, n, |b| {
            Ok(SigningCommitments::deserialize(b)?)
        })?;
        let msg = slice(message, message_len)?;
        let sp = SigningPackage::new(map, msg).serialize()?;
        put(out_signing_package, sp);
        Ok(())
    })
}

/// What a signer must check before signing, from one parse of a serialized
/// `SigningPackage`: its message (`SigningPackage::message()`), the identifiers of the
/// signers it names, concatenated (32 bytes each, ascending), and, when `identifier_len`
/// is non-zero, the round-1 commitments it holds for that identifier (left empty when it
/// holds none). With `identifier_len == 0`, `out_commitments` may be NULL.
#[no_mangle]
pub unsafe extern "C" fn tt_signing_package_info(
    signing_package: *const u8,
    signing_package_len: usize,
    identifier: *const u8,
    identifier_len: usize,
    out_message: *mut TtBuffer,
    out_identifiers: *mut TtBuffer,
    out_commitments: *mut TtBuffer,
) -> i32 {
    guard(ptr::null_mut(), || {
        check_out(out_message)?;
        check_out(out_identifiers)?;
        let wanted = if identifier_len == 0 {
            None
        } else {
            check_out(out_commitments)?;
            Some(ident(slice(identifier, identifier_len)?)?)
        };
        let sp = SigningPackage::deserialize(slice(signing_package, signing_package_len)?)?;
        let mut ids = Vec::new();
        for id in sp.signing_commitments().keys() {
            ids.extend(id.serialize());
        }
        let commitments = match wanted {
            Some(id) => match sp.signing_commitment(&id) {
                Some(c) => Some(c.serialize()?),
                None => None,
            },
            None => None,
        };
        let msg = sp.message().clone();
        put(out_message, msg);
        put(out_identifiers, ids);
        if let Some(c) = commitments {
            put(out_commitments, c);
        }
        Ok(())
    })
}

// ---- round 2 ---------------------------------------------------------------------

/// Round 2: sign with the nonces behind `nonces`. The nonces are taken out of the
/// handle atomically before anything else (so of two concurrent calls exactly one gets
/// them), and zeroized whatever happens next: a malformed package or key package, a
/// frost error and success alike consume them. Any later call, or a call on a handle
/// already released, returns `TT_ERR_NONCE_REUSED`.
#[no_mangle]
pub unsafe extern "C" fn tt_sign(
    signing_package: *const u8,
    signing_package_len: usize,
    nonces: *mut TtNonces,
    key_package: *const u8,
    key_package_len: usize,
    out_signature_share: *mut TtBuffer,
) -> i32 {
    guard(ptr::null_mut(), || {
        check_out(out_signature_share)?;
        if nonces.is_null() {
            return Err(fail(TT_ERR_NULL_POINTER));
        }
        let mut n = take_nonces(nonces).ok_or_else(|| fail(TT_ERR_NONCE_REUSED))?;
        let result = (|| {
            let sp = SigningPackage::deserialize(slice(signing_package, signing_package_len)?)?;
            let kp = KeyPackage::deserialize(slice(key_package, key_package_len)?)?;
            Ok::<_, Fail>(frost::round2::sign(&sp, &n, &kp)?)
        })();
        n.zeroize();
        drop(n);
        let share = result?;
        put(out_signature_share, share.serialize());
        Ok(())
    })
}

// ---- aggregate / verify -------------------------------------------------------------

/// Aggregate `n` signature shares. Cheater detection checks every share: on
/// `TT_ERR_INVALID_SIGNATURE_SHARE`, `out_culprits` receives the offending
/// identifiers concatenated (32 bytes each).
#[no_mangle]
pub unsafe extern "C" fn tt_aggregate(
    signing_package: *const u8,
    signing_package_len: usize,
    ids: *const TtSlice,
    shares: *const TtSlice,
    n: usize,
    public_key_package: *const u8,
    public_key_package_len: usize,
    out_signature: *mut TtBuffer,
    out_culprits: *mut TtBuffer,
) -> i32 {
    guard(out_culprits, || {
        check_out(out_signature)?;
        let sp = SigningPackage::deserialize(slice(signing_package, signing_package_len)?)?;
        let map = id_map(ids, shares, n, |b| Ok(SignatureShare::deserialize(b)?))?;
        let pk = PublicKeyPackage::deserialize(slice(public_key_package, public_key_package_len)?)?;
        let sig = frost::aggregate_custom(&sp, &map, &pk, frost::CheaterDetection::AllCheaters)?;
        put(out_signature, sig.serialize()?);
        Ok(())
    })
}

/// Verify a 64-byte Ed25519 signature against a 32-byte group verifying key.
/// Returns `TT_OK`, `TT_ERR_INVALID_SIGNATURE`, `TT_ERR_MALFORMED_SIGNATURE`
/// or `TT_ERR_MALFORMED_VERIFYING_KEY` (whatever the underlying parse error).
#[no_mangle]
pub unsafe extern "C" fn tt_verify(
    verifying_key: *const u8,
    verifying_key_len: usize,
    message: *const u8,
    message_len: usize,
    signature: *const u8,
    signature_len: usize,
) -> i32 {
    guard(ptr::null_mut(), || {
        let vk = VerifyingKey::deserialize(slice(verifying_key, verifying_key_len)?)
            .map_err(|_| fail(TT_ERR_MALFORMED_VERIFYING_KEY))?;
        let sig = Signature::deserialize(slice(signature, signature_len)?)
            .map_err(|_| fail(TT_ERR_MALFORMED_SIGNATURE))?;
        // Any failure past parsing (bad equation, small-order R, ...) is "invalid".
        vk.verify(slice(message, message_len)?, &sig)
            .map_err(|_| fail(TT_ERR_INVALID_SIGNATURE))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    //! Run through `tests/signer/test_nonce_race.py` (`cargo test --release --lib`).
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// One per core of a small CI machine: the workers spin rather than block, so that
    /// they enter `tt_sign` within a fraction of a microsecond of each other.
    const THREADS: usize = 2;

    /// Native threads (no GIL in the way) sign with each fresh handle at once: at most one
    /// may get its nonces. The old check-then-`Option::take` let two through now and then;
    /// this runs as many handles as fit in a few seconds.
    #[test]
    fn concurrent_signs_take_each_handle_once() {
        let (shares, _) =
            frost::keys::generate_with_dealer(3, 2, IdentifierList::Default, OsRng).unwrap();
        let mut kps: Vec<KeyPackage> = shares
            .into_values()
            .map(|s| KeyPackage::try_from(s).unwrap())
            .collect();
        kps.sort_by_key(|k| *k.identifier());
        let kp = kps[0].serialize().unwrap();
        // A well-formed package whose commitments are not the handle's: frost refuses the
        // share quickly, but only after the nonces were taken (status != TT_ERR_NONCE_REUSED).
        let (_, c1) = frost::round1::commit(kps[0].signing_share(), &mut OsRng);
        let (_, c2) = frost::round1::commit(kps[1].signing_share(), &mut OsRng);
        let map = BTreeMap::from([(*kps[0].identifier(), c1), (*kps[1].identifier(), c2)]);
        let pkg = SigningPackage::new(map, b"m").serialize().unwrap();

        struct Shared {
            generation: AtomicUsize,
            handle: AtomicUsize,
            done: AtomicUsize,
            took: AtomicUsize,
            stop: AtomicBool,
            kp: Vec<u8>,
            pkg: Vec<u8>,
        }
        let shared = Arc::new(Shared {
            generation: AtomicUsize::new(0),
            handle: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            took: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            kp,
            pkg,
        });
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                let sh = shared.clone();
                std::thread::spawn(move || {
                    let mut seen = 0;
                    loop {
                        let g = loop {
                            let g = sh.generation.load(Ordering::Acquire);
                            if g != seen || sh.stop.load(Ordering::Acquire) {
                                break g;
                            }
                            std::hint::spin_loop();
                        };
                        if sh.stop.load(Ordering::Acquire) {
                            return;
                        }
                        seen = g;
                        let h = sh.handle.load(Ordering::Acquire) as *mut TtNonces;
                        let mut out = TtBuffer {
                            ptr: ptr::null_mut(),
                            len: 0,
                        };
                        let st = unsafe {
                            tt_sign(
                                sh.pkg.as_ptr(),
                                sh.pkg.len(),
                                h,
                                sh.kp.as_ptr(),
                                sh.kp.len(),
                                &mut out,
                            )
                        };
                        unsafe { tt_buffer_free(&mut out) };
                        if st != TT_ERR_NONCE_REUSED {
                            sh.took.fetch_add(1, Ordering::AcqRel);
                        }
                        sh.done.fetch_add(1, Ordering::AcqRel);
                    }
                })
            })
            .collect();

        let deadline = Instant::now() + Duration::from_secs(4);
        let (mut rounds, mut doubled) = (0u64, 0u64);
        while Instant::now() < deadline {
            let mut handle: *mut TtNonces = ptr::null_mut();
            let mut out = TtBuffer {
                ptr: ptr::null_mut(),
                len: 0,
            };
            let kp = &shared.kp;
            assert_eq!(
                unsafe { tt_commit(kp.as_ptr(), kp.len(), &mut handle, &mut out) },
                TT_OK
            );
            unsafe { tt_buffer_free(&mut out) };
            shared.done.store(0, Ordering::Release);
            shared.took.store(0, Ordering::Release);
            shared.handle.store(handle as usize, Ordering::Release);
            shared.generation.fetch_add(1, Ordering::AcqRel);
            while shared.done.load(Ordering::Acquire) < THREADS {
                std::thread::yield_now();
            }
            unsafe { tt_nonces_free(handle) };
            rounds += 1;
            let took = shared.took.load(Ordering::Acquire);
            assert!(took >= 1);
            if took > 1 {
                doubled += 1;
            }
        }
        shared.stop.store(true, Ordering::Release);
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(
            doubled, 0,
            "{doubled} of {rounds} handles signed by more than one call"
        );
        eprintln!("{rounds} handles, none taken twice");
    }

    #[test]
    fn released_handle_is_refused() {
        let (shares, _) =
            frost::keys::generate_with_dealer(3, 2, IdentifierList::Default, OsRng).unwrap();
        let kp = KeyPackage::try_from(shares.into_values().next().unwrap())
            .unwrap()
            .serialize()
            .unwrap();
        let mut handle: *mut TtNonces = ptr::null_mut();
        let mut out = TtBuffer {
            ptr: ptr::null_mut(),
            len: 0,
        };
        unsafe {
            assert_eq!(
                tt_commit(kp.as_ptr(), kp.len(), &mut handle, &mut out),
                TT_OK
            );
            tt_buffer_free(&mut out);
            tt_nonces_free(handle);
            tt_nonces_free(handle);
            assert_eq!(
                tt_sign(b"x".as_ptr(), 1, handle, kp.as_ptr(), kp.len(), &mut out),
                TT_ERR_NONCE_REUSED
            );
        }
    }
}
