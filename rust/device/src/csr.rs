//! PKCS#10 certificate requests built from x509-cert's types and signed
//! through PSA. One code path for host and device: the `CertReqInfo` is DER
//! encoded, its SHA-256 signed by PSA (deterministic ECDSA), and the
//! `CertReq` assembled here (x509-cert's builder needs std).

use crate::Error;
use alloc::string::String;
use alloc::vec::Vec;
use const_oid::db::rfc4519::{COMMON_NAME, ORGANIZATIONAL_UNIT_NAME, ORGANIZATION_NAME};
use const_oid::db::rfc5912::{ECDSA_WITH_SHA_256, ID_EC_PUBLIC_KEY, SECP_256_R_1};
use const_oid::ObjectIdentifier;
use der::asn1::{Any, BitString, BitStringRef, SetOfVec, UintRef, Utf8StringRef};
use der::{Encode, Header, Length, Sequence, Tag};
use spki::{AlgorithmIdentifierOwned, AlgorithmIdentifierRef, SubjectPublicKeyInfoOwned};
use tfmprov_psa::ids::DeviceKeyId;
use tfmprov_psa::{Psa, PublicKey};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::request::{CertReqInfo, Version};

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

    fn to_name(&self) -> Result<Name, Error> {
        let mut rdns = Vec::new();
        let fields = [
            (ORGANIZATION_NAME, self.o),
            (ORGANIZATIONAL_UNIT_NAME, self.ou),
            (COMMON_NAME, Some(self.cn)),
        ];
        for (oid, value) in fields {
            if let Some(v) = value {
                rdns.push(rdn(oid, v)?);
            }
        }
        Ok(RdnSequence(rdns))
    }
}

fn rdn(oid: ObjectIdentifier, value: &str) -> Result<RelativeDistinguishedName, Error> {
    let value = Any::from(Utf8StringRef::new(value)?);
    let atv = AttributeTypeAndValue { oid, value };
    Ok(RelativeDistinguishedName(SetOfVec::try_from([atv])?))
}

/// SubjectPublicKeyInfo of a P-256 public key.
pub fn p256_spki(public: &PublicKey) -> Result<SubjectPublicKeyInfoOwned, Error> {
    Ok(SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: ID_EC_PUBLIC_KEY,
            parameters: Some(Any::from(&SECP_256_R_1)),
        },
        subject_public_key: BitString::from_bytes(public)?,
    })
}

/// ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }
#[derive(Sequence)]
struct EcdsaSigValue<'a> {
    r: UintRef<'a>,
    s: UintRef<'a>,
}

/// DER encoding of a raw r || s signature.
pub fn ecdsa_der(raw: &[u8; 64]) -> Result<Vec<u8>, Error> {
    let (r, s) = raw.split_at(32);
    Ok(EcdsaSigValue { r: UintRef::new(r)?, s: UintRef::new(s)? }.to_der()?)
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

/// DER of the `CertReqInfo`: version 1, the subject, the P-256 key, no attributes.
#[inline(never)]
fn cert_req_info_der(public: &PublicKey, subject: &Subject<'_>) -> Result<Vec<u8>, Error> {
    let info = CertReqInfo {
        version: Version::V1,
        subject: subject.to_name()?,
        public_key: p256_spki(public)?,
        attributes: SetOfVec::new(),
    };
    Ok(info.to_der()?)
}

/// `CertificationRequest ::= SEQUENCE { certificationRequestInfo,
/// signatureAlgorithm (ecdsa-with-SHA256, no parameters), signature BIT STRING }`
/// around the already encoded info: the same bytes as x509-cert's `CertReq`.
#[inline(never)]
fn cert_req_der(info_der: &[u8], raw_sig: &[u8; 64]) -> Result<Vec<u8>, Error> {
    let algorithm = AlgorithmIdentifierRef { oid: ECDSA_WITH_SHA_256, parameters: None }.to_der()?;
    let signature = BitStringRef::from_bytes(&ecdsa_der(raw_sig)?)?.to_der()?;
    let content_len = info_der.len() + algorithm.len() + signature.len();
    let mut out = Vec::with_capacity(content_len + 4);
    Header::new(Tag::Sequence, Length::try_from(content_len)?)?.encode_to_vec(&mut out)?;
    out.extend_from_slice(info_der);
    out.extend_from_slice(&algorithm);
    out.extend_from_slice(&signature);
    Ok(out)
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

    /// The hand-assembled request is byte for byte x509-cert's `CertReq`.
    #[test]
    fn assembled_request_equals_x509_cert_encoding() {
        use x509_cert::request::CertReq;
        let public: PublicKey = {
            let mut p = [0u8; 65];
            p[0] = 4;
            for (i, b) in p[1..].iter_mut().enumerate() {
                *b = i as u8;
            }
            p
        };
        for subject in [
            Subject { cn: "dev-1", o: None, ou: None },
            Subject { cn: &"x".repeat(64), o: Some(&"O".repeat(64)), ou: Some("Factory 7") },
        ] {
            for raw_sig in [[0u8; 64], [0xFF; 64], [0x7F; 64]] {
                let tbs = cert_req_info_der(&public, &subject).unwrap();
                let ours = cert_req_der(&tbs, &raw_sig).unwrap();
                let theirs = CertReq {
                    info: CertReqInfo {
                        version: Version::V1,
                        subject: subject.to_name().unwrap(),
                        public_key: p256_spki(&public).unwrap(),
                        attributes: SetOfVec::new(),
                    },
                    algorithm: AlgorithmIdentifierOwned { oid: ECDSA_WITH_SHA_256, parameters: None },
                    signature: BitString::from_bytes(&ecdsa_der(&raw_sig).unwrap()).unwrap(),
                }
                .to_der()
                .unwrap();
                assert_eq!(ours, theirs);
            }
        }
    }
}
