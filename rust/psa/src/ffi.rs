//! The PSA calls this crate makes without psa-crypto's safe layer, and the
//! only `unsafe` of the crate:
//!
//! - `psa_purge_key`, which psa-crypto does not wrap;
//! - every operation on an existing *persistent* key (attributes, export,
//!   sign, verify, raw ECDH, destroy). psa-crypto needs an `Id` for those,
//!   and its only constructor for a persistent ID,
//!   `Id::from_persistent_key_id`, decodes the key's whole policy into Rust
//!   types (`Attributes::from_key_id`) on every call: 1.2 KiB of firmware
//!   flash to learn that the key exists. Here one `psa_get_key_attributes`
//!   reads the type and size, and the operations take the raw ID.
//!
//! Volatile keys (session keys, ephemeral ECDH, a peer's public key) and
//! key creation keep psa-crypto's safe layer.

use psa_crypto::ffi as sys;
use psa_crypto::ffi::{psa_algorithm_t, psa_key_id_t, psa_key_type_t, psa_status_t};
use psa_crypto::types::status::Status;

use crate::PsaStatus;

/// `PSA_ALG_DETERMINISTIC_ECDSA(PSA_ALG_SHA_256)`: the one signature
/// algorithm of device keys (`keys::SIGN_ALG`; a test holds the two equal).
pub(crate) const ALG_DETERMINISTIC_ECDSA_SHA256: psa_algorithm_t = 0x0600_0709;
/// `PSA_KEY_TYPE_ECC_KEY_PAIR(PSA_ECC_FAMILY_SECP_R1)`.
pub(crate) const KEY_TYPE_P256_PAIR: psa_key_type_t = 0x7112;

fn check(status: psa_status_t) -> Result<(), PsaStatus> {
    Status::from(status).to_result()
}

/// The type and size in bits of the key at `id`. No key there is
/// `DoesNotExist` (or `InvalidHandle` for an ID outside the key ranges).
pub(crate) fn key_type_bits(id: psa_key_id_t) -> Result<(psa_key_type_t, usize), PsaStatus> {
    // SAFETY: returns PSA_KEY_ATTRIBUTES_INIT by value; touches no memory.
    let mut attributes = unsafe { sys::psa_key_attributes_init() };
    // SAFETY: `attributes` is an initialised struct owned by this frame; the
    // call writes only into it.
    let status = unsafe { sys::psa_get_key_attributes(id, &mut attributes) };
    // SAFETY: reads the initialised struct (zero values if the call failed).
    let found = unsafe { (sys::psa_get_key_type(&attributes), sys::psa_get_key_bits(&attributes)) };
    // SAFETY: frees whatever the get call attached to the struct, which is
    // not used afterwards.
    unsafe { sys::psa_reset_key_attributes(&mut attributes) };
    check(status).map(|()| found)
}

/// `psa_export_public_key` of the key at `id` into `out`; the length.
pub(crate) fn export_public(id: psa_key_id_t, out: &mut [u8]) -> Result<usize, PsaStatus> {
    let mut len = 0;
    // SAFETY: `out` is valid for `out.len()` writable bytes and `len` is a
    // writable usize; PSA writes at most `out.len()` bytes.
    check(unsafe { sys::psa_export_public_key(id, out.as_mut_ptr(), out.len(), &mut len) })?;
    Ok(len)
}

/// `psa_export_key` of the key at `id` into `out`; the length.
pub(crate) fn export(id: psa_key_id_t, out: &mut [u8]) -> Result<usize, PsaStatus> {
    let mut len = 0;
    // SAFETY: as in export_public.
    check(unsafe { sys::psa_export_key(id, out.as_mut_ptr(), out.len(), &mut len) })?;
    Ok(len)
}

/// `psa_sign_hash` with `alg` into `sig`; the signature's length.
pub(crate) fn sign_hash(id: psa_key_id_t, alg: psa_algorithm_t, digest: &[u8], sig: &mut [u8]) -> Result<usize, PsaStatus> {
    let mut len = 0;
    // SAFETY: `digest` is readable for its length, `sig` writable for its
    // length, `len` writable; PSA writes at most `sig.len()` bytes.
    check(unsafe { sys::psa_sign_hash(id, alg, digest.as_ptr(), digest.len(), sig.as_mut_ptr(), sig.len(), &mut len) })?;
    Ok(len)
}

/// `psa_verify_hash` with `alg`.
pub(crate) fn verify_hash(id: psa_key_id_t, alg: psa_algorithm_t, digest: &[u8], sig: &[u8]) -> Result<(), PsaStatus> {
    // SAFETY: both slices are readable for their lengths; PSA only reads.
    check(unsafe { sys::psa_verify_hash(id, alg, digest.as_ptr(), digest.len(), sig.as_ptr(), sig.len()) })
}

