//! PKCS#10 certificate requests, signed through PSA. The `CertReqInfo` is
//! DER encoded, its SHA-256 signed by PSA (deterministic ECDSA), and the
//! `CertReq` assembled around it.
//!
//! The encoder is written out here (a dozen fixed elements: the subject's
//! O/OU/CN, the P-256 key, the signature) instead of going through
//! x509-cert's and der's encoders: measured on Cortex-M33 those were about
//! 4.5 KiB of the firmware's flash (docs/firmware.md), which the audit log
//! of issue 15 needed. The tests hold the bytes equal to x509-cert's
//! `CertReq` for every subject shape and signature edge case, and openssl
//! parses and verifies what the device signs (`rust/device/src/tests.rs`).

use crate::Error;
use alloc::string::String;
use alloc::vec::Vec;
use tfmprov_psa::ids::DeviceKeyId;
use tfmprov_psa::{Psa, PublicKey};

/// Subject of a device CSR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject<'a> {
    /// The device id (DESIGN.md: `[A-Za-z0-9._-]{1,64}`), used as CN.
    pub cn: &'a str,
    /// Optional organization.
    pub o: Option<&'a str>,
    /// Optional organizational unit.
    pub ou: Option<&'a str>,
}

/// Whether `id` is a valid device id (DESIGN.md: `[A-Za-z0-9._-]{1,64}`).
pub fn valid_device_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// O and OU: 1..=64 printable characters, no control characters.
fn valid_org_field(v: &str) -> bool {
    (1..=64).contains(&v.chars().count()) && !v.chars().any(char::is_control)
}

impl Subject<'_> {
    /// Checks the subject fields.
    pub fn validate(&self) -> Result<(), Error> {
        if !valid_device_id(self.cn) {
            return Err(Error::InvalidArgument("cn must match [A-Za-z0-9._-]{1,64}"));
        }
        for v in [self.o, self.ou].into_iter().flatten() {
            if !valid_org_field(v) {
                return Err(Error::InvalidArgument("o/ou must be 1..64 characters without control characters"));
            }
        }
        Ok(())
    }

}

/// DER tags used here.
mod tag {
    pub const INTEGER: u8 = 0x02;
    pub const BIT_STRING: u8 = 0x03;
    pub const OID: u8 = 0x06;
    pub const UTF8_STRING: u8 = 0x0C;
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;
    /// `[0]` constructed: the empty attributes of the `CertReqInfo`.
    pub const CONTEXT_0: u8 = 0xA0;
}

/// OID contents: id-at-organizationName, -organizationalUnitName,
/// -commonName (RFC 4519), ecdsa-with-SHA256 (RFC 5758).
const OID_O: &[u8] = &[0x55, 0x04, 0x0A];
const OID_OU: &[u8] = &[0x55, 0x04, 0x0B];
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_ECDSA_SHA256: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02];

/// Appends one DER element: tag, definite length (short form, or long form
/// in one or two bytes: a request is far below 64 KiB), content.
fn tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let n = content.len();
    match n {
        0..=0x7F => out.push(n as u8),
        0x80..=0xFF => out.extend_from_slice(&[0x81, n as u8]),
        _ => out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
}

/// One element as a new vector.
fn element(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 4);
    tlv(&mut out, tag, content);
    out
}

/// `INTEGER` of an unsigned big-endian value: leading zeros dropped, a zero
/// byte put back in front of a set top bit (DER's minimal two's complement).
fn unsigned_integer(out: &mut Vec<u8>, value: &[u8]) {
    let start = value.iter().position(|&b| b != 0).unwrap_or(value.len().saturating_sub(1));
    let v = &value[start..];
    if v.first().is_some_and(|&b| b & 0x80 != 0) {
        let mut padded = Vec::with_capacity(v.len() + 1);
        padded.push(0);
        padded.extend_from_slice(v);
        tlv(out, tag::INTEGER, &padded);
    } else {
        tlv(out, tag::INTEGER, v);
    }
}

/// DER encoding of a raw r || s signature: `ECDSA-Sig-Value ::= SEQUENCE
/// { r INTEGER, s INTEGER }`.
pub fn ecdsa_der(raw: &[u8; 64]) -> Vec<u8> {
    let mut rs = Vec::with_capacity(70);
    unsigned_integer(&mut rs, &raw[..32]);
    unsigned_integer(&mut rs, &raw[32..]);
    element(tag::SEQUENCE, &rs)
}

