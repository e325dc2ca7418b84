//! Hashing, randomness and the session-key crypto, all through PSA.

use crate::{ffi, Error, Psa, PsaStatus, PublicKey, PUBLIC_KEY_LEN};
use alloc::vec;
use alloc::vec::Vec;
use psa_crypto::operations::{aead, asym_signature, hash, key_agreement, key_management, mac, other};
use psa_crypto::types::algorithm::{
    Aead, AeadWithDefaultLengthTag, FullLengthMac, Hash, KeyAgreement, Mac, RawKeyAgreement,
};
use psa_crypto::types::key::{Attributes, EccFamily, Id, Lifetime, Policy, Type, UsageFlags};

const GCM: Aead = Aead::AeadWithDefaultLengthTag(AeadWithDefaultLengthTag::Gcm);

fn aes_gcm_attributes(bits: usize) -> Attributes {
    let mut usage_flags = UsageFlags::default();
    usage_flags.set_encrypt().set_decrypt();
    Attributes {
        lifetime: Lifetime::Volatile,
        key_type: Type::Aes,
        bits,
        policy: Policy { usage_flags, permitted_algorithms: GCM.into() },
    }
}

/// A volatile AES-128-GCM key inside PSA, destroyed when dropped.
pub struct SessionKey {
    id: Id,
}

impl SessionKey {
    /// AES-128-GCM encryption: returns ciphertext || 16-byte tag.
    pub fn encrypt(&self, iv: &[u8; 12], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        gcm_encrypt(self.id, iv, aad, plaintext)
    }

    /// AES-128-GCM decryption of ciphertext || 16-byte tag; a wrong tag (or
    /// key, IV, AAD) is [`Error::Psa`] with `InvalidSignature`.
    pub fn decrypt(&self, iv: &[u8; 12], aad: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = vec![0u8; ciphertext.len().saturating_sub(16)];
        let n = aead::decrypt(self.id, GCM, iv, aad, ciphertext, &mut out)?;
        out.truncate(n);
        Ok(out)
    }
}

impl Drop for SessionKey {
    fn drop(&mut self) {
        // SAFETY: a volatile key owned by this value only; failure to destroy
        // a volatile key only leaks a slot until reset.
        let _ = unsafe { key_management::destroy(self.id) };
    }
}

fn gcm_encrypt(id: Id, iv: &[u8; 12], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = vec![0u8; plaintext.len() + 16];
    let n = aead::encrypt(id, GCM, iv, aad, plaintext, &mut out)?;
    out.truncate(n);
    Ok(out)
}

impl Psa {
    /// SHA-256 of `data`.
    pub fn sha256(&self, data: &[u8]) -> Result<[u8; 32], Error> {
        let mut out = [0u8; 32];
        let n = hash::hash_compute(Hash::Sha256, data, &mut out)?;
        if n != 32 {
            return Err(Error::Psa(PsaStatus::CorruptionDetected));
        }
        Ok(out)
    }

    /// Fills `out` from PSA's RNG (refused while the RNG is marked broken).
    pub fn random(&self, out: &mut [u8]) -> Result<(), Error> {
        self.require_rng()?;
        other::generate_random(out).map_err(Error::from)
    }

    /// Verifies a raw r||s signature over a digest with a key of ours.
    pub fn verify_hash(&self, id: crate::ids::DeviceKeyId, digest: &[u8; 32], sig: &[u8; 64]) -> Result<(), Error> {
        ffi::verify_hash(id.get(), ffi::ALG_DETERMINISTIC_ECDSA_SHA256, digest, sig).map_err(crate::keys::at(id.get()))
    }

    /// Verifies a raw r||s ECDSA signature over `digest` (SHA-256) with a
    /// public key that is not ours (the cloud key of a remote command): the
    /// point is imported as a volatile public key for the check only.
    pub fn verify_with_public(&self, public: &PublicKey, digest: &[u8; 32], sig: &[u8; 64]) -> Result<(), Error> {
        let mut usage_flags = UsageFlags::default();
        usage_flags.set_verify_hash();
        let alg = psa_crypto::types::algorithm::AsymmetricSignature::Ecdsa {
            hash_alg: psa_crypto::types::algorithm::SignHash::Specific(Hash::Sha256),
        };
        let attributes = Attributes {
            lifetime: Lifetime::Volatile,
            key_type: Type::EccPublicKey { curve_family: EccFamily::SecpR1 },
            bits: 256,
            policy: Policy { usage_flags, permitted_algorithms: alg.into() },
        };
        let id = key_management::import(attributes, None, public).map_err(|e| match e {
            PsaStatus::InvalidArgument | PsaStatus::NotSupported => Error::InvalidArgument("not a P-256 public key"),
            other => other.into(),
        })?;
        let res = asym_signature::verify_hash(id, alg, digest, sig).map_err(Error::from);
        // SAFETY: a volatile key only this function knows about.
        let _ = unsafe { key_management::destroy(id) };
        res
    }

