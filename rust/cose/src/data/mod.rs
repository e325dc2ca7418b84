//! `data` messages: COSE_Sign1 (tag 18), ES256, protected
//! `{1: -7, 4: kid (8 bytes), -65537: seq}`, payload attached.
//!
//! The Sign1 code here is shared with the outer Sign1 of [`crate::session`],
//! whose protected header is the same without `seq`.

use alloc::vec::Vec;
use coset::{iana, CoseSign1, Header};

use crate::profile::{self, fixed};
use crate::write;
use crate::{check_len, Error, Kid, ParseError, SIGNATURE_LEN, TAG_SIGN1};

/// Build a `data` message: a tagged COSE_Sign1 over `payload`.
///
/// `sign` gets the Sig_structure bytes (ToBeSigned) and returns the raw
/// r || s signature; ES256 signs SHA-256 of those bytes (PSA:
/// `psa_sign_message` with `DETERMINISTIC_ECDSA(SHA_256)`).
pub fn sign_data<E>(
    kid: &Kid,
    seq: u64,
    payload: &[u8],
    sign: impl FnOnce(&[u8]) -> Result<[u8; 64], E>,
) -> Result<Vec<u8>, Error<E>> {
    sign1(write::es256_protected(kid, Some(seq)), payload, &[], sign)
}

/// A parsed `data` message whose profile has been checked; the signature is
/// not verified until [`SignedData::verify`] succeeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedData {
    /// kid of the signing key (protected).
    pub kid: Kid,
    /// Sequence number (protected).
    pub seq: u64,
    /// The payload (not yet authenticated).
    pub payload: Vec<u8>,
    tbs: Vec<u8>,
    signature: [u8; 64],
}

/// Parse a `data` message (tagged 18 or untagged) and check its profile:
/// alg -7 and an 8-byte kid and a uint seq in the protected header, payload
/// attached, 64-byte signature, no critical parameters. Does not verify.
pub fn parse_data(msg: &[u8]) -> Result<SignedData, ParseError> {
    let p = parse_sign1(msg, &[])?;
    let seq = profile::seq(&p.protected)?;
    Ok(SignedData {
        kid: p.kid,
        seq,
        payload: p.payload,
        tbs: p.tbs,
        signature: p.signature,
    })
}

impl SignedData {
    /// Verify the signature: `verify` gets the Sig_structure bytes and the raw
    /// r || s signature and returns `Ok` only for a valid ES256 signature by
    /// the key the caller looked up by [`SignedData::kid`].
    pub fn verify<E>(
        &self,
        verify: impl FnOnce(&[u8], &[u8; 64]) -> Result<(), E>,
    ) -> Result<(), Error<E>> {
        verify(&self.tbs, &self.signature).map_err(Error::Signature)
    }

    /// The Sig_structure (ToBeSigned) bytes.
    pub fn tbs(&self) -> &[u8] {
        &self.tbs
    }

    /// The raw r || s signature.
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }
}

/// Build a tagged Sign1 with the given protected header bytes.
pub(crate) fn sign1<E>(
    protected: Vec<u8>,
    payload: &[u8],
    external_aad: &[u8],
    sign: impl FnOnce(&[u8]) -> Result<[u8; 64], E>,
) -> Result<Vec<u8>, Error<E>> {
    check_len(payload.len())?;
    let signature = {
        let tbs = write::sig_structure(&protected, external_aad, payload);
        sign(&tbs).map_err(Error::Crypto)?
    };
    let out = write::sign1(&protected, payload, &signature);
    check_len(out.len())?;
    Ok(out)
}

/// A Sign1 of our profile, before the `seq` rule (data: required; session: absent).
pub(crate) struct ParsedSign1 {
    pub protected: Header,
    pub kid: Kid,
    pub payload: Vec<u8>,
    pub tbs: Vec<u8>,
    pub signature: [u8; 64],
}

pub(crate) fn parse_sign1(msg: &[u8], external_aad: &[u8]) -> Result<ParsedSign1, ParseError> {
    let s: CoseSign1 = profile::decode_cose(msg, TAG_SIGN1, "not a COSE_Sign1")?;
    let h = &s.protected.header;
    profile::check_common(h, &s.unprotected)?;
    profile::expect_alg(h, iana::Algorithm::ES256)?;
    if h.key_id.is_empty() {
        return Err(Error::Profile("kid missing from protected header"));
    }
    let kid: Kid = fixed(&h.key_id, "kid is not 8 bytes")?;
    let signature: [u8; SIGNATURE_LEN] = fixed(&s.signature, "signature is not 64 bytes")?;
    if s.payload.is_none() {
        return Err(Error::Profile("payload is detached"));
    }
    let tbs = s.tbs_data(external_aad);
    Ok(ParsedSign1 {
        protected: s.protected.header,
        kid,
        payload: s.payload.unwrap_or_default(),
        tbs,
        signature,
    })
}

#[cfg(test)]
mod tests;
