//! The HTTP API (axum).
//!
//! | method | path | body | answer |
//! | --- | --- | --- | --- |
//! | POST | `/v1/csr` | DER PKCS#10, or PEM `CERTIFICATE REQUEST` | 200 `application/pem-certificate-chain`: leaf, intermediate |
//! | GET | `/v1/ca` | | 200 `application/pem-certificate-chain`: root, intermediate |
//! | GET | `/v1/devices` | | 200 JSON list of [`crate::DeviceRecord`] |
//! | GET | `/.well-known/est/cacerts` | | 200 `application/pkcs7-mime`, base64 of PKCS#7 certs-only (intermediate, root) |
//! | POST | `/.well-known/est/simpleenroll` | base64 of DER PKCS#10 (`application/pkcs10`) | 200 `application/pkcs7-mime; smime-type=certs-only`, base64 of PKCS#7 certs-only (the leaf) |
//! | GET | `/v1/audit?after=N&limit=M` | | 200 JSON list of [`tfmprov_auth::AuditEntry`], oldest first (at most 1000) |
//! | GET | `/v1/crl` | | 200 `application/pkix-crl`: the CRL (DER, v2, signed by the intermediate, valid [`crate::CRL_VALIDITY`]) |
//! | POST | `/v1/revocations` | JSON `{"serial": hex, "reason"?}` | 200 JSON [`crate::Revoked`]; 404 unknown serial (scope `revoke`) |
//! | GET | `/healthz` | | 200 `ok` |
//! | GET | `/metrics` | | 200 OpenMetrics 1.0 text (Prometheus scrapes it): `tfmprov_ca_certificates_issued_total{rekey}`, `tfmprov_ca_requests_failed_total{outcome}` |
//!
//! `POST /v1/csr` and EST `simpleenroll` need an operator token with the
//! `sign` scope, `GET /v1/audit` one with `audit` (`Authorization: Bearer`;
//! [`tfmprov_auth`]): none, unknown or revoked is 401, another scope 403;
//! each refusal and each certificate issued goes to the audit log.
//!
//! Errors: 400 with the refusal reason as `text/plain`, 413 for bodies over 64 KiB,
//! 500 `internal error` (details in the log).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, RawQuery, State};
use axum::http::{header, Extensions, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;

use crate::{csr, Ca, Error, MAX_BODY_BYTES};
use tfmprov_auth::{Credentials, Scope};

const PEM_CHAIN: &str = "application/pem-certificate-chain";
const PKCS7: &str = "application/pkcs7-mime";
const PKCS7_CERTS_ONLY: &str = "application/pkcs7-mime; smime-type=certs-only";

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Error::Denied(d) = self {
            return d.into_response();
        }
        let status =
            StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = match status {
            StatusCode::INTERNAL_SERVER_ERROR => {
                tracing::error!(error = %self, "internal error");
                "internal error\n".to_string()
            }
            _ => format!("{self}\n"),
        };
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            body,
        )
            .into_response()
    }
}

/// The API's router (state included), for embedding; [`serve`] runs it.
/// Peer addresses appear in the request log when the service is made with
/// `into_make_service_with_connect_info::<SocketAddr>()` (as [`serve`] does).
pub fn router(ca: Arc<Ca>) -> Router {
    Router::new()
        .route("/v1/csr", post(post_csr))
        .route("/v1/ca", get(get_ca))
        .route("/v1/devices", get(get_devices))
        .route("/v1/audit", get(get_audit))
        .route("/v1/crl", get(get_crl))
        .route("/v1/revocations", post(post_revocation))
        .route("/.well-known/est/cacerts", get(est_cacerts))
        .route("/.well-known/est/simpleenroll", post(est_simpleenroll))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(|State(ca): State<Arc<Ca>>| async move {
                ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], ca.metrics_text())
            }),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(ca)
}

