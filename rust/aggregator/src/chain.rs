//! Registration chain check: path validation with `rustls-webpki`
//! (signatures, validity, basicConstraints and path length, extended key
//! usage clientAuth when present), then keyUsage policy, leaf CN and leaf
//! key read with `x509-cert`.

use const_oid::db::rfc5280::{ID_CE_KEY_USAGE};
use const_oid::db::rfc5912::{ID_EC_PUBLIC_KEY, SECP_256_R_1};
use const_oid::db::rfc4519::CN;
use der::asn1::{Ia5StringRef, PrintableStringRef, Utf8StringRef};
use der::{Decode, Encode};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use tfmprov_cose::{kid_from_spki_digest, p256_spki_der, valid_device_id, Kid, P256_POINT_LEN};
use x509_cert::ext::pkix::KeyUsage;
use x509_cert::Certificate;

use crate::error::{Error, Refusal};

/// Most certificates accepted in one chain (leaf + intermediates + optional root).
pub const MAX_CHAIN_CERTS: usize = 8;

/// The configured trust anchors (the `--ca-root` file: one or more root certificates).
pub(crate) struct Roots {
    anchors: Vec<TrustAnchor<'static>>,
}

impl Roots {
    pub(crate) fn from_pem(pem: &str) -> Result<Roots, Error> {
        let mut anchors = Vec::new();
        for der in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let der = der.map_err(|e| Error::Config(format!("CA root file: {e}")))?;
            let anchor = webpki::anchor_from_trusted_cert(&der)
                .map_err(|e| Error::Config(format!("CA root certificate unusable: {e}")))?;
            anchors.push(anchor.to_owned());
        }
        if anchors.is_empty() {
            return Err(Error::Config("CA root file holds no PEM CERTIFICATE".into()));
        }
        Ok(Roots { anchors })
    }
}

/// What a verified registration chain gives the registry.
#[derive(Clone, Debug)]
pub(crate) struct VerifiedLeaf {
    /// The leaf's SubjectPublicKeyInfo DER (91 bytes for P-256).
    pub spki_der: Vec<u8>,
    /// The uncompressed P-256 point.
    pub point: [u8; P256_POINT_LEN],
    /// First 8 bytes of SHA-256(spki_der).
    pub kid: Kid,
    /// The chain as received, normalised to PEM (leaf first).
    pub chain_pem: String,
    /// The leaf's notAfter (seconds since the epoch).
    pub not_after: u64,
}

/// Verify `chain_pem` (leaf first, then intermediates; the root may be
/// included) for `device_id` at time `now`.
pub(crate) fn verify_chain(
    roots: &Roots,
    device_id: &str,
    chain_pem: &str,
    now: UnixTime,
) -> Result<VerifiedLeaf, Refusal> {
    if !valid_device_id(device_id) {
        return Err(Refusal::BadDeviceId(device_id.chars().take(80).collect()));
    }
    verify_leaf_chain(roots, Some(device_id), chain_pem, now, |ku| ku.digital_signature(), "digitalSignature")
}

