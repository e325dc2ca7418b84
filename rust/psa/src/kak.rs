//! The device key-agreement key (KAK, docs/remote.md): a persistent P-256
//! key pair at [`STATE_KAK`] whose only usage is DERIVE with raw ECDH. Remote
//! commands are encrypted to it (ECDH-ES from the server), so the device's
//! signing keys never need DERIVE. Created once, from the RNG, and never
//! exportable.

use crate::ids::STATE_KAK;
use crate::{ffi, keys, persist, Error, Psa, PsaStatus, PublicKey, PUBLIC_KEY_LEN};
use psa_crypto::types::algorithm::{KeyAgreement, RawKeyAgreement};
use psa_crypto::types::key::{Attributes, EccFamily, Lifetime, Policy, Type, UsageFlags};

fn kak_attributes() -> Attributes {
    let mut usage_flags = UsageFlags::default();
    usage_flags.set_derive();
    Attributes {
        lifetime: Lifetime::Persistent,
        key_type: Type::EccKeyPair { curve_family: EccFamily::SecpR1 },
        bits: 256,
        policy: Policy { usage_flags, permitted_algorithms: KeyAgreement::Raw(RawKeyAgreement::Ecdh).into() },
    }
}

impl Psa {
    /// The KAK's public key, generating the key first if there is none (so
    /// it needs a healthy RNG only the first time).
    pub fn kak_public(&mut self) -> Result<PublicKey, Error> {
        if !keys::exists(STATE_KAK)? {
            self.require_rng()?;
            persist::generate(kak_attributes(), STATE_KAK)?;
        }
        let mut public = [0u8; PUBLIC_KEY_LEN];
        if ffi::export_public(STATE_KAK, &mut public).map_err(keys::at(STATE_KAK))? != PUBLIC_KEY_LEN {
            return Err(Error::Psa(PsaStatus::CorruptionDetected));
        }
        Ok(public)
    }

    /// Whether the KAK exists.
    pub fn kak_present(&self) -> Result<bool, Error> {
        keys::exists(STATE_KAK)
    }

    /// Raw ECDH between the KAK and `peer_public` (the sender's ephemeral
    /// key): the shared secret's x-coordinate, the ECDH-ES step of opening a
    /// COSE recipient. No KAK is [`Error::NotFound`]; a point that is not on
    /// P-256 is [`Error::InvalidArgument`].
    pub fn kak_ecdh(&self, peer_public: &[u8; PUBLIC_KEY_LEN]) -> Result<[u8; 32], Error> {
        let mut shared = [0u8; 32];
        let n = ffi::raw_ecdh(STATE_KAK, peer_public, &mut shared).map_err(|e| match e {
            PsaStatus::InvalidArgument => Error::InvalidArgument("peer public key is not a P-256 point"),
            other => keys::at(STATE_KAK)(other),
        })?;
        if n != shared.len() {
            return Err(Error::Psa(PsaStatus::CorruptionDetected));
        }
        Ok(shared)
    }
}