/// Serves the API on `listener` until `shutdown` completes (then finishes the
/// requests in flight and returns).
pub async fn serve(
    ca: Arc<Ca>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "CA server listening");
    }
    // TCP_NODELAY: answers are small; without it Nagle + delayed ACK add latency.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let app = router(ca).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Server)
}

/// [`serve`] on HTTPS with `tls` (e.g. [`Ca::server_identity`]'s).
pub async fn serve_https(
    ca: Arc<Ca>,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "CA server listening (HTTPS)");
    }
    // ConnectInfo<TlsPeer>: the peer's address and its client certificate
    // (an operator's credential, tfmprov_auth::Credentials).
    let listener = tfmprov_tls::TlsListener::new(listener, tls).map_err(Error::Server)?;
    let app = router(ca).into_make_service_with_connect_info::<tfmprov_tls::TlsPeer>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Server)
}

fn source(kind: &str, ext: &Extensions) -> String {
    let plain = ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    match plain.or_else(|| ext.get::<ConnectInfo<tfmprov_tls::TlsPeer>>().map(|c| c.0.addr)) {
        Some(peer) => format!("{kind} {peer}"),
        None => kind.to_string(),
    }
}

/// The body, or the error to answer (logged as a refused request).
fn body_or_refusal(
    ca: &Ca,
    src: &str,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, Error> {
    match body {
        Ok(b) => Ok(b),
        Err(rej) => {
            let err = if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::TooLarge {
                    limit: MAX_BODY_BYTES,
                }
            } else {
                Error::Refused(crate::Refusal::Malformed(format!(
                    "cannot read body: {rej}"
                )))
            };
            ca.log_refusal(src, &err.to_string());
            Err(err)
        }
    }
}

/// The operator behind the request, if it may have CSRs signed; a refusal
/// is answered 401 / 403 before the body is looked at.
async fn operator(ca: &Arc<Ca>, credentials: Credentials, scope: Scope, request: &'static str) -> Result<String, Error> {
    let ca = ca.clone();
    tokio::task::spawn_blocking(move || ca.auth().authorize(&credentials, scope, request))
        .await
        .map_err(|e| Error::Encoding(format!("authorization task failed: {e}")))?
        .map(|op| op.name)
        .map_err(Error::Denied)
}

/// Signs, and writes the outcome to the audit log (`certificate.issue`,
/// actor the operator). A log that cannot be written fails the request
/// (500): nothing is issued without its entry, though the certificate
/// already made stays in the CA's own log.
async fn sign(ca: Arc<Ca>, der: Vec<u8>, src: String, actor: String, profile: Requested) -> Result<crate::Issued, Error> {
    tokio::task::spawn_blocking(move || {
        let res = match &profile {
            Requested::Device => ca.sign_csr_from(&der, &src),
            Requested::Server(names) => ca.sign_server_csr_from(&der, &src, names),
            Requested::Operator(name) => ca.sign_operator_csr_from(&der, &src, name),
        };
        let (subject, result) = match &res {
            Ok(i) => (format!("{} serial {}", i.device_id, i.serial_hex), "ok".to_owned()),
            Err(e) => ("CSR".to_owned(), e.to_string()),
        };
        ca.auth().append(&actor, "certificate.issue", &subject, &result)?;
        res
    })
    .await
    .map_err(|e| Error::Encoding(format!("signing task failed: {e}")))?
}

/// The certificate a `POST /v1/csr` asks for: a device's (no query),
/// `?profile=server&name=A&name=B`, or `?profile=operator&name=N`.
enum Requested {
    Device,
    Server(Vec<String>),
    Operator(String),
}

