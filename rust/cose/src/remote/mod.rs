//! Remote provisioning envelopes (docs/remote.md): a command (cloud →
//! device, `prov/{id}/cmd`) or a reply (device → cloud, `prov/{id}/reply`)
//! is a COSE_Sign1 whose payload is a COSE_Encrypt to the other side's
//! static P-256 key, the shape of a `session` message:
//!
//! ```text
//! 18([ {1: -7, 4: signer kid}, {}, payload, signature ])      external_aad = binding
//! payload = 96([ {1: 1}, {5: IV}, ciphertext,
//!               [[ {1: -25}, {4: recipient kid, -1: ephemeral COSE_Key}, h'' ]] ])
//!   Enc_structure = ["Encrypt", {1: 1}, binding]
//! binding = "tfmprov/cmd/" || device id   or   "tfmprov/reply/" || device id
//! ```
//!
//! The binding (COSE external AAD, in both the signature and the AEAD) ties
//! a message to one device and one direction: moved to another device's
//! topic, or passed off as the other direction, it no longer verifies. A
//! reply from a device that has no signing key yet is the bare COSE_Encrypt
//! (tag 96, same binding): [`Envelope::signer_kid`] is `None`.
//!
//! This module only builds and checks envelopes; what is inside (the
//! command and reply maps, sequence numbers) is the caller's. Crypto is
//! passed in as closures, as for sessions.

use alloc::string::String;
use alloc::vec::Vec;

use crate::data::sign1;
use crate::session::{open_from, seal_to, SessionCrypto};
use crate::write;
use crate::{check_len, Error, Kid, ParseError, ALG_A128GCM, GCM_TAG_LEN, TAG_ENCRYPT, TAG_SIGN1};

mod parse;

/// Which way a message goes: part of its binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Cloud → device, on `prov/{id}/cmd`, signed by the cloud key,
    /// encrypted to the device's key-agreement key.
    Command,
    /// Device → cloud, on `prov/{id}/reply`, signed by a device key (or
    /// unsigned before the device has one), encrypted to the cloud key.
    Reply,
}

impl Direction {
    /// The external AAD: `"tfmprov/cmd/" || device_id` or
    /// `"tfmprov/reply/" || device_id`.
    pub fn binding(self, device_id: &str) -> Vec<u8> {
        let prefix: &[u8] = match self {
            Direction::Command => b"tfmprov/cmd/",
            Direction::Reply => b"tfmprov/reply/",
        };
        let mut out = Vec::with_capacity(prefix.len() + device_id.len());
        out.extend_from_slice(prefix);
        out.extend_from_slice(device_id.as_bytes());
        out
    }
}

/// The unsigned envelope: `plaintext` encrypted to the static key
/// (`recipient_kid`, `recipient_public`), bound to (`dir`, `device_id`).
pub fn seal_envelope<E, Ecdh, Hkdf, Aead, Rng>(
    dir: Direction,
    device_id: &str,
    plaintext: &[u8],
    recipient_kid: &Kid,
    recipient_public: &[u8; 65],
    crypto: SessionCrypto<Ecdh, Hkdf, Aead, Rng>,
) -> Result<Vec<u8>, Error<E>>
where
    Ecdh: FnOnce(&[u8; 65]) -> Result<([u8; 65], [u8; 32]), E>,
    Hkdf: FnOnce(&[u8], &[u8], usize) -> Result<Vec<u8>, E>,
    Aead: FnOnce(&[u8; 16], &[u8; 12], &[u8], &[u8]) -> Result<Vec<u8>, E>,
    Rng: FnOnce(&mut [u8]) -> Result<(), E>,
{
    check_len(plaintext.len())?;
    let protected = write::alg_protected(ALG_A128GCM);
    let out = seal_to(&protected, &dir.binding(device_id), plaintext, recipient_kid, recipient_public, crypto)?;
    check_len(out.len())?;
    Ok(out)
}