/// Builds and signs a PKCS#10 request for the key `id` (DER).
///
/// The `CertReqInfo` is encoded in a function of its own and the request is
/// assembled around its DER bytes, so that the x509-cert structures (names,
/// key info) are never on the stack while PSA signs or while the request is
/// written: measured on Cortex-M33, building a `CertReq` that owns the info
/// again took a 1.1 KiB frame on top of the encoder's (docs/firmware.md).
pub fn create(psa: &Psa, id: DeviceKeyId, subject: &Subject<'_>) -> Result<Vec<u8>, Error> {
    subject.validate()?;
    let public = psa.public_key(id)?;
    let tbs = cert_req_info_der(&public, subject)?;
    let digest = psa.sha256(&tbs)?;
    let raw_sig = psa.sign_hash(id, &digest)?;
    cert_req_der(&tbs, &raw_sig)
}

/// DER of the `CertReqInfo`: version 1, the subject (O, OU, CN, each its
/// own RDN, as UTF8String), the P-256 key, no attributes.
#[inline(never)]
fn cert_req_info_der(public: &PublicKey, subject: &Subject<'_>) -> Result<Vec<u8>, Error> {
    let mut name = Vec::with_capacity(160);
    for (oid, value) in [(OID_O, subject.o), (OID_OU, subject.ou), (OID_CN, Some(subject.cn))] {
        if let Some(v) = value {
            let mut atv = element(tag::OID, oid);
            tlv(&mut atv, tag::UTF8_STRING, v.as_bytes());
            tlv(&mut name, tag::SET, &element(tag::SEQUENCE, &atv));
        }
    }
    let mut info = Vec::with_capacity(name.len() + 112);
    tlv(&mut info, tag::INTEGER, &[0]);
    tlv(&mut info, tag::SEQUENCE, &name);
    info.extend_from_slice(&tfmprov_cose::p256_spki_der(public));
    tlv(&mut info, tag::CONTEXT_0, &[]);
    Ok(element(tag::SEQUENCE, &info))
}

/// `CertificationRequest ::= SEQUENCE { certificationRequestInfo,
/// signatureAlgorithm (ecdsa-with-SHA256, no parameters), signature BIT STRING }`
/// around the already encoded info: the same bytes as x509-cert's `CertReq`.
#[inline(never)]
fn cert_req_der(info_der: &[u8], raw_sig: &[u8; 64]) -> Result<Vec<u8>, Error> {
    let mut body = Vec::with_capacity(info_der.len() + 96);
    body.extend_from_slice(info_der);
    tlv(&mut body, tag::SEQUENCE, &element(tag::OID, OID_ECDSA_SHA256));
    let mut bits = alloc::vec![0u8]; // no unused bits
    bits.extend_from_slice(&ecdsa_der(raw_sig));
    tlv(&mut body, tag::BIT_STRING, &bits);
    Ok(element(tag::SEQUENCE, &body))
}

