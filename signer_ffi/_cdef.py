"""C declarations of the signer_ffi ABI, for cffi's ABI mode.

Kept byte-for-byte identical to the block between the BEGIN/END markers of
`include/signer_ffi.h`; a test enforces it, so the header and the Python
binding cannot drift apart.
"""

CDEF = """
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
"""

VECTORS_CDEF = """
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
"""
