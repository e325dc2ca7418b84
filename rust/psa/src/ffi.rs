//! The PSA functions this crate needs that psa-crypto does not wrap. The only
//! foreign declarations of the crate.

use psa_crypto::ffi::{psa_key_id_t, psa_status_t};

extern "C" {
    /// `psa_purge_key` (PSA Crypto 1.0): drops the key-slot copy of a
    /// persistent key; the key stays in storage. TF-M's NS interface
    /// (`interface/src/tfm_crypto_api.c`) and Mbed TLS both provide it.
    fn psa_purge_key(key: psa_key_id_t) -> psa_status_t;
}

/// Drops PSA's in-memory copy of the persistent key `id`. On TF-M a loaded
/// persistent key stays in a key slot, in the crypto service's heap, until
/// purged: a certificate left there costs up to 4 KiB of a 12 KiB heap.
/// Failure only means the copy stays cached, so it is not an error.
pub(crate) fn purge(id: u32) {
    // SAFETY: psa_purge_key takes a key ID by value and touches no caller
    // memory; an unknown or volatile ID is answered with an error code.
    let _ = unsafe { psa_purge_key(id) };
}

/// Host only: Mbed TLS's `mbedtls_psa_crypto_free`, which psa-crypto-sys
/// binds but does not re-export.
#[cfg(not(target_os = "none"))]
pub(crate) fn crypto_free() {
    extern "C" {
        fn mbedtls_psa_crypto_free();
    }
    // SAFETY: the function takes no arguments; callers (Psa::drop) hold the
    // only handle, so no PSA operation is in flight.
    unsafe { mbedtls_psa_crypto_free() }
}
