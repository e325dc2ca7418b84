//! Decoding the requests of groups 64/65/66 on the device, with
//! `tfmprov_cbor`'s map reader: no serde, no value tree (the firmware's
//! flash budget; see `tfmprov_cbor`). The rules are the ones of
//! [`crate::decode_body`], which the host uses for everything else and which
//! the tests compare this against:
//!
//! - the body is exactly one well-formed map, nested at most
//!   [`crate::MAX_CBOR_DEPTH`] deep, with nothing after it;
//! - a required field that is missing, a field of the wrong type (an `id`
//!   that is not a uint, a `priv` or `cert` that is not a byte string, a
//!   `cn` that is not UTF-8 text) or a repeated field is `MGMT_ERR_EINVAL`;
//! - an optional field may be absent or `null`;
//! - unknown keys, and keys that are not text, are ignored with their values.

use alloc::string::String;
use alloc::vec::Vec;
use tfmprov_cbor::{Error as CborError, MapReader};

use crate::{AuditReq, CertGetReq, CertStoreReq, CsrCreateReq, HandlerError, KeyGenerateReq, KeyIdReq, MgmtErr, MAX_CBOR_DEPTH};

/// A request body the device decodes with [`decode_request`].
pub trait Request: Sized {
    /// Reads the fields of this request from `r`.
    fn read(r: &mut MapReader<'_>) -> Result<Self, CborError>;
}

/// Decodes a request body; every refusal is `MGMT_ERR_EINVAL` (DESIGN.md).
pub fn decode_request<T: Request>(body: &[u8]) -> Result<T, HandlerError> {
    const INVAL: HandlerError = HandlerError::Mgmt(MgmtErr::EInval);
    let mut r = MapReader::new(body, MAX_CBOR_DEPTH).map_err(|_| INVAL)?;
    T::read(&mut r).map_err(|_| INVAL)
}

/// An optional field's value: `None` for `null`, else `read`'s.
fn optional<T>(
    r: &mut MapReader<'_>,
    read: impl FnOnce(&mut MapReader<'_>) -> Result<T, CborError>,
) -> Result<Option<T>, CborError> {
    if r.null()? {
        Ok(None)
    } else {
        read(r).map(Some)
    }
}

impl Request for KeyGenerateReq {
    fn read(r: &mut MapReader<'_>) -> Result<Self, CborError> {
        let (mut id, mut private, mut replace) = (None, None, None);
        while let Some(key) = r.next_key()? {
            match &*key {
                "id" => MapReader::set(&mut id, optional(r, |r| r.uint("id"))?, "id")?,
                "priv" => MapReader::set(&mut private, optional(r, |r| r.bytes("priv"))?, "priv")?,
                "replace" => MapReader::set(&mut replace, optional(r, |r| r.bool("replace"))?, "replace")?,
                _ => r.skip()?,
            }
        }
        Ok(KeyGenerateReq { id: id.flatten(), private: private.flatten(), replace: replace.flatten() })
    }
}

/// `{"id": uint}` with nothing else required.
fn read_id(r: &mut MapReader<'_>) -> Result<u64, CborError> {
    let mut id = None;
    while let Some(key) = r.next_key()? {
        match &*key {
            "id" => MapReader::set(&mut id, r.uint("id")?, "id")?,
            _ => r.skip()?,
        }
    }
    id.ok_or(CborError::Missing("id"))
}

/// A request with no fields (`{}`; unknown keys are ignored as always).
pub struct EmptyReq;

impl Request for EmptyReq {
    fn read(r: &mut MapReader<'_>) -> Result<Self, CborError> {
        while r.next_key()?.is_some() {
            r.skip()?;
        }
        Ok(EmptyReq)
    }
}

impl Request for KeyIdReq {
    fn read(r: &mut MapReader<'_>) -> Result<Self, CborError> {
        read_id(r).map(|id| KeyIdReq { id })
    }
}

impl Request for AuditReq {
    fn read(r: &mut MapReader<'_>) -> Result<Self, CborError> {
        let mut from = None;
        while let Some(key) = r.next_key()? {
            match &*key {
                "from" => MapReader::set(&mut from, optional(r, |r| r.uint("from"))?, "from")?,
                _ => r.skip()?,
            }
        }
        Ok(AuditReq { from: from.flatten() })
    }
}

impl Request for CertGetReq {
    fn read(r: &mut MapReader<'_>) -> Result<Self, CborError> {
        read_id(r).map(|id| CertGetReq { id })
    }
}

impl Request for CsrCreateReq {
    fn read(r: &mut MapReader<'_>) -> Result<Self, CborError> {
        let (mut id, mut cn) = (None, None);
        let (mut o, mut ou): (Option<Option<String>>, Option<Option<String>>) = (None, None);
        while let Some(key) = r.next_key()? {
            match &*key {
                "id" => MapReader::set(&mut id, r.uint("id")?, "id")?,
                "cn" => MapReader::set(&mut cn, r.text("cn")?, "cn")?,
                "o" => MapReader::set(&mut o, optional(r, |r| r.text("o"))?, "o")?,
                "ou" => MapReader::set(&mut ou, optional(r, |r| r.text("ou"))?, "ou")?,
                _ => r.skip()?,
            }
        }
        Ok(CsrCreateReq {
            id: id.ok_or(CborError::Missing("id"))?,
            cn: cn.ok_or(CborError::Missing("cn"))?,
            o: o.flatten(),
            ou: ou.flatten(),
        })
    }
}

impl Request for CertStoreReq {
    fn read(r: &mut MapReader<'_>) -> Result<Self, CborError> {
        let (mut id, mut cert): (Option<u64>, Option<Vec<u8>>) = (None, None);
        while let Some(key) = r.next_key()? {
            match &*key {
                "id" => MapReader::set(&mut id, r.uint("id")?, "id")?,
                "cert" => MapReader::set(&mut cert, r.bytes("cert")?, "cert")?,
                _ => r.skip()?,
            }
        }
        Ok(CertStoreReq { id: id.ok_or(CborError::Missing("id"))?, cert: cert.ok_or(CborError::Missing("cert"))? })
    }
}
