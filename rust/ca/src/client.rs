//! Blocking HTTP client for the CA server (used by the `tfmprov` CLI).
//!
//! `https://` (trusting the roots registered with
//! [`tfmprov_tls::trust_for_https`]) or plain `http://`. Every
//! answer is parsed before it is returned, so a caller never stores garbage on a
//! device.

use std::time::Duration;

use x509_cert::Certificate;

use crate::{Error, CLIENT_DEFAULT_TIMEOUT};

/// Largest answer read from the server.
const MAX_ANSWER_BYTES: u64 = 1024 * 1024;

/// The HTTP client of every call to the project's servers (the CA's and the
/// aggregator's): `timeout` for the whole call, non-2xx answers returned as
/// answers, and on `https://` rustls (*ring*) trusting exactly the roots
/// registered with [`tfmprov_tls::trust_for_https`].
pub fn agent(timeout: Duration) -> ureq::Agent {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};
    let roots = tfmprov_tls::https_roots().iter().map(|c| Certificate::from_der(c).to_owned()).collect();
    // An operator certificate, if the process was given one
    // (tfmprov_tls::present_client_certificate checked that it parses).
    let client_cert = tfmprov_tls::https_client_certificate().and_then(|c| {
        let chain = tfmprov_tls::pem_certificates(&c.chain).ok()?;
        let chain: Vec<Certificate<'static>> = chain.iter().map(|d| Certificate::from_der(d).to_owned()).collect();
        Some(ClientCert::new_with_certs(&chain, PrivateKey::from_pem(c.key.as_bytes()).ok()?))
    });
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(tfmprov_tls::provider())
        .root_certs(RootCerts::Specific(std::sync::Arc::new(roots)))
        .client_cert(client_cert)
        .build();
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .tls_config(tls)
        .build();
    ureq::Agent::new_with_config(config)
}

/// `Authorization: Bearer <token>` on `req`, unless `token` is empty: the
/// operator then authenticates with its client certificate
/// ([`tfmprov_tls::present_client_certificate`], presented by [`agent`]).
pub fn with_token<B>(req: ureq::RequestBuilder<B>, token: &str) -> ureq::RequestBuilder<B> {
    match token.trim() {
        "" => req,
        t => req.header("Authorization", &format!("Bearer {t}")),
    }
}

fn url(base_url: &str, path: &str) -> String {
    format!("{}{}", base_url.trim_end_matches('/'), path)
}

fn read_answer(mut resp: ureq::http::Response<ureq::Body>) -> Result<String, Error> {
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_string()
        .map_err(|e| Error::Transport(e.to_string()))?;
    if status != 200 {
        return Err(Error::Http {
            status,
            message: body.trim().to_string(),
        });
    }
    Ok(body)
}

fn pem_certs(pem: &str) -> Result<Vec<Certificate>, Error> {
    Certificate::load_pem_chain(pem.as_bytes())
        .map_err(|e| Error::BadResponse(format!("not a PEM certificate chain: {e}")))
}

/// POSTs a DER CSR to `{base_url}/v1/csr` with the operator `token` (scope
/// `sign`) and returns the PEM chain (leaf, then intermediate). A refusal
/// comes back as [`Error::Http`] with status 400 and the server's reason; a
/// missing or insufficient credential as 401 or 403.
pub fn submit_csr(base_url: &str, token: &str, csr_der: &[u8], timeout: Duration) -> Result<String, Error> {
    post_csr(base_url, "/v1/csr".to_owned(), token, csr_der, timeout)
}

/// [`submit_csr`] for a TLS server certificate with subjectAltName `names`
/// (host names or IP addresses), with a `token` of scope `servers`.
pub fn submit_server_csr(base_url: &str, token: &str, csr_der: &[u8], names: &[&str], timeout: Duration) -> Result<String, Error> {
    let mut path = "/v1/csr?profile=server".to_owned();
    for n in names {
        // Host names and IP addresses need no escaping; anything else is refused here.
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:*".contains(&b)) {
            return Err(Error::Refused(crate::Refusal::BadServerName(format!("{n:?} is not a host name or IP address"))));
        }
        path.push_str("&name=");
        path.push_str(n);
    }
    post_csr(base_url, path, token, csr_der, timeout)
}

/// [`submit_csr`] for an operator certificate (`CN=<name>, OU=tfmprov
/// operator`, clientAuth) with a `token` of scope `operators`; the request's
/// CN must be `name`.
pub fn submit_operator_csr(base_url: &str, token: &str, name: &str, csr_der: &[u8], timeout: Duration) -> Result<String, Error> {
    // Operator names need no escaping; anything else is refused here.
    if !tfmprov_auth::is_operator_name(name) {
        return Err(Error::Refused(crate::Refusal::BadProfile(format!("{name:?} is not an operator name"))));
    }
    post_csr(base_url, format!("/v1/csr?profile=operator&name={name}"), token, csr_der, timeout)
}

fn post_csr(base_url: &str, path: String, token: &str, csr_der: &[u8], timeout: Duration) -> Result<String, Error> {
    let resp = with_token(agent(timeout).post(url(base_url, &path)).header("Content-Type", "application/pkcs10"), token)
        .send(csr_der)
        .map_err(|e| Error::Transport(e.to_string()))?;
    let pem = read_answer(resp)?;
    let certs = pem_certs(&pem)?;
    if certs.len() < 2 {
        return Err(Error::BadResponse(format!(
            "expected leaf and intermediate, got {} certificate(s)",
            certs.len()
        )));
    }
    Ok(pem)
}

/// GETs `{base_url}/v1/ca` and returns `(root_pem, intermediate_pem)` (timeout
/// [`CLIENT_DEFAULT_TIMEOUT`]).
pub fn fetch_ca(base_url: &str) -> Result<(String, String), Error> {
    fetch_ca_with_timeout(base_url, CLIENT_DEFAULT_TIMEOUT)
}

/// [`fetch_ca`] with an explicit timeout.
pub fn fetch_ca_with_timeout(base_url: &str, timeout: Duration) -> Result<(String, String), Error> {
    let resp = agent(timeout)
        .get(url(base_url, "/v1/ca"))
        .call()
        .map_err(|e| Error::Transport(e.to_string()))?;
    let pem = read_answer(resp)?;
    let certs = pem_certs(&pem)?;
    let [root, intermediate] = <[Certificate; 2]>::try_from(certs).map_err(|v| {
        Error::BadResponse(format!(
            "expected root and intermediate, got {} certificate(s)",
            v.len()
        ))
    })?;
    use der::EncodePem;
    let lf = der::pem::LineEnding::LF;
    Ok((
        root.to_pem(lf).map_err(Error::encoding)?,
        intermediate.to_pem(lf).map_err(Error::encoding)?,
    ))
}

/// Revokes the certificate with serial `serial_hex` at `{base_url}` (POST
/// `/v1/revocations`, operator `token` of scope `revoke`). An unknown serial
/// is [`Error::Http`] 404.
pub fn revoke(base_url: &str, token: &str, serial_hex: &str, reason: &str, timeout: Duration) -> Result<crate::Revoked, Error> {
    let body = serde_json::json!({ "serial": serial_hex, "reason": reason }).to_string();
    let resp = with_token(agent(timeout).post(url(base_url, "/v1/revocations")).header("Content-Type", "application/json"), token)
        .send(body.as_bytes())
        .map_err(|e| Error::Transport(e.to_string()))?;
    let text = read_answer(resp)?;
    serde_json::from_str(&text).map_err(|e| Error::BadResponse(format!("not a revocation record: {e}")))
}
