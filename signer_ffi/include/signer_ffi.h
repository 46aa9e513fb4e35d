/* signer_ffi.h -- C ABI of the tradetape FROST(Ed25519, SHA-512) signer library.
 *
 * Every function returns an int32_t status: TT_OK (0), a positive code per
 * frost_core::Error variant, or a negative FFI-level code. Output buffers are
 * allocated by the library; release each with tt_buffer_free (zeroizes first).
 * Nonce handles come from tt_commit, are consumed by tt_sign (atomically: of
 * two concurrent calls on one handle only one signs; a second use, or a use
 * after release, returns TT_ERR_NONCE_REUSED) and are released with
 * tt_nonces_free (safe twice, and concurrently with tt_sign).
 * Identifiers are the crate's 32-byte serialized scalars (little endian).
 * The tt_vec_* functions exist only in builds with the `test-vectors` feature.
 */
#ifndef TT_SIGNER_FFI_H
#define TT_SIGNER_FFI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TT_ABI_VERSION 2
#define TT_OK (0)
#define TT_ERR_INVALID_MIN_SIGNERS (1)
#define TT_ERR_INVALID_MAX_SIGNERS (2)
#define TT_ERR_INVALID_COEFFICIENTS (3)
#define TT_ERR_MALFORMED_IDENTIFIER (4)
#define TT_ERR_DUPLICATED_IDENTIFIER (5)
#define TT_ERR_UNKNOWN_IDENTIFIER (6)
#define TT_ERR_INCORRECT_NUMBER_OF_IDENTIFIERS (7)
#define TT_ERR_MALFORMED_SIGNING_KEY (8)
#define TT_ERR_MALFORMED_VERIFYING_KEY (9)
#define TT_ERR_MALFORMED_SIGNATURE (10)
#define TT_ERR_INVALID_SIGNATURE (11)
#define TT_ERR_DUPLICATED_SHARES (12)
#define TT_ERR_INCORRECT_NUMBER_OF_SHARES (13)
#define TT_ERR_IDENTITY_COMMITMENT (14)
#define TT_ERR_MISSING_COMMITMENT (15)
#define TT_ERR_INCORRECT_COMMITMENT (16)
#define TT_ERR_INCORRECT_NUMBER_OF_COMMITMENTS (17)
#define TT_ERR_INVALID_SIGNATURE_SHARE (18)
#define TT_ERR_INVALID_SECRET_SHARE (19)
#define TT_ERR_PACKAGE_NOT_FOUND (20)
#define TT_ERR_INCORRECT_NUMBER_OF_PACKAGES (21)
#define TT_ERR_INCORRECT_PACKAGE (22)
#define TT_ERR_DKG_NOT_SUPPORTED (23)
#define TT_ERR_INVALID_PROOF_OF_KNOWLEDGE (24)
#define TT_ERR_FIELD_ERROR (25)
#define TT_ERR_GROUP_ERROR (26)
#define TT_ERR_INVALID_COEFFICIENT (27)
#define TT_ERR_IDENTIFIER_DERIVATION_NOT_SUPPORTED (28)
#define TT_ERR_SERIALIZATION_ERROR (29)
#define TT_ERR_DESERIALIZATION_ERROR (30)
#define TT_ERR_FROST_OTHER (99)
#define TT_ERR_NULL_POINTER (-1)
#define TT_ERR_NONCE_REUSED (-2)
#define TT_ERR_PANIC (-3)
#define TT_ERR_INVALID_ARGUMENT (-4)

/* BEGIN CDEF */
typedef struct tt_buffer { uint8_t *ptr; size_t len; } tt_buffer;
typedef struct tt_slice { const uint8_t *ptr; size_t len; } tt_slice;
typedef struct tt_nonces tt_nonces;

uint32_t tt_abi_version(void);
void tt_buffer_free(tt_buffer *buf);
void tt_nonces_free(tt_nonces *handle);

int32_t tt_generate_with_dealer(uint16_t max_signers, uint16_t min_signers,
    tt_buffer *out_key_packages, tt_buffer *out_public_key_package);
int32_t tt_key_package_info(const uint8_t *key_package, size_t key_package_len,
    tt_buffer *out_identifier, tt_buffer *out_verifying_share,
    tt_buffer *out_verifying_key, uint16_t *out_min_signers);
