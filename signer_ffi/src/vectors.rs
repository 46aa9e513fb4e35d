//! Deterministic entry points for reproducing RFC 9591 / DKG test vectors.
//!
//! Compiled only with `--features test-vectors`; never part of the release
//! library, because they let the caller fix nonce randomness and polynomial
//! coefficients. Uses only frost's public API (no `internals`).

use std::collections::BTreeSet;
use std::ptr;

use frost::keys::dkg;
use frost::keys::{
    KeyPackage, PublicKeyPackage, SecretShare, SigningShare, VerifiableSecretSharingCommitment,
};
use frost::round1::SigningNonces;
use frost::{Ed25519Sha512 as E, Identifier, Signature, SigningKey};
use frost_core::{Ciphersuite, Field, Group};
use frost_ed25519 as frost;

use crate::*;

type Scalar = <<<E as Ciphersuite>::Group as Group>::Field as Field>::Scalar;

fn scalar(bytes: &[u8]) -> R<Scalar> {
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| fail(TT_ERR_INVALID_ARGUMENT))?;
    <<E as Ciphersuite>::Group as Group>::Field::deserialize(&arr)
        .map_err(|_| fail(TT_ERR_FIELD_ERROR))
}

fn commitment(coeffs: &[Scalar]) -> R<VerifiableSecretSharingCommitment> {
    let mut ser = Vec::new();
    for c in coeffs {
        let el = <E as Ciphersuite>::Group::generator() * *c;
        let bytes =
            <E as Ciphersuite>::Group::serialize(&el).map_err(|_| fail(TT_ERR_GROUP_ERROR))?;
        ser.push(bytes.as_ref().to_vec());
    }
    Ok(VerifiableSecretSharingCommitment::deserialize(ser)?)
}

fn coeff_list(secret: &[u8], coeffs: *const u8, n: usize) -> R<Vec<Scalar>> {
    let raw = unsafe { slice(coeffs, n * 32)? };
    let mut all = vec![scalar(secret)?];
    for c in raw.chunks(32) {
        all.push(scalar(c)?);
    }
    Ok(all)
}

/// Dealer split with fixed polynomial coefficients (`n_coeffs` × 32 bytes) and
/// default identifiers 1..=max_signers. Every share goes through
/// `KeyPackage::try_from(SecretShare)`.
#[no_mangle]
pub unsafe extern "C" fn tt_vec_dealer_split(
    secret_key: *const u8,
    secret_key_len: usize,
    coeffs: *const u8,
    n_coeffs: usize,
    max_signers: u16,
    out_key_packages: *mut TtBuffer,
    out_public_key_package: *mut TtBuffer,
) -> i32 {
    guard(ptr::null_mut(), || {
        check_out(out_key_packages)?;
        check_out(out_public_key_package)?;
        let all = coeff_list(slice(secret_key, secret_key_len)?, coeffs, n_coeffs)?;
        let com = commitment(&all)?;
        let mut ids = BTreeSet::new();
        let mut kps = Vec::new();
        for i in 1..=max_signers {
            let id = Identifier::try_from(i)?;
            let x = scalar(&id.serialize())?;
            // Horner evaluation of the polynomial at x.
            let mut acc = <<E as Ciphersuite>::Group as Group>::Field::zero();
            for c in all.iter().rev() {
                acc = acc * x + *c;
            }
            let bytes = <<E as Ciphersuite>::Group as Group>::Field::serialize(&acc);
            let share =
                SecretShare::new(id, SigningShare::deserialize(bytes.as_ref())?, com.clone());
            kps.push(KeyPackage::try_from(share)?.serialize()?);
            ids.insert(id);
        }
        let pk = PublicKeyPackage::from_commitment(&ids, &com)?.serialize()?;
        for (i, kp) in kps.into_iter().enumerate() {
            put(out_key_packages.add(i), kp);
        }
        put(out_public_key_package, pk);
        Ok(())
    })
}

