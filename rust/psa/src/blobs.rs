//! Public data blobs (certificates, device state) as PSA RAW_DATA persistent
//! keys. They carry EXPORT (that is how they are read back) and nothing else:
//! the "never EXPORT" rule of DESIGN.md is about private keys.
//!
//! PSA cannot overwrite a persistent key: a new value means destroy, then
//! import. Done naively, a failed import (storage full, a TF-M error, a
//! reset) leaves the slot empty and the old certificate is lost. So a
//! replacement is a small journaled transaction ([`Psa::store_blob_raw`]):
//!
//! 1. the smaller of the old and the new value is copied to the staging ID
//!    (0x3E000004): then the old and the new value each exist in storage or
//!    in the call's RAM, and the slot is untouched;
//! 2. the journal (0x3E000003) records the target ID;
//! 3. the old value is destroyed and the new one imported at the target; if
//!    that import fails the old value (kept in RAM) is put back;
//! 4. the journal, then the staged copy, are removed.
//!
//! A reset anywhere in between is finished at the next boot (or before the
//! next store) by [`Psa::recover_blob_store`]: a journal whose target is
//! empty gets the staged copy back (the new value if it was the smaller, the
//! old one otherwise); a staged copy without a journal is dropped. So a slot
//! always holds the old or the new value, never nothing. Staging the smaller
//! value means a replacement needs room for the old and the new value at
//! once and no more; a first store (empty slot) is a single PSA import,
//! which is atomic by itself.

use crate::ids::{CertSlot, STATE_BLOB_JOURNAL, STATE_BLOB_STAGING};
use crate::keys::exists;
use crate::{ffi, its, persist, Error, Psa};
use alloc::vec;
use alloc::vec::Vec;
use psa_crypto::types::algorithm::Algorithm;
use psa_crypto::types::key::{Attributes, Lifetime, Policy, Type, UsageFlags};

pub use its::MAX_BLOB_LEN;

pub(crate) fn blob_attributes(len: usize) -> Attributes {
    let mut usage_flags = UsageFlags::default();
    usage_flags.set_export();
    Attributes {
        lifetime: Lifetime::Persistent,
        key_type: Type::RawData,
        bits: len * 8,
        policy: Policy {
            usage_flags,
            permitted_algorithms: Algorithm::None,
        },
    }
}

/// Imports a blob at `raw` and drops PSA's cached copy of it.
fn import_blob(raw: u32, data: &[u8]) -> Result<(), Error> {
    let r = persist::import(blob_attributes(data.len()), raw, data);
    ffi::purge(raw);
    r
}

/// What [`Psa::recover_blob_store`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// No store was interrupted.
    Clean,
    /// A store was interrupted while the slot at this ID was empty: the
    /// staged copy (the old or the new value, whichever was smaller) was put
    /// back there.
    Completed(u32),
    /// A store was interrupted while the slot still held a value (the old
    /// one, or the new one before clean-up): the staged copy was dropped.
    Discarded,
}

