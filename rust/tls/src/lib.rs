//! TLS for tfmprov's host programs, on rustls with the *ring* provider.
//!
//! * [`spki_sha256`]: the pin of a certificate's key (seed 003: the server's
//!   key pinned by its fingerprint), the SHA-256 of its DER
//!   SubjectPublicKeyInfo, as `openssl x509 -pubkey | openssl pkey -pubin
//!   -outform DER | sha256sum` computes it.
//! * [`PinnedServerVerifier`]: the usual chain and name check *and* the pin.
//!   A broker with a valid certificate from the right CA but another key is
//!   refused.
//! * [`ExternalP256Key`]: a client (or server) key that never leaves where it
//!   is kept: rustls hands it the handshake transcript, a closure signs its
//!   SHA-256 (on a device, through PSA's `psa_sign_hash`).
//! * [`client_config`] and [`server_config`]: the configurations the
//!   simulator, the aggregator and the servers build from these.
//!
//! One provider for every configuration ([`provider`]): ECDSA P-256 keys,
//! TLS 1.2 and 1.3 with rustls' safe defaults.

use std::fmt;
use std::sync::Arc;

use der::{Decode, Encode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SigningKey, SingleCertAndKey};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureAlgorithm, SignatureScheme};
use sha2::{Digest, Sha256};

pub mod https;
#[cfg(test)]
mod tests;

pub use https::{TlsListener, TlsPeer};

/// Everything that can go wrong building a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A certificate that does not parse as X.509 DER.
    #[error("not an X.509 certificate: {0}")]
    BadCertificate(String),
    /// A PEM file without the expected block.
    #[error("{0}")]
    BadPem(String),
    /// A trust store with no usable anchor.
    #[error("no trust anchor: {0}")]
    NoTrustAnchor(String),
    /// rustls refused the configuration (key and certificate that do not
    /// match, an unsupported key type, ...).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built.
    #[error("client certificate verifier: {0}")]
    ClientVerifier(String),
}

/// The SHA-256 pin of a key: over the DER SubjectPublicKeyInfo.
pub type Pin = [u8; 32];

/// The crypto provider of every configuration made here: rustls' *ring*
/// provider.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The pin of the key in certificate `cert_der`.
pub fn spki_sha256(cert_der: &[u8]) -> Result<Pin, Error> {
    let cert = x509_cert::Certificate::from_der(cert_der).map_err(|e| Error::BadCertificate(e.to_string()))?;
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| Error::BadCertificate(e.to_string()))?;
    Ok(Sha256::digest(spki).into())
}

