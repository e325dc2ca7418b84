//! CBOR bodies: decoding requests, encoding responses and error responses.

use alloc::vec::Vec;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{GroupRc, HandlerError, MgmtErr};

/// Deepest nesting of arrays, maps and tags accepted in a body (the top-level map is
/// depth 1). The bodies of DESIGN.md are flat maps; the limit keeps the recursive serde
/// decoder's stack use small on the device whatever a peer sends.
pub const MAX_CBOR_DEPTH: usize = 8;

/// Scratch buffer of the CBOR decoder (on the stack; strings and byte strings longer than
/// this are read in pieces into heap buffers bounded by the body length).
const SCRATCH_LEN: usize = 64;

/// Decodes a request (or response) body into `T`.
///
/// The body must be exactly one well-formed CBOR map, nested at most [`MAX_CBOR_DEPTH`]
/// deep, with no trailing bytes. Malformed CBOR, a missing field, a wrong type, a duplicate
/// key or trailing bytes give `HandlerError::Mgmt(MgmtErr::EInval)` (DESIGN.md). No
/// allocation is larger than the body itself: declared lengths are checked against the
/// bytes actually present before anything is read.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, HandlerError> {
    const INVAL: HandlerError = HandlerError::Mgmt(MgmtErr::EInval);
    check_structure(body).map_err(|()| INVAL)?;
    let mut reader = body;
    let mut scratch = [0u8; SCRATCH_LEN];
    let value: T =
        ciborium::de::from_reader_with_buffer(&mut reader, &mut scratch).map_err(|_| INVAL)?;
    if reader.is_empty() {
        Ok(value)
    } else {
        Err(INVAL)
    }
}

/// Encodes `value` as CBOR, reporting an encoder failure as [`crate::Error::Encode`].
pub fn try_encode_body<T: Serialize>(value: &T) -> Result<Vec<u8>, crate::Error> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out).map_err(|_| crate::Error::Encode)?;
    Ok(out)
}

/// Encodes `value` as CBOR.
///
/// Writing into a `Vec` cannot fail and the message types of this crate always serialize;
/// should a caller's own type fail to serialize, the result is `{"rc": 1}` (MGMT_ERR_EUNKNOWN)
/// so that the peer still gets a well-formed answer. Use [`try_encode_body`] to see the error.
pub fn encode_body<T: Serialize>(value: &T) -> Vec<u8> {
    try_encode_body(value).unwrap_or_else(|_| rc_body(MgmtErr::EUnknown.code()))
}

#[derive(Serialize)]
struct ErrBody {
    err: ErrInner,
}

#[derive(Serialize, Deserialize)]
struct ErrInner {
    group: u16,
    rc: u16,
}

/// `{"rc": N}`; built by hand so that it cannot fail.
fn rc_body(rc: u16) -> Vec<u8> {
    // A1 62 'r' 'c' <uint>
    let mut out = Vec::with_capacity(7);
    out.extend_from_slice(&[0xa1, 0x62, b'r', b'c']);
    push_uint(&mut out, rc);
    out
}

fn push_uint(out: &mut Vec<u8>, v: u16) {
    match v {
        0..=23 => out.push(v as u8),
        24..=0xff => out.extend_from_slice(&[0x18, v as u8]),
        _ => {
            let b = v.to_be_bytes();
            out.extend_from_slice(&[0x19, b[0], b[1]]);
        }
    }
}

/// The body of an error response, as Zephyr's SMP layer builds it.
///
/// * `HandlerError::Mgmt(e)`, any version: `{"rc": e}` (Zephyr `smp_build_err_rsp`).
/// * `HandlerError::Group(rc)`, SMP v2 (`version >= 1`): `{"err": {"group": group, "rc": rc}}`
///   (Zephyr `smp_add_cmd_err`); `GroupRc::Ok` gives `{}` (Zephyr adds no "err" for 0).
/// * `HandlerError::Group(rc)`, SMP v1 (`version == 0`): `{"rc": rc.to_mgmt()}`, the nearest
///   MGMT_ERR ([`GroupRc::to_mgmt`]):
///   not found -> ENOENT (5), exists -> EBADSTATE (6), invalid argument -> EINVAL (3),
///   storage full -> ENOMEM (2), crypto failure -> EUNKNOWN (1), mismatch -> EINVAL (3),
///   too large -> EMSGSIZE (7), locked -> EACCESSDENIED (11), unknown -> EUNKNOWN (1),
///   ok -> 0.
pub fn error_body(version: u8, group: u16, err: HandlerError) -> Vec<u8> {
    match err {
        HandlerError::Mgmt(e) => rc_body(e.code()),
        HandlerError::Group(rc) if version == 0 => rc_body(rc.to_mgmt().code()),
        HandlerError::Group(GroupRc::Ok) => Vec::from([0xa0u8]),
        HandlerError::Group(rc) => {
            let body = ErrBody {
                err: ErrInner {
                    group,
                    rc: rc.code(),
                },
            };
            try_encode_body(&body).unwrap_or_else(|_| rc_body(MgmtErr::EUnknown.code()))
        }
    }
}

/// An error reported by the peer in a response body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseError {
    /// `{"rc": N}` with N != 0 (raw value; see [`MgmtErr::from_code`]).
    Mgmt(i64),
    /// `{"err": {"group": G, "rc": RC}}` with RC != 0 (raw values; see [`GroupRc::from_code`]).
    Group {
        /// Group that reported the error.
        group: u16,
        /// Group return code.
        rc: u16,
    },
}

#[derive(Deserialize)]
struct StatusProbe {
    #[serde(default)]
    rc: Option<i64>,
    #[serde(default)]
    err: Option<ErrInner>,
}

/// Looks for an error in a response body: `Ok(Some(..))` for `{"rc": N != 0}` or
/// `{"err": {"group", "rc" != 0}}`, `Ok(None)` for a success body (other fields are ignored;
/// `"rc": 0` counts as success), `Err(EInval)` if the body is not a well-formed map.
pub fn response_error(body: &[u8]) -> Result<Option<ResponseError>, HandlerError> {
    let probe: StatusProbe = decode_body(body)?;
    if let Some(err) = probe.err {
        if err.rc != 0 {
            return Ok(Some(ResponseError::Group {
                group: err.group,
                rc: err.rc,
            }));
        }
    }
    match probe.rc {
        Some(rc) if rc != 0 => Ok(Some(ResponseError::Mgmt(rc))),
        _ => Ok(None),
    }
}

/// Exactly one top-level map, nested at most [`MAX_CBOR_DEPTH`] deep, every declared
/// length present, no trailing bytes (`tfmprov_cbor`'s iterative check: constant stack,
/// no allocation).
fn check_structure(body: &[u8]) -> Result<(), ()> {
    if body.first().map(|b| b >> 5) != Some(5) {
        return Err(());
    }
    tfmprov_cbor::check_wellformed(body, MAX_CBOR_DEPTH).map_err(drop)
}