/// Path validation and leaf checks shared by device registration and the
/// cloud identity: `expected_cn` (if any) must be the leaf's only CN, the
/// leaf's keyUsage (if present) must satisfy `leaf_ku` (`leaf_ku_name` in
/// the refusal), the leaf key must be a canonical P-256 key.
pub(crate) fn verify_leaf_chain(
    roots: &Roots,
    expected_cn: Option<&str>,
    chain_pem: &str,
    now: UnixTime,
    leaf_ku: impl Fn(&KeyUsage) -> bool,
    leaf_ku_name: &str,
) -> Result<VerifiedLeaf, Refusal> {
    let mut certs = Vec::new();
    for der in CertificateDer::pem_slice_iter(chain_pem.as_bytes()) {
        let der = der.map_err(|e| Refusal::BadChain(format!("PEM: {e}")))?;
        certs.push(der);
        if certs.len() > MAX_CHAIN_CERTS {
            return Err(Refusal::BadChain(format!("more than {MAX_CHAIN_CERTS} certificates")));
        }
    }
    let Some((leaf_der, rest)) = certs.split_first() else {
        return Err(Refusal::BadChain("no PEM CERTIFICATE in the chain".into()));
    };

    // Path validation: webpki, never hand-written checks.
    let ee = webpki::EndEntityCert::try_from(leaf_der)
        .map_err(|e| Refusal::BadChain(format!("leaf: {e}")))?;
    let path = ee
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &roots.anchors,
            rest,
            now,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|e| Refusal::Untrusted(format!("{e}")))?;

    // keyUsage, which webpki does not enforce: leaf may sign, CAs may sign certificates.
    let leaf = Certificate::from_der(leaf_der)
        .map_err(|e| Refusal::BadChain(format!("leaf does not parse: {e}")))?;
    check_key_usage(&leaf, "leaf", leaf_ku, leaf_ku_name)?;
    for (i, ca) in path.intermediate_certificates().enumerate() {
        let ca = Certificate::from_der(ca.der().as_ref())
            .map_err(|e| Refusal::BadChain(format!("intermediate does not parse: {e}")))?;
        let what = format!("intermediate {}", i + 1);
        check_key_usage(&ca, &what, |ku| ku.key_cert_sign(), "keyCertSign")?;
    }

    if let Some(cn) = expected_cn {
        check_cn(&leaf, cn)?;
    }

    let spki = &leaf.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid != ID_EC_PUBLIC_KEY {
        return Err(Refusal::KeyNotP256(format!("algorithm {}", spki.algorithm.oid)));
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<const_oid::ObjectIdentifier>().ok());
    if curve != Some(SECP_256_R_1) {
        return Err(Refusal::KeyNotP256("curve is not prime256v1".into()));
    }
    let point: [u8; P256_POINT_LEN] = spki
        .subject_public_key
        .as_bytes()
        .and_then(|b| <[u8; P256_POINT_LEN]>::try_from(b).ok())
        .filter(|p| p[0] == 0x04)
        .ok_or_else(|| Refusal::KeyNotP256("point is not 65-byte uncompressed".into()))?;
    let spki_der = spki
        .to_der()
        .map_err(|e| Refusal::BadChain(format!("leaf SPKI does not encode: {e}")))?;
    if spki_der != p256_spki_der(&point) {
        return Err(Refusal::KeyNotP256("SPKI is not the canonical P-256 encoding".into()));
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, &spki_der);
    let mut d = [0u8; 32];
    d.copy_from_slice(digest.as_ref());
    let kid = kid_from_spki_digest(&d);

    let not_after = leaf.tbs_certificate.validity.not_after.to_unix_duration().as_secs();
    let chain_pem = certs
        .iter()
        .map(|c| pem_of(c.as_ref()))
        .collect::<Vec<_>>()
        .join("");
    Ok(VerifiedLeaf { spki_der, point, kid, chain_pem, not_after })
}

fn check_key_usage(
    cert: &Certificate,
    what: &str,
    ok: impl Fn(&KeyUsage) -> bool,
    needed: &str,
) -> Result<(), Refusal> {
    let exts = cert.tbs_certificate.extensions.as_deref().unwrap_or(&[]);
    for ext in exts.iter().filter(|e| e.extn_id == ID_CE_KEY_USAGE) {
        let ku = KeyUsage::from_der(ext.extn_value.as_bytes())
            .map_err(|e| Refusal::BadChain(format!("{what}: keyUsage does not parse: {e}")))?;
        if !ok(&ku) {
            return Err(Refusal::KeyUsage(format!("{what} keyUsage lacks {needed}")));
        }
    }
    Ok(())
}

/// Every CN of a certificate's subject, in order; a CN that is not a
/// UTF8/Printable/IA5 string is an error.
pub(crate) fn common_names(cert: &Certificate) -> Result<Vec<String>, Refusal> {
    let mut cns = Vec::new();
    for rdn in cert.tbs_certificate.subject.0.iter() {
        for atv in rdn.0.iter().filter(|a| a.oid == CN) {
            let v = atv
                .value
                .decode_as::<Utf8StringRef<'_>>()
                .map(|s| s.as_str().to_owned())
                .or_else(|_| atv.value.decode_as::<PrintableStringRef<'_>>().map(|s| s.as_str().to_owned()))
                .or_else(|_| atv.value.decode_as::<Ia5StringRef<'_>>().map(|s| s.as_str().to_owned()))
                .map_err(|_| Refusal::CnMismatch("CN is not a UTF8/Printable/IA5 string".into()))?;
            cns.push(v);
        }
    }
    Ok(cns)
}

fn check_cn(leaf: &Certificate, device_id: &str) -> Result<(), Refusal> {
    let cns = common_names(leaf)?;
    match cns.as_slice() {
        [] => Err(Refusal::CnMismatch("leaf subject has no CN".into())),
        [cn] if cn == device_id => Ok(()),
        [cn] => Err(Refusal::CnMismatch(format!(
            "CN {:?} != device id {device_id:?}",
            cn.chars().take(80).collect::<String>()
        ))),
        _ => Err(Refusal::CnMismatch("leaf subject has more than one CN".into())),
    }
}

/// PEM of one DER certificate (64-column base64, LF).
pub(crate) fn pem_of(der: &[u8]) -> String {
    der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, der)
        .unwrap_or_default()
}