/// PEM text (RFC 7468, LF line endings, 64 columns) of `der` under
/// `label` ("CERTIFICATE REQUEST", "CERTIFICATE"). base64ct encodes each
/// 48-byte chunk into one line; `pem-rfc7468`'s encoder would do the same for
/// about 1 KiB more firmware flash. The tests hold it equal to
/// `der::pem::encode_string`.
pub fn to_pem(label: &str, der: &[u8]) -> Result<String, Error> {
    use base64ct::{Base64, Encoding};
    let mut out = String::with_capacity(2 * label.len() + 32 + der.len().div_ceil(48) * 65);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    let mut line = [0u8; 64];
    for chunk in der.chunks(48) {
        let encoded = Base64::encode(chunk, &mut line).map_err(|_| Error::InvalidArgument("PEM encoding failed"))?;
        out.push_str(encoded);
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_equals_the_pem_crates_encoding() {
        let der: Vec<u8> = (0..4100u32).map(|i| (i * 7 + 3) as u8).collect();
        // Empty input (never a certificate): no base64 line at all, where
        // the crate writes an empty one.
        assert_eq!(to_pem("X", &[]).unwrap(), "-----BEGIN X-----\n-----END X-----\n");
        for len in [1usize, 2, 3, 47, 48, 49, 95, 96, 97, 378, 4060, 4100] {
            for label in ["CERTIFICATE REQUEST", "CERTIFICATE"] {
                let ours = to_pem(label, &der[..len]).unwrap();
                let theirs = der::pem::encode_string(label, der::pem::LineEnding::LF, &der[..len]).unwrap();
                assert_eq!(ours, theirs, "{label}, {len} bytes");
            }
        }
    }

    use const_oid::db::rfc4519::{COMMON_NAME, ORGANIZATIONAL_UNIT_NAME, ORGANIZATION_NAME};
    use const_oid::db::rfc5912::{ECDSA_WITH_SHA_256, ID_EC_PUBLIC_KEY, SECP_256_R_1};
    use der::asn1::{Any, BitString, SetOfVec, UintRef, Utf8StringRef};
    use der::{Encode, Sequence};
    use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
    use x509_cert::attr::AttributeTypeAndValue;
    use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
    use x509_cert::request::{CertReq, CertReqInfo, Version};

    /// The oracle: the subject as x509-cert's `Name` (O, OU, CN).
    fn to_name(s: &Subject<'_>) -> Name {
        let fields = [(ORGANIZATION_NAME, s.o), (ORGANIZATIONAL_UNIT_NAME, s.ou), (COMMON_NAME, Some(s.cn))];
        let rdns = fields
            .into_iter()
            .filter_map(|(oid, v)| v.map(|v| (oid, v)))
            .map(|(oid, v)| {
                let atv = AttributeTypeAndValue { oid, value: Any::from(Utf8StringRef::new(v).unwrap()) };
                RelativeDistinguishedName(SetOfVec::try_from([atv]).unwrap())
            })
            .collect();
        RdnSequence(rdns)
    }

    fn p256_spki(public: &PublicKey) -> SubjectPublicKeyInfoOwned {
        SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned { oid: ID_EC_PUBLIC_KEY, parameters: Some(Any::from(&SECP_256_R_1)) },
            subject_public_key: BitString::from_bytes(public).unwrap(),
        }
    }

    #[derive(Sequence)]
    struct EcdsaSigValue<'a> {
        r: UintRef<'a>,
        s: UintRef<'a>,
    }

    /// The signature's DER is der's, for every edge of r and s: zero,
    /// leading zero bytes, a set top bit.
    #[test]
    fn ecdsa_der_equals_ders_encoding() {
        let mut edges: Vec<[u8; 32]> = vec![[0; 32], [0xFF; 32], [0x7F; 32], [0x80; 32], [1; 32]];
        for i in 0..32 {
            let mut v = [0u8; 32];
            v[i] = 0x80;
            edges.push(v);
            v[i] = 0x01;
            edges.push(v);
        }
        for r in &edges {
            for s in &edges {
                let mut raw = [0u8; 64];
                raw[..32].copy_from_slice(r);
                raw[32..].copy_from_slice(s);
                let theirs = EcdsaSigValue { r: UintRef::new(r).unwrap(), s: UintRef::new(s).unwrap() }.to_der().unwrap();
                assert_eq!(ecdsa_der(&raw), theirs, "r {r:02x?} s {s:02x?}");
            }
        }
    }

    /// The hand-assembled request is byte for byte x509-cert's `CertReq`,
    /// for each subject shape (CN alone, with O, OU or both, the longest
    /// fields, multi-byte UTF-8) and signature edge cases.
    #[test]
    fn assembled_request_equals_x509_cert_encoding() {
        let public: PublicKey = {
            let mut p = [0u8; 65];
            p[0] = 4;
            for (i, b) in p[1..].iter_mut().enumerate() {
                *b = i as u8;
            }
            p
        };
        let (long_cn, long_o, wide) = ("x".repeat(64), "O".repeat(64), "\u{00e9}\u{4e2d}".repeat(32));
        for subject in [
            Subject { cn: "dev-1", o: None, ou: None },
            Subject { cn: "a", o: Some("Acme"), ou: None },
            Subject { cn: "a", o: None, ou: Some("Line 3") },
            Subject { cn: &long_cn, o: Some(&long_o), ou: Some("Factory 7") },
            Subject { cn: &long_cn, o: Some(&wide), ou: Some(&wide) },
        ] {
            subject.validate().unwrap();
            for raw_sig in [[0u8; 64], [0xFF; 64], [0x7F; 64], [0x80; 64]] {
                let tbs = cert_req_info_der(&public, &subject).unwrap();
                let ours = cert_req_der(&tbs, &raw_sig).unwrap();
                let theirs = CertReq {
                    info: CertReqInfo {
                        version: Version::V1,
                        subject: to_name(&subject),
                        public_key: p256_spki(&public),
                        attributes: SetOfVec::new(),
                    },
                    algorithm: AlgorithmIdentifierOwned { oid: ECDSA_WITH_SHA_256, parameters: None },
                    signature: BitString::from_bytes(&ecdsa_der(&raw_sig)).unwrap(),
                }
                .to_der()
                .unwrap();
                assert_eq!(ours, theirs);
            }
        }
    }
}
