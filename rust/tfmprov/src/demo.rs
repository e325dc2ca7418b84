//! The servers as commands (`ca serve`, `aggregator serve`) and the demo:
//! the whole system on its embedded defaults.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Runs a future on a multi-threaded runtime until Ctrl-C / SIGTERM.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// HTTPS or plain HTTP for `tfmprov ca serve` and `tfmprov aggregator serve`.
#[derive(Args, Clone, Debug)]
pub struct HttpsArgs {
    /// Serve plain HTTP instead of HTTPS: only on a loopback address
    /// (operator tokens would otherwise cross the network in clear).
    #[arg(long)]
    pub plain_http: bool,
    /// The names in the server's TLS certificates (host names or IP
    /// addresses), issued by the project's CA at the first start. With
    /// --mqtts-listen, the broker's too; devices connect to the first.
    #[arg(long = "tls-name", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
    pub tls_names: Vec<String>,
}

impl HttpsArgs {
    /// Whether to serve HTTPS on `listen`; plain HTTP away from loopback is refused.
    pub fn https_on(&self, listen: SocketAddr) -> Result<bool> {
        if self.plain_http && !listen.ip().is_loopback() {
            bail!("--plain-http on {listen}: plain HTTP is only served on a loopback address; drop --plain-http for HTTPS");
        }
        Ok(!self.plain_http)
    }
}

/// `tfmprov ca serve`.
#[allow(clippy::too_many_arguments)]
pub fn serve_ca(
    state: PathBuf,
    listen: SocketAddr,
    validity_days: u32,
    import_root: Option<Vec<PathBuf>>,
    import_intermediate: Option<Vec<PathBuf>>,
    database: tfmprov_aggregator::DbChoice,
    admin_token_file: Option<PathBuf>,
    https: &HttpsArgs,
) -> Result<()> {
    let tls = https.https_on(listen)?;
    let import = match (import_root, import_intermediate) {
        (None, None) => None,
        (root, Some(inter)) => {
            let (root_key, root_cert) = match root {
                Some(r) if r.len() == 2 => (Some(r[0].clone()), r[1].clone()),
                _ => bail!("--import-intermediate needs --import-root KEY CERT too"),
            };
            Some(tfmprov_ca::ImportedCas {
                root_cert,
                root_key,
                intermediate_cert: inter[1].clone(),
                intermediate_key: inter[0].clone(),
            })
        }
        (Some(_), None) => bail!("--import-root needs --import-intermediate KEY CERT too"),
    };
    let cfg = tfmprov_ca::CaConfig { state_dir: state, validity_days, import, database, admin_token_file };
    let ca = Arc::new(tfmprov_ca::Ca::open_or_create(&cfg).context("opening the CA")?);
    let identity = if tls { Some(ca.server_identity(&https.tls_names).context("the CA's HTTPS certificate")?) } else { None };
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr()?;
        match identity {
            Some(id) => {
                println!("ca ready https://{addr}");
                tfmprov_ca::serve_https(ca, listener, id.config, shutdown_signal()).await.context("CA server")?;
            }
            None => {
                println!("ca ready http://{addr}");
                tfmprov_ca::serve(ca, listener, shutdown_signal()).await.context("CA server")?;
            }
        }
        Ok(())
    })
}

