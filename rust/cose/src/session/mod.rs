//! `session` messages: a COSE_Sign1 by the device key (protected
//! `{1: -7, 4: device kid}`, no `seq`) whose payload is a tagged COSE_Encrypt
//! (tag 96) carrying a fresh 16-byte session key to the cloud key:
//!
//! ```text
//! COSE_Encrypt = [
//!   protected   {1: 1 (A128GCM), 4: session id (4-byte BE bstr)},
//!   unprotected {5: IV (12 bytes)},
//!   ciphertext  AES-128-GCM(CEK, IV, Enc_structure["Encrypt", protected, h''], session key),
//!   [ [ protected   {1: -25 (ECDH-ES + HKDF-256)},
//!       unprotected {-1: ephemeral COSE_Key {1: 2, -1: 1, -2: x, -3: y}, 4: cloud kid},
//!       ciphertext  h'' ] ]
//! ]
//! CEK = HKDF-SHA256(salt = none, IKM = ECDH x-coordinate, info = COSE_KDF_Context, L = 16)
//! COSE_KDF_Context = [1, [nil, nil, nil], [nil, nil, nil], [128, recipient protected bstr]]
//! ```
//!
//! The KDF context is byte-compatible with pycose (checked by the interop test).

use alloc::vec::Vec;
use ciborium::value::Value;
use coset::{iana, CoseEncrypt, EncryptionContext, Header};

use crate::cbor::{wipe, Enc};
use crate::data::{parse_sign1, sign1};
use crate::profile::{self, check_output, fixed};
use crate::write;
use crate::{
    Error, Kid, ParseError, AES128_KEY_LEN, ALG_A128GCM, GCM_TAG_LEN, IV_LEN,
    SEQ_LABEL, TAG_ENCRYPT,
};

/// The crypto a device needs to build a session message, as closures
/// sharing one error type `E`. Build it with [`SessionCrypto::new`] so that
/// the closures' argument types are inferred.
pub struct SessionCrypto<Ecdh, Hkdf, Aead, Rng> {
    /// Ephemeral-static ECDH with the cloud's public point: makes a fresh
    /// P-256 key pair and returns (its public point, the shared secret's
    /// x-coordinate). PSA: `psa_generate_key` (volatile) + `psa_raw_key_agreement`.
    pub ecdh: Ecdh,
    /// HKDF-SHA256 with no salt: (IKM, info, output length) -> output.
    pub hkdf_sha256: Hkdf,
    /// AES-128-GCM encryption: (key, IV, AAD, plaintext) -> ciphertext || 16-byte tag.
    pub aes128gcm_encrypt: Aead,
    /// Fill the buffer (the 12-byte IV) with random bytes.
    pub random: Rng,
}

impl<Ecdh, Hkdf, Aead, Rng> SessionCrypto<Ecdh, Hkdf, Aead, Rng> {
    /// Bundle the four closures (see the field docs for what each does).
    pub fn new<E>(ecdh: Ecdh, hkdf_sha256: Hkdf, aes128gcm_encrypt: Aead, random: Rng) -> Self
    where
        Ecdh: FnOnce(&[u8; 65]) -> Result<([u8; 65], [u8; 32]), E>,
        Hkdf: FnOnce(&[u8], &[u8], usize) -> Result<Vec<u8>, E>,
        Aead: FnOnce(&[u8; 16], &[u8; 12], &[u8], &[u8]) -> Result<Vec<u8>, E>,
        Rng: FnOnce(&mut [u8]) -> Result<(), E>,
    {
        SessionCrypto {
            ecdh,
            hkdf_sha256,
            aes128gcm_encrypt,
            random,
        }
    }
}

