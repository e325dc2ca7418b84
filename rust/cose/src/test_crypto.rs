//! Real crypto for the unit tests (dev-dependencies), with the closure
//! shapes this crate expects. The interop example has its own copy.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes128Gcm;
use alloc::vec::Vec;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::OsRng;
use sha2::{Digest, Sha256};

use crate::{kid_from_spki_digest, p256_spki_der, Kid, SessionCrypto};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoError(pub &'static str);

pub struct KeyPair {
    pub sk: SigningKey,
    pub public: [u8; 65],
    pub kid: Kid,
}

pub fn keypair() -> KeyPair {
    let sk = SigningKey::random(&mut OsRng);
    let public = point(&sk);
    let kid = kid_of(&public);
    KeyPair { sk, public, kid }
}

pub fn point(sk: &SigningKey) -> [u8; 65] {
    let ep = sk.verifying_key().to_encoded_point(false);
    let mut out = [0u8; 65];
    out.copy_from_slice(ep.as_bytes());
    out
}

pub fn kid_of(public: &[u8; 65]) -> Kid {
    let d: [u8; 32] = Sha256::digest(p256_spki_der(public)).into();
    kid_from_spki_digest(&d)
}

/// ES256 over the ToBeSigned bytes (deterministic, RFC 6979, like PSA's).
pub fn signer(sk: &SigningKey) -> impl FnOnce(&[u8]) -> Result<[u8; 64], CryptoError> + '_ {
    move |tbs| {
        let sig: Signature = sk.sign(tbs);
        Ok(sig.to_bytes().into())
    }
}

pub fn verifier(
    public: &[u8; 65],
) -> impl FnOnce(&[u8], &[u8; 64]) -> Result<(), CryptoError> + '_ {
    move |tbs, sig| {
        let vk =
            VerifyingKey::from_sec1_bytes(public).map_err(|_| CryptoError("bad public key"))?;
        let sig = Signature::from_slice(sig).map_err(|_| CryptoError("bad signature encoding"))?;
        vk.verify(tbs, &sig)
            .map_err(|_| CryptoError("bad signature"))
    }
}

pub fn ecdh_ephemeral(peer: &[u8; 65]) -> Result<([u8; 65], [u8; 32]), CryptoError> {
    let peer = p256::PublicKey::from_sec1_bytes(peer).map_err(|_| CryptoError("bad peer point"))?;
    let eph = p256::ecdh::EphemeralSecret::random(&mut OsRng);
    let ep = p256::PublicKey::from(&eph).to_encoded_point(false);
    let mut public = [0u8; 65];
    public.copy_from_slice(ep.as_bytes());
    let shared = eph.diffie_hellman(&peer);
    let mut s = [0u8; 32];
    s.copy_from_slice(shared.raw_secret_bytes());
    Ok((public, s))
}

pub fn ecdh_static(
    sk: &SigningKey,
) -> impl FnOnce(&[u8; 65]) -> Result<[u8; 32], CryptoError> + '_ {
    move |peer| {
        let peer =
            p256::PublicKey::from_sec1_bytes(peer).map_err(|_| CryptoError("bad peer point"))?;
        let secret = p256::SecretKey::from(sk.as_nonzero_scalar());
        let shared = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), peer.as_affine());
        let mut s = [0u8; 32];
        s.copy_from_slice(shared.raw_secret_bytes());
        Ok(s)
    }
}

pub fn hkdf_sha256(ikm: &[u8], info: &[u8], len: usize) -> Result<Vec<u8>, CryptoError> {
    let mut out = alloc::vec![0u8; len];
    hkdf::Hkdf::<Sha256>::new(None, ikm)
        .expand(info, &mut out)
        .map_err(|_| CryptoError("hkdf length"))?;
    Ok(out)
}

pub fn gcm_encrypt(
    key: &[u8; 16],
    iv: &[u8; 12],
    aad: &[u8],
    pt: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    Aes128Gcm::new(key.into())
        .encrypt(iv.into(), Payload { msg: pt, aad })
        .map_err(|_| CryptoError("encrypt"))
}

pub fn gcm_decrypt(
    key: &[u8; 16],
    iv: &[u8; 12],
    aad: &[u8],
    ct: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    Aes128Gcm::new(key.into())
        .decrypt(iv.into(), Payload { msg: ct, aad })
        .map_err(|_| CryptoError("decrypt"))
}

pub fn random(buf: &mut [u8]) -> Result<(), CryptoError> {
    rand_core::RngCore::fill_bytes(&mut OsRng, buf);
    Ok(())
}

/// The four closures of [`SessionCrypto`], with the functions above.
#[allow(clippy::type_complexity)]
pub fn crypto() -> SessionCrypto<
    impl FnOnce(&[u8; 65]) -> Result<([u8; 65], [u8; 32]), CryptoError>,
    impl FnOnce(&[u8], &[u8], usize) -> Result<Vec<u8>, CryptoError>,
    impl FnOnce(&[u8; 16], &[u8; 12], &[u8], &[u8]) -> Result<Vec<u8>, CryptoError>,
    impl FnOnce(&mut [u8]) -> Result<(), CryptoError>,
> {
    SessionCrypto::new(ecdh_ephemeral, hkdf_sha256, gcm_encrypt, random)
}
