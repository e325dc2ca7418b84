//! Data aggregation server (seed 001, "Data Aggregation Server"; DESIGN.md
//! "MQTT topics" and "COSE profiles").
//!
//! - **Registration** (`POST /v1/devices`): a device id and a PEM chain. The
//!   chain is verified to the configured root with `rustls-webpki`
//!   (signatures, validity, basicConstraints/path length, EKU clientAuth when
//!   present) plus keyUsage (leaf: digitalSignature, CAs: keyCertSign); the
//!   leaf CN must be the device id and its key a P-256 key. The key, its kid
//!   and the chain go to SQLite. Revocation (`DELETE`) is final.
//! - **Ingestion**: subscribes `{prefix}/+/data`; a message is stored only if it
//!   is a COSE_Sign1 of our profile, ES256-verified (*ring*) with the key
//!   registered for the device named in the topic, its kid is that key's, and
//!   its (device, kid, `seq`) was never stored before (exact: the store is
//!   the authority, a 128-wide window per key only a fast path; a `seq` more
//!   than the configured horizon below the newest is refused with code 11).
//!   Every rejection is counted and published on `{prefix}/{id}/errors`.
//!   Messages are acknowledged to the broker only once stored (or rejected):
//!   with the broker's redelivery and `UNIQUE(device_id, kid, seq)`, each
//!   accepted message is stored exactly once.
//! - **Sessions** (issue 5): the aggregator has a cloud key pair and a
//!   certificate from the CA ([`CloudIdentity`]: imported, enrolled at the CA
//!   on first start, or none), served at `GET /v1/cloud`. It subscribes
//!   `{prefix}/+/session` (Sign1 by the device key over a COSE_Encrypt of a
//!   session key to the cloud key: verified, decrypted, the key kept wrapped
//!   with `storage.key` per (device, session id), session ids strictly
//!   increasing) and `{prefix}/+/sealed` (Encrypt0 under a session key:
//!   decrypted, anti-replay per (device, session id), stored as plaintext
//!   with the data messages).
//! - **Broker**: rumqttd embedded in the process (default), or an external one
//!   over `mqtt://` or `mqtts://` (rustls on *ring*, CA file, optional client
//!   certificate).
//!
//! See `docs/aggregator.md` for the design choices.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod broker;
mod broker_tls;
mod chain;
pub mod client;
mod cloud;
mod config;
mod crl;
mod error;
mod http;
mod ingest;
mod mqtt;
mod registry;
mod remote;
mod rotation;
mod sessions;
mod stats;
mod store;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tfmprov_cose::{subscription, Kind};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use broker::EMBEDDED_MAX_PAYLOAD;
pub use broker_tls::{BROKER_CERT_FILE, BROKER_CN, BROKER_KEY_FILE};
pub use chain::MAX_CHAIN_CERTS;
pub use cloud::{CloudIdentity, CLOUD_CERT_FILE, CLOUD_CN, CLOUD_KEY_FILE, ENROLL_TIMEOUT, STORAGE_KEY_FILE};
pub use sessions::SESSIONS_KEPT;
pub use config::{
    BrokerChoice, BrokerTls, Config, Https, DEFAULT_COMMAND_TIMEOUT, DEFAULT_CRL_INTERVAL, DEFAULT_EARLY_SEALED_WAIT, DEFAULT_EMBEDDED_LISTEN, DEFAULT_MAX_MESSAGE, DEFAULT_REPLAY_HORIZON,
    MAX_EARLY_SEALED_WAIT,
};
pub use ingest::{MAX_PARKED, MAX_PARKED_PER_DEVICE};

/// Checks a DER CRL the way the aggregator does before it applies one
/// (signature by `issuer_pem`'s key, ecdsa-with-SHA256): the revoked serials
/// (hex), or why it is refused.
pub fn verify_crl(der: &[u8], issuer_pem: &str) -> Result<Vec<String>, String> {
    let issuers = x509_cert::Certificate::load_pem_chain(issuer_pem.as_bytes()).map_err(|e| format!("issuer: {e}"))?;
    let mut serials: Vec<String> = crl::verify(der, &issuers).map_err(|e| e.to_string())?.serials.iter().map(hex::encode).collect();
    serials.sort();
    Ok(serials)
}
pub use error::{Error, Refusal};
pub use http::{DeviceInfo, StoredMessage, MAX_BODY_BYTES};
pub use remote::{CommandInfo, OPS as REMOTE_OPS};
pub use rotation::{RotationInfo, DEFAULT_ROTATION_GRACE};
pub use tfmprov_db::{DbChoice, DbError};
pub use stats::Stats;
pub use store::DB_FILE;

