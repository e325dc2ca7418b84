//! HTTP API (axum): registration, device records, stored messages, stats.
//!
//! | method | path | answer |
//! | --- | --- | --- |
//! | POST | `/v1/devices` | JSON `{"device_id","chain_pem"}`, or a PEM chain (`application/pem-certificate-chain`) with `?device_id=`: 201 registered, 200 same key again, 400 refused (reason in the body), 409 other key / revoked |
//! | GET | `/v1/devices/{id}` | 200 [`DeviceInfo`], 404 |
//! | DELETE | `/v1/devices/{id}` | 200 [`DeviceInfo`] (revoked), 404 |
//! | GET | `/v1/devices/{id}/messages?limit=N` | 200 `[`[`StoredMessage`]`]` (oldest first, N <= 1000, default 100) |
//! | GET | `/v1/stats` | 200 [`crate::Stats`] |
//! | GET | `/v1/cloud` | 200 the cloud certificate chain (PEM, leaf first), 404 without a cloud identity |
//!
//! | GET | `/v1/audit?after=N&limit=M` | 200 `[`[`tfmprov_auth::AuditEntry`]`]` (oldest first, M <= 1000) |
//!
//! Operator credentials (`Authorization: Bearer <token>`, [`tfmprov_auth`]):
//! registering, revoking and setting a KAK need the `devices` scope;
//! commands and rotations (sending and reading) `commands`; the audit log
//! `audit`. None, unknown or revoked is 401, another scope 403. Each of
//! these actions, and each refusal, is written to the audit log.
//!
//! Errors are `text/plain` with the reason, like the CA server.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Refusal};
use tfmprov_auth::{Credentials, Scope};
use crate::registry::{Registered, Registry};
use crate::stats::Counters;
use crate::store::{DeviceRow, MessageRow};

/// Largest registration body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

const PEM_CHAIN: &str = "application/pem-certificate-chain";

pub(crate) struct AppState {
    pub registry: Arc<Registry>,
    pub counters: Arc<Counters>,
    /// `cloud_cert.pem` (leaf, then intermediate), if there is a cloud identity.
    pub cloud_chain_pem: Option<String>,
    /// The embedded broker's certificate chain (TLS listener), for devices to pin.
    pub broker_chain_pem: Option<String>,
    /// The pipeline's queue depths now (for `/metrics`).
    pub depths: Box<dyn Fn() -> Vec<(crate::stats::Queue, usize)> + Send + Sync>,
    /// Remote provisioning commands.
    pub remote: Arc<crate::remote::Remote>,
    /// Key rotations.
    pub rotations: Arc<crate::rotation::Rotations>,
    /// Operators and the audit log.
    pub auth: Arc<tfmprov_auth::Auth>,
    /// The CA's last CRL that verified (registration refuses what it lists).
    pub crl: crate::crl::Latest,
}

/// A device record as the API returns it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The device id (= leaf CN).
    pub device_id: String,
    /// kid, hex (first 8 bytes of SHA-256 over the leaf SPKI DER).
    pub kid: String,
    /// Uncompressed P-256 point, hex.
    pub public_key: String,
    /// The registered chain, PEM, leaf first.
    pub chain_pem: String,
    /// The leaf's notAfter, seconds since the epoch.
    pub not_after: i64,
    /// First registration, ms since the epoch.
    pub registered_at: i64,
    /// Last (re-)registration, ms since the epoch.
    pub updated_at: i64,
    /// Revoked: its messages are rejected.
    pub revoked: bool,
    /// Revocation time, ms since the epoch.
    pub revoked_at: Option<i64>,
    /// The kid a key rotation replaced (hex), still accepted until
    /// `previous_until`.
    #[serde(default)]
    pub previous_kid: Option<String>,
    /// Until when the previous kid is accepted (ms since the epoch; the
    /// largest i64 while the device has not switched yet).
    #[serde(default)]
    pub previous_until: Option<i64>,
}

impl From<DeviceRow> for DeviceInfo {
    fn from(r: DeviceRow) -> Self {
        DeviceInfo {
            device_id: r.device_id,
            kid: hex::encode(r.kid),
            public_key: hex::encode(r.public_key),
            chain_pem: r.chain_pem,
            not_after: r.not_after,
            registered_at: r.registered_at,
            updated_at: r.updated_at,
            revoked: r.revoked_at.is_some(),
            revoked_at: r.revoked_at,
            previous_kid: r.previous.map(|(k, _, _)| hex::encode(k)),
            previous_until: r.previous.map(|(_, _, until)| until),
        }
    }
}

/// A stored message as the API returns it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredMessage {
    /// kid, hex.
    pub kid: String,
    /// Sequence number.
    pub seq: u64,
    /// Receive time, ms since the epoch.
    pub received_at: i64,
    /// The payload, hex.
    pub payload: String,
}