impl Requested {
    /// From the query; any other parameter or profile is refused.
    fn parse(query: Option<&str>) -> Result<Requested, Error> {
        let Some(q) = query.filter(|q| !q.is_empty()) else { return Ok(Requested::Device) };
        let bad = |why: String| Error::Refused(crate::Refusal::BadProfile(why));
        let (mut profile, mut names) = (None, Vec::new());
        for pair in q.split('&') {
            match pair.split_once('=') {
                Some(("profile", _)) if profile.is_some() => return Err(bad("profile= given twice".into())),
                Some(("profile", p @ ("server" | "operator"))) => profile = Some(p),
                Some(("profile", other)) => {
                    return Err(bad(format!("unknown profile {other:?} (\"server\" or \"operator\")")))
                }
                Some(("name", n)) => names.push(n.to_owned()),
                _ => return Err(bad(format!("unknown query parameter {:?}", pair.chars().take(40).collect::<String>()))),
            }
        }
        match profile {
            Some("server") => Ok(Requested::Server(names)),
            Some(_) if names.len() == 1 => Ok(Requested::Operator(names.remove(0))),
            Some(_) => Err(bad(format!("profile=operator needs exactly one name=, {} given", names.len()))),
            None => Err(bad("name= needs profile=server or profile=operator".into())),
        }
    }

    /// The scope it needs, and the request as the audit log names it.
    fn scope(&self) -> (Scope, &'static str) {
        match self {
            Requested::Device => (Scope::Sign, "POST /v1/csr"),
            Requested::Server(_) => (Scope::Servers, "POST /v1/csr?profile=server"),
            Requested::Operator(_) => (Scope::Operators, "POST /v1/csr?profile=operator"),
        }
    }
}

async fn post_csr(
    State(ca): State<Arc<Ca>>,
    ext: Extensions,
    credentials: Credentials,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let requested = Requested::parse(query.as_deref())?;
    let (scope, what) = requested.scope();
    let actor = operator(&ca, credentials, scope, what).await?;
    let src = source("http", &ext);
    let body = body_or_refusal(&ca, &src, body)?;
    let der = match csr::csr_der_from_body(&body) {
        Ok(d) => d,
        Err(r) => {
            ca.log_refusal(&src, &r.to_string());
            return Err(Error::Refused(r));
        }
    };
    let issued = sign(ca, der, src, actor, requested).await?;
    let mut resp = ([(header::CONTENT_TYPE, PEM_CHAIN)], issued.chain_pem).into_response();
    if let Ok(v) = HeaderValue::from_str(&issued.device_id) {
        resp.headers_mut().insert("x-device-id", v);
    }
    resp.headers_mut().insert(
        "x-rekey",
        HeaderValue::from_static(if issued.rekey { "true" } else { "false" }),
    );
    Ok(resp)
}

async fn get_ca(State(ca): State<Arc<Ca>>) -> Response {
    let mut body = ca.root_pem();
    body.push_str(&ca.intermediate_pem());
    ([(header::CONTENT_TYPE, PEM_CHAIN)], body).into_response()
}