/// The COSE_KDF_Context (RFC 9053 section 5.2) for A128GCM derived by
/// ECDH-ES + HKDF-256 with no party info:
/// `[1, [nil, nil, nil], [nil, nil, nil], [128, recipient_protected]]`.
pub fn kdf_context(recipient_protected: &[u8]) -> Vec<u8> {
    let mut e = Enc::new();
    e.array(4).uint(ALG_A128GCM as u64);
    e.array(3).null().null().null();
    e.array(3).null().null().null();
    e.array(2)
        .uint(AES128_KEY_LEN as u64 * 8)
        .bytes(recipient_protected);
    e.finish()
}

/// Build a `session` message carrying `session_key` for the cloud key
/// (`cloud_kid`, `cloud_public`), signed by the device key (`device_kid`,
/// through `sign`, which gets the ToBeSigned bytes like in [`crate::sign_data`]).
#[allow(clippy::too_many_arguments)]
pub fn build_session<E, Ecdh, Hkdf, Aead, Rng>(
    session_id: u32,
    session_key: &[u8; 16],
    cloud_kid: &Kid,
    cloud_public: &[u8; 65],
    device_kid: &Kid,
    crypto: SessionCrypto<Ecdh, Hkdf, Aead, Rng>,
    sign: impl FnOnce(&[u8]) -> Result<[u8; 64], E>,
) -> Result<Vec<u8>, Error<E>>
where
    Ecdh: FnOnce(&[u8; 65]) -> Result<([u8; 65], [u8; 32]), E>,
    Hkdf: FnOnce(&[u8], &[u8], usize) -> Result<Vec<u8>, E>,
    Aead: FnOnce(&[u8; 16], &[u8; 12], &[u8], &[u8]) -> Result<Vec<u8>, E>,
    Rng: FnOnce(&mut [u8]) -> Result<(), E>,
{
    let inner = seal_session_key(session_id, session_key, cloud_kid, cloud_public, crypto)?;
    sign1(write::es256_protected(device_kid, None), &inner, &[], sign)
}

/// The tagged COSE_Encrypt of a session message (ECDH-ES + HKDF-256 to the
/// cloud key, A128GCM content). Its own function so that its locals are off
/// the stack before the Sign1 is built.
#[inline(never)]
fn seal_session_key<E, Ecdh, Hkdf, Aead, Rng>(
    session_id: u32,
    session_key: &[u8; 16],
    cloud_kid: &Kid,
    cloud_public: &[u8; 65],
    crypto: SessionCrypto<Ecdh, Hkdf, Aead, Rng>,
) -> Result<Vec<u8>, Error<E>>
where
    Ecdh: FnOnce(&[u8; 65]) -> Result<([u8; 65], [u8; 32]), E>,
    Hkdf: FnOnce(&[u8], &[u8], usize) -> Result<Vec<u8>, E>,
    Aead: FnOnce(&[u8; 16], &[u8; 12], &[u8], &[u8]) -> Result<Vec<u8>, E>,
    Rng: FnOnce(&mut [u8]) -> Result<(), E>,
{
    let protected = write::session_protected(session_id);
    seal_to(&protected, &[], session_key, cloud_kid, cloud_public, crypto)
}