    /// Imports a 16-byte AES-128-GCM key as a volatile PSA key.
    pub fn session_key(&self, key: &[u8; 16]) -> Result<SessionKey, Error> {
        let id = key_management::import(aes_gcm_attributes(128), None, key)?;
        Ok(SessionKey { id })
    }

    /// ECDH with a fresh ephemeral P-256 key (volatile, inside PSA, destroyed
    /// at once): returns the ephemeral public key and the shared secret (the
    /// x-coordinate), the ECDH-ES step of a COSE recipient.
    pub fn ecdh_ephemeral(&self, peer_public: &PublicKey) -> Result<(PublicKey, [u8; 32]), Error> {
        self.require_rng()?;
        let alg = RawKeyAgreement::Ecdh;
        let mut usage_flags = UsageFlags::default();
        usage_flags.set_derive();
        let attributes = Attributes {
            lifetime: Lifetime::Volatile,
            key_type: Type::EccKeyPair { curve_family: EccFamily::SecpR1 },
            bits: 256,
            policy: Policy { usage_flags, permitted_algorithms: KeyAgreement::Raw(alg).into() },
        };
        let eph = key_management::generate(attributes, None)?;
        let result = (|| {
            let mut eph_public = [0u8; PUBLIC_KEY_LEN];
            if key_management::export_public(eph, &mut eph_public)? != PUBLIC_KEY_LEN {
                return Err(Error::Psa(PsaStatus::CorruptionDetected));
            }
            let mut shared = [0u8; 32];
            let n = key_agreement::raw_key_agreement(alg, eph, peer_public, &mut shared).map_err(|e| match e {
                PsaStatus::InvalidArgument => Error::InvalidArgument("peer public key is not a P-256 point"),
                other => other.into(),
            })?;
            if n != shared.len() {
                return Err(Error::Psa(PsaStatus::CorruptionDetected));
            }
            Ok((eph_public, shared))
        })();
        // SAFETY: the ephemeral key is volatile and used only in this function.
        let _ = unsafe { key_management::destroy(eph) };
        result
    }

    /// HMAC-SHA256 through PSA (a volatile HMAC key holding `key`).
    pub fn hmac_sha256(&self, key: &[u8], data: &[u8]) -> Result<[u8; 32], Error> {
        let mac_alg = Mac::FullLength(FullLengthMac::Hmac { hash_alg: Hash::Sha256 });
        let mut usage_flags = UsageFlags::default();
        // psa-crypto maps SIGN_MESSAGE (what psa_mac_compute checks) through set_sign_hash.
        usage_flags.set_sign_hash();
        let attributes = Attributes {
            lifetime: Lifetime::Volatile,
            key_type: Type::Hmac,
            bits: 0,
            policy: Policy { usage_flags, permitted_algorithms: mac_alg.into() },
        };
        let id = key_management::import(attributes, None, key)?;
        let mut out = [0u8; 32];
        let r = mac::compute_mac(id, mac_alg, data, &mut out);
        // SAFETY: a volatile key created above and used only here.
        let _ = unsafe { key_management::destroy(id) };
        if r? != 32 {
            return Err(Error::Psa(PsaStatus::CorruptionDetected));
        }
        Ok(out)
    }

    /// HKDF-SHA256 (RFC 5869) with no salt (HashLen zeros), built on PSA's
    /// HMAC; `len` at most 255 * 32.
    pub fn hkdf_sha256(&self, ikm: &[u8], info: &[u8], len: usize) -> Result<Vec<u8>, Error> {
        if len > 255 * 32 {
            return Err(Error::InvalidArgument("HKDF output too long"));
        }
        let prk = self.hmac_sha256(&[0u8; 32], ikm)?;
        let mut okm = Vec::with_capacity(len);
        let mut t: Vec<u8> = Vec::new();
        let mut counter = 1u8;
        while okm.len() < len {
            let mut input = Vec::with_capacity(t.len() + info.len() + 1);
            input.extend_from_slice(&t);
            input.extend_from_slice(info);
            input.push(counter);
            t = self.hmac_sha256(&prk, &input)?.to_vec();
            let take = (len - okm.len()).min(t.len());
            okm.extend_from_slice(&t[..take]);
            counter = counter.wrapping_add(1);
        }
        Ok(okm)
    }
}
