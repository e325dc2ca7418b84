//! Building certificates (root, intermediate, leaf) and PKCS#7 certs-only bundles.

use std::time::{Duration, SystemTime};

use cms::cert::CertificateChoices;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{CertificateSet, EncapsulatedContentInfo, SignedData, SignerInfos};
use const_oid::db::rfc4519::{CN, O};
use const_oid::db::rfc5280::{ID_KP_CLIENT_AUTH, ID_KP_SERVER_AUTH};
use const_oid::db::rfc5911::{ID_DATA, ID_SIGNED_DATA};
use const_oid::db::rfc5912::{ECDSA_WITH_SHA_256, ID_CE_SUBJECT_KEY_IDENTIFIER};
use const_oid::db::rfc5912::{ID_EC_PUBLIC_KEY, SECP_256_R_1};
use const_oid::ObjectIdentifier;
use der::asn1::{Any, OctetString, SetOfVec, Utf8StringRef};
use der::{Decode, Encode, EncodePem};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::pkcs8::EncodePublicKey;
use sha1::{Digest, Sha1};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

use crate::csr::CheckedCsr;
use crate::error::Error;

/// Certificates start this long before "now" (clock skew between CA and devices).
pub(crate) const BACKDATE: Duration = Duration::from_secs(5 * 60);
/// Validity of a generated root CA certificate (about 20 years).
pub(crate) const ROOT_VALIDITY: Duration = Duration::from_secs((20 * 365 + 5) * 86_400);
/// Validity of a generated intermediate CA certificate (about 10 years).
pub(crate) const INTERMEDIATE_VALIDITY: Duration = Duration::from_secs((10 * 365 + 2) * 86_400);

const DAY: u64 = 86_400;

/// A CA certificate held in memory with what issuing needs from it.
#[derive(Clone, Debug)]
pub(crate) struct CaCert {
    pub cert: Certificate,
    pub der: Vec<u8>,
    pub pem: String,
    /// Its subjectKeyIdentifier (from the extension; computed if absent).
    pub ski: Vec<u8>,
}

impl CaCert {
    pub fn from_cert(cert: Certificate) -> Result<Self, Error> {
        let der = cert.to_der().map_err(Error::encoding)?;
        let pem = cert
            .to_pem(der::pem::LineEnding::LF)
            .map_err(Error::encoding)?;
        let ski = match ski_extension(&cert) {
            Some(ski) => ski,
            None => key_id(&cert.tbs_certificate.subject_public_key_info),
        };
        Ok(CaCert {
            cert,
            der,
            pem,
            ski,
        })
    }

    pub fn subject(&self) -> &Name {
        &self.cert.tbs_certificate.subject
    }

    pub fn not_after(&self) -> SystemTime {
        self.cert
            .tbs_certificate
            .validity
            .not_after
            .to_system_time()
    }
}

/// RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING value.
pub(crate) fn key_id(spki: &SubjectPublicKeyInfoOwned) -> Vec<u8> {
    Sha1::digest(spki.subject_public_key.raw_bytes()).to_vec()
}

/// The subjectKeyIdentifier extension's value, if the certificate has one.
pub(crate) fn ski_extension(cert: &Certificate) -> Option<Vec<u8>> {
    let exts = cert.tbs_certificate.extensions.as_ref()?;
    let ext = exts
        .iter()
        .find(|e| e.extn_id == ID_CE_SUBJECT_KEY_IDENTIFIER)?;
    let ski = SubjectKeyIdentifier::from_der(ext.extn_value.as_bytes()).ok()?;
    Some(ski.0.as_bytes().to_vec())
}

/// A random positive 16-byte serial number (126 random bits; top bit clear so the
/// INTEGER stays 16 bytes and positive, first byte never zero).
pub(crate) fn random_serial() -> Result<[u8; 16], Error> {
    use rand_core::{OsRng, RngCore};
    let mut serial = [0u8; 16];
    OsRng
        .try_fill_bytes(&mut serial)
        .map_err(|e| Error::Encoding(format!("system random generator failed: {e}")))?;
    serial[0] &= 0x7f;
    if serial[0] == 0 {
        serial[0] = 0x01;
    }
    Ok(serial)
}

