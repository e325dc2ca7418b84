//! The aggregator's TLS identities (the embedded broker's listener, HTTPS):
//! a P-256 key and a server certificate issued by the project's CA
//! (`POST /v1/csr?profile=server`, scope `servers`) at the first start, kept
//! in the state directory and reused. Devices check the broker's chain to
//! the CA root and pin its key (docs/security.md).
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

use tfmprov_ca::server_identity::ServerIdentity;

use crate::config::BrokerTls;
use crate::error::Error;

/// CN of the broker's certificate.
pub const BROKER_CN: &str = "tfmprov-broker";
/// The broker's private key in the state directory (PEM, mode 0600).
pub const BROKER_KEY_FILE: &str = "broker.key";
/// Its certificate chain (PEM: leaf, intermediate).
pub const BROKER_CERT_FILE: &str = "broker.crt";
/// The broker's identity ([`tfmprov_ca::server_identity`]): `broker.key`
/// and `broker.crt`, issued at `tls.ca_url` at the first start; clients
/// must present a certificate that verifies to the CA root(s).
pub(crate) fn open(state_dir: &Path, tls: &BrokerTls, ca_root_pem: &str, ca_token: &str) -> Result<ServerIdentity, Error> {
    let required = tfmprov_tls::ClientAuth::Required;
    server_identity(state_dir, (BROKER_KEY_FILE, BROKER_CERT_FILE), BROKER_CN, &tls.names, tls.ca_url.as_deref(), ca_root_pem, ca_token, required)
}

/// A TLS server identity of the aggregator in `state_dir` (`files`: key,
/// certificate), issued by the CA at `ca_url` (`POST /v1/csr?profile=server`,
/// `ca_token` of scope `servers`) when there is none yet.
#[allow(clippy::too_many_arguments)]
pub(crate) fn server_identity(
    state_dir: &Path,
    (key_file, cert_file): (&str, &str),
    cn: &str,
    names: &[String],
    ca_url: Option<&str>,
    ca_root_pem: &str,
    ca_token: &str,
    client_auth: impl FnOnce(Arc<rustls::RootCertStore>) -> tfmprov_tls::ClientAuth,
) -> Result<ServerIdentity, Error> {
    let issue = |csr: &[u8]| {
        let url = ca_url.ok_or_else(|| format!("no CA to issue it (--ca-url), and no {key_file} + {cert_file} in the state directory"))?;
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        tfmprov_ca::client::submit_server_csr(url, ca_token, csr, &names, crate::cloud::ENROLL_TIMEOUT).map_err(|e| format!("{url}: {e}"))
    };
    tfmprov_ca::server_identity::open(&state_dir.join(key_file), &state_dir.join(cert_file), cn, names, ca_root_pem, client_auth, issue)
        .map_err(|e| Error::Config(format!("{cn} TLS identity: {e}")))
}

/// Serves devices on `listener` until the task is aborted: each connection
/// whose handshake succeeded (a device certificate from the CA) is joined to
/// a new connection to the broker's plain listener `upstream`.
pub(crate) async fn terminate(mut listener: tfmprov_tls::TlsListener, upstream: SocketAddr) {
    loop {
        let (mut tls, peer) = axum::serve::Listener::accept(&mut listener).await;
        tokio::spawn(async move {
            let cn = peer.client_certificate.as_ref().and_then(|c| leaf_cn(c));
            let peer = peer.addr;
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

use der::Decode;
