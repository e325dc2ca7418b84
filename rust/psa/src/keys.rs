//! Device private keys: P-256, persistent, deterministic ECDSA only.

use crate::ids::{DeviceKeyId, AUTO_ASSIGN_MIN, DEVICE_KEY_MAX};
use crate::{ffi, persist, Error, Psa, PsaStatus, PublicKey, Signature, PUBLIC_KEY_LEN};
use psa_crypto::operations::key_management;
use psa_crypto::types::algorithm::{AsymmetricSignature, Hash, SignHash};
use psa_crypto::types::key::{Attributes, EccFamily, Lifetime, Policy, Type, UsageFlags};

/// Where a new private key value comes from.
#[derive(Clone, Copy)]
pub enum KeyOrigin<'a> {
    /// Generated inside PSA from its RNG (refused while the RNG is broken).
    Random,
    /// A known 32-byte private scalar, imported.
    Known(&'a [u8]),
}

/// The only signature algorithm device keys permit (DESIGN.md: a randomized
/// ECDSA nonce repeated across resets on TF-M under QEMU).
pub(crate) const SIGN_ALG: AsymmetricSignature =
    AsymmetricSignature::DeterministicEcdsa { hash_alg: SignHash::Specific(Hash::Sha256) };

/// Attributes of a device key: no EXPORT, no COPY, no DERIVE.
pub(crate) fn device_key_attributes(lifetime: Lifetime) -> Attributes {
    let mut usage_flags = UsageFlags::default();
    usage_flags.set_sign_hash().set_verify_hash();
    Attributes {
        lifetime,
        key_type: Type::EccKeyPair { curve_family: EccFamily::SecpR1 },
        bits: 256,
        policy: Policy { usage_flags, permitted_algorithms: SIGN_ALG.into() },
    }
}

/// Whether PSA holds a key (of any type) at `raw`.
pub(crate) fn exists(raw: u32) -> Result<bool, Error> {
    match ffi::key_type_bits(raw) {
        Ok(_) => Ok(true),
        Err(PsaStatus::DoesNotExist) | Err(PsaStatus::InvalidHandle) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A PSA status of an operation on the persistent key `raw`: no key there
/// ([`PsaStatus::DoesNotExist`], or `InvalidHandle` outside the key ranges)
/// is [`Error::NotFound`].
pub(crate) fn at(raw: u32) -> impl Fn(PsaStatus) -> Error {
    move |e| match e {
        PsaStatus::DoesNotExist | PsaStatus::InvalidHandle => Error::NotFound(raw),
        other => other.into(),
    }
}

impl Psa {
    /// Creates a P-256 private key at `id` (or at the lowest free ID at or
    /// above 0x00010000 when `None`) and returns its ID.
    ///
    /// An occupied `id` is [`Error::Exists`] unless `replace`; with `replace`
    /// a known value is validated first (imported as a volatile key), so a
    /// refused replace leaves the old key in place.
    pub fn create_key(
        &mut self,
        id: Option<DeviceKeyId>,
        origin: KeyOrigin<'_>,
        replace: bool,
    ) -> Result<DeviceKeyId, Error> {
        if let KeyOrigin::Known(value) = origin {
            if value.len() != 32 {
                return Err(Error::InvalidArgument("priv must be exactly 32 bytes"));
            }
            // Validate the scalar (non-zero, below the group order) before
            // anything is destroyed.
            let probe = key_management::import(device_key_attributes(Lifetime::Volatile), None, value)
                .map_err(|e| match e {
                    PsaStatus::InvalidArgument | PsaStatus::NotSupported => {
                        Error::InvalidArgument("priv is not a valid P-256 private key")
                    }
                    other => other.into(),
                })?;
            // SAFETY: a volatile key only this function knows about.
            unsafe { key_management::destroy(probe) }?;
        } else {
            self.require_rng()?;
        }

        let id = match id {
            Some(id) => {
                if self.key_present(id)? {
                    if !replace {
                        return Err(Error::Exists(id.get()));
                    }
                    // A private key cannot be staged and copied back (no
                    // COPY, no EXPORT): replace is destroy, then create. The
                    // new key takes the room the old one freed, so only a
                    // TF-M failure (not a full store) can leave it empty.
                    persist::destroy(id.get())?;
                }
                id
            }
            None => self.lowest_free_id()?,
        };
        let attributes = device_key_attributes(Lifetime::Persistent);
        match origin {
            KeyOrigin::Random => persist::generate(attributes, id.get())?,
            KeyOrigin::Known(value) => persist::import(attributes, id.get(), value)?,
        }
        Ok(id)
    }

    /// The lowest free device-key ID at or above 0x00010000.
    pub fn lowest_free_id(&self) -> Result<DeviceKeyId, Error> {
        for raw in AUTO_ASSIGN_MIN..=DEVICE_KEY_MAX {
            if !exists(raw)? {
                return DeviceKeyId::new(raw.into());
            }
        }
        Err(Error::StorageFull)
    }

    /// Whether a key exists at `id`.
    pub fn key_present(&self, id: DeviceKeyId) -> Result<bool, Error> {
        exists(id.get())
    }

    /// The uncompressed public key of the key at `id`.
    pub fn public_key(&self, id: DeviceKeyId) -> Result<PublicKey, Error> {
        let raw = id.get();
        if ffi::key_type_bits(raw).map_err(at(raw))? != (ffi::KEY_TYPE_P256_PAIR, 256) {
            return Err(Error::InvalidArgument("not a P-256 key"));
        }
        let mut out = [0u8; PUBLIC_KEY_LEN];
        let n = ffi::export_public(raw, &mut out).map_err(at(raw))?;
        if n != PUBLIC_KEY_LEN {
            return Err(Error::Psa(PsaStatus::CorruptionDetected));
        }
        Ok(out)
    }

    /// Destroys the key at `id` (absent is [`Error::NotFound`]).
    pub fn destroy_key(&mut self, id: DeviceKeyId) -> Result<(), Error> {
        ffi::key_type_bits(id.get()).map_err(at(id.get()))?;
        persist::destroy(id.get())
    }

    /// Deterministic ECDSA (RFC 6979) with SHA-256 over a 32-byte digest.
    pub fn sign_hash(&self, id: DeviceKeyId, digest: &[u8; 32]) -> Result<Signature, Error> {
        let mut sig = [0u8; 64];
        let n = ffi::sign_hash(id.get(), ffi::ALG_DETERMINISTIC_ECDSA_SHA256, digest, &mut sig).map_err(at(id.get()))?;
        if n != sig.len() {
            return Err(Error::Psa(PsaStatus::CorruptionDetected));
        }
        Ok(sig)
    }

    /// SHA-256 then [`Psa::sign_hash`].
    pub fn sign_message(&self, id: DeviceKeyId, message: &[u8]) -> Result<Signature, Error> {
        let digest = self.sha256(message)?;
        self.sign_hash(id, &digest)
    }
}