/// CN of the aggregator's HTTPS certificate ([`Config::https`]).
pub const HTTPS_CN: &str = "tfmprov-aggregator";

/// The first operator's token file in the state directory.
pub const ADMIN_TOKEN_FILE: &str = "operator.token";
/// How long [`Aggregator::start`] waits for the broker connection and subscription.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a rotation waits for the CA to sign a new key's CSR.
const ROTATION_CA_TIMEOUT: Duration = Duration::from_secs(10);

/// QoS of the aggregator's `{prefix}/+/session` subscription: 1, not 2.
///
/// Devices still publish session messages with QoS 2 (DESIGN.md), so the
/// device -> broker leg is exactly once. On the broker -> aggregator leg QoS 2
/// would add nothing: a message is acknowledged only once committed, and a
/// redelivered copy is refused by the session id rule (StaleSession), as a
/// data duplicate is by the window. And it would be dangerous: rumqttc 0.25
/// answers a PUBREL that the broker re-sends after a reconnect (persistent
/// session; the aggregator stopped between its PUBREC and the broker's PUBREL)
/// with `StateError::Unsolicited` and drops the connection, for ever: checked
/// against mosquitto 2, every reconnect gets the PUBREL again and ingestion of
/// every topic stops.
pub const SESSION_SUBSCRIBE_QOS: u8 = 1;

/// The aggregation server.
pub struct Aggregator;

/// A started aggregator: HTTP API, MQTT ingestion, SQLite store.
pub struct Running {
    http_addr: SocketAddr,
    https: bool,
    mqtt_addr: SocketAddr,
    mqtts_addr: Option<SocketAddr>,
    counters: Arc<stats::Counters>,
    http_stop: oneshot::Sender<()>,
    http_task: JoinHandle<()>,
    link: mqtt::MqttLink,
    pipeline: ingest::Pipeline,
    out: tokio::sync::mpsc::UnboundedSender<ingest::Out>,
    shared: Arc<ingest::Shared>,
    expiry_task: JoinHandle<()>,
    rotation_task: JoinHandle<()>,
    crl_task: Option<JoinHandle<()>>,
    tls_task: Option<JoinHandle<()>>,
}

/// MQTT client id: stable for a state directory, so a restarted aggregator
/// resumes its persistent session (and gets what arrived meanwhile).
fn client_id(state_dir: &std::path::Path, instance: Option<&str>) -> String {
    let p = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
    let d = ring::digest::digest(&ring::digest::SHA256, p.to_string_lossy().as_bytes());
    match instance {
        Some(i) => format!("tfmprov-aggregator-{}-{i}", hex::encode(&d.as_ref()[..8])),
        None => format!("tfmprov-aggregator-{}", hex::encode(&d.as_ref()[..8])),
    }
}

/// `{prefix}/+/reply` (shared in a group): remote provisioning replies.
fn reply_filter(cfg: &Config) -> String {
    shared(cfg, format!("{}/+/reply", cfg.topic_prefix))
}

/// The subscription filter for `kind`, shared when the aggregator runs as one
/// of a group of instances.
fn filter(cfg: &Config, kind: Kind) -> String {
    shared(cfg, subscription(&cfg.topic_prefix, kind))
}

/// `plain` as a shared subscription (`$share/{group}/…`) in a group.
fn shared(cfg: &Config, plain: String) -> String {
    match &cfg.share_group {
        Some(g) => format!("$share/{g}/{plain}"),
        None => plain,
    }
}

/// Start the embedded broker (rumqttd) alone, as [`Aggregator::start`] does
/// for [`BrokerChoice::Embedded`]: on `listen` (port 0 = a free port), in
/// background threads that live until the process exits. Returns the bound
/// address once it accepts connections.
pub fn start_embedded_broker(listen: SocketAddr) -> Result<SocketAddr, Error> {
    broker::start_embedded(listen)
}