/// Every certificate of a PEM text, DER, in order; at least one.
pub fn pem_certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = x509_cert::Certificate::load_pem_chain(pem.as_bytes()).map_err(|e| Error::BadPem(format!("PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(Error::BadPem("no PEM CERTIFICATE".into()));
    }
    certs
        .iter()
        .map(|c| c.to_der().map(CertificateDer::from).map_err(|e| Error::BadCertificate(e.to_string())))
        .collect()
}

/// A trust store of the given DER certificates (CA roots).
pub fn roots(anchors: &[CertificateDer<'_>]) -> Result<Arc<RootCertStore>, Error> {
    let mut store = RootCertStore::empty();
    for a in anchors {
        store.add(a.clone().into_owned()).map_err(|e| Error::NoTrustAnchor(e.to_string()))?;
    }
    if store.is_empty() {
        return Err(Error::NoTrustAnchor("empty trust store".into()));
    }
    Ok(Arc::new(store))
}

// ------------------------------------------------------------- HTTPS trust

/// The roots this process's HTTPS clients trust: the project's CA roots,
/// added by whoever knows them (the CLI's `--ca-root`, an aggregator its
/// configured root). A registry rather than a parameter because every HTTP
/// call of the CLI and the servers names only a base URL. Empty: no HTTPS
/// server is trusted.
static HTTPS_ROOTS: std::sync::RwLock<Vec<CertificateDer<'static>>> = std::sync::RwLock::new(Vec::new());

/// Adds the certificates of `pem` to the roots HTTPS clients trust
/// ([`https_roots`]); already trusted ones are not added twice.
pub fn trust_for_https(pem: &str) -> Result<(), Error> {
    let certs = pem_certificates(pem)?;
    roots(&certs)?; // each must be a usable trust anchor
    let mut all = HTTPS_ROOTS.write().unwrap_or_else(|e| e.into_inner());
    for c in certs {
        if !all.contains(&c) {
            all.push(c);
        }
    }
    Ok(())
}

/// The roots HTTPS clients trust ([`trust_for_https`]).
pub fn https_roots() -> Vec<CertificateDer<'static>> {
    HTTPS_ROOTS.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// A client certificate and its key, both PEM, as the process's HTTPS
/// clients present them ([`present_client_certificate`]).
#[derive(Clone, Debug)]
pub struct ClientCertificatePem {
    /// The leaf, then intermediates.
    pub chain: String,
    /// The leaf's private key (PKCS#8 or SEC1 PEM).
    pub key: String,
}

static HTTPS_CLIENT_CERTIFICATE: std::sync::RwLock<Option<ClientCertificatePem>> = std::sync::RwLock::new(None);

/// Makes this process's HTTPS clients present `chain_pem` with `key_pem`
/// (an operator certificate: the CLI's `--client-cert` / `--client-key`),
/// after checking that both parse and that the key is the leaf's.
pub fn present_client_certificate(chain_pem: &str, key_pem: &str) -> Result<(), Error> {
    use rustls::pki_types::pem::PemObject;
    let chain = pem_certificates(chain_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| Error::BadPem(format!("PEM private key: {e}")))?;
    let signing = provider().key_provider.load_private_key(key).map_err(|e| Error::BadPem(format!("private key: {e}")))?;
    CertifiedKey::new(chain, signing).keys_match().map_err(|e| Error::BadCertificate(format!("the key is not the certificate's: {e}")))?;
    *HTTPS_CLIENT_CERTIFICATE.write().unwrap_or_else(|e| e.into_inner()) =
        Some(ClientCertificatePem { chain: chain_pem.to_owned(), key: key_pem.to_owned() });
    Ok(())
}

/// The client certificate HTTPS clients present, if one was given
/// ([`present_client_certificate`]).
pub fn https_client_certificate() -> Option<ClientCertificatePem> {
    HTTPS_CLIENT_CERTIFICATE.read().unwrap_or_else(|e| e.into_inner()).clone()
}

// ------------------------------------------------------------------ pinning

/// A server verifier that runs rustls' WebPKI checks (chain to the roots,
/// validity, name, serverAuth) and then requires the leaf's key to be the
/// pinned one. Either failure ends the handshake.
#[derive(Debug)]
pub struct PinnedServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    pin: Pin,
}

impl PinnedServerVerifier {
    /// Verifies to `roots` and pins `pin`.
    pub fn new(roots: Arc<RootCertStore>, pin: Pin) -> Result<Self, Error> {
        let inner = WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| Error::NoTrustAnchor(e.to_string()))?;
        Ok(Self { inner, pin })
    }
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        // The chain is good; now the key must be the one the device was given.
        match spki_sha256(end_entity) {
            Ok(pin) if pin == self.pin => Ok(verified),
            Ok(_) => Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                Arc::new(PinMismatch),
            )))),
            Err(_) => Err(rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The error a pinned verifier reports for a good chain with another key.
/// Debug prints the sentence too: rustls shows a certificate's `Other`
/// error with `{:?}`.
pub struct PinMismatch;

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the server's key is not the pinned key (SHA-256 of its SubjectPublicKeyInfo differs)")
    }
}

impl fmt::Debug for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for PinMismatch {}

// ------------------------------------------------------------ external keys

/// Signs a SHA-256 digest with a P-256 key kept elsewhere; returns the raw
/// signature `r || s` (PSA's format).
pub type SignDigest = dyn Fn(&[u8; 32]) -> Result<[u8; 64], String> + Send + Sync;

/// An ECDSA P-256 key that rustls uses without holding it: each handshake
/// signature is the closure's signature of the SHA-256 of the transcript
/// rustls gives (scheme `ecdsa_secp256r1_sha256`, the only one offered).
#[derive(Clone)]
pub struct ExternalP256Key {
    sign: Arc<SignDigest>,
}

impl ExternalP256Key {
    /// A key that signs through `sign`.
    pub fn new(sign: impl Fn(&[u8; 32]) -> Result<[u8; 64], String> + Send + Sync + 'static) -> Self {
        Self { sign: Arc::new(sign) }
    }
}

impl fmt::Debug for ExternalP256Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ExternalP256Key")
    }
}

impl SigningKey for ExternalP256Key {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        offered
            .contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| Box::new(self.clone()) as Box<dyn rustls::sign::Signer>)
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

impl rustls::sign::Signer for ExternalP256Key {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let digest: [u8; 32] = Sha256::digest(message).into();
        let raw = (self.sign)(&digest).map_err(|e| rustls::Error::General(format!("signing key: {e}")))?;
        // TLS carries ECDSA signatures DER-encoded (RFC 8422 5.4).
        let sig = p256::ecdsa::Signature::from_slice(&raw)
            .map_err(|_| rustls::Error::General("signing key returned a malformed signature".into()))?;
        Ok(sig.to_der().as_bytes().to_vec())
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP256_SHA256
    }
}

// ----------------------------------------------------------- configurations

