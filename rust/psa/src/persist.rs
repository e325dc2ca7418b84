//! Every call that changes or reads persistent storage goes through here:
//! one place that maps TF-M's storage errors, applies the host simulator's
//! model of TF-M's ITS ([`crate::its::host`]), and, in fault-injection
//! builds, fails a chosen call ([`faults`]) so tests can prove that an
//! interrupted certificate store loses nothing.

use crate::{ffi, Error, PsaStatus};
use psa_crypto::operations::key_management;
use psa_crypto::types::key::Attributes;

/// Maps the status of a persistent key creation. Mbed TLS 3.6 (TF-M's crypto
/// service) turns every failed ITS write into `PSA_ERROR_DATA_INVALID`
/// (`psa_crypto_storage.c`, `psa_crypto_storage_store`), so on a creation
/// that status means the storage took nothing: full (asset count or flash),
/// which is what it is in practice once the size was checked. Mbed TLS on
/// the host reports `INSUFFICIENT_STORAGE` directly.
pub(crate) fn creation_error(s: PsaStatus) -> Error {
    match s {
        PsaStatus::DataInvalid | PsaStatus::InsufficientStorage => Error::StorageFull,
        other => other.into(),
    }
}

/// Imports `data` as a persistent key at `id`.
pub(crate) fn import(attributes: Attributes, id: u32, data: &[u8]) -> Result<(), Error> {
    faults::before()?;
    #[cfg(not(target_os = "none"))]
    crate::its::host::admit(data.len())?;
    key_management::import(attributes, Some(id), data)
        .map(drop)
        .map_err(creation_error)
}

/// Generates a persistent key at `id` (a P-256 private key: 32 bytes of data).
pub(crate) fn generate(attributes: Attributes, id: u32) -> Result<(), Error> {
    faults::before()?;
    #[cfg(not(target_os = "none"))]
    crate::its::host::admit(attributes.bits.div_ceil(8))?;
    key_management::generate(attributes, Some(id))
        .map(drop)
        .map_err(creation_error)
}

/// Destroys whatever is at `id`; absent is fine.
pub(crate) fn destroy(id: u32) -> Result<(), Error> {
    faults::before()?;
    match ffi::destroy(id) {
        Ok(()) | Err(PsaStatus::DoesNotExist) | Err(PsaStatus::InvalidHandle) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Exports the persistent blob `id` into `out`, returning its length.
pub(crate) fn export(id: u32, out: &mut [u8]) -> Result<usize, Error> {
    faults::before()?;
    ffi::export(id, out).map_err(crate::keys::at(id))
}

/// Fault injection for tests (feature `fault-injection`; compiled out
/// otherwise): the N-th storage call from now fails with a chosen error, and
/// optionally every later one too (a power loss: nothing after it runs).
#[cfg(any(test, feature = "fault-injection"))]
pub mod faults {
    use crate::Error;
    use std::sync::Mutex;

    struct Plan {
        countdown: u32,
        error: Error,
        sticky: bool,
        fired: bool,
        calls: u32,
    }

    static PLAN: Mutex<Option<Plan>> = Mutex::new(None);

    fn plan() -> std::sync::MutexGuard<'static, Option<Plan>> {
        PLAN.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `n`-th storage call from now (1 = the next) fails with `error`.
    /// With `sticky`, every call after it fails too, as if power was lost.
    pub fn fail_nth(n: u32, error: Error, sticky: bool) {
        *plan() = Some(Plan {
            countdown: n,
            error,
            sticky,
            fired: false,
            calls: 0,
        });
    }

    /// Counts storage calls without failing any (to learn how many a
    /// sequence of operations makes).
    pub fn count_only() {
        *plan() = Some(Plan {
            countdown: 0,
            error: Error::StorageFull,
            sticky: false,
            fired: false,
            calls: 0,
        });
    }

    /// Removes the plan; returns (storage calls seen, whether it fired).
    pub fn clear() -> (u32, bool) {
        plan().take().map_or((0, false), |p| (p.calls, p.fired))
    }

    pub(crate) fn before() -> Result<(), Error> {
        let mut guard = plan();
        let Some(p) = guard.as_mut() else {
            return Ok(());
        };
        p.calls += 1;
        if p.fired && p.sticky {
            return Err(p.error);
        }
        if p.countdown > 0 {
            p.countdown -= 1;
            if p.countdown == 0 {
                p.fired = true;
                return Err(p.error);
            }
        }
        Ok(())
    }
}

#[cfg(not(any(test, feature = "fault-injection")))]
mod faults {
    #[inline(always)]
    pub(crate) fn before() -> Result<(), crate::Error> {
        Ok(())
    }
}