impl From<MessageRow> for StoredMessage {
    fn from(m: MessageRow) -> Self {
        StoredMessage {
            kid: hex::encode(m.kid),
            seq: m.seq,
            received_at: m.received_at,
            payload: hex::encode(m.payload),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Error::Denied(d) = self {
            return d.into_response();
        }
        let (status, body) = match &self {
            Error::Refused(r) => (
                StatusCode::from_u16(r.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
                format!("{r}\n"),
            ),
            _ => {
                tracing::error!(error = %self, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n".to_owned())
            }
        };
        (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
    }
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/devices", post(post_device))
        .route("/v1/devices/{id}", get(get_device).delete(delete_device))
        .route("/v1/devices/{id}/messages", get(get_messages))
        .route("/v1/devices/{id}/kak", put(put_kak))
        .route("/v1/devices/{id}/commands", post(post_command))
        .route("/v1/devices/{id}/commands/{cid}", get(get_command))
        .route("/v1/devices/{id}/rotation", post(post_rotation).get(get_rotation))
        .route("/v1/stats", get(get_stats))
        .route("/v1/audit", get(get_audit))
        .route("/metrics", get(get_metrics))
        .route("/v1/cloud", get(get_cloud))
        .route("/v1/broker", get(get_broker))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

fn not_found(id: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("no device {:?}\n", id.chars().take(80).collect::<String>()),
    )
        .into_response()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Error> + Send + 'static) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Io(std::io::Error::other(format!("task failed: {e}"))))?
}

/// The operator behind the request, if it may do `scope`; else the 401 /
/// 403 to answer (written to the audit log by the check).
async fn operator(st: &AppState, credentials: Credentials, scope: Scope, request: String) -> Result<String, Error> {
    let auth = st.auth.clone();
    blocking(move || Ok(auth.authorize(&credentials, scope, &request))).await?.map(|op| op.name).map_err(Error::Denied)
}

/// Writes an operator's action and its outcome to the audit log, then
/// returns the outcome. A log that cannot be written is a 500: the action
/// happened, but the operator learns that it went unrecorded.
async fn audited<T: Send + 'static>(
    st: &AppState,
    actor: String,
    action: &'static str,
    subject: String,
    outcome: Result<T, Error>,
    describe: impl FnOnce(&T) -> String,
) -> Result<T, Error> {
    let result = match &outcome {
        Ok(v) => describe(v),
        Err(e) => e.to_string(),
    };
    let auth = st.auth.clone();
    blocking(move || Ok(auth.append(&actor, action, &subject, &result)?)).await?;
    outcome
}

/// The audit result of an action on a device that may not exist.
fn found<T>(r: &Option<T>) -> String {
    if r.is_some() { "ok" } else { "no such device" }.to_owned()
}

#[derive(Deserialize)]
struct AuditQuery {
    #[serde(default)]
    after: i64,
    limit: Option<u32>,
}

/// The audit log, a page at a time (scope `audit`): at most 1000 entries
/// after `after`, oldest first.
async fn get_audit(State(st): State<Arc<AppState>>, credentials: Credentials, Query(q): Query<AuditQuery>) -> Result<Response, Error> {
    operator(&st, credentials, Scope::Audit, "GET /v1/audit".into()).await?;
    let auth = st.auth.clone();
    let page = blocking(move || Ok(auth.audit_page(q.after, q.limit.unwrap_or(100).min(1000))?)).await?;
    Ok(Json(page).into_response())
}

#[derive(Deserialize)]
struct RegisterJson {
    device_id: String,
    chain_pem: String,
}

#[derive(Deserialize)]
struct RegisterQuery {
    device_id: Option<String>,
}

/// The (device id, chain) of a registration request.
fn parse_registration(
    headers: &HeaderMap,
    query: Option<RegisterQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(String, String), Refusal> {
    let body = body.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Refusal::BadRequest(format!("body larger than {MAX_BODY_BYTES} bytes"))
        } else {
            Refusal::BadRequest(format!("cannot read body: {rej}"))
        }
    })?;
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let query_id = query.and_then(|q| q.device_id);
    match ctype.as_str() {
        PEM_CHAIN | "application/x-pem-file" | "text/plain" => {
            let id = query_id.ok_or_else(|| {
                Refusal::BadRequest("a PEM body needs ?device_id=".into())
            })?;
            let pem = String::from_utf8(body.to_vec())
                .map_err(|_| Refusal::BadChain("PEM body is not UTF-8".into()))?;
            Ok((id, pem))
        }
        "application/json" | "" => {
            let j: RegisterJson = serde_json::from_slice(&body).map_err(|e| {
                Refusal::BadRequest(format!("expected JSON {{\"device_id\", \"chain_pem\"}}: {e}"))
            })?;
            if query_id.as_ref().is_some_and(|q| *q != j.device_id) {
                return Err(Refusal::BadRequest("device_id in the query and the body differ".into()));
            }
            Ok((j.device_id, j.chain_pem))
        }
        other => Err(Refusal::BadRequest(format!(
            "content type {other:?}: use application/json or {PEM_CHAIN}"
        ))),
    }
}

async fn post_device(
    State(st): State<Arc<AppState>>,
    Query(query): Query<RegisterQuery>,
    credentials: Credentials,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let actor = operator(&st, credentials, Scope::Devices, "POST /v1/devices".into()).await?;
    let (id, pem) = parse_registration(&headers, Some(query), body).inspect_err(|_| st.counters.registration("refused"))?;
    let reg = st.registry.clone();
    let subject = id.clone();
    let crl = st.crl.clone();
    let registered = blocking(move || {
        // A certificate the CA revoked is not registered (its chain would
        // verify: revocation is the CRL's, not the chain's).
        if let (Some(c), Some((leaf, _))) = (&*crl.read().unwrap_or_else(|p| p.into_inner()), crate::crl::leaf_and_issuer(&pem)) {
            if c.revokes(&leaf) {
                return Err(Refusal::CertificateRevoked.into());
            }
        }
        reg.register(&id, &pem)
    })
    .await;
    let registered = audited(&st, actor, "device.register", subject, registered, |(o, row)| {
        format!("ok: {} kid {}", if *o == Registered::Created { "created" } else { "unchanged" }, hex::encode(row.kid))
    })
    .await;
    let (outcome, row) = registered.inspect_err(|_| st.counters.registration("refused"))?;
    st.counters.registration(match outcome {
        Registered::Created => "created",
        Registered::Unchanged => "unchanged",
    });
    tracing::info!(device = %row.device_id, kid = %hex::encode(row.kid), ?outcome, "device registered");
    let status = match outcome {
        Registered::Created => StatusCode::CREATED,
        Registered::Unchanged => StatusCode::OK,
    };
    Ok((status, Json(DeviceInfo::from(row))).into_response())
}

async fn get_device(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, Error> {
    let reg = st.registry.clone();
    let id2 = id.clone();
    match blocking(move || reg.device(&id2)).await? {
        Some(row) => Ok(Json(DeviceInfo::from(row)).into_response()),
        None => Ok(not_found(&id)),
    }
}

async fn delete_device(State(st): State<Arc<AppState>>, credentials: Credentials, Path(id): Path<String>) -> Result<Response, Error> {
    let actor = operator(&st, credentials, Scope::Devices, format!("DELETE /v1/devices/{id}")).await?;
    let reg = st.registry.clone();
    let id2 = id.clone();
    let revoked = blocking(move || reg.revoke(&id2)).await;
    let revoked = audited(&st, actor, "device.revoke", id.clone(), revoked, found);
    match revoked.await? {
        Some(row) => {
            tracing::info!(device = %id, "device revoked");
            Ok(Json(DeviceInfo::from(row)).into_response())
        }
        None => Ok(not_found(&id)),
    }
}

#[derive(Deserialize)]
struct MessagesQuery {
    limit: Option<u32>,
}

async fn get_messages(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<MessagesQuery>,
) -> Result<Response, Error> {
    let limit = q.limit.unwrap_or(100).min(1000);
    let reg = st.registry.clone();
    let id2 = id.clone();
    let found = blocking(move || {
        Ok(match reg.device(&id2)? {
            Some(_) => Some(reg.messages(&id2, limit)?),
            None => None,
        })
    })
    .await?;
    match found {
        Some(rows) => Ok(Json(rows.into_iter().map(StoredMessage::from).collect::<Vec<_>>()).into_response()),
        None => Ok(not_found(&id)),
    }
}

async fn get_stats(State(st): State<Arc<AppState>>) -> Json<crate::Stats> {
    Json(st.counters.snapshot())
}

/// OpenMetrics 1.0 text (what the prometheus-client crate writes; Prometheus scrapes it).
async fn get_metrics(State(st): State<Arc<AppState>>) -> Response {
    let body = st.counters.metrics_text(&(st.depths)());
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
}

/// The body of a JSON endpoint, or 400.
fn read_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Refusal> {
    body.map_err(|e| Refusal::BadRequest(format!("cannot read body: {e}")))
}

/// `body` as JSON, or 400 naming the `shape` expected.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| Refusal::BadRequest(format!("expected JSON {shape}: {e}")))
}

#[derive(Deserialize)]
struct KakJson {
    /// The uncompressed P-256 point, hex.
    kak: String,
}

/// Register the device's key-agreement key (docs/remote.md).
async fn put_kak(
    State(st): State<Arc<AppState>>,
    credentials: Credentials,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let actor = operator(&st, credentials, Scope::Devices, format!("PUT /v1/devices/{id}/kak")).await?;
    let j: KakJson = parse_json(&read_body(body)?, r#"{"kak": hex}"#)?;
    let kak = hex::decode(&j.kak).map_err(|_| Refusal::BadRequest("kak is not hex".into()))?;
    let reg = st.registry.clone();
    let id2 = id.clone();
    let set = blocking(move || reg.set_kak(&id2, &kak)).await;
    let set = audited(&st, actor, "device.kak", id.clone(), set, found);
    match set.await? {
        Some(()) => Ok((StatusCode::NO_CONTENT, "").into_response()),
        None => Ok(not_found(&id)),
    }
}

#[derive(Deserialize)]
struct CommandJson {
    op: String,
    #[serde(default)]
    args: serde_json::Map<String, serde_json::Value>,
}

/// Queue and send a remote command: 201 with its info (`cid`, `cseq`, `state`).
async fn post_command(
    State(st): State<Arc<AppState>>,
    credentials: Credentials,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let actor = operator(&st, credentials, Scope::Commands, format!("POST /v1/devices/{id}/commands")).await?;
    let j: CommandJson = parse_json(&read_body(body)?, r#"{"op", "args"?}"#)?;
    let remote = st.remote.clone();
    let subject = format!("{id} {}", j.op);
    let submitted = blocking(move || remote.submit(&id, &j.op, &j.args)).await;
    let info = audited(&st, actor, "command.submit", subject, submitted, |i| format!("ok: cid {} cseq {}", i.cid, i.cseq)).await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

/// A command's state and answer.
async fn get_command(State(st): State<Arc<AppState>>, credentials: Credentials, Path((id, cid)): Path<(String, String)>) -> Result<Response, Error> {
    operator(&st, credentials, Scope::Commands, format!("GET /v1/devices/{id}/commands/{cid}")).await?;
    let Ok(cid_bytes) = hex::decode(&cid) else {
        return Ok(not_found(&id));
    };
    let remote = st.remote.clone();
    let id2 = id.clone();
    match blocking(move || remote.info(&id2, &cid_bytes)).await? {
        Some(info) => Ok(Json(info).into_response()),
        None => Ok((StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("no command {cid} for {id}\n")).into_response()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotationJson {
    /// The new key's ID (default: the device assigns one).
    id: Option<u32>,
    /// Grace period in seconds (default: the aggregator's `--rotation-grace`).
    grace_s: Option<u64>,
}

/// Start rotating the device's key (docs/remote.md "Rotation"): 201 with
/// the rotation's info; it runs in the background.
async fn post_rotation(
    State(st): State<Arc<AppState>>,
    credentials: Credentials,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let actor = operator(&st, credentials, Scope::Commands, format!("POST /v1/devices/{id}/rotation")).await?;
    let body = read_body(body)?;
    let j: RotationJson = if body.is_empty() {
        RotationJson { id: None, grace_s: None }
    } else {
        parse_json(&body, r#"{"id"?, "grace_s"?}"#)?
    };
    let rotations = st.rotations.clone();
    let subject = id.clone();
    let started = blocking(move || rotations.start(&id, j.id, j.grace_s.map(std::time::Duration::from_secs))).await;
    let info = audited(&st, actor, "rotation.start", subject, started, |_| "ok".into()).await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

/// The device's latest rotation.
async fn get_rotation(State(st): State<Arc<AppState>>, credentials: Credentials, Path(id): Path<String>) -> Result<Response, Error> {
    operator(&st, credentials, Scope::Commands, format!("GET /v1/devices/{id}/rotation")).await?;
    let rotations = st.rotations.clone();
    let id2 = id.clone();
    match blocking(move || rotations.latest(&id2)).await? {
        Some(info) => Ok(Json(info).into_response()),
        None => Ok((StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("no rotation for {id}\n")).into_response()),
    }
}

/// The broker's certificate chain (PEM), open like the CA certificates:
/// enrollment stores its leaf on the device, which pins its key.
async fn get_broker(State(st): State<Arc<AppState>>) -> Response {
    pem_or_404(&st.broker_chain_pem, "no broker certificate: no TLS listener on the embedded broker, no --broker-cert for an external one\n")
}

async fn get_cloud(State(st): State<Arc<AppState>>) -> Response {
    pem_or_404(&st.cloud_chain_pem, "no cloud identity: the aggregator runs without session support\n")
}

/// A PEM chain, or 404 with `why`.
fn pem_or_404(pem: &Option<String>, why: &'static str) -> Response {
    match pem {
        Some(pem) => ([(header::CONTENT_TYPE, PEM_CHAIN)], pem.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], why).into_response(),
    }
}