impl Aggregator {
    /// Open the database (`aggregator.sqlite` under `state_dir`, WAL), start
    /// the embedded broker if chosen, connect and subscribe, start the verify
    /// pool and the writer, and serve HTTP. Returns once all are ready.
    pub async fn start(cfg: Config) -> Result<Running, Error> {
        cfg.validate()?;
        let roots = chain::Roots::from_pem(&cfg.ca_root_pem)?;
        let state_dir = cfg.state_dir.clone();
        let cloud_choice = cfg.cloud.clone();
        let (broker_tls, https, ca_root_pem) = (cfg.broker_tls.clone(), cfg.https.clone(), cfg.ca_root_pem.clone());
        // The CA it talks to (cloud enrollment, rotations, CRL, its own
        // certificates) may be on HTTPS under the same root.
        tfmprov_tls::trust_for_https(&cfg.ca_root_pem).map_err(|e| Error::Config(format!("CA root: {e}")))?;
        let ca_token = cfg.ca_token.clone().unwrap_or_default();
        let db_choice = cfg.database.clone();
        let admin_token_file = cfg.admin_token_file.clone().unwrap_or_else(|| cfg.state_dir.join(ADMIN_TOKEN_FILE));
        let opened = tokio::task::spawn_blocking(move || {
            // The first connection migrates the schema.
            let reg_db = store::open(&db_choice, &state_dir, true)?;
            let auth = tfmprov_auth::Auth::new(store::open(&db_choice, &state_dir, false)?);
            auth.bootstrap(&admin_token_file)?;
            let writer_db = store::open(&db_choice, &state_dir, false)?;
            let windows = store::load_windows(&writer_db)?;
            // Blocking: EnrollAt talks to the CA (bounded by ENROLL_TIMEOUT).
            let cloud = cloud::open(&state_dir, &cloud_choice, &roots, &ca_token)?;
            let storage = cloud::StorageKey::open(&state_dir)?;
            let session_db = store::open(&db_choice, &state_dir, false)?;
            let ids = store::load_session_ids(&session_db)?;
            let sessions = sessions::Sessions::new(cloud.map(Arc::new), storage, session_db, ids);
            // Blocking too: a first start has the CA issue the broker's certificate.
            let broker_id = broker_tls
                .as_ref()
                .map(|t| broker_tls::open(&state_dir, t, &ca_root_pem, &ca_token))
                .transpose()?;
            let https_id = https
                .as_ref()
                .map(|h| {
                    let files = (tfmprov_ca::HTTPS_KEY_FILE, tfmprov_ca::HTTPS_CERT_FILE);
                    // Operators may authenticate with a client certificate
                    // from the CA root instead of a token.
                    let operators = tfmprov_tls::ClientAuth::Optional;
                    let ca_url = h.ca_url.as_deref();
                    broker_tls::server_identity(&state_dir, files, HTTPS_CN, &h.names, ca_url, &ca_root_pem, &ca_token, operators)
                })
                .transpose()?;
            Ok::<_, Error>((reg_db, writer_db, windows, roots, sessions, Arc::new(auth), broker_id, https_id))
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))??;
        let (reg_db, writer_db, windows, roots, sessions, auth, broker_id, https_id) = opened;
        let sessions = Arc::new(sessions);
        let cloud_chain_pem = sessions.cloud().map(|c| c.chain_pem.clone());
        let registry = Arc::new(registry::Registry::open(roots, reg_db)?);
        let counters = Arc::new(stats::Counters::default());

        let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
        let http_addr = listener.local_addr()?;

        let broker_chain_pem = broker_id.as_ref().map(|i| i.chain_pem.clone()).or_else(|| cfg.external_broker_chain_pem.clone());
        let (mut mqtts_addr, mut tls_task) = (None, None);
        let (embedded, mqtt_addr) = match &cfg.broker {
            BrokerChoice::Embedded { listen } => {
                let listen = *listen;
                let addr = tokio::task::spawn_blocking(move || broker::start_embedded(listen))
                    .await
                    .map_err(|e| Error::Broker(e.to_string()))??;
                tracing::info!(%addr, "embedded MQTT broker listening");
                if let (Some(t), Some(id)) = (&cfg.broker_tls, &broker_id) {
                    let listener = tokio::net::TcpListener::bind(t.listen)
                        .await
                        .map_err(|e| Error::Broker(format!("cannot listen on {}: {e}", t.listen)))?;
                    let a = listener.local_addr()?;
                    tracing::info!(addr = %a, "embedded MQTT broker: TLS listener for devices");
                    let listener = tfmprov_tls::TlsListener::new(listener, id.config.clone())?;
                    tls_task = Some(tokio::spawn(broker_tls::terminate(listener, addr)));
                    mqtts_addr = Some(a);
                }
                (Some(addr), addr)
            }
            BrokerChoice::External { .. } => {
                let (_, host, port) = cfg.broker.endpoint()?;
                let addr = tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .map_err(|e| Error::Mqtt(format!("cannot resolve {host}: {e}")))?
                    .next()
                    .ok_or_else(|| Error::Mqtt(format!("{host} has no address")))?;
                (None, addr)
            }
        };
        let opts = broker::client_options(&client_id(&cfg.state_dir, cfg.instance.as_deref()), &cfg.broker, embedded)?;

        let (out_tx, out_rx) = tokio::sync::mpsc::unbounded_channel();
        let remote = Arc::new(remote::Remote {
            registry: registry.clone(),
            cloud: sessions.cloud_shared(),
            prefix: cfg.topic_prefix.clone(),
            out: out_tx.clone(),
            timeout_ms: i64::try_from(cfg.command_timeout.as_millis()).unwrap_or(i64::MAX),
            send_order: std::sync::Mutex::new(()),
        });
        let rotations = Arc::new(rotation::Rotations {
            registry: registry.clone(),
            remote: remote.clone(),
            ca_url: cfg.rotation_ca.clone(),
            ca_token: cfg.ca_token.clone().unwrap_or_default(),
            default_grace: cfg.rotation_grace,
            http_timeout: ROTATION_CA_TIMEOUT,
        });
        let shared = Arc::new(ingest::Shared::new(
            registry.clone(),
            counters.clone(),
            cfg.topic_prefix.clone(),
            cfg.max_message,
            cfg.replay_horizon,
            windows,
            sessions,
            cfg.early_sealed_wait,
            cfg.share_group.is_some(),
            remote.clone(),
            out_tx.clone(),
        ));
        let (pipeline, dispatcher) = ingest::Pipeline::start(shared.clone(), writer_db, cfg.workers)?;
        let expiry = dispatcher.clone();
        let metrics_view = dispatcher.clone();
        let subs = vec![
            (filter(&cfg, Kind::Data), Kind::Data.qos()),
            (filter(&cfg, Kind::Session), SESSION_SUBSCRIBE_QOS),
            (filter(&cfg, Kind::Sealed), Kind::Sealed.qos()),
            (reply_filter(&cfg), 1),
        ];
        let link = match mqtt::start(opts, subs, dispatcher, shared.clone(), out_tx.clone(), out_rx, CONNECT_TIMEOUT).await {
            Ok(l) => l,
            Err(e) => {
                let _ = tokio::task::spawn_blocking(move || pipeline.stop()).await;
                return Err(e);
            }
        };

        let (http_stop, stop_rx) = oneshot::channel::<()>();
        let http_registry = registry.clone();
        let crl_latest: crl::Latest = Arc::default();
        let (crl_registry, crl_auth) = (registry.clone(), auth.clone());
        let app = http::router(Arc::new(http::AppState {
            registry,
            counters: counters.clone(),
            cloud_chain_pem,
            broker_chain_pem,
            depths: Box::new(move || metrics_view.depths()),
            remote,
            rotations: rotations.clone(),
            auth: auth.clone(),
            crl: crl_latest.clone(),
        }));
        let https = https_id.is_some();
        let (plain, tls) = match https_id {
            Some(id) => (None, Some(tfmprov_tls::TlsListener::new(listener, id.config)?)),
            None => (Some(listener), None),
        };
        let http_task = tokio::spawn(async move {
            let stop = async {
                let _ = stop_rx.await;
            };
            let res = match (plain, tls) {
                // ConnectInfo<TlsPeer>: an operator's client certificate.
                (_, Some(tls)) => {
                    let app = app.into_make_service_with_connect_info::<tfmprov_tls::TlsPeer>();
                    axum::serve(tls, app).with_graceful_shutdown(stop).await
                }
                (Some(listener), None) => {
                    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
                        let _ = tcp.set_nodelay(true);
                    });
                    axum::serve(listener, app).with_graceful_shutdown(stop).await
                }
                (None, None) => Ok(()),
            };
            if let Err(e) = res {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
        // Early sealed messages whose session message did not come in time;
        // and, each REFRESH_EVERY, devices changed by other instances.
        let reg = http_registry.clone();
        let expiry_task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut last_refresh = std::time::Instant::now();
            loop {
                tick.tick().await;
                expiry.expire_parked().await;
                if last_refresh.elapsed() >= registry::REFRESH_EVERY {
                    last_refresh = std::time::Instant::now();
                    let reg = reg.clone();
                    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || reg.refresh()).await {
                        tracing::warn!(error = %e, "cannot re-read the device table");
                    }
                }
            }
        });
        // Key rotations: one step per device per tick, in its own task
        // (a step may wait for the CA).
        let rotation_task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(rotation::TICK);
            loop {
                tick.tick().await;
                let r = rotations.clone();
                let _ = tokio::task::spawn_blocking(move || r.tick()).await;
            }
        });
        // The CA's CRL, every crl_interval (the first round at once).
        let crl_task = cfg.crl_url.clone().map(|url| {
            let (registry, auth, latest, every) = (crl_registry, crl_auth, crl_latest, cfg.crl_interval);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    let (r, a, l, u) = (registry.clone(), auth.clone(), latest.clone(), url.clone());
                    match tokio::task::spawn_blocking(move || crl::refresh(&u, &r, &a, &l)).await {
                        Ok(Err(e)) => tracing::warn!(error = %e, "CRL not applied"),
                        Ok(Ok(revoked)) if !revoked.is_empty() => tracing::warn!(?revoked, "devices revoked by the CA's CRL"),
                        _ => {}
                    }
                }
            })
        });
        tracing::info!(%http_addr, %mqtt_addr, "aggregator started");
        Ok(Running { http_addr, https, mqtt_addr, mqtts_addr, counters, http_stop, http_task, link, pipeline, out: out_tx, shared, expiry_task, rotation_task, crl_task, tls_task })
    }
}

