//! Safe layer over the PSA Crypto API for the provisioning firmware.
//!
//! On the device the `psa_*` functions come from TF-M's non-secure interface;
//! on the host from the Mbed TLS that `psa-crypto` vendors (persistent keys
//! are files in the current directory). The same code runs on both.
//!
//! What this layer decides (and tests):
//! - the key-ID map of DESIGN.md ([`ids`]): a value of an ID type is always
//!   inside its range;
//! - the device-key policy: P-256, SIGN_HASH | VERIFY_HASH with
//!   `DETERMINISTIC_ECDSA(SHA_256)` only, never EXPORT or COPY;
//! - replace semantics: a new private value is validated (imported as a
//!   volatile key) before the old key is destroyed;
//! - the boot RNG check ([`rng`]): random key generation and session keys are
//!   refused while the RNG is marked broken.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;
// The host build (simulator, tests) models TF-M's storage with files, and
// fault injection needs a lock: both use std. The device build is no_std.
#[cfg(any(not(target_os = "none"), feature = "fault-injection"))]
extern crate std;

pub mod ids;
pub mod its;
mod kak;
mod keys;
mod persist;
mod primitives;
pub mod rng;
mod storage;
mod blobs;
mod ffi;

#[cfg(test)]
mod tests;

pub use blobs::{Recovery, StateId, MAX_BLOB_LEN};
#[cfg(any(test, feature = "fault-injection"))]
pub use persist::faults;
pub use keys::KeyOrigin;
pub use primitives::SessionKey;
pub use psa_crypto::types::status::Error as PsaStatus;

use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, Ordering};

/// Length of an uncompressed P-256 public key (0x04 || X || Y).
pub const PUBLIC_KEY_LEN: usize = 65;
/// An uncompressed P-256 public key.
pub type PublicKey = [u8; PUBLIC_KEY_LEN];
/// A raw r || s ECDSA P-256 signature.
pub type Signature = [u8; 64];

/// Everything that can go wrong in this crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The ID is outside the range this operation accepts (DESIGN.md key-ID map).
    InvalidId(u64),
    /// Nothing is stored at this ID.
    NotFound(u32),
    /// Something is already stored at this ID (and replace was not asked for).
    Exists(u32),
    /// An argument is malformed (wrong length, not a valid P-256 scalar, ...).
    InvalidArgument(&'static str),
    /// Persistent storage is full (TF-M's ITS: asset count or flash room), or
    /// no auto-assignable ID is left.
    StorageFull,
    /// The boot RNG check found the random stream repeating: random key
    /// generation and session set-up are refused until the next good boot.
    RngBroken,
    /// A blob is larger than [`MAX_BLOB_LEN`] (one ITS asset of the TF-M
    /// configuration, see [`its`]).
    TooLarge(usize),
    /// Another [`Psa`] handle is alive (PSA state is process-global).
    Busy,
    /// A PSA call failed.
    Psa(PsaStatus),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::InvalidId(id) => write!(f, "key id {id:#x} is outside the range this operation accepts"),
            Error::NotFound(id) => write!(f, "nothing is stored at id {id:#010x}"),
            Error::Exists(id) => write!(f, "id {id:#010x} is already in use (use replace)"),
            Error::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Error::StorageFull => write!(f, "persistent key storage is full"),
            Error::RngBroken => write!(f, "the RNG repeated its output across boots: random keys are refused"),
            Error::TooLarge(n) => write!(f, "{n} bytes is more than the {MAX_BLOB_LEN}-byte limit"),
            Error::Busy => write!(f, "PSA is already in use by another handle"),
            Error::Psa(s) => write!(f, "PSA call failed: {s:?}"),
        }
    }
}

impl Error {
    /// The PSA status code (`psa_status_t`, e.g. -153 for
    /// `PSA_ERROR_DATA_INVALID`) of an [`Error::Psa`].
    pub fn psa_status(&self) -> Option<i32> {
        match self {
            Error::Psa(s) => Some(psa_crypto::ffi::psa_status_t::from(*s)),
            _ => None,
        }
    }
}

impl From<PsaStatus> for Error {
    fn from(s: PsaStatus) -> Self {
        match s {
            PsaStatus::InsufficientStorage => Error::StorageFull,
            other => Error::Psa(other),
        }
    }
}

/// Set while a [`Psa`] handle exists.
static IN_USE: AtomicBool = AtomicBool::new(false);

/// The one handle to PSA Crypto in this program.
///
/// PSA's key store is process-global and `psa_destroy_key` must not race with
/// a use of the same key, so exactly one handle exists at a time and it is
/// `Send` but not `Sync`: whoever holds it (a mutex on the device, the
/// simulator's thread on the host) serialises every PSA call.
pub struct Psa {
    rng_broken: bool,
    _not_sync: PhantomData<core::cell::Cell<()>>,
}

impl Psa {
    /// Initialises PSA Crypto (`psa_crypto_init`) and takes the handle. Call
    /// [`Psa::boot_rng_check`] next on a device.
    pub fn init() -> Result<Psa, Error> {
        if IN_USE.swap(true, Ordering::Acquire) {
            return Err(Error::Busy);
        }
        if let Err(e) = psa_crypto::init() {
            IN_USE.store(false, Ordering::Release);
            return Err(e.into());
        }
        Ok(Psa { rng_broken: false, _not_sync: PhantomData })
    }

    /// Whether the boot RNG check marked the RNG broken.
    pub fn rng_broken(&self) -> bool {
        self.rng_broken
    }

    fn require_rng(&self) -> Result<(), Error> {
        if self.rng_broken {
            Err(Error::RngBroken)
        } else {
            Ok(())
        }
    }

    /// Host only: releases all PSA resources (`mbedtls_psa_crypto_free`) so
    /// that a later [`Psa::init`] starts clean, e.g. in another directory.
    #[cfg(not(target_os = "none"))]
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Psa {
    fn drop(&mut self) {
        // After this PSA needs psa_crypto_init again, which Psa::init does.
        #[cfg(not(target_os = "none"))]
        ffi::crypto_free();
        IN_USE.store(false, Ordering::Release);
    }
}

impl core::error::Error for Error {}
