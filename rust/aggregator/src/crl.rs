//! Certificate revocation (issue 13): the aggregator fetches the CA's CRL
//! (`GET {ca}/v1/crl`, DER) every `--crl-interval` (60 s by default), checks
//! its signature with the intermediate that issued it, and revokes every
//! registered device whose certificate it lists: the device's messages are
//! then refused (code 3, revoked) within one interval of the CA's
//! revocation. A registration whose certificate the last CRL lists is
//! refused (409). Revocation only ever adds: a CRL that does not verify, or
//! cannot be fetched, changes nothing (and is logged).
//!
//! The intermediates trusted to sign a CRL are those of the registered
//! chains, which verified to the configured root when they were registered.

use std::collections::HashSet;

use der::{Decode, Encode};
use p256::ecdsa::signature::Verifier;
use x509_cert::crl::CertificateList;
use x509_cert::Certificate;

/// A CRL whose signature verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Crl {
    /// The issuer's name, DER.
    pub issuer: Vec<u8>,
    /// The revoked serials (their DER content bytes).
    pub serials: HashSet<Vec<u8>>,
    /// The CRL number, if it has one.
    pub number: Option<u64>,
}

impl Crl {
    /// Whether `leaf` (its issuer and serial) is revoked by this CRL.
    pub fn revokes(&self, leaf: &Certificate) -> bool {
        leaf.tbs_certificate.issuer.to_der().is_ok_and(|n| n == self.issuer)
            && self.serials.contains(leaf.tbs_certificate.serial_number.as_bytes())
    }
}

/// Why a CRL is not applied.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// No registered chain has the CRL's issuer: nothing it could revoke
    /// is registered (the normal case before the first registration).
    UnknownIssuer(String),
    /// The CRL is malformed or does not verify.
    Bad(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::UnknownIssuer(n) => write!(f, "CRL issuer {n} is not an intermediate of a registered chain"),
            Refused::Bad(why) => f.write_str(why),
        }
    }
}

impl From<String> for Refused {
    fn from(s: String) -> Refused {
        Refused::Bad(s)
    }
}

/// Parses `der` and checks its signature (ecdsa-with-SHA256) with the
/// public key of the one of `issuers` whose subject is the CRL's issuer.
pub(crate) fn verify(der: &[u8], issuers: &[Certificate]) -> Result<Crl, Refused> {
    if der.len() > 1 << 20 {
        return Err(format!("CRL of {} bytes is larger than 1 MiB", der.len()).into());
    }
    let crl = CertificateList::from_der(der).map_err(|e| format!("not a DER CRL: {e}"))?;
    if crl.signature_algorithm.oid != const_oid::db::rfc5912::ECDSA_WITH_SHA_256 {
        return Err(format!("CRL signed with {}, not ecdsa-with-SHA256", crl.signature_algorithm.oid).into());
    }
    let tbs = &crl.tbs_cert_list;
    let issuer = issuers
        .iter()
        .find(|c| c.tbs_certificate.subject == tbs.issuer)
        .ok_or_else(|| Refused::UnknownIssuer(tbs.issuer.to_string()))?;
    let spki = &issuer.tbs_certificate.subject_public_key_info;
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes())
        .map_err(|_| "the CRL issuer's key is not P-256".to_owned())?;
    let sig = p256::ecdsa::DerSignature::from_bytes(crl.signature.raw_bytes()).map_err(|_| "CRL signature is not DER ECDSA".to_owned())?;
    let tbs_der = tbs.to_der().map_err(|e| format!("CRL: {e}"))?;
    key.verify(&tbs_der, &sig).map_err(|_| "CRL signature does not verify with its issuer's key".to_owned())?;
    let number = tbs.crl_extensions.as_ref().and_then(|exts| {
        exts.iter().find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_CRL_NUMBER).and_then(|e| {
            let n = der::asn1::Uint::from_der(e.extn_value.as_bytes()).ok()?;
            let b = n.as_bytes();
            (b.len() <= 8).then(|| b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
        })
    });
    let serials = tbs
        .revoked_certificates
        .iter()
        .flatten()
        .map(|r| r.serial_number.as_bytes().to_vec())
        .collect();
    Ok(Crl { issuer: tbs.issuer.to_der().map_err(|e| format!("CRL issuer: {e}"))?, serials, number })
}