/// `tfmprov aggregator serve` arguments.
#[derive(Args, Clone, Debug)]
pub struct AggregatorArgs {
    /// State directory (aggregator.sqlite, cloud key).
    #[arg(long)]
    pub state: PathBuf,
    /// HTTP listen address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The CA root every device chain must verify to (PEM).
    #[arg(long)]
    pub ca_root: PathBuf,
    /// `embedded` (rumqttd in this process, on --mqtt-listen) or mqtt://HOST:PORT or mqtts://HOST:PORT.
    #[arg(long, default_value = "embedded")]
    pub broker: String,
    /// Where the embedded broker listens.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub mqtt_listen: SocketAddr,
    /// CA file for mqtts://.
    #[arg(long)]
    pub broker_ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for mqtts://.
    #[arg(long, num_args = 2, value_names = ["CERT", "KEY"])]
    pub broker_client_cert: Option<Vec<PathBuf>>,
    /// MQTT topic prefix.
    #[arg(long, default_value = "prov")]
    pub topic_prefix: String,
    /// The CA that issues, at the first start, the cloud key's certificate
    /// (session messages need it), the HTTPS certificate and the broker's
    /// (--mqtts-listen); signs rotated keys; serves the CRL.
    #[arg(long, conflicts_with = "cloud_key")]
    pub ca_url: Option<String>,
    /// Import the cloud key (PEM) instead; needs --cloud-cert.
    #[arg(long, requires = "cloud_cert")]
    pub cloud_key: Option<PathBuf>,
    /// The cloud certificate chain (PEM) for --cloud-key.
    #[arg(long, requires = "cloud_key")]
    pub cloud_cert: Option<PathBuf>,
    /// Refuse (code 11) a message whose seq is more than this below its key's
    /// newest accepted seq. Replay detection is exact regardless.
    #[arg(long, default_value_t = tfmprov_aggregator::DEFAULT_REPLAY_HORIZON)]
    pub replay_horizon: u64,
    /// Run as a member of this group of instances on one database and one
    /// external broker (MQTT shared subscriptions; docs/deploy.md). Needs --instance.
    #[arg(long, requires = "instance")]
    pub share_group: Option<String>,
    /// This instance's name (stable across its restarts, unique in the group).
    #[arg(long)]
    pub instance: Option<String>,
    /// The database: `sqlite` (aggregator.sqlite in --state) or postgres://USER@HOST:PORT/DB
    /// (a URL with a password is better given in the environment).
    #[arg(long, env = "TFMPROV_AGGREGATOR_DB", default_value = "sqlite", hide_env_values = true)]
    pub db: String,
    /// A remote command not answered within this many seconds reads as timed_out.
    #[arg(long, default_value_t = tfmprov_aggregator::DEFAULT_COMMAND_TIMEOUT.as_secs())]
    pub command_timeout: u64,
    /// The CA that signs rotated keys' CSRs (default: --ca-url, if given).
    #[arg(long)]
    pub rotation_ca: Option<String>,
    /// Seconds a rotated-out key stays accepted after the device switched.
    #[arg(long, default_value_t = tfmprov_aggregator::DEFAULT_ROTATION_GRACE.as_secs())]
    pub rotation_grace: u64,
    /// The first operator's token file (default: operator.token in --state).
    /// At the first start, with no operator, the token in it becomes
    /// admin's, or a new one is written there (mode 0600).
    #[arg(long)]
    pub admin_token_file: Option<PathBuf>,
    /// The CA's CRL, fetched every --crl-interval: a device whose certificate
    /// it lists is revoked (default: {--ca-url}/v1/crl when --ca-url is given).
    #[arg(long)]
    pub crl_url: Option<String>,
    /// Seconds between CRL fetches.
    #[arg(long, default_value_t = tfmprov_aggregator::DEFAULT_CRL_INTERVAL.as_secs())]
    pub crl_interval: u64,
    /// File holding the operator token (scope `sign`) shown to the CA at
    /// --ca-url / --rotation-ca: cloud key enrollment and rotated keys.
    #[arg(long, env = "TFMPROV_CA_TOKEN_FILE")]
    pub ca_token_file: Option<PathBuf>,
    /// A TLS listener of the embedded broker for devices (mutual TLS with
    /// their certificates; docs/security.md). Its certificate comes from
    /// --ca-url at the first start (a token of scope `servers`).
    #[arg(long)]
    pub mqtts_listen: Option<SocketAddr>,
    /// The external broker's TLS certificate chain (PEM), served at
    /// GET /v1/broker: enrollment stores it on devices, which pin its key.
    #[arg(long)]
    pub broker_cert: Option<PathBuf>,
    #[command(flatten)]
    pub https: HttpsArgs,
}

