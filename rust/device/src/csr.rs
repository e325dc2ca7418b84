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
use der::asn1::{Any, BitString, SetOfVec, UintRef, Utf8StringRef};
use der::{Encode, Sequence};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use tfmprov_psa::ids::DeviceKeyId;
use tfmprov_psa::{Psa, PublicKey};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::request::{CertReq, CertReqInfo, Version};

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
pub fn create(psa: &Psa, id: DeviceKeyId, subject: &Subject<'_>) -> Result<Vec<u8>, Error> {
    subject.validate()?;
    let public = psa.public_key(id)?;
    let info = CertReqInfo {
        version: Version::V1,
        subject: subject.to_name()?,
        public_key: p256_spki(&public)?,
        attributes: SetOfVec::new(),
    };
    let tbs = info.to_der()?;
    let digest = psa.sha256(&tbs)?;
    let raw_sig = psa.sign_hash(id, &digest)?;
    let req = CertReq {
        info,
        algorithm: AlgorithmIdentifierOwned { oid: ECDSA_WITH_SHA_256, parameters: None },
        signature: BitString::from_bytes(&ecdsa_der(&raw_sig)?)?,
    };
    Ok(req.to_der()?)
}

/// PEM text of a DER CSR.
pub fn to_pem(der: &[u8]) -> Result<String, Error> {
    Ok(der::pem::encode_string("CERTIFICATE REQUEST", der::pem::LineEnding::LF, der)?)
}