impl Psa {
    /// Stores `data` at `raw`, replacing what is there, atomically (see the
    /// module documentation). Callers pass IDs from [`crate::ids`]; this is
    /// the one place that writes RAW_DATA.
    pub(crate) fn store_blob_raw(&mut self, raw: u32, data: &[u8]) -> Result<(), Error> {
        if data.len() > MAX_BLOB_LEN {
            return Err(Error::TooLarge(data.len()));
        }
        if data.is_empty() {
            return Err(Error::InvalidArgument("empty data"));
        }
        if !is_blob_id(raw) {
            return Err(Error::InvalidId(raw.into()));
        }
        // Finish (or discard) an earlier store that was cut short.
        self.recover_blob_store()?;

        let old = match self.load_blob_raw(raw) {
            Ok(v) => v,
            // A first store: one import, atomic in PSA.
            Err(Error::NotFound(_)) => return import_blob(raw, data),
            Err(e) => return Err(e),
        };
        // 1. Stage the smaller value. The slot is untouched until the
        // journal exists.
        let staged = if data.len() <= old.len() {
            data
        } else {
            old.as_slice()
        };
        if let Err(e) = import_blob(STATE_BLOB_STAGING, staged) {
            let _ = persist::destroy(STATE_BLOB_STAGING);
            return Err(e);
        }
        // 2. The journal names the target.
        if let Err(e) = import_blob(STATE_BLOB_JOURNAL, &raw.to_be_bytes()) {
            let _ = persist::destroy(STATE_BLOB_JOURNAL);
            let _ = persist::destroy(STATE_BLOB_STAGING);
            return Err(e);
        }
        // 3. Swap, with the old value in RAM in case the import fails.
        let swapped = self.swap_in(raw, &old, data);
        // 4. Clean up. If the swap failed and the old value could not be put
        // back either, the journal stays: the next recovery installs the
        // staged value, so the slot is never left empty.
        match swapped {
            Ok(()) | Err(SwapError::RolledBack(_)) => {
                // Failures here leave a journal whose target is occupied, or
                // an orphaned staged copy: recovery drops both.
                if persist::destroy(STATE_BLOB_JOURNAL).is_ok() {
                    let _ = persist::destroy(STATE_BLOB_STAGING);
                }
            }
            Err(SwapError::Pending(_)) => {}
        }
        swapped.map_err(SwapError::into_error)
    }

    /// Step 3 of a store: destroy the old value, import the new one; on
    /// failure put the old value back.
    fn swap_in(&mut self, raw: u32, old: &[u8], data: &[u8]) -> Result<(), SwapError> {
        if let Err(e) = persist::destroy(raw) {
            // Whether or not the destroy took effect, make the slot hold the
            // old value again.
            return Err(self.restore(raw, old, e));
        }
        import_blob(raw, data).map_err(|e| self.restore(raw, old, e))
    }

    /// Puts `old` back at `raw` after a failed swap (`cause`).
    fn restore(&mut self, raw: u32, old: &[u8], cause: Error) -> SwapError {
        match exists(raw) {
            Ok(true) => SwapError::RolledBack(cause),
            Ok(false) => match import_blob(raw, old) {
                Ok(()) => SwapError::RolledBack(cause),
                Err(_) => SwapError::Pending(cause),
            },
            Err(_) => SwapError::Pending(cause),
        }
    }

