//! Shared pieces of the profiles: bounded decoding into `coset` types and
//! header checks.

use ciborium::value::Value;
use coset::{iana, Algorithm, AsCborValue, Header, Label};

use crate::{cbor, check_len, Error, ParseError, MAX_CBOR_DEPTH, SEQ_LABEL};

/// Depth allowed inside a protected header bstr (`{1: -7, 4: kid, -65537: seq}` is depth 1).
const PROTECTED_DEPTH: usize = 4;

/// Decode an untrusted COSE message into a `coset` structure, accepting it
/// tagged with `tag` or untagged. Every protected header bstr (of the message
/// and of nested recipients) is checked for well-formedness and depth before
/// `coset` decodes it.
pub(crate) fn decode_cose<T: AsCborValue>(
    msg: &[u8],
    tag: u64,
    what: &'static str,
) -> Result<T, ParseError> {
    check_len(msg.len())?;
    let value = cbor::decode(msg, MAX_CBOR_DEPTH).map_err(|_| Error::Cbor)?;
    let value = match value {
        Value::Tag(t, inner) if t == tag => *inner,
        Value::Tag(..) => return Err(Error::Profile("unexpected CBOR tag")),
        v => v,
    };
    precheck_protected(&value)?;
    T::from_cbor_value(value).map_err(|_| Error::Profile(what))
}

/// Check the protected header bstr (item 0) of a COSE array and of the
/// recipients (item 3) it may carry, recursively.
fn precheck_protected(value: &Value) -> Result<(), ParseError> {
    let Value::Array(items) = value else {
        return Ok(()); // coset will reject the structure
    };
    if let Some(Value::Bytes(p)) = items.first() {
        if !p.is_empty() {
            cbor::check_wellformed(p, PROTECTED_DEPTH).map_err(|_| Error::Cbor)?;
        }
    }
    if let Some(Value::Array(recipients)) = items.get(3) {
        for r in recipients {
            precheck_protected(r)?;
        }
    }
    Ok(())
}

/// The algorithm of a protected header, which must be the integer `want`.
pub(crate) fn expect_alg(h: &Header, want: iana::Algorithm) -> Result<(), ParseError> {
    match &h.alg {
        Some(Algorithm::Assigned(a)) if *a == want => Ok(()),
        Some(_) => Err(Error::Profile("wrong algorithm")),
        None => Err(Error::Profile("algorithm missing from protected header")),
    }
}

/// No critical parameters (we understand no extension), and none of the
/// parameters that the profile puts in the protected header appears
/// unprotected as well.
pub(crate) fn check_common(protected: &Header, unprotected: &Header) -> Result<(), ParseError> {
    if !protected.crit.is_empty() || !unprotected.crit.is_empty() {
        return Err(Error::Profile(
            "critical header parameters are not supported",
        ));
    }
    if unprotected.alg.is_some() {
        return Err(Error::Profile("algorithm in unprotected header"));
    }
    if !unprotected.key_id.is_empty() && !protected.key_id.is_empty() {
        return Err(Error::Profile("kid in both header buckets"));
    }
    if find(unprotected, SEQ_LABEL).is_some() {
        return Err(Error::Profile("seq in unprotected header"));
    }
    Ok(())
}

/// A parameter of `h.rest` by integer label.
pub(crate) fn find(h: &Header, label: i64) -> Option<&Value> {
    h.rest
        .iter()
        .find(|(l, _)| *l == Label::Int(label))
        .map(|(_, v)| v)
}

/// `seq` from a protected header: present, a uint that fits u64.
pub(crate) fn seq(h: &Header) -> Result<u64, ParseError> {
    match find(h, SEQ_LABEL) {
        Some(Value::Integer(i)) => {
            u64::try_from(*i).map_err(|_| Error::Profile("seq is not a uint"))
        }
        Some(_) => Err(Error::Profile("seq is not a uint")),
        None => Err(Error::Profile("seq missing from protected header")),
    }
}

/// Exactly `N` bytes, or a profile error saying `what`.
pub(crate) fn fixed<const N: usize>(b: &[u8], what: &'static str) -> Result<[u8; N], ParseError> {
    <[u8; N]>::try_from(b).map_err(|_| Error::Profile(what))
}

/// The uncompressed point 0x04 || x || y.
pub(crate) fn point(x: &[u8; 32], y: &[u8; 32]) -> [u8; crate::P256_POINT_LEN] {
    let mut p = [0u8; crate::P256_POINT_LEN];
    p[0] = 0x04;
    p[1..33].copy_from_slice(x);
    p[33..].copy_from_slice(y);
    p
}

/// Check `out.len() == want` for the output of a crypto closure.
pub(crate) fn check_output<E>(out: &[u8], want: usize, what: &'static str) -> Result<(), Error<E>> {
    if out.len() == want {
        Ok(())
    } else {
        Err(Error::CryptoOutput(what))
    }
}

