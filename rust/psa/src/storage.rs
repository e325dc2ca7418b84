//! The non-secure side's general-purpose storage: PSA Protected Storage on
//! TF-M (the PS service, with its own flash area, encrypted and
//! authenticated by the secure side), Mbed TLS's file-backed ITS on the
//! host (the same API). It holds what does not fit the key store's
//! one-asset records and is rewritten often: the audit ring when the
//! secure partition is not built (`tfmprov_device::vault`).
//!
//! UIDs are 64-bit and private to the non-secure client: they never meet
//! key IDs, which PSA keeps apart (and which are below 2^32 on the host).

use crate::{ffi, Error, Psa};
use psa_crypto::types::status::Error as PsaStatus;

impl Psa {
    /// Reads entry `uid` into `out`; its length, `Ok(None)` when absent. An
    /// entry larger than `out` is [`Error::TooLarge`].
    pub fn storage_get(&self, uid: u64, out: &mut [u8]) -> Result<Option<usize>, Error> {
        let size = match ffi::storage_size(uid) {
            Ok(n) => n,
            Err(PsaStatus::DoesNotExist) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let buf = out.get_mut(..size).ok_or(Error::TooLarge(size))?;
        match ffi::storage_read(uid, buf)? {
            n if n == size => Ok(Some(n)),
            _ => Err(Error::Psa(PsaStatus::StorageFailure)),
        }
    }

    /// Replaces entry `uid` with `data`, all or nothing.
    pub fn storage_set(&mut self, uid: u64, data: &[u8]) -> Result<(), Error> {
        Ok(ffi::storage_write(uid, data)?)
    }
}