/// The leaf and the intermediate of a registered PEM chain.
pub(crate) fn leaf_and_issuer(chain_pem: &str) -> Option<(Certificate, Option<Certificate>)> {
    let mut certs = Certificate::load_pem_chain(chain_pem.as_bytes()).ok()?.into_iter();
    let leaf = certs.next()?;
    Some((leaf, certs.next()))
}


/// The last CRL that verified, shared by the refresher and the registration
/// check.
pub(crate) type Latest = std::sync::Arc<std::sync::RwLock<Option<Crl>>>;

/// One round (blocking): fetch the CRL at `url`, verify it, keep it as the
/// latest, and revoke each registered device it lists (audited as actor
/// `crl`). The devices revoked now.
pub(crate) fn refresh(
    url: &str,
    registry: &crate::registry::Registry,
    auth: &tfmprov_auth::Auth,
    latest: &Latest,
) -> Result<Vec<String>, String> {
    let agent = tfmprov_ca::client::agent(std::time::Duration::from_secs(10));
    let mut resp = agent.get(url).call().map_err(|e| format!("fetching {url}: {e}"))?;
    if resp.status() != 200 {
        return Err(format!("fetching {url}: HTTP {}", resp.status()));
    }
    let der = resp.body_mut().with_config().limit(1 << 20).read_to_vec().map_err(|e| format!("reading {url}: {e}"))?;
    // Each registered chain read and parsed once: its intermediate may sign
    // the CRL, its leaf may be on it.
    let rows = registry.with_db(crate::store::all_devices).map_err(|e| e.to_string())?;
    let parsed: Vec<_> = rows.iter().filter_map(|r| Some((r, leaf_and_issuer(&r.chain_pem)?))).collect();
    let mut seen = HashSet::new();
    let issuers: Vec<Certificate> = parsed
        .iter()
        .filter_map(|(_, (_, issuer))| issuer.clone())
        .filter(|c| c.to_der().is_ok_and(|d| seen.insert(d)))
        .collect();
    let crl = match verify(&der, &issuers) {
        Ok(c) => c,
        Err(Refused::UnknownIssuer(n)) => {
            tracing::debug!(issuer = %n, "CRL: no registered device has a certificate from its issuer");
            return Ok(Vec::new());
        }
        Err(Refused::Bad(why)) => return Err(why),
    };
    *latest.write().unwrap_or_else(|p| p.into_inner()) = Some(crl.clone());
    let mut revoked = Vec::new();
    for (row, (leaf, _)) in parsed.iter().filter(|(r, _)| r.revoked_at.is_none()) {
        if !crl.revokes(leaf) {
            continue;
        }
        if registry.revoke(&row.device_id).map_err(|e| e.to_string())?.is_some() {
            let serial = hex::encode(leaf.tbs_certificate.serial_number.as_bytes());
            tracing::warn!(device = %row.device_id, serial = %serial, crl = ?crl.number, "device revoked: the CA's CRL lists its certificate");
            let result = format!("ok: certificate serial {serial} is in the CA's CRL (number {})", crl.number.map_or("-".into(), |n| n.to_string()));
            if let Err(e) = auth.append("crl", "device.revoke", &row.device_id, &result) {
                tracing::error!(error = %e, "audit log: a CRL revocation not recorded");
            }
            revoked.push(row.device_id.clone());
        }
    }
    Ok(revoked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_unknown_issuers_are_refused() {
        let why = |r: Result<Crl, Refused>| r.unwrap_err().to_string();
        assert!(why(verify(b"", &[])).contains("not a DER CRL"));
        assert!(why(verify(&[0x30, 0x03, 0x02, 0x01, 0x00], &[])).contains("not a DER CRL"));
        assert!(why(verify(&vec![0u8; (1 << 20) + 1], &[])).contains("larger"));
    }
}
