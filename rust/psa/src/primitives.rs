//! Hashing, randomness and the session-key crypto, all through PSA.

use crate::keys::SIGN_ALG;
use crate::{Error, Psa, PsaStatus, PublicKey, PUBLIC_KEY_LEN};
use alloc::vec;
use alloc::vec::Vec;
use psa_crypto::operations::{aead, asym_signature, hash, key_derivation, key_management, other};
use psa_crypto::types::algorithm::{
    Aead, AeadWithDefaultLengthTag, Hash, KeyAgreement, KeyDerivation, RawKeyAgreement,
};
use psa_crypto::types::key::{Attributes, EccFamily, Id, Lifetime, Policy, Type, UsageFlags};
use psa_crypto::types::key_derivation::{Input, InputSecret, Inputs, Operation};

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
        let handle = Id::from_persistent_key_id(id.get()).map_err(|_| Error::NotFound(id.get()))?;
        asym_signature::verify_hash(handle, SIGN_ALG, digest, sig).map_err(Error::from)
    }

    /// Imports a 16-byte AES-128-GCM key as a volatile PSA key.
    pub fn session_key(&self, key: &[u8; 16]) -> Result<SessionKey, Error> {
        let id = key_management::import(aes_gcm_attributes(128), None, key)?;
        Ok(SessionKey { id })
    }

    /// ECDH-ES + HKDF-SHA256 content encryption for a COSE recipient, all
    /// inside PSA: a fresh volatile ephemeral P-256 key agrees with
    /// `peer_public`, HKDF (no salt, `info` = the COSE_KDF_Context) derives a
    /// volatile AES-128-GCM key, which encrypts `plaintext`. Neither the
    /// shared secret nor the derived key leaves PSA. Returns the ephemeral
    /// public key and ciphertext || tag.
    pub fn ecdh_es_hkdf_encrypt(
        &self,
        peer_public: &PublicKey,
        info: &[u8],
        iv: &[u8; 12],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<(PublicKey, Vec<u8>), Error> {
        self.require_rng()?;
        let kdf_alg = KeyDerivation::Hkdf { hash_alg: Hash::Sha256 };
        let mut usage_flags = UsageFlags::default();
        usage_flags.set_derive();
        let eph_attributes = Attributes {
            lifetime: Lifetime::Volatile,
            key_type: Type::EccKeyPair { curve_family: EccFamily::SecpR1 },
            bits: 256,
            policy: Policy {
                usage_flags,
                permitted_algorithms: KeyAgreement::WithKeyDerivation {
                    ka_alg: RawKeyAgreement::Ecdh,
                    kdf_alg,
                }
                .into(),
            },
        };
        let eph = key_management::generate(eph_attributes, None)?;
        let result = (|| {
            let mut eph_public = [0u8; PUBLIC_KEY_LEN];
            let n = key_management::export_public(eph, &mut eph_public)?;
            if n != PUBLIC_KEY_LEN {
                return Err(Error::Psa(PsaStatus::CorruptionDetected));
            }
            let operation = Operation {
                inputs: Inputs::Hkdf {
                    hash_alg: Hash::Sha256,
                    salt: None,
                    secret: InputSecret::KeyAgreement {
                        alg: RawKeyAgreement::Ecdh,
                        private_key: eph,
                        peer_key: peer_public,
                    },
                    info: Input::Bytes(info),
                },
                capacity: None,
            };
            let mut cek_attributes = aes_gcm_attributes(128);
            cek_attributes.policy.usage_flags = {
                let mut u = UsageFlags::default();
                u.set_encrypt();
                u
            };
            let cek = key_derivation::output_key(operation, cek_attributes, None)?;
            let ct = gcm_encrypt(cek, iv, aad, plaintext);
            // SAFETY: a volatile key created just above and used only here.
            let _ = unsafe { key_management::destroy(cek) };
            Ok((eph_public, ct?))
        })();
        // SAFETY: the ephemeral key is volatile and used only in this function.
        let _ = unsafe { key_management::destroy(eph) };
        result
    }
}
