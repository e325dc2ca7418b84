//! The embedded broker's TLS listener: a P-256 key and a server certificate
//! issued by the project's CA (`POST /v1/csr?profile=server`, scope
//! `servers`) at the first start, kept in the state directory and reused;
//! devices check its chain to the CA root and pin its key (docs/security.md).
//!
//! rustls terminates TLS here, in front of rumqttd's plain listener, rather
//! than in rumqttd: rumqttd's own client-certificate check (feature
//! `verify-client-cert`) takes the certificate's O as a tenant name and
//! drops every client whose O is not alphanumeric ("tfmprov demo"), and
//! it reads a single root. Here the client certificate is checked with the
//! same rustls verifier as everywhere else, and the device's CN is logged.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rand_core::OsRng;

use crate::config::BrokerTls;
use crate::error::Error;

/// CN of the broker's certificate.
pub const BROKER_CN: &str = "tfmprov-broker";
/// The broker's private key in the state directory (PEM, mode 0600).
pub const BROKER_KEY_FILE: &str = "broker.key";
/// Its certificate chain (PEM: leaf, intermediate).
pub const BROKER_CERT_FILE: &str = "broker.crt";
/// The broker's identity: the chain devices are given, and the listener's
/// rustls configuration (that chain, its key, client certificates required
/// that verify to the CA root(s)).
pub(crate) struct Identity {
    pub chain_pem: String,
    pub config: Arc<rustls::ServerConfig>,
}

/// Time a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn err(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Broker(format!("{}: {what}", path.display()))
}

/// The identity in `state_dir`, issued at `tls.ca_url` with `ca_token` when
/// there is none yet. Its chain must verify to the configured roots for a
/// TLS server named `tls.names[0]`.
pub(crate) fn open(state_dir: &Path, tls: &BrokerTls, ca_root_pem: &str, ca_token: &str) -> Result<Identity, Error> {
    let (key_path, cert_path) = (state_dir.join(BROKER_KEY_FILE), state_dir.join(BROKER_CERT_FILE));
    let root = tfmprov_tls::pem_certificates(ca_root_pem).map_err(|e| Error::Config(format!("CA root: {e}")))?;
    let (chain_pem, secret) = match (key_path.exists(), cert_path.exists()) {
        (true, true) => (
            std::fs::read_to_string(&cert_path).map_err(|e| err(&cert_path, e))?,
            crate::cloud::read_key(&key_path)?,
        ),
        (false, false) => {
            let ca_url = tls.ca_url.as_deref().ok_or_else(|| {
                Error::Config(format!(
                    "the broker's TLS listener needs {} and {} in the state directory, or a CA to issue them (--ca-url)",
                    BROKER_KEY_FILE, BROKER_CERT_FILE
                ))
            })?;
            let secret = p256::SecretKey::random(&mut OsRng);
            let csr = crate::cloud::csr_for(&secret, BROKER_CN)?;
            let names: Vec<&str> = tls.names.iter().map(String::as_str).collect();
            let chain = tfmprov_ca::client::submit_server_csr(ca_url, ca_token, &csr, &names, crate::cloud::ENROLL_TIMEOUT)
                .map_err(|e| Error::Broker(format!("the broker's certificate from {ca_url}: {e}")))?;
            crate::cloud::write_key(&key_path, &secret)?;
            crate::cloud::write_file(&cert_path, chain.as_bytes(), 0o644)?;
            tracing::info!(ca_url, names = ?tls.names, "broker TLS certificate issued");
            (chain, secret)
        }
        _ => {
            return Err(Error::Config(format!(
                "{} without {} (or the reverse): restore the pair or remove both",
                key_path.display(),
                cert_path.display()
            )))
        }
    };
    let chain = tfmprov_tls::pem_certificates(&chain_pem).map_err(|e| err(&cert_path, e))?;
    let roots = tfmprov_tls::roots(&root).map_err(|e| Error::Config(format!("CA root: {e}")))?;
    check(&chain, &roots, &tls.names, &secret, &key_path).map_err(|e| err(&cert_path, e))?;
    let key = secret
        .to_pkcs8_der()
        .map_err(|e| err(&key_path, format!("cannot encode the key: {e}")))?;
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(key.as_bytes().to_vec().into());
    let config = tfmprov_tls::server_config(chain, key, tfmprov_tls::ClientAuth::Required(roots))
        .map_err(|e| Error::Config(format!("broker TLS: {e}")))?;
    Ok(Identity { chain_pem, config: Arc::new(config) })
}

/// Accepts TLS connections on `listener` until the task is aborted; each one
/// whose handshake succeeds (a device certificate from the CA) is joined to
/// a new connection to the broker's plain listener `upstream`.
pub(crate) async fn terminate(listener: tokio::net::TcpListener, config: Arc<rustls::ServerConfig>, upstream: SocketAddr) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: back off, keep serving.
                tracing::warn!(error = %e, "broker TLS listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let mut tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "broker TLS: handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::info!(%peer, "broker TLS: handshake timed out");
                    return;
                }
            };
            let cn = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| leaf_cn(c));
            tracing::debug!(%peer, cn = ?cn, "broker TLS: device connected");
            let mut up = match tokio::net::TcpStream::connect(upstream).await {
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "broker TLS: the broker is unreachable");
                    return;
                }
            };
            let _ = up.set_nodelay(true);
            if let Err(e) = tokio::io::copy_bidirectional(&mut tls, &mut up).await {
                tracing::debug!(%peer, error = %e, "broker TLS: connection ended");
            }
        });
    }
}

/// The CN of a DER certificate, for the log.
fn leaf_cn(der: &[u8]) -> Option<String> {
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    crate::chain::common_names(&cert).ok()?.into_iter().next()
}

/// The chain verifies as a TLS server certificate for `names[0]` to the root,
/// and belongs to the key: checked with the same rustls code devices run.
fn check(
    chain: &[rustls_pki_types::CertificateDer<'static>],
    roots: &Arc<rustls::RootCertStore>,
    names: &[String],
    secret: &p256::SecretKey,
    key_path: &Path,
) -> Result<(), String> {
    use rustls::client::danger::ServerCertVerifier;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots.clone(), tfmprov_tls::provider())
        .build()
        .map_err(|e| e.to_string())?;
    let name = names.first().ok_or("no server name")?;
    let server_name = rustls_pki_types::ServerName::try_from(name.clone()).map_err(|e| format!("{name:?}: {e}"))?;
    verifier
        .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], rustls_pki_types::UnixTime::now())
        .map_err(|e| format!("does not verify as {name:?} to the CA root: {e}"))?;
    let leaf = x509_cert::Certificate::from_der(&chain[0]).map_err(|e| e.to_string())?;
    let point = leaf.tbs_certificate.subject_public_key_info.subject_public_key.raw_bytes();
    if point != secret.public_key().to_sec1_bytes().as_ref() {
        return Err(format!("is not the certificate of {} (public keys differ)", key_path.display()));
    }
    Ok(())
}

use der::Decode;
use p256::pkcs8::EncodePrivateKey;