/// Round 1 with fixed 32-byte hiding/binding randomness (RFC 9591 nonce_generate).
#[no_mangle]
pub unsafe extern "C" fn tt_vec_commit(
    key_package: *const u8,
    key_package_len: usize,
    hiding_randomness: *const u8,
    binding_randomness: *const u8,
    out_nonces: *mut *mut TtNonces,
    out_commitments: *mut TtBuffer,
) -> i32 {
    guard(ptr::null_mut(), || {
        check_out(out_nonces)?;
        check_out(out_commitments)?;
        let kp = KeyPackage::deserialize(slice(key_package, key_package_len)?)?;
        let secret = kp.signing_share().serialize();
        let gen = |rand: &[u8]| -> R<frost_core::round1::Nonce<E>> {
            let mut input = rand.to_vec();
            input.extend_from_slice(&secret);
            let s = E::H3(&input);
            let bytes = <<E as Ciphersuite>::Group as Group>::Field::serialize(&s);
            Ok(frost_core::round1::Nonce::<E>::deserialize(bytes.as_ref())?)
        };
        let h = gen(slice(hiding_randomness, 32)?)?;
        let b = gen(slice(binding_randomness, 32)?)?;
        let nonces = SigningNonces::from_nonces(h, b);
        let c = nonces.commitments().serialize()?;
        new_handle(out_nonces, nonces);
        put(out_commitments, c);
        Ok(())
    })
}

/// DKG round-1 secret package from a fixed signing key and coefficients.
#[no_mangle]
pub unsafe extern "C" fn tt_vec_dkg_secret(
    identifier: *const u8,
    identifier_len: usize,
    signing_key: *const u8,
    coeffs: *const u8,
    n_coeffs: usize,
    max_signers: u16,
    min_signers: u16,
    out_secret_package: *mut TtBuffer,
) -> i32 {
    guard(ptr::null_mut(), || {
        check_out(out_secret_package)?;
        let id = ident(slice(identifier, identifier_len)?)?;
        let sk = SigningKey::deserialize(slice(signing_key, 32)?)?;
        let all = coeff_list(&sk.serialize(), coeffs, n_coeffs)?;
        let com = commitment(&all)?;
        let sp = dkg::round1::SecretPackage::new(id, all, com, min_signers, max_signers);
        put(out_secret_package, sp.serialize()?);
        Ok(())
    })
}

/// DKG round-1 package from `n` 32-byte VSS commitments and a 64-byte proof.
#[no_mangle]
pub unsafe extern "C" fn tt_vec_dkg_round1_package(
    commitments: *const u8,
    n: usize,
    proof: *const u8,
    proof_len: usize,
    out_package: *mut TtBuffer,
) -> i32 {
    guard(ptr::null_mut(), || {
        check_out(out_package)?;
        let raw = slice(commitments, n * 32)?;
        let com =
            VerifiableSecretSharingCommitment::deserialize(raw.chunks(32).map(|c| c.to_vec()))?;
        let sig = Signature::deserialize(slice(proof, proof_len)?)?;
        put(
            out_package,
            dkg::round1::Package::new(com, sig).serialize()?,
        );
        Ok(())
    })
}

/// DKG round-2 package carrying a 32-byte signing share.
#[no_mangle]
pub unsafe extern "C" fn tt_vec_dkg_round2_package(
    share: *const u8,
    share_len: usize,
    out_package: *mut TtBuffer,
) -> i32 {
    guard(ptr::null_mut(), || {
        check_out(out_package)?;
        let s = SigningShare::deserialize(slice(share, share_len)?)?;
        put(out_package, dkg::round2::Package::new(s).serialize()?);
        Ok(())
    })
}

/// The 32-byte signing share inside a key package (vector comparison only).
#[no_mangle]
pub unsafe extern "C" fn tt_vec_key_package_signing_share(
    key_package: *const u8,
    key_package_len: usize,
    out_share: *mut TtBuffer,
) -> i32 {
    guard(ptr::null_mut(), || {
        check_out(out_share)?;
        let kp = KeyPackage::deserialize(slice(key_package, key_package_len)?)?;
        put(out_share, kp.signing_share().serialize());
        Ok(())
    })
}
