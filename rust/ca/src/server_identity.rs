//! A TLS server's identity kept in a state directory: a P-256 key and a
//! server certificate from the project's CA, made at the first start and
//! reused after. The CA's own HTTPS listener gets its certificate from the
//! CA in-process ([`crate::Ca::server_identity`]); the aggregator's (HTTPS,
//! broker) ask the CA over HTTP (`POST /v1/csr?profile=server`).

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use der::{Decode, Encode};
use p256::ecdsa::SigningKey;
use p256::pkcs8::EncodePrivateKey;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::error::Error;

/// A server's certificate chain and its listener's rustls configuration.
pub struct ServerIdentity {
    /// The chain (PEM: leaf, intermediate), as clients are given it.
    pub chain_pem: String,
    /// Its rustls configuration: the chain, the key, and client
    /// certificates as asked.
    pub config: Arc<rustls::ServerConfig>,
}

/// A CSR (DER) for `key` with subject CN=`cn`, signed ecdsa-with-SHA256.
pub fn csr(key: &SigningKey, cn: &str) -> Result<Vec<u8>, Error> {
    use x509_cert::builder::{Builder, RequestBuilder};
    let name = x509_cert::name::Name::from_str(&format!("CN={cn}")).map_err(Error::encoding)?;
    let req = RequestBuilder::new(name, key).map_err(Error::encoding)?;
    req.build::<p256::ecdsa::DerSignature>().map_err(Error::encoding)?.to_der().map_err(Error::encoding)
}

/// The identity at `key_path` + `cert_path`. When neither file exists, a
/// new key is made and `issue` turns its CSR (CN `cn`) into a PEM chain;
/// one without the other is refused. Either way the chain must verify to
/// `ca_root_pem` as a TLS server named `names[0]` and belong to the key.
pub fn open(
    key_path: &Path,
    cert_path: &Path,
    cn: &str,
    names: &[String],
    ca_root_pem: &str,
    client_auth: impl FnOnce(Arc<rustls::RootCertStore>) -> tfmprov_tls::ClientAuth,
    issue: impl FnOnce(&[u8]) -> Result<String, String>,
) -> Result<ServerIdentity, Error> {
    let state = |p: &Path, why: String| Error::state(p, why);
    let (chain_pem, key) = match (key_path.exists(), cert_path.exists()) {
        (true, true) => {
            let pem = std::fs::read_to_string(cert_path).map_err(|e| Error::io(cert_path, e))?;
            (pem, crate::store::read_key(key_path)?)
        }
        (false, false) => {
            let key = SigningKey::random(&mut rand_core::OsRng);
            let chain = issue(&csr(&key, cn)?).map_err(|why| state(cert_path, format!("cannot have it issued: {why}")))?;
            crate::store::write_key(key_path, &key)?;
            crate::store::write_file(cert_path, chain.as_bytes(), 0o644)?;
            tracing::info!(cn, ?names, path = %cert_path.display(), "server certificate issued");
            (chain, key)
        }
        _ => {
            return Err(state(
                cert_path,
                format!("exists without {} or the reverse: restore the pair or remove both", key_path.display()),
            ))
        }
    };
    let chain = tfmprov_tls::pem_certificates(&chain_pem).map_err(|e| state(cert_path, e.to_string()))?;
    let roots = tfmprov_tls::roots(&tfmprov_tls::pem_certificates(ca_root_pem).map_err(|e| Error::Config(format!("CA root: {e}")))?)
        .map_err(|e| Error::Config(format!("CA root: {e}")))?;
    check(&chain, &roots, names, &key).map_err(|why| state(cert_path, why))?;
    let der = p256::SecretKey::from(&key).to_pkcs8_der().map_err(Error::encoding)?;
    let config = tfmprov_tls::server_config(chain, PrivateKeyDer::Pkcs8(der.as_bytes().to_vec().into()), client_auth(roots))
        .map_err(|e| state(cert_path, e.to_string()))?;
    Ok(ServerIdentity { chain_pem, config: Arc::new(config) })
}

/// The chain verifies as a TLS server certificate for `names[0]` to the
/// roots, with rustls' verifier (what clients run), and is `key`'s.
fn check(chain: &[CertificateDer<'static>], roots: &Arc<rustls::RootCertStore>, names: &[String], key: &SigningKey) -> Result<(), String> {
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots.clone(), tfmprov_tls::provider())
        .build()
        .map_err(|e| e.to_string())?;
    let name = names.first().ok_or("no server name")?;
    let server_name = ServerName::try_from(name.clone()).map_err(|e| format!("{name:?}: {e}"))?;
    verifier
        .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], UnixTime::now())
        .map_err(|e| format!("does not verify as {name:?} to the CA root: {e}"))?;
    let leaf = x509_cert::Certificate::from_der(&chain[0]).map_err(|e| e.to_string())?;
    let point = leaf.tbs_certificate.subject_public_key_info.subject_public_key.raw_bytes();
    if point != key.verifying_key().to_encoded_point(false).as_bytes() {
        return Err("is not the certificate of its key (public keys differ)".into());
    }
    Ok(())
}
