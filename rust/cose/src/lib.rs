//! COSE profiles of the provisioning design (DESIGN.md, "COSE profiles" and
//! "MQTT topics"), built and parsed with `coset`.
//!
//! No cryptography lives here: every signature, key agreement, key
//! derivation and AEAD operation is a closure the caller passes in (the
//! `coset` style). On the device the closures are PSA calls; on the server
//! they are a software crypto library. The same message code runs on both.
//!
//! | module | message | topic |
//! | --- | --- | --- |
//! | [`data`] | COSE_Sign1 (tag 18), ES256, protected `{1: -7, 4: kid, -65537: seq}` | `prov/{id}/data` |
//! | [`session`] | Sign1 (device key) over COSE_Encrypt (tag 96), ECDH-ES + HKDF-256, A128GCM | `prov/{id}/session` |
//! | [`sealed`] | COSE_Encrypt0 (tag 16), A128GCM under the session key | `prov/{id}/sealed` |
//! | [`report`] | CBOR map `{"code", "reason", "kid"?, "seq"?}` and [`RejectCode`] | `prov/{id}/errors` |
//! | [`replay`] | sliding anti-replay window per (device, key id) | (server side) |
//! | [`mod@topic`] | topic names and device id syntax | |
//!
//! Parsers never panic, cap the input at [`MAX_MESSAGE_LEN`] bytes and the
//! CBOR nesting depth at [`MAX_CBOR_DEPTH`] before any allocation or
//! recursion that depends on the input. See `docs/cose.md`.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

extern crate alloc;

use alloc::vec::Vec;
use core::convert::Infallible;
use core::fmt;

mod cbor;
pub mod data;
mod profile;
pub mod remote;
pub mod replay;
pub mod report;
pub mod sealed;
pub mod session;
pub mod topic;
mod write;
#[cfg(test)]
mod oracle;

#[cfg(test)]
mod test_crypto;

pub use data::{parse_data, sign_data, SignedData};
pub use remote::{
    build_envelope, envelope_topic, kak_binding, parse_envelope, parse_kak_announcement, seal_envelope, sign_kak_announcement,
    Direction, Envelope, KakAnnouncement,
};
pub use replay::{Replay, ReplayWindow, REPLAY_WINDOW_BITS};
pub use report::{ErrorReport, RejectCode};
pub use sealed::{parse_sealed, seal, sealed_iv, SealedMessage};
pub use session::{build_session, kdf_context, parse_session, SessionCrypto, SessionMessage};
pub use topic::{parse_topic, subscription, topic, valid_device_id, Kind, DEFAULT_PREFIX};

/// Private-use header label carrying the `seq` sequence number (a uint),
/// always in the protected header of `data` and `sealed` messages.
pub const SEQ_LABEL: i64 = -65537;

/// A key id: the first 8 bytes of SHA-256 over the key's SubjectPublicKeyInfo DER.
pub type Kid = [u8; 8];

/// Largest message (and errors body) any parser accepts, and any builder
/// produces: 64 KiB.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

/// Deepest CBOR nesting (arrays, maps, tags, indefinite strings) a parser accepts.
/// The deepest item of our profiles (the ephemeral key inside a tagged
/// session message) sits at depth 6.
pub const MAX_CBOR_DEPTH: usize = 16;

/// COSE algorithm ES256 (ECDSA P-256 with SHA-256).
pub const ALG_ES256: i64 = -7;
/// COSE algorithm A128GCM.
pub const ALG_A128GCM: i64 = 1;
/// COSE algorithm ECDH-ES + HKDF-256.
pub const ALG_ECDH_ES_HKDF_256: i64 = -25;

/// CBOR tag of COSE_Sign1.
pub const TAG_SIGN1: u64 = 18;
/// CBOR tag of COSE_Encrypt.
pub const TAG_ENCRYPT: u64 = 96;
/// CBOR tag of COSE_Encrypt0.
pub const TAG_ENCRYPT0: u64 = 16;

/// Length of an uncompressed P-256 public point (0x04 || X || Y).
pub const P256_POINT_LEN: usize = 65;
/// Length of a raw r || s ES256 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of an A128GCM key (the session key and the derived CEK).
pub const AES128_KEY_LEN: usize = 16;
/// Length of the AES-GCM IV used by the profiles.
pub const IV_LEN: usize = 12;
/// Length of the AES-GCM authentication tag appended to every ciphertext.
pub const GCM_TAG_LEN: usize = 16;