fn time(t: SystemTime) -> Result<Time, Error> {
    // Whole seconds; the builder turns it into UTCTime up to 2049 (RFC 5280 4.1.2.5).
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(Error::encoding)?
        .as_secs();
    Time::try_from(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)).map_err(Error::encoding)
}

fn validity(from: SystemTime, to: SystemTime) -> Result<Validity, Error> {
    Ok(Validity {
        not_before: time(from)?,
        not_after: time(to)?,
    })
}

/// `O=tfmprov, CN=<cn>` as UTF8Strings.
pub(crate) fn ca_name(cn: &str) -> Result<Name, Error> {
    let atv = |oid: ObjectIdentifier, value: &str| -> Result<RelativeDistinguishedName, Error> {
        let s = Utf8StringRef::new(value).map_err(Error::encoding)?;
        let value = Any::encode_from(&s).map_err(Error::encoding)?;
        let set = SetOfVec::try_from(vec![AttributeTypeAndValue { oid, value }])
            .map_err(Error::encoding)?;
        Ok(RelativeDistinguishedName(set))
    };
    Ok(RdnSequence(vec![atv(O, "tfmprov")?, atv(CN, cn)?]))
}

fn spki_of(key: &SigningKey) -> Result<SubjectPublicKeyInfoOwned, Error> {
    let doc = key
        .verifying_key()
        .to_public_key_der()
        .map_err(Error::encoding)?;
    SubjectPublicKeyInfoOwned::from_der(doc.as_bytes()).map_err(Error::encoding)
}

fn serial_number() -> Result<SerialNumber, Error> {
    SerialNumber::new(&random_serial()?).map_err(Error::encoding)
}

fn aki(key_identifier: &[u8]) -> Result<AuthorityKeyIdentifier, Error> {
    Ok(AuthorityKeyIdentifier {
        key_identifier: Some(OctetString::new(key_identifier).map_err(Error::encoding)?),
        authority_cert_issuer: None,
        authority_cert_serial_number: None,
    })
}

fn ski(key_identifier: &[u8]) -> Result<SubjectKeyIdentifier, Error> {
    Ok(SubjectKeyIdentifier(
        OctetString::new(key_identifier).map_err(Error::encoding)?,
    ))
}

/// A self-signed root CA certificate: CA:TRUE (critical), keyCertSign|cRLSign
/// (critical), SKI.
pub(crate) fn make_root(key: &SigningKey, now: SystemTime) -> Result<CaCert, Error> {
    let spki = spki_of(key)?;
    let kid = key_id(&spki);
    let name = ca_name(&format!("tfmprov Root CA {}", hex::encode(&kid[..4])))?;
    let mut b = CertificateBuilder::new(
        Profile::Manual { issuer: None },
        serial_number()?,
        validity(now - BACKDATE, now + ROOT_VALIDITY)?,
        name,
        spki,
        key,
    )
    .map_err(Error::encoding)?;
    b.add_extension(&BasicConstraints {
        ca: true,
        path_len_constraint: None,
    })
    .map_err(Error::encoding)?;
    b.add_extension(&KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign))
        .map_err(Error::encoding)?;
    b.add_extension(&ski(&kid)?).map_err(Error::encoding)?;
    CaCert::from_cert(b.build::<DerSignature>().map_err(Error::encoding)?)
}

/// An intermediate CA certificate signed by the root: CA:TRUE, pathlen:0 (critical),
/// keyCertSign|cRLSign (critical), SKI, AKI = root's SKI.
pub(crate) fn make_intermediate(
    root: &CaCert,
    root_key: &SigningKey,
    key: &SigningKey,
    now: SystemTime,
) -> Result<CaCert, Error> {
    let spki = spki_of(key)?;
    let kid = key_id(&spki);
    let name = ca_name(&format!(
        "tfmprov Intermediate CA {}",
        hex::encode(&kid[..4])
    ))?;
    let not_after = (now + INTERMEDIATE_VALIDITY).min(root.not_after());
    let mut b = CertificateBuilder::new(
        Profile::Manual {
            issuer: Some(root.subject().clone()),
        },
        serial_number()?,
        validity(now - BACKDATE, not_after)?,
        name,
        spki,
        root_key,
    )
    .map_err(Error::encoding)?;
    b.add_extension(&BasicConstraints {
        ca: true,
        path_len_constraint: Some(0),
    })
    .map_err(Error::encoding)?;
    b.add_extension(&KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign))
        .map_err(Error::encoding)?;
    b.add_extension(&ski(&kid)?).map_err(Error::encoding)?;
    b.add_extension(&aki(&root.ski)?).map_err(Error::encoding)?;
    CaCert::from_cert(b.build::<DerSignature>().map_err(Error::encoding)?)
}