impl AggregatorArgs {
    /// The library configuration for these arguments.
    pub fn config(&self) -> Result<tfmprov_aggregator::Config> {
        let ca_root_pem = std::fs::read_to_string(&self.ca_root)
            .with_context(|| format!("reading the CA root {}", self.ca_root.display()))?;
        let broker_arg = if self.broker == "embedded" { format!("embedded:{}", self.mqtt_listen) } else { self.broker.clone() };
        let client_cert = self.broker_client_cert.as_ref().map(|v| (v[0].clone(), v[1].clone()));
        let broker = tfmprov_aggregator::BrokerChoice::parse(&broker_arg, self.broker_ca.clone(), client_cert)
            .map_err(|e| anyhow::anyhow!("--broker: {e}"))?;
        let mut cfg = tfmprov_aggregator::Config::new(self.state.clone(), self.listen, ca_root_pem);
        cfg.broker = broker;
        cfg.cloud = match (&self.ca_url, &self.cloud_key, &self.cloud_cert) {
            (Some(url), _, _) => tfmprov_aggregator::CloudIdentity::EnrollAt { ca_url: url.clone() },
            (None, Some(key), Some(cert)) => tfmprov_aggregator::CloudIdentity::Import { key: key.clone(), cert: cert.clone() },
            _ => tfmprov_aggregator::CloudIdentity::None,
        };
        cfg.topic_prefix = self.topic_prefix.clone();
        cfg.replay_horizon = self.replay_horizon;
        cfg.share_group = self.share_group.clone();
        cfg.command_timeout = std::time::Duration::from_secs(self.command_timeout);
        cfg.rotation_ca = self.rotation_ca.clone().or_else(|| self.ca_url.clone());
        cfg.rotation_grace = std::time::Duration::from_secs(self.rotation_grace);
        cfg.database = tfmprov_aggregator::DbChoice::parse(&self.db).map_err(|e| anyhow::anyhow!("--db: {e}"))?;
        cfg.instance = self.instance.clone();
        cfg.admin_token_file = self.admin_token_file.clone();
        cfg.crl_url = self.crl_url.clone().or_else(|| self.ca_url.as_ref().map(|u| format!("{}/v1/crl", u.trim_end_matches('/'))));
        cfg.crl_interval = std::time::Duration::from_secs(self.crl_interval.max(1));
        cfg.ca_token = self.ca_token_file.as_deref().map(crate::credential::read_token).transpose()?;
        cfg.broker_tls = self.mqtts_listen.map(|listen| tfmprov_aggregator::BrokerTls {
            listen,
            names: self.https.tls_names.clone(),
            ca_url: self.ca_url.clone(),
        });
        cfg.external_broker_chain_pem = self
            .broker_cert
            .as_ref()
            .map(|p| std::fs::read_to_string(p).with_context(|| format!("--broker-cert {}", p.display())))
            .transpose()?;
        if self.https.https_on(self.listen)? {
            cfg.https = Some(tfmprov_aggregator::Https { names: self.https.tls_names.clone(), ca_url: self.ca_url.clone() });
        }
        Ok(cfg)
    }
}

/// `tfmprov aggregator serve`.
pub fn serve_aggregator(args: AggregatorArgs) -> Result<()> {
    let cfg = args.config()?;
    runtime()?.block_on(async move {
        let running = tfmprov_aggregator::Aggregator::start(cfg).await.context("starting the aggregator")?;
        match running.mqtts_addr() {
            Some(tls) => println!("aggregator ready {} mqtt://{} mqtts://{tls}", running.http_url(), running.mqtt_addr()),
            None => println!("aggregator ready {} mqtt://{}", running.http_url(), running.mqtt_addr()),
        }
        shutdown_signal().await;
        running.shutdown().await;
        Ok(())
    })
}

/// `tfmprov demo` arguments.
#[derive(Args, Clone, Debug)]
pub struct DemoArgs {
    /// Number of simulated devices.
    #[arg(long, default_value_t = 3)]
    pub devices: usize,
    /// State directory (default: a new temporary directory).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Signed messages each device publishes.
    #[arg(long, default_value_t = 5)]
    pub messages: u64,
    /// Leave the servers running at the end and print their URLs.
    #[arg(long)]
    pub keep: bool,
}