/// The fixed DER prefix of a P-256 SubjectPublicKeyInfo with an uncompressed point:
/// `SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) }`.
pub const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// kid = first 8 bytes of SHA-256(SubjectPublicKeyInfo DER); the caller
/// supplies the digest (PSA `psa_hash_compute` on the device).
pub fn kid_from_spki_digest(sha256_of_spki: &[u8; 32]) -> Kid {
    let mut kid = [0u8; 8];
    kid.copy_from_slice(&sha256_of_spki[..8]);
    kid
}

/// SPKI DER of an uncompressed P-256 point (65 bytes, 0x04 || X || Y): the
/// fixed 26-byte [`P256_SPKI_PREFIX`] followed by the point (91 bytes).
/// The point is copied as given; it is not checked to be on the curve.
pub fn p256_spki_der(point: &[u8; 65]) -> Vec<u8> {
    let mut der = Vec::with_capacity(P256_SPKI_PREFIX.len() + point.len());
    der.extend_from_slice(&P256_SPKI_PREFIX);
    der.extend_from_slice(point);
    der
}

/// Everything that can go wrong in this crate.
///
/// `E` is the error type of the caller's crypto closures; parsers, which
/// call no closure, return `Error<Infallible>` ([`ParseError`]) and
/// [`Error::cast`] turns that into any `Error<E>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error<E = Infallible> {
    /// The message (or payload) is larger than [`MAX_MESSAGE_LEN`]; holds its length.
    TooLarge(usize),
    /// Not well-formed CBOR: truncated, trailing bytes, nesting deeper than
    /// [`MAX_CBOR_DEPTH`], a bad length, invalid UTF-8 in a text string.
    Cbor,
    /// Well-formed CBOR that is not the expected COSE structure or does not
    /// follow the profile; says what.
    Profile(&'static str),
    /// A crypto closure (sign, ECDH, HKDF, AEAD encrypt, random) failed.
    Crypto(E),
    /// A crypto closure succeeded but returned output of the wrong length; says which.
    CryptoOutput(&'static str),
    /// The signature verification closure rejected the signature.
    Signature(E),
    /// The AEAD decryption closure failed (wrong key, tampered message).
    Decrypt(E),
}

/// The error of the parsers (no crypto involved).
pub type ParseError = Error<Infallible>;

impl Error<Infallible> {
    /// Turn a parse error into the error type of any crypto closure.
    pub fn cast<E>(self) -> Error<E> {
        match self {
            Error::TooLarge(n) => Error::TooLarge(n),
            Error::Cbor => Error::Cbor,
            Error::Profile(w) => Error::Profile(w),
            Error::CryptoOutput(w) => Error::CryptoOutput(w),
            Error::Crypto(e) | Error::Signature(e) | Error::Decrypt(e) => match e {},
        }
    }
}

impl<E> Error<E> {
    /// The code the aggregator reports on the `errors` topic for this error.
    ///
    /// `Crypto` maps to [`RejectCode::DecryptionFailed`]: on the receiving side the
    /// only crypto besides verification and AEAD decryption is the ECDH/HKDF
    /// of [`SessionMessage::decrypt`], which fails for a bad ephemeral key.
    pub fn reject_code(&self) -> RejectCode {
        match self {
            Error::TooLarge(_) => RejectCode::TooLarge,
            Error::Cbor | Error::Profile(_) | Error::CryptoOutput(_) => RejectCode::MalformedCose,
            Error::Signature(_) => RejectCode::BadSignature,
            Error::Decrypt(_) | Error::Crypto(_) => RejectCode::DecryptionFailed,
        }
    }
}

impl<E: fmt::Debug> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooLarge(n) => write!(f, "message of {n} bytes exceeds {MAX_MESSAGE_LEN}"),
            Error::Cbor => f.write_str("malformed CBOR"),
            Error::Profile(w) => write!(f, "COSE profile violation: {w}"),
            Error::Crypto(e) => write!(f, "crypto operation failed: {e:?}"),
            Error::CryptoOutput(w) => write!(f, "crypto closure returned bad output: {w}"),
            Error::Signature(e) => write!(f, "signature verification failed: {e:?}"),
            Error::Decrypt(e) => write!(f, "decryption failed: {e:?}"),
        }
    }
}

/// Reject inputs larger than [`MAX_MESSAGE_LEN`].
pub(crate) fn check_len<E>(len: usize) -> Result<(), Error<E>> {
    if len > MAX_MESSAGE_LEN {
        Err(Error::TooLarge(len))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