/// A tagged COSE_Encrypt of `plaintext` to a static P-256 key (`recipient_kid`,
/// `recipient_public`): ECDH-ES + HKDF-256 with a fresh ephemeral key,
/// A128GCM content under the derived key, random IV, the given content
/// `protected` header bytes and `external_aad`. Used by session messages
/// and by remote commands and replies.
pub(crate) fn seal_to<E, Ecdh, Hkdf, Aead, Rng>(
    protected: &[u8],
    external_aad: &[u8],
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
    // Recipient: ECDH-ES + HKDF-256 to the static key.
    let r_protected = write::recipient_protected();
    let (ephemeral, mut shared) = (crypto.ecdh)(recipient_public).map_err(Error::Crypto)?;
    if ephemeral[0] != 0x04 {
        wipe(&mut shared);
        return Err(Error::CryptoOutput("ephemeral key is not an uncompressed point"));
    }
    let info = kdf_context(&r_protected);
    let cek = (crypto.hkdf_sha256)(&shared, &info, AES128_KEY_LEN);
    wipe(&mut shared);
    let mut cek = cek.map_err(Error::Crypto)?;
    let cek_arr: Result<[u8; 16], _> = <[u8; 16]>::try_from(cek.as_slice());
    wipe(&mut cek);
    let mut cek = cek_arr.map_err(|_| Error::CryptoOutput("HKDF output is not 16 bytes"))?;

    // Content: A128GCM under the CEK.
    let mut iv = [0u8; IV_LEN];
    if let Err(e) = (crypto.random)(&mut iv) {
        wipe(&mut cek);
        return Err(Error::Crypto(e));
    }
    let aad = write::enc_structure("Encrypt", protected, external_aad);
    let ct = (crypto.aes128gcm_encrypt)(&cek, &iv, &aad, plaintext);
    wipe(&mut cek);
    let ct = ct.map_err(Error::Crypto)?;
    check_output(&ct, plaintext.len() + GCM_TAG_LEN, "AES-GCM output is not plaintext + 16 bytes")?;
    Ok(write::encrypt_to_recipient(protected, &iv, &ct, &r_protected, recipient_kid, &ephemeral))
}

/// Open a COSE_Encrypt to a static key: ECDH with the static private key
/// (`ecdh_with_static`), HKDF-256 with the recipient's KDF context, A128GCM
/// open with `aad` (the Enc_structure). The plaintext, or `Error::Decrypt`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn open_from<E>(
    ephemeral: &[u8; 65],
    recipient_protected: &[u8],
    iv: &[u8; 12],
    aad: &[u8],
    ciphertext: &[u8],
    ecdh_with_static: impl FnOnce(&[u8; 65]) -> Result<[u8; 32], E>,
    hkdf_sha256: impl FnOnce(&[u8], &[u8], usize) -> Result<Vec<u8>, E>,
    aes128gcm_decrypt: impl FnOnce(&[u8; 16], &[u8; 12], &[u8], &[u8]) -> Result<Vec<u8>, E>,
) -> Result<Vec<u8>, Error<E>> {
    let mut shared = ecdh_with_static(ephemeral).map_err(Error::Crypto)?;
    let info = kdf_context(recipient_protected);
    let cek = hkdf_sha256(&shared, &info, AES128_KEY_LEN);
    wipe(&mut shared);
    let mut cek = cek.map_err(Error::Crypto)?;
    let cek_arr = <[u8; 16]>::try_from(cek.as_slice());
    wipe(&mut cek);
    let mut cek = cek_arr.map_err(|_| Error::CryptoOutput("HKDF output is not 16 bytes"))?;
    let pt = aes128gcm_decrypt(&cek, iv, aad, ciphertext);
    wipe(&mut cek);
    pt.map_err(Error::Decrypt)
}

/// A parsed `session` message whose profile has been checked. Nothing is
/// authenticated until [`SessionMessage::verify`] succeeds; verify before
/// [`SessionMessage::decrypt`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionMessage {
    /// kid of the device key that signed the outer Sign1 (protected).
    pub device_kid: Kid,
    /// Session id: the kid of the COSE_Encrypt (protected, 4-byte big endian).
    pub session_id: u32,
    /// kid of the cloud key the session key is encrypted to.
    pub cloud_kid: Kid,
    /// The ephemeral public point (0x04 || X || Y) from the recipient.
    pub ephemeral: [u8; 65],
    /// The content IV.
    pub iv: [u8; 12],
    tbs: Vec<u8>,
    signature: [u8; 64],
    aad: Vec<u8>,
    ciphertext: Vec<u8>,
    recipient_protected: Vec<u8>,
}