/// The servers of a demo (or a test): CA and aggregator with its embedded
/// broker, in this process, on free loopback ports.
pub struct Servers {
    /// CA base URL.
    pub ca_url: String,
    /// Aggregator base URL.
    pub aggregator_url: String,
    /// Broker address (`mqtt://...`): the plain listener, on loopback.
    pub mqtt_url: String,
    /// The embedded broker's TLS listener (`mqtts://127.0.0.1:PORT`), for
    /// enrolled devices.
    pub mqtts_url: Option<String>,
    /// The CA root (PEM).
    pub root_pem: String,
    /// The operator token both servers took as their first operator's
    /// (`admin`, every scope), in `operator.token` of the directory.
    pub token: String,
    /// The file holding it.
    pub token_file: PathBuf,
    rt: tokio::runtime::Runtime,
    aggregator: Option<tfmprov_aggregator::Running>,
    ca_stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Servers {
    /// Starts the CA and the aggregator (embedded broker) with state under `dir`.
    pub fn start(dir: &std::path::Path) -> Result<Servers> {
        Servers::start_on(dir, tfmprov_aggregator::BrokerChoice::Embedded { listen: "127.0.0.1:0".parse()? })
    }

    /// [`Servers::start`] with the aggregator on `broker` (an external one:
    /// mosquitto in the tests).
    pub fn start_on(dir: &std::path::Path, broker: tfmprov_aggregator::BrokerChoice) -> Result<Servers> {
        Servers::start_with(dir, broker, |_| {})
    }

    /// [`Servers::start_on`] with `tweak` applied to the aggregator's configuration.
    pub fn start_with(
        dir: &std::path::Path,
        broker: tfmprov_aggregator::BrokerChoice,
        tweak: impl FnOnce(&mut tfmprov_aggregator::Config),
    ) -> Result<Servers> {
        let rt = runtime()?;
        // One operator token for both servers (each adopts it as admin's at
        // its first start), made here unless an earlier start left one.
        let token_file = dir.join("operator.token");
        if !token_file.exists() {
            tfmprov_auth::write_secret(&token_file, &tfmprov_auth::generate_token())?;
        }
        let token = crate::credential::read_token(&token_file)?;
        let mut ca_cfg = tfmprov_ca::CaConfig::new(dir.join("ca"));
        ca_cfg.admin_token_file = Some(token_file.clone());
        let ca = Arc::new(tfmprov_ca::Ca::open_or_create(&ca_cfg).context("CA")?);
        let root_pem = ca.root_pem();
        let root_file = dir.join("ca-root.pem");
        std::fs::write(&root_file, &root_pem)?;
        let (ca_stop, ca_stopped) = tokio::sync::oneshot::channel::<()>();
        let ca_url = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            tokio::spawn(async move {
                let stop = async move {
                    let _ = ca_stopped.await;
                };
                if let Err(e) = tfmprov_ca::serve(ca, listener, stop).await {
                    tracing::error!("CA server: {e}");
                }
            });
            Ok::<_, anyhow::Error>(format!("http://{addr}"))
        })?;
        let mut cfg = tfmprov_aggregator::Config::new(dir.join("aggregator"), "127.0.0.1:0".parse()?, root_pem.clone());
        cfg.broker = broker;
        // The cloud key pair gets its certificate from the same CA on first start.
        cfg.cloud = tfmprov_aggregator::CloudIdentity::EnrollAt { ca_url: ca_url.clone() };
        // And signs rotated keys.
        cfg.rotation_ca = Some(ca_url.clone());
        cfg.admin_token_file = Some(token_file.clone());
        cfg.ca_token = Some(token.clone());
        // And whose revocations it follows.
        cfg.crl_url = Some(format!("{ca_url}/v1/crl"));
        // The embedded broker has a TLS listener for enrolled devices
        // (mutual TLS, the broker's key pinned); its certificate from the CA.
        if matches!(cfg.broker, tfmprov_aggregator::BrokerChoice::Embedded { .. }) {
            cfg.broker_tls = Some(tfmprov_aggregator::BrokerTls::new("127.0.0.1:0".parse()?, Some(ca_url.clone())));
        }
        tweak(&mut cfg);
        let running = rt.block_on(tfmprov_aggregator::Aggregator::start(cfg)).context("aggregator")?;
        let aggregator_url = running.http_url();
        let mqtt_url = format!("mqtt://{}", running.mqtt_addr());
        let mqtts_url = running.mqtts_addr().map(|a| format!("mqtts://{a}"));
        Ok(Servers { ca_url, aggregator_url, mqtt_url, mqtts_url, root_pem, token, token_file, rt, aggregator: Some(running), ca_stop: Some(ca_stop) })
    }

    /// The aggregator's counters.
    pub fn stats(&self) -> tfmprov_aggregator::Stats {
        self.aggregator.as_ref().map(|a| a.stats()).unwrap_or_default()
    }

    /// Blocks until Ctrl-C / SIGTERM.
    pub fn wait_for_signal(&self) {
        self.rt.block_on(shutdown_signal());
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        if let Some(a) = self.aggregator.take() {
            self.rt.block_on(a.shutdown());
        }
        if let Some(s) = self.ca_stop.take() {
            let _ = s.send(());
        }
    }
}