/// The signed envelope: [`seal_envelope`] inside a Sign1 by the signer
/// (`signer_kid`; `sign` gets the ToBeSigned bytes), same binding.
#[allow(clippy::too_many_arguments)]
pub fn build_envelope<E, Ecdh, Hkdf, Aead, Rng>(
    dir: Direction,
    device_id: &str,
    plaintext: &[u8],
    recipient_kid: &Kid,
    recipient_public: &[u8; 65],
    signer_kid: &Kid,
    crypto: SessionCrypto<Ecdh, Hkdf, Aead, Rng>,
    sign: impl FnOnce(&[u8]) -> Result<[u8; 64], E>,
) -> Result<Vec<u8>, Error<E>>
where
    Ecdh: FnOnce(&[u8; 65]) -> Result<([u8; 65], [u8; 32]), E>,
    Hkdf: FnOnce(&[u8], &[u8], usize) -> Result<Vec<u8>, E>,
    Aead: FnOnce(&[u8; 16], &[u8; 12], &[u8], &[u8]) -> Result<Vec<u8>, E>,
    Rng: FnOnce(&mut [u8]) -> Result<(), E>,
{
    let inner = seal_envelope(dir, device_id, plaintext, recipient_kid, recipient_public, crypto)?;
    sign1(write::es256_protected(signer_kid, None), &inner, &dir.binding(device_id), sign)
}

/// A parsed envelope whose profile is checked. Nothing is authenticated
/// until [`Envelope::verify`] succeeds (signed envelopes); verify first,
/// then [`Envelope::open`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// kid of the signer (protected header of the Sign1); `None`: unsigned.
    pub signer_kid: Option<Kid>,
    /// kid of the static key it is encrypted to.
    pub recipient_kid: Kid,
    /// The ephemeral public point (0x04 || X || Y).
    pub ephemeral: [u8; 65],
    /// The content IV.
    pub iv: [u8; 12],
    signed: Option<(Vec<u8>, [u8; 64])>,
    aad: Vec<u8>,
    ciphertext: Vec<u8>,
    recipient_protected: Vec<u8>,
}

/// Parse an envelope bound to (`dir`, `device_id`): a tagged Sign1 (18)
/// over a tagged COSE_Encrypt (96), or a bare tagged COSE_Encrypt (the
/// unsigned form). Tags are required: untagged, the two are both 4-element
/// arrays. Checks the profile; does not verify or decrypt. Without `coset`
/// (the device links it; see `parse.rs`), definite lengths only.
pub fn parse_envelope(dir: Direction, device_id: &str, msg: &[u8]) -> Result<Envelope, ParseError> {
    check_len(msg.len())?;
    let binding = dir.binding(device_id);
    // 0xd2 = tag 18 (COSE_Sign1); 0xd8 0x60 = tag 96 (COSE_Encrypt).
    let (signed, encrypt) = match msg.first() {
        Some(&b) if u64::from(b) == 0xc0 + TAG_SIGN1 => {
            let outer = parse::sign1(msg, &binding)?;
            if outer.payload.get(..2) != Some(&[0xd8, TAG_ENCRYPT as u8][..]) {
                return Err(Error::Profile("payload is not a tagged COSE_Encrypt"));
            }
            (Some((outer.kid, outer.tbs, outer.signature)), outer.payload)
        }
        Some(0xd8) if msg.get(1) == Some(&(TAG_ENCRYPT as u8)) => (None, msg),
        _ => return Err(Error::Profile("not a tagged COSE_Sign1 or COSE_Encrypt")),
    };
    let enc = parse::encrypt(encrypt, &binding)?;
    let (signer_kid, signed) = match signed {
        Some((kid, tbs, sig)) => (Some(kid), Some((tbs, sig))),
        None => (None, None),
    };
    Ok(Envelope {
        signer_kid,
        recipient_kid: enc.recipient_kid,
        ephemeral: enc.ephemeral,
        iv: enc.iv,
        signed,
        aad: enc.aad,
        ciphertext: enc.ciphertext,
        recipient_protected: enc.recipient_protected,
    })
}

impl Envelope {
    /// Verify the Sign1 with the signer's public key (`verify(tbs,
    /// signature)`, as [`crate::SignedData::verify`]). An unsigned envelope
    /// is `Error::Profile("envelope is not signed")`.
    pub fn verify<E>(&self, verify: impl FnOnce(&[u8], &[u8; 64]) -> Result<(), E>) -> Result<(), Error<E>> {
        match &self.signed {
            Some((tbs, sig)) => verify(tbs, sig).map_err(Error::Signature),
            None => Err(Error::Profile("envelope is not signed")),
        }
    }