/// Parse a `session` message: the outer Sign1 (tagged 18 or untagged) and
/// the COSE_Encrypt in its payload (tagged 96 or untagged), and check the
/// profile described in the module docs. Does not verify or decrypt.
pub fn parse_session(msg: &[u8]) -> Result<SessionMessage, ParseError> {
    let outer = parse_sign1(msg, &[])?;
    if profile::find(&outer.protected, SEQ_LABEL).is_some() {
        return Err(Error::Profile("seq in a session message"));
    }
    let enc: CoseEncrypt =
        profile::decode_cose(&outer.payload, TAG_ENCRYPT, "payload is not a COSE_Encrypt")?;
    let h = &enc.protected.header;
    profile::check_common(h, &enc.unprotected)?;
    profile::expect_alg(h, iana::Algorithm::A128GCM)?;
    let session_id = u32::from_be_bytes(fixed(&h.key_id, "session id is not a 4-byte kid")?);
    let iv = content_iv(h, &enc.unprotected)?;
    let ciphertext = match &enc.ciphertext {
        Some(c) if c.len() == AES128_KEY_LEN + GCM_TAG_LEN => c.clone(),
        Some(_) => return Err(Error::Profile("ciphertext is not a 16-byte key + tag")),
        None => return Err(Error::Profile("ciphertext is detached")),
    };

    let (cloud_kid, ephemeral, recipient_protected) = parse_recipient(&enc)?;
    let aad = coset::enc_structure_data(EncryptionContext::CoseEncrypt, enc.protected.clone(), &[]);
    Ok(SessionMessage {
        device_kid: outer.kid,
        session_id,
        cloud_kid,
        ephemeral,
        iv,
        tbs: outer.tbs,
        signature: outer.signature,
        aad,
        ciphertext,
        recipient_protected,
    })
}

/// The one recipient of a COSE_Encrypt of our profiles: ECDH-ES + HKDF-256
/// (protected), the recipient kid (8 bytes) and the ephemeral P-256 key
/// (unprotected), no ciphertext, no nested recipients. Returns (recipient
/// kid, ephemeral point, recipient protected header bytes).
pub(crate) fn parse_recipient(enc: &CoseEncrypt) -> Result<(Kid, [u8; 65], Vec<u8>), ParseError> {
    let [r] = enc.recipients.as_slice() else {
        return Err(Error::Profile("not exactly one recipient"));
    };
    if !r.recipients.is_empty() {
        return Err(Error::Profile("nested recipients"));
    }
    profile::check_common(&r.protected.header, &r.unprotected)?;
    profile::expect_alg(&r.protected.header, iana::Algorithm::ECDH_ES_HKDF_256)?;
    if r.ciphertext.as_ref().is_some_and(|c| !c.is_empty()) {
        return Err(Error::Profile(
            "direct key agreement recipient has a ciphertext",
        ));
    }
    let kid: Kid = match (&r.protected.header.key_id, &r.unprotected.key_id) {
        (p, u) if p.is_empty() && u.is_empty() => {
            return Err(Error::Profile("recipient kid missing"))
        }
        (p, u) => fixed(
            if p.is_empty() { u } else { p },
            "recipient kid is not 8 bytes",
        )?,
    };
    if profile::find(&r.protected.header, -1).is_some() {
        return Err(Error::Profile(
            "ephemeral key in recipient protected header",
        ));
    }
    let ephemeral = match profile::find(&r.unprotected, -1) {
        Some(k) => ephemeral_key(k)?,
        None => return Err(Error::Profile("ephemeral key missing")),
    };
    let recipient_protected = match &r.protected.original_data {
        Some(b) => b.clone(),
        None => return Err(Error::Profile("recipient protected header missing")),
    };
    Ok((kid, ephemeral, recipient_protected))
}

/// The 12-byte IV: unprotected only, no partial IV.
pub(crate) fn content_iv(protected: &Header, unprotected: &Header) -> Result<[u8; 12], ParseError> {
    if !protected.iv.is_empty() {
        return Err(Error::Profile("IV in protected header"));
    }
    if !protected.partial_iv.is_empty() || !unprotected.partial_iv.is_empty() {
        return Err(Error::Profile("partial IV is not supported"));
    }
    if unprotected.iv.is_empty() {
        return Err(Error::Profile("IV missing"));
    }
    fixed(&unprotected.iv, "IV is not 12 bytes")
}