/// Who a client is: its certificate chain (leaf first) and its key.
pub struct ClientIdentity {
    /// Leaf, then the intermediates the server needs to reach its root.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's key.
    pub key: Arc<dyn SigningKey>,
}

/// How a client checks the server.
pub enum ServerCheck {
    /// Chain to these roots and name (rustls' WebPKI verifier).
    Chain(Arc<RootCertStore>),
    /// Chain and name, and the leaf's key is this pin.
    Pinned(Arc<RootCertStore>, Pin),
}

/// A client configuration: the server checked as `check`, and
/// `identity` presented when the server asks for a certificate.
pub fn client_config(check: ServerCheck, identity: Option<ClientIdentity>) -> Result<rustls::ClientConfig, Error> {
    let resolver = identity.map(|id| -> Arc<dyn ResolvesClientCert> {
        Arc::new(SingleCertAndKey::from(CertifiedKey::new(id.chain, id.key)))
    });
    client_config_with(check, resolver)
}

/// [`client_config`] with an identity read again at every handshake
/// ([`PerHandshakeIdentity`]).
pub fn client_config_per_handshake<F>(check: ServerCheck, identity: F) -> Result<rustls::ClientConfig, Error>
where
    F: Fn() -> Result<ClientIdentity, String> + Send + Sync + 'static,
{
    client_config_with(check, Some(Arc::new(PerHandshakeIdentity(identity))))
}

fn client_config_with(
    check: ServerCheck,
    resolver: Option<Arc<dyn ResolvesClientCert>>,
) -> Result<rustls::ClientConfig, Error> {
    let builder = rustls::ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match check {
        ServerCheck::Chain(roots) => builder.with_root_certificates(roots),
        ServerCheck::Pinned(roots, pin) => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(PinnedServerVerifier::new(roots, pin)?))
        }
    };
    Ok(match resolver {
        None => builder.with_no_client_auth(),
        Some(r) => builder.with_client_cert_resolver(r),
    })
}

/// A client identity built again for every handshake by a closure: a
/// device whose telemetry key is switched (remote `use-key`) or whose
/// certificate is replaced while it runs presents the new one at its next
/// connection, as the firmware does (`tfmprov_mqtt_tls_key` at each
/// connect). When the closure fails, no certificate is sent (the server
/// refuses the connection) and the reason is logged.
pub struct PerHandshakeIdentity<F>(pub F);

impl<F> fmt::Debug for PerHandshakeIdentity<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PerHandshakeIdentity")
    }
}

impl<F> ResolvesClientCert for PerHandshakeIdentity<F>
where
    F: Fn() -> Result<ClientIdentity, String> + Send + Sync,
{
    fn resolve(&self, _root_hint_subjects: &[&[u8]], _sigschemes: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        match (self.0)() {
            Ok(id) => Some(Arc::new(CertifiedKey::new(id.chain, id.key))),
            Err(e) => {
                tracing::warn!("no client certificate for this handshake: {e}");
                None
            }
        }
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Whether a server asks for client certificates.
pub enum ClientAuth {
    /// Never.
    None,
    /// Asks; a client without one still connects (the application decides,
    /// e.g. an operator token instead). A certificate sent must verify.
    Optional(Arc<RootCertStore>),
    /// Requires one that verifies to these roots.
    Required(Arc<RootCertStore>),
}

/// The largest record plaintext the servers send: 4 KiB, what a device's
/// Mbed TLS receive buffer holds (`MBEDTLS_SSL_IN_CONTENT_LEN`, 4096 in
/// `mqtt-tls.conf`). A device asks for it with RFC 6066's
/// max_fragment_length, which OpenSSL (mosquitto) honours and rustls does
/// not implement, so rustls servers are configured with it instead (16 KiB
/// records would be refused by the device: a 4.3 KiB remote command is one
/// record).
pub const MAX_RECORD_PLAINTEXT: usize = 4096;

/// A server configuration presenting `chain` with `key`, sending records of
/// at most [`MAX_RECORD_PLAINTEXT`] bytes.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_auth: ClientAuth,
) -> Result<rustls::ServerConfig, Error> {
    let builder = rustls::ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let verifier = |roots: Arc<RootCertStore>, optional: bool| {
        let b = WebPkiClientVerifier::builder_with_provider(roots, provider());
        let b = if optional { b.allow_unauthenticated() } else { b };
        b.build().map_err(|e| Error::ClientVerifier(e.to_string()))
    };
    let builder = match client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Optional(roots) => builder.with_client_cert_verifier(verifier(roots, true)?),
        ClientAuth::Required(roots) => builder.with_client_cert_verifier(verifier(roots, false)?),
    };
    let mut config = builder.with_single_cert(chain, key)?;
    // rustls counts the 5-byte record header in this limit.
    config.max_fragment_size = Some(MAX_RECORD_PLAINTEXT + 5);
    Ok(config)
}
