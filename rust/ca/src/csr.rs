//! Decoding and checking PKCS#10 certificate signing requests.

use const_oid::db::rfc4519::{CN, O, OU};
use const_oid::db::rfc5912::{ECDSA_WITH_SHA_256, ID_EC_PUBLIC_KEY, RSA_ENCRYPTION, SECP_256_R_1};
use const_oid::ObjectIdentifier;
use der::asn1::SetOfVec;
use der::{Decode, Reader, SliceReader, Tag, Tagged};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::EncodePublicKey;
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::request::{CertReq, Version};

use crate::error::Refusal;

/// Longest CN, O or OU value accepted (RFC 5280 upper bound for CN/O/OU is 64).
pub(crate) const MAX_NAME_LEN: usize = 64;
/// At most this many O/OU attributes are copied.
const MAX_EXTRA_ATTRS: usize = 8;

/// A CSR that passed every check.
#[derive(Debug, Clone)]
pub(crate) struct CheckedCsr {
    /// The CN (the device id).
    pub cn: String,
    /// The subject of the leaf: the CSR's CN, O and OU attributes in the CSR's order,
    /// values copied byte for byte.
    pub subject: Name,
    /// The subject key as SubjectPublicKeyInfo with the uncompressed point.
    pub spki: SubjectPublicKeyInfoOwned,
    /// DER of `spki` (what the device's key is identified by: SHA-256 of this).
    pub spki_der: Vec<u8>,
}

/// What we know about a CSR even when it is refused (for the request log).
#[derive(Debug, Clone, Default)]
pub(crate) struct CsrHints {
    pub cn: Option<String>,
    pub spki_der: Option<Vec<u8>>,
}

/// Turns an HTTP body into CSR DER: DER as is, or PEM `CERTIFICATE REQUEST`
/// (also the legacy `NEW CERTIFICATE REQUEST` label).
pub fn csr_der_from_body(body: &[u8]) -> Result<Vec<u8>, Refusal> {
    let trimmed = trim_ascii(body);
    if trimmed.first() == Some(&0x30) {
        return Ok(body.to_vec());
    }
    if trimmed.starts_with(b"-----BEGIN") {
        let (label, der) = der::pem::decode_vec(trimmed)
            .map_err(|e| Refusal::Malformed(format!("bad PEM: {e}")))?;
        return match label {
            "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => Ok(der),
            other => Err(Refusal::Malformed(format!(
                "PEM label is {other:?}, expected \"CERTIFICATE REQUEST\""
            ))),
        };
    }
    if trimmed.is_empty() {
        return Err(Refusal::Malformed("empty body".into()));
    }
    Err(Refusal::Malformed(
        "body is neither DER nor PEM \"CERTIFICATE REQUEST\"".into(),
    ))
}

/// Turns an EST `simpleenroll` body (base64 of DER, line breaks allowed) into DER.
/// A body that already is DER or PEM is accepted too.
pub fn csr_der_from_est_body(body: &[u8]) -> Result<Vec<u8>, Refusal> {
    use base64::Engine;
    let trimmed = trim_ascii(body);
    if trimmed.first() == Some(&0x30) || trimmed.starts_with(b"-----BEGIN") {
        return csr_der_from_body(trimmed);
    }
    let compact: Vec<u8> = trimmed
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if compact.is_empty() {
        return Err(Refusal::Malformed("empty body".into()));
    }
    base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .map_err(|e| Refusal::Malformed(format!("body is not base64 of a DER PKCS#10: {e}")))
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &b[start..end]
}

fn oid_name(oid: &ObjectIdentifier) -> String {
    match const_oid::db::DB.by_oid(oid) {
        Some(name) => name.to_string(),
        None => oid.to_string(),
    }
}

/// The raw bytes of the first element (CertificationRequestInfo) inside the outer
/// SEQUENCE: the exact bytes that were signed.
pub(crate) fn signed_info_bytes(der: &[u8]) -> Result<&[u8], der::Error> {
    let mut reader = SliceReader::new(der)?;
    let header = der::Header::decode(&mut reader)?;
    header.tag.assert_eq(Tag::Sequence)?;
    reader.tlv_bytes()
}