/// Watches the errors topic of every device and captures one device's data
/// messages, so the demo can replay and tamper with a real one.
struct Observer {
    client: rumqttc::Client,
    reports: Arc<std::sync::Mutex<Vec<(String, String)>>>,
    captured: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    closing: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Observer {
    fn start(mqtt_url: &str, capture_device: &str) -> Result<Observer> {
        use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
        let (_, host, port) = crate::sim::parse_mqtt_url(mqtt_url)?;
        let (client, mut connection) = Client::new(MqttOptions::new("demo-observer", host, port), 64);
        client.subscribe("prov/+/errors", QoS::AtLeastOnce)?;
        let data_topic = tfmprov_cose::topic("prov", capture_device, tfmprov_cose::Kind::Data);
        client.subscribe(&data_topic, QoS::AtLeastOnce)?;
        let reports = Arc::new(std::sync::Mutex::new(Vec::new()));
        let captured = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (r, c) = (reports.clone(), captured.clone());
        let closing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let closing_events = closing.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut subacks = 0;
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        subacks += 1;
                        if subacks == 2 {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if p.topic == data_topic {
                            c.lock().unwrap_or_else(|e| e.into_inner()).push(p.payload.to_vec());
                        } else {
                            let text = tfmprov_device::telemetry::describe_error_report(&p.payload);
                            r.lock().unwrap_or_else(|e| e.into_inner()).push((p.topic.clone(), text));
                        }
                    }
                    Ok(_) => {}
                    Err(rumqttc::ConnectionError::RequestsDone) => break,
                    Err(_) if closing_events.load(std::sync::atomic::Ordering::Relaxed) => break,
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(10)).context("subscribing to the broker")?;
        Ok(Observer { client, reports, captured, closing, thread: Some(thread) })
    }

    fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<()> {
        self.client.publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)?;
        Ok(())
    }

    fn reports(&self) -> Vec<(String, String)> {
        self.reports.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn first_capture(&self) -> Option<Vec<u8>> {
        self.captured.lock().unwrap_or_else(|e| e.into_inner()).first().cloned()
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.closing.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.client.disconnect();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A tampered copy of a signed data message: its protected `seq` moved far
/// ahead (so the anti-replay window lets it through to the signature check),
/// signature untouched, which therefore no longer verifies.
pub fn tamper_seq(original: &[u8]) -> Result<Vec<u8>> {
    use coset::{CborSerializable, TaggedCborSerializable};
    let mut msg = coset::CoseSign1::from_tagged_slice(original)
        .or_else(|_| coset::CoseSign1::from_slice(original))
        .map_err(|e| anyhow::anyhow!("not a COSE_Sign1: {e:?}"))?;
    let seq_label = coset::Label::Int(tfmprov_cose::SEQ_LABEL);
    let entry = msg.protected.header.rest.iter_mut().find(|(l, _)| *l == seq_label).context("no seq")?;
    let seq = entry.1.as_integer().and_then(|i| u64::try_from(i).ok()).context("seq is not a uint")?;
    entry.1 = ciborium::Value::Integer((seq + 1_000_000).into());
    msg.protected.original_data = None;
    msg.to_tagged_vec().map_err(|e| anyhow::anyhow!("encoding: {e:?}"))
}

/// A server's audit log (its SQLite file in `state`), verified: its head and
/// every entry.
fn audit_of(state: &std::path::Path, file: &str) -> Result<(tfmprov_auth::Head, Vec<tfmprov_auth::AuditEntry>)> {
    let db = tfmprov_db::Db::open(&tfmprov_db::DbChoice::Sqlite, state, file)?;
    let auth = tfmprov_auth::Auth::new(db);
    let head = auth.verify_audit(None)?;
    let mut entries = Vec::new();
    loop {
        let page = auth.audit_page(entries.last().map_or(0, |e: &tfmprov_auth::AuditEntry| e.seq), 1000)?;
        if page.is_empty() {
            break;
        }
        entries.extend(page);
    }
    Ok((head, entries))
}

/// Rotates `id`'s key through the aggregator while its simulator sends
/// telemetry; (the rotation at its end, messages stored under the new kid).
fn rotate_one(
    exe: &std::path::Path,
    dir: &std::path::Path,
    servers: &Servers,
    id: &str,
) -> Result<(tfmprov_aggregator::RotationInfo, usize)> {
    let extra: Vec<String> = vec!["--mqtt".into(), servers.mqtt_url.clone(), "--interval".into(), "300".into()];
    let sim = crate::sim::SimProcess::spawn(exe, &dir.join("devices").join(id), id, &extra)?;
    let agg = servers.aggregator_url.as_str();
    tfmprov_aggregator::client::start_rotation(agg, &servers.token, id, None, Some(1)).context("starting the rotation")?;
    let mut last = None;
    wait_until(Duration::from_secs(60), || {
        last = tfmprov_aggregator::client::rotation(agg, &servers.token, id).ok().flatten();
        last.as_ref().is_some_and(|r| r.state == "done" || r.state == "failed")
    });
    let r = last.context("the rotation vanished")?;
    let new_kid = r.new_kid.clone().unwrap_or_default();
    let under_new = || {
        tfmprov_aggregator::client::messages(agg, id, 100_000).map(|m| m.iter().filter(|m| m.kid == new_kid).count()).unwrap_or(0)
    };
    wait_until(Duration::from_secs(10), || under_new() >= 2);
    let n = under_new();
    sim.stop();
    Ok((r, n))
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

/// `tfmprov demo`: returns whether everything that should have worked did.
pub fn run(args: DemoArgs) -> Result<bool> {
    if args.devices == 0 || args.devices > 200 {
        bail!("--devices must be 1..=200");
    }
    let tmp;
    let dir = match &args.state {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.canonicalize()?
        }
        None => {
            tmp = tempfile::Builder::new().prefix("tfmprov-demo-").tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let exe = std::env::current_exe().context("locating the tfmprov binary")?;
    println!("tfmprov demo: state in {}", dir.display());

    // 1. Servers.
    let servers = Servers::start(&dir)?;
    println!("  CA          {}", servers.ca_url);
    println!("  aggregator  {}  (embedded broker {}, devices on {})", servers.aggregator_url, servers.mqtt_url, servers.mqtts_url.as_deref().unwrap_or("the same"));

    // 2. Devices: each a device-sim process with its own PSA key store.
    let ids: Vec<String> = (1..=args.devices).map(|i| format!("dev-{i}")).collect();
    let mut sims = Vec::new();
    for id in &ids {
        sims.push(crate::sim::SimProcess::spawn(&exe, &dir.join("devices").join(id), id, &[])?);
    }
    println!("  {} simulated devices (SMP over UDP)", sims.len());

    // 3. The sample set on each device, key 3 enrolled and registered.
    let targets: Vec<crate::target::Target> = sims
        .iter()
        .map(|s| crate::target::Target { device_id: s.device_id.clone(), link: tfmprov_transport::Link::Udp(s.udp) })
        .collect();
    let opts = crate::enroll::EnrollOptions {
        o: Some("tfmprov demo".into()),
        ..crate::enroll::EnrollOptions::new(&servers.ca_url, Some(&servers.aggregator_url), &servers.token)
    };
    // Known values as a factory would supply them: one pair per device (here
    // derived from the device id, so that no two devices share a key).
    let known = |id: &str, n: u32| -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(format!("tfmprov demo {id} key {n}").as_bytes()).into()
    };
    let summary = crate::batch::run(&targets, 8, true, "factory", |t| {
        crate::enroll::factory(t, &opts, &known(&t.device_id, 2), &known(&t.device_id, 3))
    });
    print!("{}", summary.report("  provisioning"));
    let enrolled = summary.ok_count();

    // 4. Restart the devices with telemetry on (their keys and certificates persist).
    let observer = Observer::start(&servers.mqtt_url, &ids[0])?;
    for s in sims.drain(..) {
        s.stop();
    }
    let interval = 150u64;
    // Enrolled devices use the TLS listener: their certificate and PSA key
    // for mutual TLS, the broker's key pinned.
    let extra: Vec<String> = vec![
        "--mqtt".into(),
        servers.mqtts_url.clone().unwrap_or_else(|| servers.mqtt_url.clone()),
        "--interval".into(),
        interval.to_string(),
        "--count".into(),
        args.messages.to_string(),
    ];
    for id in &ids {
        sims.push(crate::sim::SimProcess::spawn(&exe, &dir.join("devices").join(id), id, &extra)?);
    }
    // Every enrolled device sends `messages` data and `messages` sealed
    // messages, and one session message (the aggregator counts it accepted).
    let expected = enrolled as u64 * (args.messages * 2 + 1);
    let publish_time = Duration::from_millis(interval * args.messages + 15_000);
    let all_in = wait_until(publish_time, || servers.stats().accepted >= expected);

    // 5. One replayed and one tampered message from dev-1.
    let mut injected = false;
    if let Some(original) = observer.first_capture() {
        let topic = tfmprov_cose::topic("prov", &ids[0], tfmprov_cose::Kind::Data);
        observer.publish(&topic, original.clone())?;
        observer.publish(&topic, tamper_seq(&original)?)?;
        injected = true;
    }
    let rejections_seen = wait_until(Duration::from_secs(10), || observer.reports().len() >= 2);
    for s in sims.drain(..) {
        s.stop();
    }
    let stats = servers.stats();

    // 6. dev-1's key rotated remotely while it sends telemetry (issue 12):
    // new key at an ID the device picks, CSR to the CA, certificate stored
    // and registered, telemetry switched, the old key destroyed after a
    // 1-second grace period. All through the broker, end to end encrypted.
    let rotation = rotate_one(&exe, &dir, &servers, &ids[0]);
    let rotation_ok = matches!(&rotation, Ok((r, n)) if r.state == "done" && *n >= 2);
    let after_rotation = servers.stats();

    // 7. Who may do what (issue 13): a CSR without a credential is refused;
    // both servers' audit logs hold every action and their chains verify.
    let unauthenticated = tfmprov_ca::client::submit_csr(&servers.ca_url, "", b"", Duration::from_secs(5));
    let refused_401 = matches!(unauthenticated, Err(tfmprov_ca::Error::Http { status: 401, .. }));
    let ca_log = audit_of(&dir.join("ca"), tfmprov_ca::store::DB_FILE);
    let agg_log = audit_of(&dir.join("aggregator"), tfmprov_aggregator::DB_FILE);

    // 8. Summary.
    println!();
    println!("  {:<34} {:>8} {:>8}", "", "expected", "actual");
    println!("  {:<34} {:>8} {:>8}", "devices enrolled and registered", args.devices, enrolled);
    println!("  {:<34} {:>8} {:>8}", "accepted (data + session + sealed)", expected, stats.accepted);
    for (reason, n) in stats.rejected.iter().filter(|(_, n)| **n > 0) {
        println!("  {:<34} {:>8} {:>8}", format!("rejected: {reason}"), "", n);
    }
    println!();
    println!("  errors topic reports received by the demo:");
    for (topic, text) in observer.reports() {
        println!("    {topic}: {text}");
    }
    match &rotation {
        Ok((r, n)) => {
            println!("  {:<34} {:>8} {:>8}", format!("{} key rotated remotely", ids[0]), "done", r.state);
            println!(
                "  {:<34} {:>8} {:>8}",
                format!("  kid {} -> {}", r.old_kid, r.new_kid.as_deref().unwrap_or("-")),
                "",
                format!("key 0x{:x}", r.key_id.unwrap_or(0))
            );
            println!("  {:<34} {:>8} {:>8}", "  messages under the new kid", ">= 2", n);
            println!("  {:<34} {:>8} {:>8}", "  rejected during the rotation", 0, after_rotation.rejected_total() - stats.rejected_total());
        }
        Err(e) => println!("  {} key rotation: FAILED: {e:#}", ids[0]),
    }
    println!("  {:<34} {:>8} {:>8}", "CSR without an operator token", 401, if refused_401 { "401" } else { "accepted" });
    let count = |log: &Result<(tfmprov_auth::Head, Vec<tfmprov_auth::AuditEntry>)>, action: &str| {
        log.as_ref().map_or(0, |(_, e)| e.iter().filter(|e| e.action == action && e.result.starts_with("ok")).count())
    };
    // Certificates: one per device, the cloud key's, the broker's (TLS), the rotated key's.
    let want_issued = enrolled + 3;
    println!("  {:<34} {:>8} {:>8}", "audit (CA): certificates issued", want_issued, count(&ca_log, "certificate.issue"));
    println!("  {:<34} {:>8} {:>8}", "audit (aggregator): registrations", enrolled, count(&agg_log, "device.register"));
    for (name, log) in [("CA", &ca_log), ("aggregator", &agg_log)] {
        match log {
            Ok((head, _)) => println!("  audit log ({name}): chain intact, head {head}"),
            Err(e) => println!("  audit log ({name}): NOT intact: {e:#}"),
        }
    }
    if args.keep || args.state.is_some() {
        println!("  operator token (every scope): {}", servers.token_file.display());
    }
    let replay = stats.rejected_for(tfmprov_cose::RejectCode::Replay);
    let bad_sig = stats.rejected_for(tfmprov_cose::RejectCode::BadSignature);
    let ok = enrolled == args.devices
        && all_in
        && stats.accepted == expected
        && injected
        && rejections_seen
        && replay == 1
        && bad_sig == 1
        && stats.rejected_total() == 2
        && rotation_ok
        && after_rotation.rejected_total() == stats.rejected_total()
        && refused_401
        && count(&ca_log, "certificate.issue") == want_issued
        && count(&agg_log, "device.register") == enrolled
        && ca_log.is_ok()
        && agg_log.is_ok();
    println!();
    if ok {
        println!("demo: OK: every device enrolled, every message accepted once, the replay and the tampered message rejected, a key rotated remotely, no credential no certificate, both audit logs intact");
    } else {
        println!("demo: FAILED: see the table above");
    }
    if args.keep {
        println!("servers left running (Ctrl-C to stop): CA {} aggregator {} broker {}", servers.ca_url, servers.aggregator_url, servers.mqtt_url);
        drop(observer);
        servers.wait_for_signal();
    }
    Ok(ok)
}