/// A device (leaf) certificate for a checked CSR, signed by the intermediate.
///
/// Validity: `now - 5 min` .. `now + validity_days`, cut at the intermediate's
/// notAfter. Extensions: basicConstraints CA:FALSE (critical), keyUsage
/// digitalSignature (critical), extKeyUsage clientAuth (a device, an
/// operator) or serverAuth with a subjectAltName of the names (a server),
/// SKI, AKI = intermediate's SKI.
pub(crate) fn make_leaf(
    issuer: &CaCert,
    issuer_key: &SigningKey,
    csr: &CheckedCsr,
    profile: &LeafProfile,
    validity_days: u32,
    now: SystemTime,
) -> Result<(Certificate, [u8; 16]), Error> {
    let issuer_end = issuer.not_after();
    if issuer_end <= now {
        return Err(Error::state(
            "intermediate certificate",
            "the intermediate CA certificate has expired",
        ));
    }
    let not_after = (now + Duration::from_secs(u64::from(validity_days) * DAY)).min(issuer_end);
    let serial = random_serial()?;
    // An operator certificate's subject is the CA's, not the request's: the
    // role (OU) is what servers check before an administrator may bind it.
    let subject = match profile {
        LeafProfile::Operator(name) => format!("CN={name},OU={}", tfmprov_auth::OPERATOR_OU)
            .parse::<x509_cert::name::Name>()
            .map_err(Error::encoding)?,
        _ => csr.subject.clone(),
    };
    let mut b = CertificateBuilder::new(
        Profile::Manual {
            issuer: Some(issuer.subject().clone()),
        },
        SerialNumber::new(&serial).map_err(Error::encoding)?,
        validity(now - BACKDATE, not_after)?,
        subject,
        csr.spki.clone(),
        issuer_key,
    )
    .map_err(Error::encoding)?;
    b.add_extension(&BasicConstraints {
        ca: false,
        path_len_constraint: None,
    })
    .map_err(Error::encoding)?;
    b.add_extension(&KeyUsage(KeyUsages::DigitalSignature.into()))
        .map_err(Error::encoding)?;
    match profile {
        LeafProfile::Device | LeafProfile::Operator(_) => b
            .add_extension(&NonCriticalEku(ExtendedKeyUsage(vec![ID_KP_CLIENT_AUTH])))
            .map_err(Error::encoding)?,
        LeafProfile::Server(names) => {
            b.add_extension(&NonCriticalEku(ExtendedKeyUsage(vec![ID_KP_SERVER_AUTH])))
                .map_err(Error::encoding)?;
            let general = names
                .iter()
                .map(|n| match n {
                    ServerName::Dns(d) => der::asn1::Ia5String::new(d).map(GeneralName::DnsName),
                    ServerName::Ip(std::net::IpAddr::V4(a)) => OctetString::new(a.octets().to_vec()).map(GeneralName::IpAddress),
                    ServerName::Ip(std::net::IpAddr::V6(a)) => OctetString::new(a.octets().to_vec()).map(GeneralName::IpAddress),
                })
                .collect::<der::Result<Vec<_>>>()
                .map_err(Error::encoding)?;
            b.add_extension(&SubjectAltName(general)).map_err(Error::encoding)?;
        }
    }
    b.add_extension(&ski(&key_id(&csr.spki))?)
        .map_err(Error::encoding)?;
    b.add_extension(&aki(&issuer.ski)?)
        .map_err(Error::encoding)?;
    let cert = b.build::<DerSignature>().map_err(Error::encoding)?;
    Ok((cert, serial))
}

