//! Request and response bodies (CBOR maps) of the OS group and of groups 64/65/66,
//! exactly as DESIGN.md's table.
//!
//! * Byte strings (`priv`, `pub`, `csr`, `cert`) are CBOR byte strings (major type 2) both
//!   ways; an array of integers is refused (wrong type).
//! * `id` in requests is a `u64` so that values above `u32::MAX` decode and reach the
//!   device's range check (which answers `GroupRc::InvalidArgument`), instead of being
//!   refused as malformed CBOR. In responses `id` is a `u32` (the device only has ids in
//!   the PSA user range).
//! * Optional fields are left out when `None`. Unknown map keys in a request are ignored
//!   (as Zephyr's zcbor map decoding does); duplicate keys are refused.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::HandlerError;

/// serde helpers that (de)serialize `Vec<u8>` / `Option<Vec<u8>>` as CBOR byte strings only.
pub(crate) mod bstr {
    use alloc::vec::Vec;
    use core::fmt;
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }
        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
    }

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }

    pub mod option {
        use alloc::vec::Vec;
        use serde::{Deserialize, Deserializer, Serializer};

        struct Wrapped(Vec<u8>);
        impl<'de> Deserialize<'de> for Wrapped {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                super::deserialize(d).map(Wrapped)
            }
        }

        pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(bytes) => s.serialize_bytes(bytes),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
            Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
        }
    }
}

/// Keys group (64), cmd 0 generate, write: `{"id"?: uint, "priv"?: bstr .size 32, "replace"?: bool}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGenerateReq {
    /// Key id; absent = auto-assign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Known private value (32 bytes); absent = random.
    #[serde(
        rename = "priv",
        default,
        skip_serializing_if = "Option::is_none",
        with = "bstr::option"
    )]
    pub private: Option<Vec<u8>>,
    /// Replace an existing key at `id`; absent = false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace: Option<bool>,
}

/// Keys group response to generate: `{"id": uint, "pub": bstr .size 65}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGenerateRsp {
    /// The key id (assigned or given).
    pub id: u32,
    /// Uncompressed SEC1 public point (65 bytes, 0x04 || X || Y).
    #[serde(rename = "pub", with = "bstr")]
    pub public: Vec<u8>,
}

/// `{"id": uint}`: keys public (1) / status (2) / destroy (3) requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyIdReq {
    /// Key id.
    pub id: u64,
}

/// Keys group response to public: `{"id": uint, "pub": bstr}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPublicRsp {
    /// Key id.
    pub id: u32,
    /// Uncompressed SEC1 public point.
    #[serde(rename = "pub", with = "bstr")]
    pub public: Vec<u8>,
}

/// Keys group response to status: `{"id": uint, "present": bool}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyStatusRsp {
    /// Key id.
    pub id: u32,
    /// Whether a key exists at `id`.
    pub present: bool,
}

/// CSR group (65), cmd 0 create, write: `{"id": uint, "cn": tstr, "o"?: tstr, "ou"?: tstr}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsrCreateReq {
    /// Key id.
    pub id: u64,
    /// Subject common name.
    pub cn: String,
    /// Subject organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub o: Option<String>,
    /// Subject organizational unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ou: Option<String>,
}

/// CSR group response: `{"csr": bstr}` (DER PKCS#10).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsrCreateRsp {
    /// DER PKCS#10 certification request.
    #[serde(with = "bstr")]
    pub csr: Vec<u8>,
}

/// Certs group (66), cmd 0 store, write: `{"id": uint, "cert": bstr}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertStoreReq {
    /// Key id (or peer id 0x3F000000..).
    pub id: u64,
    /// DER certificate.
    #[serde(with = "bstr")]
    pub cert: Vec<u8>,
}

/// Certs group, cmd 1 get, read: `{"id": uint}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertGetReq {
    /// Key id (or peer id).
    pub id: u64,
}

/// Certs group response to get: `{"cert": bstr}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertGetRsp {
    /// DER certificate.
    #[serde(with = "bstr")]
    pub cert: Vec<u8>,
}

/// Keys group, cmd 5 audit, read: `{"from"?: uint}`, the first sequence
/// number wanted (absent: the oldest the log holds).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReq {
    /// First sequence number to return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
}

/// Keys group response to audit: `{"log": bstr .cbor AuditLog}`. The log
/// travels as one byte string so that the firmware's C glue passes it
/// through as it passes a certificate; [`AuditLog::decode`] reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRsp {
    /// The CBOR-encoded [`AuditLog`].
    #[serde(with = "bstr")]
    pub log: Vec<u8>,
}

/// The audit log as the device answers it:
/// `{"secure": bool, "oldest": uint, "next": uint, "missed": uint,
/// "entries": [* [seq, op, id, rc] / [seq]]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLog {
    /// Kept by the secure partition (else in the non-secure fallback).
    pub secure: bool,
    /// Sequence number of the oldest entry still held (0: none); entries
    /// before it were dropped by the ring.
    pub oldest: u64,
    /// Sequence number the next entry gets.
    pub next: u64,
    /// Operations since boot whose entry could not be written.
    pub missed: u64,
    /// The entries, oldest first: `[seq, op, id, rc]`, or `[seq]` for an
    /// entry whose stored record does not check (not trusted).
    pub entries: Vec<Vec<i64>>,
}

/// One entry of an [`AuditLog`], checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// Its sequence number.
    pub seq: u64,
    /// `(op, key id, rc)`; `None` when the stored record is corrupted.
    pub what: Option<(u8, u32, i32)>,
}

impl AuditLog {
    /// Decodes the `log` of an [`AuditRsp`] and checks every entry's shape.
    pub fn decode(log: &[u8]) -> Result<AuditLog, HandlerError> {
        let parsed: AuditLog = crate::decode_body(log)?;
        parsed.records()?;
        Ok(parsed)
    }

    /// The entries, checked: the wrong arity or a value out of range is
    /// `MGMT_ERR_EINVAL`.
    pub fn records(&self) -> Result<Vec<AuditRecord>, HandlerError> {
        const INVAL: HandlerError = HandlerError::Mgmt(crate::MgmtErr::EInval);
        self.entries
            .iter()
            .map(|e| {
                let seq = u64::try_from(*e.first().ok_or(INVAL)?).map_err(|_| INVAL)?;
                let what = match e.len() {
                    1 => None,
                    4 => Some((
                        u8::try_from(e[1]).map_err(|_| INVAL)?,
                        u32::try_from(e[2]).map_err(|_| INVAL)?,
                        i32::try_from(e[3]).map_err(|_| INVAL)?,
                    )),
                    _ => return Err(INVAL),
                };
                Ok(AuditRecord { seq, what })
            })
            .collect()
    }
}

/// An empty map `{}` (response of keys destroy and certs store).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmptyRsp {}

/// OS group, cmd 0 echo request: `{"d": tstr}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoReq {
    /// Text to echo.
    pub d: String,
}

/// OS group echo response: `{"r": tstr}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoRsp {
    /// Echoed text.
    pub r: String,
}

/// OS group, cmd 6 MCUmgr parameters response: `{"buf_size": uint, "buf_count": uint}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamsRsp {
    /// Size of one SMP buffer (largest packet, header included).
    pub buf_size: u32,
    /// Number of SMP buffers.
    pub buf_count: u32,
}
