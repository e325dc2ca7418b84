//! Public data blobs (certificates, device state) as PSA RAW_DATA persistent
//! keys. They carry EXPORT (that is how they are read back) and nothing else:
//! the "never EXPORT" rule of DESIGN.md is about private keys.

use crate::ids::CertSlot;
use crate::keys::{destroy_raw, exists};
use crate::{Error, Psa, PsaStatus};
use alloc::vec;
use alloc::vec::Vec;
use psa_crypto::operations::key_management;
use psa_crypto::types::algorithm::Algorithm;
use psa_crypto::types::key::{Attributes, Id, Lifetime, Policy, Type, UsageFlags};

/// Largest blob (certificate) accepted.
pub const MAX_BLOB_LEN: usize = 4096;

fn blob_attributes(len: usize) -> Attributes {
    let mut usage_flags = UsageFlags::default();
    usage_flags.set_export();
    Attributes {
        lifetime: Lifetime::Persistent,
        key_type: Type::RawData,
        bits: len * 8,
        policy: Policy { usage_flags, permitted_algorithms: Algorithm::None },
    }
}

impl Psa {
    /// Stores `data` at `raw` (replacing what was there). Callers pass IDs
    /// from [`crate::ids`]; this is the one place that writes RAW_DATA.
    pub(crate) fn store_blob_raw(&mut self, raw: u32, data: &[u8]) -> Result<(), Error> {
        if data.len() > MAX_BLOB_LEN {
            return Err(Error::TooLarge(data.len()));
        }
        if data.is_empty() {
            return Err(Error::InvalidArgument("empty data"));
        }
        destroy_raw(self, raw)?;
        key_management::import(blob_attributes(data.len()), Some(raw), data)?;
        Ok(())
    }

    /// Reads the blob at `raw`.
    pub(crate) fn load_blob_raw(&self, raw: u32) -> Result<Vec<u8>, Error> {
        let id = Id::from_persistent_key_id(raw).map_err(|e| match e {
            PsaStatus::DoesNotExist | PsaStatus::InvalidHandle => Error::NotFound(raw),
            other => other.into(),
        })?;
        let attributes = Attributes::from_key_id(id)?;
        if attributes.key_type != Type::RawData {
            return Err(Error::InvalidArgument("not a data blob"));
        }
        let mut out = vec![0u8; attributes.bits.div_ceil(8).min(MAX_BLOB_LEN)];
        let n = key_management::export(id, &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    /// Stores a certificate.
    pub fn store_cert(&mut self, slot: CertSlot, der: &[u8]) -> Result<(), Error> {
        self.store_blob_raw(slot.get(), der)
    }

    /// Reads a certificate.
    pub fn load_cert(&self, slot: CertSlot) -> Result<Vec<u8>, Error> {
        self.load_blob_raw(slot.get())
    }

    /// Removes a certificate (absent is fine).
    pub fn delete_cert(&mut self, slot: CertSlot) -> Result<(), Error> {
        destroy_raw(self, slot.get())
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

    /// Writes a device state record.
    pub fn store_state(&mut self, id: StateId, data: &[u8]) -> Result<(), Error> {
        self.store_blob_raw(id.raw(), data)
    }
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
}

impl StateId {
    fn raw(self) -> u32 {
        match self {
            StateId::RngBlock => crate::ids::STATE_RNG_BLOCK,
            StateId::SessionId => crate::ids::STATE_SESSION_ID,
            StateId::Seq => crate::ids::STATE_SEQ,
        }
    }
}