/// What a leaf is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeafProfile {
    /// A device: clientAuth (MQTT with mutual TLS), no names.
    Device,
    /// A TLS server (the broker, an HTTPS API): serverAuth, these names.
    Server(Vec<ServerName>),
    /// An operator (a provisioning station): clientAuth, subject
    /// `CN=<name>, OU=tfmprov operator` whatever the request's
    /// ([`tfmprov_auth::OPERATOR_OU`]); the request's CN must be the name.
    Operator(String),
}

/// A name in a server certificate's subjectAltName.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerName {
    /// dNSName (lower case, `[a-z0-9-]` labels joined by dots; a leading `*.` allowed).
    Dns(String),
    /// iPAddress.
    Ip(std::net::IpAddr),
}

impl ServerName {
    /// An IP address, or a host name of 1..=253 characters whose labels are
    /// 1..=63 of `[A-Za-z0-9-]` not starting or ending with `-` (a first
    /// label `*` allowed); anything else is refused with the reason.
    pub fn parse(s: &str) -> Result<ServerName, String> {
        if let Ok(ip) = s.parse::<std::net::IpAddr>() {
            return Ok(ServerName::Ip(ip));
        }
        let lower = s.to_ascii_lowercase();
        if lower.is_empty() || lower.len() > 253 {
            return Err(format!("{s:?} is not a host name or IP address"));
        }
        for (i, label) in lower.split('.').enumerate() {
            let ok = (i == 0 && label == "*")
                || (!label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
            if !ok {
                return Err(format!("{s:?} is not a host name or IP address"));
            }
        }
        Ok(ServerName::Dns(lower))
    }
}

/// extKeyUsage marked non-critical (x509-cert marks it critical; RFC 5280 4.2.1.12
/// allows either, and non-critical is what TLS stacks and other CAs expect).
struct NonCriticalEku(ExtendedKeyUsage);

impl const_oid::AssociatedOid for NonCriticalEku {
    const OID: ObjectIdentifier = <ExtendedKeyUsage as const_oid::AssociatedOid>::OID;
}

impl Encode for NonCriticalEku {
    fn encoded_len(&self) -> der::Result<der::Length> {
        self.0.encoded_len()
    }

    fn encode(&self, writer: &mut impl der::Writer) -> der::Result<()> {
        self.0.encode(writer)
    }
}

impl x509_cert::ext::AsExtension for NonCriticalEku {
    fn critical(&self, _subject: &Name, _extensions: &[x509_cert::ext::Extension]) -> bool {
        false
    }
}

/// The P-256 verifying key in a certificate, or why there is none.
pub(crate) fn p256_key_of(cert: &Certificate) -> Result<VerifyingKey, String> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid != ID_EC_PUBLIC_KEY {
        return Err("the certificate's key is not an EC key".into());
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    if curve != Some(SECP_256_R_1) {
        return Err("the certificate's key is not P-256".into());
    }
    let point = spki
        .subject_public_key
        .as_bytes()
        .ok_or("bad public key bit string")?;
    VerifyingKey::from_sec1_bytes(point).map_err(|_| "invalid P-256 public key".to_string())
}

/// Whether `cert_der` is signed (ecdsa-with-SHA256) by `issuer`.
pub(crate) fn signed_by(cert_der: &[u8], cert: &Certificate, issuer: &VerifyingKey) -> bool {
    if cert.signature_algorithm.oid != ECDSA_WITH_SHA_256 {
        return false;
    }
    let Ok(tbs) = crate::csr::signed_info_bytes(cert_der) else {
        return false;
    };
    let Some(sig) = cert.signature.as_bytes() else {
        return false;
    };
    let Ok(sig) = Signature::from_der(sig) else {
        return false;
    };
    issuer.verify(tbs, &sig).is_ok()
}

/// Whether the certificate has basicConstraints CA:TRUE.
pub(crate) fn is_ca(cert: &Certificate) -> bool {
    use const_oid::db::rfc5912::ID_CE_BASIC_CONSTRAINTS;
    cert.tbs_certificate
        .extensions
        .as_ref()
        .and_then(|exts| exts.iter().find(|e| e.extn_id == ID_CE_BASIC_CONSTRAINTS))
        .and_then(|e| BasicConstraints::from_der(e.extn_value.as_bytes()).ok())
        .is_some_and(|bc| bc.ca)
}

/// DER of a CMS (PKCS#7) SignedData "certs-only" bundle (RFC 5652 degenerate case,
/// as used by EST, RFC 7030): no content, no signers, just `certs`.
pub(crate) fn certs_only_pkcs7(certs: &[&Certificate]) -> Result<Vec<u8>, Error> {
    let choices: Vec<CertificateChoices> = certs
        .iter()
        .map(|c| CertificateChoices::Certificate((*c).clone()))
        .collect();
    let signed = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::new(),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_DATA,
            econtent: None,
        },
        certificates: Some(CertificateSet(
            SetOfVec::try_from(choices).map_err(Error::encoding)?,
        )),
        crls: None,
        signer_infos: SignerInfos(SetOfVec::new()),
    };
    let info = ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: Any::encode_from(&signed).map_err(Error::encoding)?,
    };
    info.to_der().map_err(Error::encoding)
}