impl Running {
    /// Where the HTTP API listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The broker the aggregator uses (the embedded one's bound address, or
    /// the external broker's resolved address).
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.mqtt_addr
    }

    /// The API's base URL: `https://ADDR` with [`Config::https`], else `http://ADDR`.
    pub fn http_url(&self) -> String {
        format!("{}://{}", if self.https { "https" } else { "http" }, self.http_addr)
    }

    /// The embedded broker's TLS listener for devices, if configured
    /// ([`Config::broker_tls`]).
    pub fn mqtts_addr(&self) -> Option<SocketAddr> {
        self.mqtts_addr
    }

    /// Accepted / rejected counters since start.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// Stop: no new messages are taken (unacknowledged ones stay with the
    /// broker for the next start), the ones in the pipeline are stored and
    /// acknowledged, the MQTT session is closed, then the HTTP server. The
    /// embedded broker (rumqttd has no stop) keeps running until the process
    /// exits.
    pub async fn shutdown(self) {
        let Running { http_stop, http_task, link, pipeline, out, shared, expiry_task, rotation_task, crl_task, tls_task, .. } = self;
        link.intake.store(false, Ordering::SeqCst);
        // No new device connections over TLS (those open end with the process).
        if let Some(t) = tls_task {
            t.abort();
        }
        expiry_task.abort();
        rotation_task.abort();
        if let Some(t) = crl_task {
            t.abort();
        }
        // Early sealed messages still waiting: their session message did not
        // come before the shutdown (they were acknowledged when held).
        shared.expire_all_parked();
        let _ = tokio::task::spawn_blocking(move || pipeline.stop()).await;
        link.stopping.store(true, Ordering::SeqCst);
        let _ = out.send(ingest::Out::Disconnect);
        let grace = Duration::from_secs(5);
        let mqtt::MqttLink { event_task, outbox_task, .. } = link;
        let (ea, oa) = (event_task.abort_handle(), outbox_task.abort_handle());
        if tokio::time::timeout(grace, outbox_task).await.is_err() {
            oa.abort();
        }
        if tokio::time::timeout(grace, event_task).await.is_err() {
            ea.abort();
        }
        let _ = http_stop.send(());
        let ha = http_task.abort_handle();
        if tokio::time::timeout(grace, http_task).await.is_err() {
            ha.abort();
        }
        tracing::info!("aggregator stopped");
    }
}