    /// Decrypt with the recipient's static private key:
    /// `ecdh_with_static(ephemeral)` -> shared secret x-coordinate (it must
    /// refuse a point not on the curve), `hkdf_sha256`, `aes128gcm_decrypt`.
    pub fn open<E>(
        &self,
        ecdh_with_static: impl FnOnce(&[u8; 65]) -> Result<[u8; 32], E>,
        hkdf_sha256: impl FnOnce(&[u8], &[u8], usize) -> Result<Vec<u8>, E>,
        aes128gcm_decrypt: impl FnOnce(&[u8; 16], &[u8; 12], &[u8], &[u8]) -> Result<Vec<u8>, E>,
    ) -> Result<Vec<u8>, Error<E>> {
        let pt = open_from(
            &self.ephemeral,
            &self.recipient_protected,
            &self.iv,
            &self.aad,
            &self.ciphertext,
            ecdh_with_static,
            hkdf_sha256,
            aes128gcm_decrypt,
        )?;
        if pt.len() + GCM_TAG_LEN != self.ciphertext.len() {
            return Err(Error::CryptoOutput("AES-GCM output is not ciphertext - 16 bytes"));
        }
        Ok(pt)
    }

    /// Is this envelope signed?
    pub fn is_signed(&self) -> bool {
        self.signed.is_some()
    }
}

/// The external AAD of a key-agreement-key announcement:
/// `"tfmprov/kak/" || device_id`.
pub fn kak_binding(device_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + device_id.len());
    out.extend_from_slice(b"tfmprov/kak/");
    out.extend_from_slice(device_id.as_bytes());
    out
}

/// The field path of the key-agreement key (docs/remote.md "Keys"): a
/// Sign1 by a device signing key (`signer_kid`, ES256, with the device's
/// next `seq` in the protected header, as a `data` message) whose payload is
/// the KAK's public point, bound to the device by [`kak_binding`]. Published
/// on `prov/{id}/reply`.
pub fn sign_kak_announcement<E>(
    device_id: &str,
    kak: &[u8; 65],
    signer_kid: &Kid,
    seq: u64,
    sign: impl FnOnce(&[u8]) -> Result<[u8; 64], E>,
) -> Result<Vec<u8>, Error<E>> {
    sign1(write::es256_protected(signer_kid, Some(seq)), kak, &kak_binding(device_id), sign)
}

/// A parsed announcement; nothing is authenticated until
/// [`KakAnnouncement::verify`] succeeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KakAnnouncement {
    /// kid of the signing key.
    pub signer_kid: Kid,
    /// The device's `seq` when it signed (announcements are ordered by it).
    pub seq: u64,
    /// The key-agreement key's public point.
    pub kak: [u8; 65],
    tbs: Vec<u8>,
    signature: [u8; 64],
}

/// Parse an announcement bound to `device_id` (server side: `coset`).
pub fn parse_kak_announcement(device_id: &str, msg: &[u8]) -> Result<KakAnnouncement, ParseError> {
    check_len(msg.len())?;
    let s = crate::data::parse_sign1(msg, &kak_binding(device_id))?;
    let seq = crate::profile::seq(&s.protected)?;
    let kak: [u8; 65] = crate::profile::fixed(&s.payload, "announced key is not a 65-byte point")?;
    if kak[0] != 0x04 {
        return Err(Error::Profile("announced key is not an uncompressed point"));
    }
    Ok(KakAnnouncement { signer_kid: s.kid, seq, kak, tbs: s.tbs, signature: s.signature })
}

impl KakAnnouncement {
    /// Verify with the signer's public key (`verify(tbs, signature)`).
    pub fn verify<E>(&self, verify: impl FnOnce(&[u8], &[u8; 64]) -> Result<(), E>) -> Result<(), Error<E>> {
        verify(&self.tbs, &self.signature).map_err(Error::Signature)
    }
}

/// The topic an envelope of `dir` goes to for `device_id`
/// (`{prefix}/{id}/cmd` or `{prefix}/{id}/reply`).
pub fn envelope_topic(prefix: &str, device_id: &str, dir: Direction) -> String {
    let leaf = match dir {
        Direction::Command => "cmd",
        Direction::Reply => "reply",
    };
    let mut t = String::with_capacity(prefix.len() + device_id.len() + 8);
    t.push_str(prefix);
    t.push('/');
    t.push_str(device_id);
    t.push('/');
    t.push_str(leaf);
    t
}

#[cfg(test)]
mod tests;
