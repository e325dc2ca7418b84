//! The `errors` topic body: CBOR map
//! `{"code": uint, "reason": tstr, "kid"?: bstr, "seq"?: uint}`, and the
//! rejection reasons the aggregator reports ([`RejectCode`]).

use alloc::string::String;
use alloc::vec::Vec;
use tfmprov_cbor::{Error as CborError, MapReader};

use crate::cbor::Enc;
use crate::{check_len, Error, ParseError};

/// Why the aggregator rejected a message. The numbers are the `code` of the
/// `errors` body and are part of the contract (docs/cose.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum RejectCode {
    /// No registered device has this device id / kid.
    UnknownDevice = 1,
    /// The device (or its key) was revoked.
    Revoked = 2,
    /// Not CBOR, not COSE, or not our COSE profile.
    MalformedCose = 3,
    /// The signature does not verify.
    BadSignature = 4,
    /// The kid does not belong to the device of the topic.
    KidMismatch = 5,
    /// This (device, key id, `seq`) was accepted before: a replay or a duplicate.
    Replay = 6,
    /// The message exceeds 64 KiB.
    TooLarge = 7,
    /// A sealed message names a session id the server does not know.
    UnknownSession = 8,
    /// A session message's id is not above the device's current one.
    StaleSession = 9,
    /// AEAD decryption (or the key agreement before it) failed.
    DecryptionFailed = 10,
    /// `seq` is further below the newest accepted one of its key than the
    /// server's configured replay horizon: it may or may not have been seen,
    /// and the server does not look (its own code, so that it is never
    /// mistaken for a proven replay).
    SeqTooOld = 11,
}

impl RejectCode {
    /// All codes, in numeric order.
    pub const ALL: [RejectCode; 11] = [
        RejectCode::UnknownDevice,
        RejectCode::Revoked,
        RejectCode::MalformedCose,
        RejectCode::BadSignature,
        RejectCode::KidMismatch,
        RejectCode::Replay,
        RejectCode::TooLarge,
        RejectCode::UnknownSession,
        RejectCode::StaleSession,
        RejectCode::DecryptionFailed,
        RejectCode::SeqTooOld,
    ];

    /// The numeric `code`.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The `reason` text sent with the code.
    pub fn reason(self) -> &'static str {
        match self {
            RejectCode::UnknownDevice => "unknown device",
            RejectCode::Revoked => "revoked",
            RejectCode::MalformedCose => "malformed COSE",
            RejectCode::BadSignature => "bad signature",
            RejectCode::KidMismatch => "kid mismatch",
            RejectCode::Replay => "replay or duplicate",
            RejectCode::TooLarge => "too large",
            RejectCode::UnknownSession => "unknown session",
            RejectCode::StaleSession => "stale session id",
            RejectCode::DecryptionFailed => "decryption failed",
            RejectCode::SeqTooOld => "seq beyond the replay horizon",
        }
    }

    /// The code with this number, if any.
    pub fn from_code(code: u32) -> Option<Self> {
        RejectCode::ALL.into_iter().find(|c| c.code() == code)
    }
}

/// An `errors` topic body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorReport {
    /// Numeric code ([`RejectCode::code`]); unknown codes are kept as is.
    pub code: u32,
    /// Human-readable reason.
    pub reason: String,
    /// kid of the rejected message, if it could be read.
    pub kid: Option<Vec<u8>>,
    /// seq of the rejected message, if it could be read.
    pub seq: Option<u64>,
}

impl ErrorReport {
    /// A report for `code` with its standard reason text and no kid/seq.
    pub fn new(code: RejectCode) -> Self {
        ErrorReport {
            code: code.code(),
            reason: String::from(code.reason()),
            kid: None,
            seq: None,
        }
    }

    /// The [`RejectCode`] of [`ErrorReport::code`], if it is a known one.
    pub fn reject_code(&self) -> Option<RejectCode> {
        RejectCode::from_code(self.code)
    }

    /// Encode as a definite-length CBOR map with keys in the order
    /// code, reason, kid, seq (absent ones left out).
    pub fn to_cbor(&self) -> Vec<u8> {
        let n = 2 + u64::from(self.kid.is_some()) + u64::from(self.seq.is_some());
        let mut e = Enc::new();
        e.map(n);
        e.text("code").uint(u64::from(self.code));
        e.text("reason").text(&self.reason);
        if let Some(kid) = &self.kid {
            e.text("kid").bytes(kid);
        }
        if let Some(seq) = self.seq {
            e.text("seq").uint(seq);
        }
        e.finish()
    }

    /// Decode an `errors` body. `code` (uint <= u32::MAX) and `reason` (tstr)
    /// are required; `kid` must be a bstr and `seq` a uint when present;
    /// other keys are ignored; a repeated known key is refused. Read with
    /// `tfmprov_cbor`'s map reader (no value tree): the device decodes
    /// these reports too.
    pub fn from_cbor(b: &[u8]) -> Result<Self, ParseError> {
        check_len(b.len())?;
        let mut r = MapReader::new(b, crate::MAX_CBOR_DEPTH).map_err(|e| match e {
            CborError::NotAMap => Error::Profile("errors body is not a map"),
            _ => Error::Cbor,
        })?;
        let (mut code, mut reason, mut kid, mut seq) = (None, None, None, None);
        let profile = |e: CborError| match e {
            CborError::WrongType("code") => Error::Profile("code is not a uint"),
            CborError::WrongType("reason") => Error::Profile("reason is not a tstr"),
            CborError::WrongType("kid") => Error::Profile("kid is not a bstr"),
            CborError::WrongType("seq") => Error::Profile("seq is not a uint"),
            CborError::Duplicate(_) => Error::Profile("duplicate key in errors body"),
            _ => Error::Cbor,
        };
        while let Some(key) = r.next_key().map_err(profile)? {
            match &*key {
                "code" => {
                    let v = r.uint("code").map_err(profile)?;
                    let v = u32::try_from(v).map_err(|_| Error::Profile("code is not a u32"))?;
                    MapReader::set(&mut code, v, "code").map_err(profile)?;
                }
                "reason" => MapReader::set(&mut reason, r.text("reason").map_err(profile)?, "reason").map_err(profile)?,
                "kid" => MapReader::set(&mut kid, r.bytes("kid").map_err(profile)?, "kid").map_err(profile)?,
                "seq" => MapReader::set(&mut seq, r.uint("seq").map_err(profile)?, "seq").map_err(profile)?,
                _ => r.skip().map_err(profile)?,
            }
        }
        Ok(ErrorReport {
            code: code.ok_or(Error::Profile("code missing"))?,
            reason: reason.ok_or(Error::Profile("reason missing"))?,
            kid,
            seq,
        })
    }
}

#[cfg(test)]
mod tests;