/// The CRL (DER, `application/pkix-crl`): open, like the CA certificates.
async fn get_crl(State(ca): State<Arc<Ca>>) -> Result<Response, Error> {
    let der = tokio::task::spawn_blocking(move || ca.crl_der())
        .await
        .map_err(|e| Error::Encoding(format!("CRL task failed: {e}")))??;
    Ok(([(header::CONTENT_TYPE, "application/pkix-crl")], der).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RevocationJson {
    /// The certificate's serial, hex.
    serial: String,
    /// Why (kept in the CA's log and the audit log).
    #[serde(default)]
    reason: Option<String>,
}

/// Revoke a certificate (scope `revoke`): 200 with the [`crate::Revoked`]
/// record, 404 for a serial this CA did not issue, 400 for a body that is
/// not `{"serial": hex, "reason"?: text}`.
async fn post_revocation(
    State(ca): State<Arc<Ca>>,
    credentials: Credentials,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    tokio::task::spawn_blocking(move || {
        let op = ca.auth().authorize(&credentials, Scope::Revoke, "POST /v1/revocations").map_err(Error::Denied)?;
        let outcome = (|| {
            let body = body.map_err(|e| Error::BadRevocation(e.to_string()))?;
            let j: RevocationJson = serde_json::from_slice(&body)
                .map_err(|e| Error::BadRevocation(format!("expected JSON {{\"serial\": hex, \"reason\"?}}: {e}")))?;
            if j.serial.is_empty() || j.serial.len() > 64 || !j.serial.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::BadRevocation(format!("serial {:?} is not hex", j.serial.chars().take(80).collect::<String>())));
            }
            let reason = j.reason.unwrap_or_else(|| "unspecified".into());
            let revoked = ca.revoke(&j.serial, &reason);
            Ok((j.serial, revoked))
        })();
        let (subject, result) = match &outcome {
            Ok((_, Ok(r))) => (format!("{} serial {}", r.device_id, r.serial_hex), "ok".to_owned()),
            Ok((serial, Err(e))) => (format!("serial {serial}"), e.to_string()),
            Err(e) => ("-".to_owned(), e.to_string()),
        };
        ca.auth().append(&op.name, "certificate.revoke", &subject, &result)?;
        let revoked = outcome?.1?;
        Ok(Json(revoked).into_response())
    })
    .await
    .map_err(|e| Error::Encoding(format!("revocation task failed: {e}")))?
}

/// `?after=N&limit=M` of `GET /v1/audit`.
#[derive(serde::Deserialize)]
struct AuditQuery {
    #[serde(default)]
    after: i64,
    #[serde(default = "default_audit_limit")]
    limit: u32,
}

fn default_audit_limit() -> u32 {
    100
}

/// The audit log, a page at a time (scope `audit`).
async fn get_audit(State(ca): State<Arc<Ca>>, credentials: Credentials, query: Query<AuditQuery>) -> Result<Response, Error> {
    tokio::task::spawn_blocking(move || {
        ca.auth().authorize(&credentials, Scope::Audit, "GET /v1/audit").map_err(Error::Denied)?;
        Ok(Json(ca.auth().audit_page(query.after, query.limit.min(1000))?).into_response())
    })
    .await
    .map_err(|e| Error::Encoding(format!("audit task failed: {e}")))?
}

async fn get_devices(State(ca): State<Arc<Ca>>) -> Result<Response, Error> {
    let devices = tokio::task::spawn_blocking(move || ca.devices())
        .await
        .map_err(|e| Error::Encoding(format!("query task failed: {e}")))??;
    Ok(Json(devices).into_response())
}

/// Base64 with a line break (LF) every 64 characters: what `base64 -d` and
/// `openssl base64 -d` read (CR would make GNU `base64 -d` fail).
fn base64_lines(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 32 + 2);
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out
}

fn pkcs7_response(content_type: &'static str, der: &[u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::HeaderName::from_static("content-transfer-encoding"),
                "base64",
            ),
        ],
        base64_lines(der),
    )
        .into_response()
}

async fn est_cacerts(State(ca): State<Arc<Ca>>) -> Result<Response, Error> {
    Ok(pkcs7_response(PKCS7, &ca.cacerts_pkcs7()?))
}

async fn est_simpleenroll(
    State(ca): State<Arc<Ca>>,
    ext: Extensions,
    credentials: Credentials,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let actor = operator(&ca, credentials, Scope::Sign, "POST /.well-known/est/simpleenroll").await?;
    let src = source("est", &ext);
    let body = body_or_refusal(&ca, &src, body)?;
    let der = match csr::csr_der_from_est_body(&body) {
        Ok(d) => d,
        Err(r) => {
            ca.log_refusal(&src, &r.to_string());
            return Err(Error::Refused(r));
        }
    };
    let issued = sign(ca.clone(), der, src, actor, Requested::Device).await?;
    Ok(pkcs7_response(
        PKCS7_CERTS_ONLY,
        &ca.pkcs7_of(&issued.leaf_der)?,
    ))
}