/// An EC2 P-256 public COSE_Key `{1: 2, -1: 1, -2: x, -3: y}` -> 0x04 || x || y.
/// Other parameters are ignored, except a private key (-4), which is refused.
fn ephemeral_key(v: &Value) -> Result<[u8; 65], ParseError> {
    let Value::Map(entries) = v else {
        return Err(Error::Profile("ephemeral key is not a map"));
    };
    let (mut kty, mut crv, mut x, mut y) = (None, None, None, None);
    for (k, val) in entries {
        let Value::Integer(k) = k else { continue };
        let slot = match i64::try_from(*k) {
            Ok(1) => &mut kty,
            Ok(-1) => &mut crv,
            Ok(-2) => &mut x,
            Ok(-3) => &mut y,
            Ok(-4) => return Err(Error::Profile("ephemeral key carries a private key")),
            _ => continue,
        };
        if slot.replace(val).is_some() {
            return Err(Error::Profile("duplicate ephemeral key parameter"));
        }
    }
    let is_int = |v: Option<&Value>, want: i64| matches!(v, Some(Value::Integer(i)) if i64::try_from(*i) == Ok(want));
    if !is_int(kty, 2) {
        return Err(Error::Profile("ephemeral key is not EC2"));
    }
    if !is_int(crv, 1) {
        return Err(Error::Profile("ephemeral key is not P-256"));
    }
    let coord = |v: Option<&Value>, what| -> Result<[u8; 32], ParseError> {
        match v {
            Some(Value::Bytes(b)) => fixed(b, what),
            _ => Err(Error::Profile(what)),
        }
    };
    let x = coord(x, "ephemeral key x is not a 32-byte bstr")?;
    let y = coord(y, "ephemeral key y is not a 32-byte bstr")?;
    Ok(profile::point(&x, &y))
}

impl SessionMessage {
    /// Verify the outer signature by the device key (see [`crate::SignedData::verify`]).
    pub fn verify<E>(
        &self,
        verify: impl FnOnce(&[u8], &[u8; 64]) -> Result<(), E>,
    ) -> Result<(), Error<E>> {
        verify(&self.tbs, &self.signature).map_err(Error::Signature)
    }

    /// Recover the session key with the cloud private key.
    ///
    /// - `ecdh_with_cloud_key(ephemeral point)` -> shared secret x-coordinate
    ///   (it must reject a point that is not on the curve);
    /// - `hkdf_sha256(IKM, info, length)` -> output (no salt);
    /// - `aes128gcm_decrypt(key, IV, AAD, ciphertext || tag)` -> plaintext.
    pub fn decrypt<E>(
        &self,
        ecdh_with_cloud_key: impl FnOnce(&[u8; 65]) -> Result<[u8; 32], E>,
        hkdf_sha256: impl FnOnce(&[u8], &[u8], usize) -> Result<Vec<u8>, E>,
        aes128gcm_decrypt: impl FnOnce(&[u8; 16], &[u8; 12], &[u8], &[u8]) -> Result<Vec<u8>, E>,
    ) -> Result<[u8; 16], Error<E>> {
        let mut pt = open_from(
            &self.ephemeral,
            &self.recipient_protected,
            &self.iv,
            &self.aad,
            &self.ciphertext,
            ecdh_with_cloud_key,
            hkdf_sha256,
            aes128gcm_decrypt,
        )?;
        let key = <[u8; 16]>::try_from(pt.as_slice());
        wipe(&mut pt);
        key.map_err(|_| Error::CryptoOutput("decrypted session key is not 16 bytes"))
    }

    /// The Sig_structure (ToBeSigned) bytes of the outer Sign1.
    pub fn tbs(&self) -> &[u8] {
        &self.tbs
    }
}

#[cfg(test)]
mod tests;
