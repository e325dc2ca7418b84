//! `sealed` messages: COSE_Encrypt0 (tag 16), protected
//! `{1: 1 (A128GCM), 4: session id (4-byte BE), -65537: seq}`, unprotected
//! `{5: IV (12 bytes)}`, AES-128-GCM under the session key with
//! AAD = Enc_structure `["Encrypt0", protected, h'']`.

use alloc::vec::Vec;
use coset::{iana, CoseEncrypt0, EncryptionContext};

use crate::profile::{self, check_output, fixed};
use crate::session::content_iv;
use crate::write;
use crate::{check_len, Error, ParseError, ALG_A128GCM, GCM_TAG_LEN, IV_LEN, TAG_ENCRYPT0};

/// The IV the device uses for a sealed message: session id (4 bytes BE) ||
/// seq (8 bytes BE). `seq` never repeats under one session key, so neither
/// does the IV, without relying on the RNG (see DESIGN.md on the RNG that
/// restarts after reset).
pub fn sealed_iv(session_id: u32, seq: u64) -> [u8; IV_LEN] {
    let mut iv = [0u8; IV_LEN];
    iv[..4].copy_from_slice(&session_id.to_be_bytes());
    iv[4..].copy_from_slice(&seq.to_be_bytes());
    iv
}

/// Build a `sealed` message. `encrypt(aad, plaintext)` returns
/// AES-128-GCM(session key, `iv`, aad, plaintext) as ciphertext || 16-byte tag.
pub fn seal<E>(
    session_id: u32,
    seq: u64,
    iv: &[u8; 12],
    plaintext: &[u8],
    encrypt: impl FnOnce(&[u8], &[u8]) -> Result<Vec<u8>, E>,
) -> Result<Vec<u8>, Error<E>> {
    check_len(plaintext.len())?;
    let protected = write::protected_header(ALG_A128GCM, &session_id.to_be_bytes(), Some(seq));
    let ct = {
        let aad = write::enc_structure("Encrypt0", &protected, &[]);
        encrypt(&aad, plaintext).map_err(Error::Crypto)?
    };
    check_output(&ct, plaintext.len() + GCM_TAG_LEN, "AES-GCM output is not plaintext + 16 bytes")?;
    let out = write::encrypt0(&protected, iv, &ct);
    check_len(out.len())?;
    Ok(out)
}

/// A parsed `sealed` message whose profile has been checked; nothing is
/// authenticated until [`SealedMessage::open`] succeeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedMessage {
    /// Session id (protected kid, 4-byte big endian): selects the session key.
    pub session_id: u32,
    /// Sequence number (protected).
    pub seq: u64,
    /// The IV (unprotected).
    pub iv: [u8; 12],
    aad: Vec<u8>,
    ciphertext: Vec<u8>,
}

/// Parse a `sealed` message (tagged 16 or untagged) and check its profile:
/// alg 1 (A128GCM), 4-byte kid and uint seq in the protected header, 12-byte
/// IV in the unprotected header, attached ciphertext of at least a tag.
pub fn parse_sealed(msg: &[u8]) -> Result<SealedMessage, ParseError> {
    let e: CoseEncrypt0 = profile::decode_cose(msg, TAG_ENCRYPT0, "not a COSE_Encrypt0")?;
    let h = &e.protected.header;
    profile::check_common(h, &e.unprotected)?;
    profile::expect_alg(h, iana::Algorithm::A128GCM)?;
    if h.key_id.is_empty() {
        return Err(Error::Profile("session id missing from protected header"));
    }
    let session_id = u32::from_be_bytes(fixed(&h.key_id, "session id is not a 4-byte kid")?);
    let seq = profile::seq(h)?;
    let iv = content_iv(h, &e.unprotected)?;
    let ciphertext = match &e.ciphertext {
        Some(c) if c.len() >= GCM_TAG_LEN => c.clone(),
        Some(_) => return Err(Error::Profile("ciphertext shorter than the GCM tag")),
        None => return Err(Error::Profile("ciphertext is detached")),
    };
    let aad = coset::enc_structure_data(EncryptionContext::CoseEncrypt0, e.protected, &[]);
    Ok(SealedMessage {
        session_id,
        seq,
        iv,
        aad,
        ciphertext,
    })
}

impl SealedMessage {
    /// Decrypt: `decrypt(aad, ciphertext || tag)` is AES-128-GCM decryption
    /// under the session key of [`SealedMessage::session_id`] with
    /// [`SealedMessage::iv`]; its failure is [`Error::Decrypt`].
    pub fn open<E>(
        &self,
        decrypt: impl FnOnce(&[u8], &[u8]) -> Result<Vec<u8>, E>,
    ) -> Result<Vec<u8>, Error<E>> {
        let pt = decrypt(&self.aad, &self.ciphertext).map_err(Error::Decrypt)?;
        check_output(
            &pt,
            self.ciphertext.len().saturating_sub(GCM_TAG_LEN),
            "AES-GCM output is not ciphertext - 16 bytes",
        )?;
        Ok(pt)
    }
}

#[cfg(test)]
mod tests;