/// Decodes a directory string value (UTF8String, PrintableString or IA5String).
fn dir_string(atv: &AttributeTypeAndValue) -> Option<String> {
    let value = &atv.value;
    match value.tag() {
        Tag::Utf8String => std::str::from_utf8(value.value()).ok().map(str::to_owned),
        Tag::PrintableString => der::asn1::PrintableStringRef::try_from(value)
            .ok()
            .map(|s| s.as_str().to_owned()),
        Tag::Ia5String => der::asn1::Ia5StringRef::try_from(value)
            .ok()
            .map(|s| s.as_str().to_owned()),
        _ => None,
    }
}

/// Whether `cn` is an acceptable device id: `[A-Za-z0-9._-]{1,64}`.
pub fn cn_allowed(cn: &str) -> bool {
    !cn.is_empty()
        && cn.len() <= MAX_NAME_LEN
        && cn
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

/// Checks a DER CSR. On refusal, `hints` holds whatever could be learnt (CN, key)
/// for the request log.
pub(crate) fn check_csr(der: &[u8], hints: &mut CsrHints) -> Result<CheckedCsr, Refusal> {
    let req = CertReq::from_der(der).map_err(|e| Refusal::Malformed(e.to_string()))?;
    let info_bytes = signed_info_bytes(der).map_err(|e| Refusal::Malformed(e.to_string()))?;

    // Gather the CN early so a refusal can still be logged against a device id.
    let mut cns = Vec::new();
    for rdn in req.info.subject.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid == CN {
                cns.push(dir_string(atv));
            }
        }
    }
    if let Some(Some(cn)) = cns.first() {
        hints.cn = Some(cn.clone());
    }

    if req.info.version != Version::V1 {
        return Err(Refusal::UnsupportedVersion);
    }

    // The key: id-ecPublicKey on prime256v1, a valid point.
    let alg = &req.info.public_key.algorithm;
    if alg.oid != ID_EC_PUBLIC_KEY {
        let what = if alg.oid == RSA_ENCRYPTION {
            "RSA key".to_string()
        } else {
            format!("key algorithm {}", oid_name(&alg.oid))
        };
        return Err(Refusal::KeyNotP256(what));
    }
    let curve = alg
        .parameters
        .as_ref()
        .ok_or_else(|| Refusal::KeyNotP256("EC key without named curve".into()))?
        .decode_as::<ObjectIdentifier>()
        .map_err(|_| Refusal::KeyNotP256("EC key without named curve".into()))?;
    if curve != SECP_256_R_1 {
        return Err(Refusal::KeyNotP256(format!(
            "EC curve {}",
            oid_name(&curve)
        )));
    }
    let point = req
        .info
        .public_key
        .subject_public_key
        .as_bytes()
        .ok_or(Refusal::InvalidPublicKey)?;
    let key = VerifyingKey::from_sec1_bytes(point).map_err(|_| Refusal::InvalidPublicKey)?;
    let spki_doc = key
        .to_public_key_der()
        .map_err(|_| Refusal::InvalidPublicKey)?;
    let spki_der = spki_doc.as_bytes().to_vec();
    hints.spki_der = Some(spki_der.clone());

    // The self-signature: ecdsa-with-SHA256 (parameters absent, RFC 5758) over the info.
    if req.algorithm.oid != ECDSA_WITH_SHA_256 {
        return Err(Refusal::SignatureAlgorithm(oid_name(&req.algorithm.oid)));
    }
    if req.algorithm.parameters.is_some() {
        return Err(Refusal::SignatureAlgorithm(
            "ecdsa-with-SHA256 with parameters present".into(),
        ));
    }
    let sig_bytes = req.signature.as_bytes().ok_or(Refusal::BadSignature)?;
    let sig = Signature::from_der(sig_bytes).map_err(|_| Refusal::BadSignature)?;
    key.verify(info_bytes, &sig)
        .map_err(|_| Refusal::BadSignature)?;

    // The subject: exactly one CN matching the device-id rule; O/OU copied.
    let cn = match cns.as_slice() {
        [] => return Err(Refusal::MissingCn),
        [Some(cn)] => cn.clone(),
        [None] => {
            return Err(Refusal::CnNotAllowed(
                "(not a UTF8String, PrintableString or IA5String)".into(),
            ))
        }
        _ => return Err(Refusal::MultipleCn),
    };
    if !cn_allowed(&cn) {
        return Err(Refusal::CnNotAllowed(shorten(&cn)));
    }

    let mut rdns = Vec::new();
    let mut extra = 0usize;
    for rdn in req.info.subject.0.iter() {
        let mut kept = Vec::new();
        for atv in rdn.0.iter() {
            if atv.oid == CN {
                kept.push(atv.clone());
            } else if atv.oid == O || atv.oid == OU {
                let label = if atv.oid == O { "O" } else { "OU" };
                let value = dir_string(atv).ok_or_else(|| {
                    Refusal::BadAttribute(format!(
                        "{label} is not a UTF8String, PrintableString or IA5String"
                    ))
                })?;
                if value.is_empty() || value.chars().count() > MAX_NAME_LEN {
                    return Err(Refusal::BadAttribute(format!(
                        "{label} must be 1 to {MAX_NAME_LEN} characters"
                    )));
                }
                if value.chars().any(char::is_control) {
                    return Err(Refusal::BadAttribute(format!(
                        "{label} contains control characters"
                    )));
                }
                extra += 1;
                if extra > MAX_EXTRA_ATTRS {
                    return Err(Refusal::BadAttribute(format!(
                        "more than {MAX_EXTRA_ATTRS} O/OU attributes"
                    )));
                }
                kept.push(atv.clone());
            }
            // Other attributes (C, L, emailAddress, ...) are not copied: the CA decides
            // the subject, and the device id lives in the CN alone.
        }
        if !kept.is_empty() {
            let set = SetOfVec::try_from(kept)
                .map_err(|e| Refusal::Malformed(format!("subject: {e}")))?;
            rdns.push(RelativeDistinguishedName(set));
        }
    }
    let spki = SubjectPublicKeyInfoOwned::from_der(&spki_der)
        .map_err(|e| Refusal::Malformed(format!("public key: {e}")))?;

    Ok(CheckedCsr {
        cn,
        subject: RdnSequence(rdns),
        spki,
        spki_der,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cn_rule() {
        assert!(cn_allowed("dev-1"));
        assert!(cn_allowed("A.b_c-9"));
        assert!(cn_allowed(&"a".repeat(64)));
        assert!(!cn_allowed(&"a".repeat(65)));
        assert!(!cn_allowed(""));
        assert!(!cn_allowed("bad cn!"));
        assert!(!cn_allowed("dev/1"));
        assert!(!cn_allowed("dév"));
    }

    #[test]
    fn body_decoding() {
        assert!(matches!(csr_der_from_body(b""), Err(Refusal::Malformed(_))));
        assert!(matches!(
            csr_der_from_body(b"hello"),
            Err(Refusal::Malformed(_))
        ));
        assert_eq!(csr_der_from_body(&[0x30, 0x00]).unwrap(), vec![0x30, 0x00]);
        let pem = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
        let err = csr_der_from_body(pem.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("CERTIFICATE REQUEST"), "{err}");
        let pem = "-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n";
        assert_eq!(csr_der_from_body(pem.as_bytes()).unwrap(), vec![0x30, 0x00]);
        assert_eq!(
            csr_der_from_est_body(b"MA\r\nA=\r\n").unwrap(),
            vec![0x30, 0x00]
        );
        assert!(matches!(
            csr_der_from_est_body(b"!!!"),
            Err(Refusal::Malformed(_))
        ));
    }

    #[test]
    fn garbage_is_malformed_not_panic() {
        let mut hints = CsrHints::default();
        for body in [
            &[0x30u8, 0x03, 0x02, 0x01, 0x00][..],
            &[0x30, 0x80],
            &[0xff; 40],
        ] {
            assert!(matches!(
                check_csr(body, &mut hints),
                Err(Refusal::Malformed(_))
            ));
        }
    }
}