int32_t tt_public_key_package_info(const uint8_t *public_key_package,
    size_t public_key_package_len, tt_buffer *out_verifying_key,
    tt_buffer *out_identifiers, uint16_t *out_min_signers);

int32_t tt_dkg_part1(const uint8_t *identifier, size_t identifier_len,
    uint16_t max_signers, uint16_t min_signers,
    tt_buffer *out_secret_package, tt_buffer *out_package);
int32_t tt_dkg_part2(const uint8_t *secret_package, size_t secret_package_len,
    const tt_slice *round1_ids, const tt_slice *round1_packages, size_t n,
    tt_buffer *out_secret_package, tt_buffer *out_ids, tt_buffer *out_packages,
    tt_buffer *out_culprits);
int32_t tt_dkg_part3(const uint8_t *secret_package, size_t secret_package_len,
    const tt_slice *round1_ids, const tt_slice *round1_packages, size_t n1,
    const tt_slice *round2_ids, const tt_slice *round2_packages, size_t n2,
    tt_buffer *out_key_package, tt_buffer *out_public_key_package,
    tt_buffer *out_culprits);

int32_t tt_commit(const uint8_t *key_package, size_t key_package_len,
    tt_nonces **out_nonces, tt_buffer *out_commitments);
int32_t tt_signing_package_new(const tt_slice *ids, const tt_slice *commitments,
    size_t n, const uint8_t *message, size_t message_len,
    tt_buffer *out_signing_package);
int32_t tt_signing_package_info(const uint8_t *signing_package,
    size_t signing_package_len, const uint8_t *identifier, size_t identifier_len,
    tt_buffer *out_message, tt_buffer *out_identifiers, tt_buffer *out_commitments);
int32_t tt_sign(const uint8_t *signing_package, size_t signing_package_len,
    tt_nonces *nonces, const uint8_t *key_package, size_t key_package_len,
    tt_buffer *out_signature_share);
int32_t tt_aggregate(const uint8_t *signing_package, size_t signing_package_len,
    const tt_slice *ids, const tt_slice *shares, size_t n,
    const uint8_t *public_key_package, size_t public_key_package_len,
    tt_buffer *out_signature, tt_buffer *out_culprits);
int32_t tt_verify(const uint8_t *verifying_key, size_t verifying_key_len,
    const uint8_t *message, size_t message_len,
    const uint8_t *signature, size_t signature_len);
/* END CDEF */

/* Plain Ed25519 (not FROST), for the engine's producer authentication: verdicts[i] = 1
 * if signature i (64 bytes at signatures + 64 i) is valid for messages[i] under public
 * key i (32 bytes at public_keys + 32 i), else 0. One batch check, then each alone if the
 * batch fails. Bound by engine/sigverify.py (its own cdef). */
/* BEGIN VERIFY CDEF */
int32_t tt_ed25519_verify_many(const uint8_t *public_keys, const tt_slice *messages,
    const uint8_t *signatures, size_t n, uint8_t *out_verdicts);
/* END VERIFY CDEF */

#ifdef SIGNER_FFI_TEST_VECTORS
/* BEGIN VECTORS CDEF */
int32_t tt_vec_dealer_split(const uint8_t *secret_key, size_t secret_key_len,
    const uint8_t *coeffs, size_t n_coeffs, uint16_t max_signers,
    tt_buffer *out_key_packages, tt_buffer *out_public_key_package);
int32_t tt_vec_commit(const uint8_t *key_package, size_t key_package_len,
    const uint8_t *hiding_randomness, const uint8_t *binding_randomness,
    tt_nonces **out_nonces, tt_buffer *out_commitments);
int32_t tt_vec_dkg_secret(const uint8_t *identifier, size_t identifier_len,
    const uint8_t *signing_key, const uint8_t *coeffs, size_t n_coeffs,
    uint16_t max_signers, uint16_t min_signers, tt_buffer *out_secret_package);
int32_t tt_vec_dkg_round1_package(const uint8_t *commitments, size_t n,
    const uint8_t *proof, size_t proof_len, tt_buffer *out_package);
int32_t tt_vec_dkg_round2_package(const uint8_t *share, size_t share_len,
    tt_buffer *out_package);
int32_t tt_vec_key_package_signing_share(const uint8_t *key_package,
    size_t key_package_len, tt_buffer *out_share);
/* END VECTORS CDEF */
#endif

#ifdef __cplusplus
}
#endif
#endif /* TT_SIGNER_FFI_H */