    /// Finishes a blob store that a reset (or a double failure) cut short;
    /// called at boot and before every store.
    pub fn recover_blob_store(&mut self) -> Result<Recovery, Error> {
        let journal = match self.load_blob_raw(STATE_BLOB_JOURNAL) {
            Ok(v) => Some(v),
            Err(Error::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let Some(journal) = journal else {
            if exists(STATE_BLOB_STAGING)? {
                persist::destroy(STATE_BLOB_STAGING)?;
                return Ok(Recovery::Discarded);
            }
            return Ok(Recovery::Clean);
        };
        let target = <[u8; 4]>::try_from(journal.as_slice())
            .ok()
            .map(u32::from_be_bytes)
            .filter(|t| is_blob_id(*t));
        let mut outcome = Recovery::Discarded;
        if let Some(target) = target {
            if !exists(target)? && exists(STATE_BLOB_STAGING)? {
                let staged = self.load_blob_raw(STATE_BLOB_STAGING)?;
                import_blob(target, &staged)?;
                outcome = Recovery::Completed(target);
            }
        }
        persist::destroy(STATE_BLOB_JOURNAL)?;
        persist::destroy(STATE_BLOB_STAGING)?;
        Ok(outcome)
    }

    /// Reads the blob at `raw`.
    pub(crate) fn load_blob_raw(&self, raw: u32) -> Result<Vec<u8>, Error> {
        // Reading the attributes loads the key into a PSA slot: purged below.
        let (key_type, bits) = ffi::key_type_bits(raw).map_err(crate::keys::at(raw))?;
        let result = (|| {
            if key_type != psa_crypto::ffi::PSA_KEY_TYPE_RAW_DATA {
                return Err(Error::InvalidArgument("not a data blob"));
            }
            let mut out = vec![0u8; bits.div_ceil(8).min(MAX_BLOB_LEN)];
            let n = persist::export(raw, &mut out)?;
            out.truncate(n);
            Ok(out)
        })();
        ffi::purge(raw);
        result
    }

    /// Stores a certificate (atomically: a failed store keeps the old one).
    pub fn store_cert(&mut self, slot: CertSlot, der: &[u8]) -> Result<(), Error> {
        self.store_blob_raw(slot.get(), der)
    }

    /// Reads a certificate.
    pub fn load_cert(&self, slot: CertSlot) -> Result<Vec<u8>, Error> {
        self.load_blob_raw(slot.get())
    }

    /// Removes a certificate (absent is fine).
    pub fn delete_cert(&mut self, slot: CertSlot) -> Result<(), Error> {
        persist::destroy(slot.get())
    }

    /// Whether a certificate is stored in `slot`.
    pub fn cert_present(&self, slot: CertSlot) -> Result<bool, Error> {
        exists(slot.get())
    }

    /// Reads a device state record (see [`crate::ids`]`::STATE_*`).
    pub fn load_state(&self, id: StateId) -> Result<Option<Vec<u8>>, Error> {
        match self.load_blob_raw(id.raw()) {
            Ok(v) => Ok(Some(v)),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes a device state record (absent is fine).
    pub fn delete_state(&mut self, id: StateId) -> Result<(), Error> {
        persist::destroy(id.raw())
    }

    /// Writes a device state record (atomically, like a certificate).
    pub fn store_state(&mut self, id: StateId, data: &[u8]) -> Result<(), Error> {
        self.store_blob_raw(id.raw(), data)
    }
}

/// How a swap failed.
enum SwapError {
    /// The slot holds its old value again (or never lost it).
    RolledBack(Error),
    /// The slot could not be restored: the journal stays, so recovery
    /// installs the staged (new) value.
    Pending(Error),
}

impl SwapError {
    fn into_error(self) -> Error {
        match self {
            SwapError::RolledBack(e) | SwapError::Pending(e) => e,
        }
    }
}

/// IDs a journal may name: certificate slots, peer certificates and the
/// state records (never a private key, never the journal's own IDs).
fn is_blob_id(id: u32) -> bool {
    use crate::ids::*;
    let cert_slot = (DEVICE_KEY_MIN + CERT_OFFSET..=DEVICE_KEY_MAX + CERT_OFFSET).contains(&id);
    let peer = (PEER_MIN..=PEER_MAX).contains(&id);
    let state = [STATE_RNG_BLOCK, STATE_SESSION_ID, STATE_SEQ, STATE_REMOTE, STATE_TELEMETRY_KEY].contains(&id);
    cert_slot || peer || state
}

/// The device's own state records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateId {
    /// First random block of the previous boot.
    RngBlock,
    /// Session id high-water mark.
    SessionId,
    /// Telemetry sequence-number reservation.
    Seq,
    /// The last remote command executed: its `cseq` (u64 BE) and the reply
    /// sent for it (docs/remote.md).
    Remote,
    /// The telemetry key chosen by a key rotation (u32 BE).
    TelemetryKey,
}

impl StateId {
    fn raw(self) -> u32 {
        match self {
            StateId::RngBlock => crate::ids::STATE_RNG_BLOCK,
            StateId::SessionId => crate::ids::STATE_SESSION_ID,
            StateId::Seq => crate::ids::STATE_SEQ,
            StateId::Remote => crate::ids::STATE_REMOTE,
            StateId::TelemetryKey => crate::ids::STATE_TELEMETRY_KEY,
        }
    }
}