/// PEM of one certificate's DER.
pub(crate) fn cert_pem(der_bytes: &[u8]) -> Result<String, Error> {
    der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, der_bytes)
        .map_err(Error::encoding)
}

/// A certificate revocation list (RFC 5280 section 5, v2) signed by the
/// issuing CA with ecdsa-with-SHA256: `revoked` holds (serial, revocation
/// time in Unix seconds), `number` goes into the CRL number extension (it
/// must grow from one CRL to the next), and the authority key identifier
/// names the signing key, as `openssl verify -crl_check` expects.
pub(crate) fn make_crl(
    issuer: &CaCert,
    key: &SigningKey,
    revoked: &[(Vec<u8>, u64)],
    this_update: SystemTime,
    next_update: SystemTime,
    number: u64,
) -> Result<Vec<u8>, Error> {
    use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
    use x509_cert::ext::pkix::{AuthorityKeyIdentifier, CrlNumber};
    use x509_cert::ext::{AsExtension, Extension};
    let alg = spki::AlgorithmIdentifierOwned { oid: ECDSA_WITH_SHA_256, parameters: None };
    let entries = revoked
        .iter()
        .map(|(serial, at)| {
            Ok(RevokedCert {
                serial_number: SerialNumber::new(serial).map_err(Error::encoding)?,
                revocation_date: time(SystemTime::UNIX_EPOCH + Duration::from_secs(*at))?,
                crl_entry_extensions: None,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let issuer_name = issuer.cert.tbs_certificate.subject.clone();
    let aki = AuthorityKeyIdentifier {
        key_identifier: Some(OctetString::new(issuer.ski.clone()).map_err(Error::encoding)?),
        authority_cert_issuer: None,
        authority_cert_serial_number: None,
    };
    let number = CrlNumber(der::asn1::Uint::new(&number.to_be_bytes()).map_err(Error::encoding)?);
    let extensions: Vec<Extension> = vec![
        aki.to_extension(&issuer_name, &[]).map_err(Error::encoding)?,
        number.to_extension(&issuer_name, &[]).map_err(Error::encoding)?,
    ];
    let tbs = TbsCertList {
        version: x509_cert::Version::V2,
        signature: alg.clone(),
        issuer: issuer_name,
        this_update: time(this_update)?,
        next_update: Some(time(next_update)?),
        revoked_certificates: (!entries.is_empty()).then_some(entries),
        crl_extensions: Some(extensions),
    };
    let tbs_der = tbs.to_der().map_err(Error::encoding)?;
    let sig: DerSignature = p256::ecdsa::signature::Signer::sign(key, &tbs_der);
    let crl = CertificateList {
        tbs_cert_list: tbs,
        signature_algorithm: alg,
        signature: der::asn1::BitString::from_bytes(sig.as_bytes()).map_err(Error::encoding)?,
    };
    crl.to_der().map_err(Error::encoding)
}