/// `psa_raw_key_agreement(PSA_ALG_ECDH)` of the key at `id` with the
/// encoded public key `peer`, into `out`; the secret's length.
pub(crate) fn raw_ecdh(id: psa_key_id_t, peer: &[u8], out: &mut [u8]) -> Result<usize, PsaStatus> {
    let mut len = 0;
    // SAFETY: `peer` readable, `out` and `len` writable for their lengths;
    // PSA writes at most `out.len()` bytes.
    check(unsafe {
        sys::psa_raw_key_agreement(sys::PSA_ALG_ECDH, id, peer.as_ptr(), peer.len(), out.as_mut_ptr(), out.len(), &mut len)
    })?;
    Ok(len)
}

/// `psa_destroy_key` of the key at `id`.
///
/// Callers hold the one `Psa` handle (not `Sync`), so no other operation
/// uses the key while it goes.
pub(crate) fn destroy(id: psa_key_id_t) -> Result<(), PsaStatus> {
    // SAFETY: takes the ID by value and touches no caller memory.
    check(unsafe { sys::psa_destroy_key(id) })
}

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

/// `struct psa_storage_info_t` of TF-M's `psa/storage_common.h` (PSA
/// Storage API 1.0): capacity, size (`size_t`), flags.
#[cfg(target_os = "none")]
#[repr(C)]
#[derive(Default)]
struct StorageInfo {
    capacity: usize,
    size: usize,
    flags: u32,
}

/// Mbed TLS's own `struct psa_storage_info_t` (`library/psa_crypto_its.h`):
/// size (`uint32_t`), flags; no capacity.
#[cfg(not(target_os = "none"))]
#[repr(C)]
#[derive(Default)]
struct StorageInfo {
    size: u32,
    flags: u32,
}

// The non-secure side's general-purpose storage. On the target, PSA
// Protected Storage: TF-M's PS service through `interface/src/tfm_ps_api.c`,
// which Zephyr links when CONFIG_TFM_PARTITION_PROTECTED_STORAGE=y
// (modules/trusted-firmware-m/CMakeLists.txt). On the host, Mbed TLS's
// file-backed ITS (`library/psa_its_file.c`), the same API under another
// name, stands in for it. The length arguments are `size_t` in TF-M and
// `uint32_t` in Mbed TLS: one width on the target, u32 on the host.
#[cfg(target_os = "none")]
extern "C" {
    #[link_name = "psa_ps_set"]
    fn storage_set(uid: u64, len: usize, data: *const core::ffi::c_void, flags: u32) -> psa_status_t;
    #[link_name = "psa_ps_get"]
    fn storage_get(uid: u64, offset: usize, len: usize, data: *mut core::ffi::c_void, out_len: *mut usize) -> psa_status_t;
    #[link_name = "psa_ps_get_info"]
    fn storage_get_info(uid: u64, info: *mut StorageInfo) -> psa_status_t;
}
#[cfg(not(target_os = "none"))]
extern "C" {
    #[link_name = "psa_its_set"]
    fn storage_set(uid: u64, len: u32, data: *const core::ffi::c_void, flags: u32) -> psa_status_t;
    #[link_name = "psa_its_get"]
    fn storage_get(uid: u64, offset: u32, len: u32, data: *mut core::ffi::c_void, out_len: *mut usize) -> psa_status_t;
    #[link_name = "psa_its_get_info"]
    fn storage_get_info(uid: u64, info: *mut StorageInfo) -> psa_status_t;
}

/// The stored size of storage entry `uid`.
pub(crate) fn storage_size(uid: u64) -> Result<usize, PsaStatus> {
    let mut info = StorageInfo::default();
    // SAFETY: `info` is a writable struct of the C layout; the call writes
    // only into it.
    check(unsafe { storage_get_info(uid, &mut info) })?;
    Ok(info.size as usize)
}

/// Reads storage entry `uid` whole into `out[..len]` (`len` from
/// [`storage_size`], at most `out.len()`).
pub(crate) fn storage_read(uid: u64, out: &mut [u8]) -> Result<usize, PsaStatus> {
    let mut n = 0usize;
    let len = out.len().try_into().map_err(|_| PsaStatus::InvalidArgument)?;
    // SAFETY: `out` is writable for `len` bytes, `n` is a writable usize;
    // the service writes at most `len` bytes.
    check(unsafe { storage_get(uid, 0, len, out.as_mut_ptr().cast(), &mut n) })?;
    Ok(n)
}

/// Replaces storage entry `uid` with `data` (both services write the new
/// copy before dropping the old one).
pub(crate) fn storage_write(uid: u64, data: &[u8]) -> Result<(), PsaStatus> {
    let len = data.len().try_into().map_err(|_| PsaStatus::InvalidArgument)?;
    // SAFETY: `data` is readable for its length; the service only reads it.
    check(unsafe { storage_set(uid, len, data.as_ptr().cast(), 0) })
}
