//! Shared test (and bench) helpers: an in-test PKI (rcgen), mosquitto on a
//! free port, MQTT test clients (rumqttc, and a raw one for DUP/odd packets),
//! and a harness that starts an aggregator on either broker kind.
#![allow(dead_code)]

use std::io::{Read, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use p256::ecdsa::signature::Signer;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tfmprov_aggregator::{Aggregator, BrokerChoice, Config, Running, Stats};
use tfmprov_cose::ErrorReport;

// ---------------------------------------------------------------- PKI

/// A CA: its parameters, key and certificate.
pub struct Ca {
    pub params: CertificateParams,
    pub key: KeyPair,
    pub pem: String,
    pub der: Vec<u8>,
}

fn p256_key() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key")
}

fn ca_params(cn: &str, path_len: Option<u8>, key_usages: Vec<KeyUsagePurpose>) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name.push(DnType::OrganizationName, "tfmprov tests");
    p.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    p.key_usages = key_usages;
    p
}

fn ca_usages() -> Vec<KeyUsagePurpose> {
    vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign]
}

impl Ca {
    pub fn root(cn: &str) -> Ca {
        let params = ca_params(cn, None, ca_usages());
        let key = p256_key();
        let cert = params.self_signed(&key).expect("root");
        Ca { pem: cert.pem(), der: cert.der().to_vec(), params, key }
    }

    /// A CA signed by `self` with the given parameters.
    pub fn sub(&self, params: CertificateParams) -> Ca {
        let key = p256_key();
        let cert = params.signed_by(&key, &Issuer::from_params(&self.params, &self.key)).expect("sub CA");
        Ca { pem: cert.pem(), der: cert.der().to_vec(), params, key }
    }

    pub fn intermediate(&self, cn: &str) -> Ca {
        self.sub(ca_params(cn, Some(0), ca_usages()))
    }

    /// An intermediate whose keyUsage lacks keyCertSign (webpki alone would accept it).
    pub fn intermediate_without_cert_sign(&self, cn: &str) -> Ca {
        self.sub(ca_params(cn, Some(0), vec![KeyUsagePurpose::DigitalSignature]))
    }

    /// An intermediate with pathlen 0 below which another CA sits (path length violated).
    pub fn intermediate_pathlen0(&self, cn: &str) -> Ca {
        self.sub(ca_params(cn, Some(0), ca_usages()))
    }

    pub fn intermediate_unconstrained(&self, cn: &str) -> Ca {
        self.sub(ca_params(cn, None, ca_usages()))
    }

    /// Leaf parameters as the project's CA issues them.
    pub fn leaf_params(cn: &str) -> CertificateParams {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p
    }

    /// A device whose leaf is made from `params` and signed by this CA; the
    /// chain is leaf + `chain_tail` (PEM).
    pub fn device_with(&self, id: &str, params: CertificateParams, chain_tail: &str) -> Device {
        let key = p256_key();
        let cert = params.signed_by(&key, &Issuer::from_params(&self.params, &self.key)).expect("leaf");
        Device::new(id, key, format!("{}{}", cert.pem(), chain_tail))
    }
}

/// The test PKI: root -> intermediate (pathlen 0) -> device leaves.
pub struct Pki {
    pub root: Ca,
    pub inter: Ca,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let root = Ca::root(&format!("{name} root"));
        let inter = root.intermediate(&format!("{name} intermediate"));
        Pki { root, inter }
    }

    /// A device with a normal leaf (CN = id) and chain leaf + intermediate.
    pub fn device(&self, id: &str) -> Device {
        self.inter.device_with(id, Ca::leaf_params(id), &self.inter.pem)
    }

    /// A device whose leaf is built from `f(params)`.
    pub fn device_custom(&self, id: &str, f: impl FnOnce(&mut CertificateParams)) -> Device {
        let mut p = Ca::leaf_params(id);
        f(&mut p);
        self.inter.device_with(id, p, &self.inter.pem)
    }
}

/// A device: its P-256 key, kid and chain.
pub struct Device {
    pub id: String,
    pub signer: p256::ecdsa::SigningKey,
    pub point: [u8; 65],
    pub kid: [u8; 8],
    pub chain_pem: String,
    pub pkcs8_der: Vec<u8>,
}

pub fn kid_of_point(point: &[u8; 65]) -> [u8; 8] {
    let spki = tfmprov_cose::p256_spki_der(point);
    let d = ring::digest::digest(&ring::digest::SHA256, &spki);
    let mut full = [0u8; 32];
    full.copy_from_slice(d.as_ref());
    tfmprov_cose::kid_from_spki_digest(&full)
}

impl Device {
    fn new(id: &str, key: KeyPair, chain_pem: String) -> Device {
        use p256::pkcs8::DecodePrivateKey;
        let pkcs8_der = key.serialize_der();
        let signer = p256::ecdsa::SigningKey::from_pkcs8_der(&pkcs8_der).expect("pkcs8");
        let point: [u8; 65] = key.public_key_raw().try_into().expect("65-byte point");
        Device { id: id.to_owned(), signer, kid: kid_of_point(&point), point, chain_pem, pkcs8_der }
    }

    /// A `data` message (COSE_Sign1, ES256, deterministic) with this device's kid.
    pub fn sign(&self, seq: u64, payload: &[u8]) -> Vec<u8> {
        self.sign_with_kid(&self.kid, seq, payload)
    }

    /// Signed by this device's key but naming `kid`.
    pub fn sign_with_kid(&self, kid: &[u8; 8], seq: u64, payload: &[u8]) -> Vec<u8> {
        tfmprov_cose::sign_data(kid, seq, payload, |tbs| {
            let s: p256::ecdsa::Signature = self.signer.sign(tbs);
            let mut out = [0u8; 64];
            out.copy_from_slice(&s.to_bytes());
            Ok::<_, ()>(out)
        })
        .expect("sign_data")
    }

    /// Like [`Device::sign`] but with *ring* (randomized ECDSA): fast even in
    /// debug builds, for tests that need many messages.
    pub fn sign_fast(&self, seq: u64, payload: &[u8]) -> Vec<u8> {
        use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &self.pkcs8_der, &rng).expect("pkcs8");
        tfmprov_cose::sign_data(&self.kid, seq, payload, |tbs| {
            let sig = kp.sign(&rng, tbs).map_err(|_| ())?;
            <[u8; 64]>::try_from(sig.as_ref()).map_err(|_| ())
        })
        .expect("sign_data")
    }

    /// The private scalar (for pycose).
    pub fn d(&self) -> [u8; 32] {
        self.signer.to_bytes().into()
    }

    pub fn data_topic(&self) -> String {
        format!("prov/{}/data", self.id)
    }

    pub fn errors_topic(&self) -> String {
        format!("prov/{}/errors", self.id)
    }
}

// ---------------------------------------------------------------- mosquitto

pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// mosquitto on 127.0.0.1:`port` with a temporary config; killed on drop.
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

/// TLS material for a mosquitto mqtts listener.
pub struct TlsListener {
    pub port: u16,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub require_certificate: bool,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        Mosquitto::start_with(|_, _| String::new())
    }

    /// `extra(dir, port)` returns more config lines (other listeners).
    pub fn start_with(extra: impl Fn(&Path, u16) -> String) -> Mosquitto {
        let mut last_err = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = free_port();
            let conf = format!(
                "per_listener_settings false\nallow_anonymous true\npersistence false\n\
                 max_queued_messages 1000000\nmax_inflight_messages 100\n\
                 log_dest stderr\nlog_type error\nlog_type warning\n\
                 listener {port} 127.0.0.1\n{}",
                extra(dir.path(), port)
            );
            let conf_path = dir.path().join("mosquitto.conf");
            std::fs::write(&conf_path, conf).expect("write conf");
            let log = dir.path().join("mosquitto.log");
            let mut child = Command::new(MOSQUITTO)
                .arg("-c")
                .arg(&conf_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log file"))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {MOSQUITTO} (apt-get install mosquitto): {e}"));
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    let err = std::fs::read_to_string(&log).unwrap_or_default();
                    last_err = format!("mosquitto exited ({status}): {err}");
                    break;
                }
                if TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_millis(200)).is_ok() {
                    return Mosquitto { child, port, dir };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_err = "mosquitto did not listen within 10 s".into();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("could not start mosquitto: {last_err}");
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- harness

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerKind {
    /// mosquitto, SQLite.
    Mosquitto,
    /// The embedded rumqttd, SQLite.
    Embedded,
    /// mosquitto, and PostgreSQL (a fresh database on the test server).
    Postgres,
}

// ---------------------------------------------------------------- PostgreSQL

pub use tfmprov_db::testing::PgServer;

/// Rows of `sql` on a PostgreSQL database (run on a plain thread: the
/// blocking client cannot run inside the test's runtime).
pub fn pg_query<T: Send + 'static>(url: &str, sql: &str, f: impl Fn(&postgres::Row) -> T + Send + 'static) -> Vec<T> {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        c.query(sql.as_str(), &[]).expect("query").iter().map(f).collect()
    })
    .join()
    .expect("query thread")
}

/// An aggregator on a broker of `kind`, with a test PKI whose root it trusts.
pub struct Harness {
    pub kind: BrokerKind,
    pub agg: Option<Running>,
    pub mosq: Option<Mosquitto>,
    /// The PostgreSQL server and this harness's database URL ([`BrokerKind::Postgres`]).
    pub pg: Option<(PgServer, String)>,
    pub pki: Pki,
    pub state: tempfile::TempDir,
    pub base: String,
    /// The broker devices publish to.
    pub broker: SocketAddr,
    /// The first operator's token (every scope), from `operator.token` in
    /// the state directory, where the aggregator wrote it at first start.
    pub token: String,
}

/// The token a server wrote to `operator.token` in `state` at first start.
pub fn admin_token(state: &Path) -> String {
    std::fs::read_to_string(state.join(tfmprov_aggregator::ADMIN_TOKEN_FILE)).expect("operator.token").trim().to_owned()
}

pub fn config(state: &Path, root_pem: &str, broker: BrokerChoice) -> Config {
    let mut cfg = Config::new(state, "127.0.0.1:0".parse().unwrap(), root_pem);
    cfg.broker = broker;
    cfg
}

impl Harness {
    pub async fn start(kind: BrokerKind) -> Harness {
        Harness::start_with(kind, |_| {}).await
    }

    pub async fn start_with(kind: BrokerKind, tweak: impl FnOnce(&mut Config)) -> Harness {
        Harness::start_full(kind, Pki::new("test"), tweak).await
    }

    /// An aggregator trusting `pki`'s root, with `tweak` applied to its config.
    pub async fn start_full(kind: BrokerKind, pki: Pki, tweak: impl FnOnce(&mut Config)) -> Harness {
        let state = tempfile::tempdir().expect("tempdir");
        let mosq = (kind != BrokerKind::Embedded).then(Mosquitto::start);
        let pg = (kind == BrokerKind::Postgres).then(|| {
            let server = PgServer::get();
            let url = server.fresh_database();
            (server, url)
        });
        let broker = match &mosq {
            Some(m) => BrokerChoice::External { url: m.url(), ca_file: None, client_cert: None },
            None => BrokerChoice::Embedded { listen: "127.0.0.1:0".parse().unwrap() },
        };
        let mut cfg = config(state.path(), &pki.root.pem, broker);
        if let Some((_, url)) = &pg {
            cfg.database = tfmprov_aggregator::DbChoice::Postgres(url.clone());
        }
        tweak(&mut cfg);
        let agg = Aggregator::start(cfg).await.expect("aggregator starts");
        let base = format!("http://{}", agg.http_addr());
        let broker = agg.mqtt_addr();
        let token = admin_token(state.path());
        Harness { kind, agg: Some(agg), mosq, pg, pki, state, base, broker, token }
    }

    pub fn agg(&self) -> &Running {
        self.agg.as_ref().expect("running")
    }

    /// Stop the aggregator and start a new one on the same state directory and broker.
    pub async fn restart(&mut self) {
        self.restart_with(|_| {}).await
    }

    /// [`Harness::restart`] with `tweak` applied to the new config.
    pub async fn restart_with(&mut self, tweak: impl FnOnce(&mut Config)) {
        if let Some(a) = self.agg.take() {
            a.shutdown().await;
        }
        let broker = match &self.mosq {
            Some(m) => BrokerChoice::External { url: m.url(), ca_file: None, client_cert: None },
            // rumqttd cannot be stopped: the new aggregator gets a new embedded broker.
            None => BrokerChoice::Embedded { listen: "127.0.0.1:0".parse().unwrap() },
        };
        let mut cfg = config(self.state.path(), &self.pki.root.pem, broker);
        if let Some((_, url)) = &self.pg {
            cfg.database = tfmprov_aggregator::DbChoice::Postgres(url.clone());
        }
        tweak(&mut cfg);
        let agg = Aggregator::start(cfg).await.expect("aggregator restarts");
        self.base = format!("http://{}", agg.http_addr());
        self.broker = agg.mqtt_addr();
        self.agg = Some(agg);
    }

    /// The first two columns of `sql`'s rows as blobs (SQLite file or PostgreSQL).
    pub fn query_blob_pairs(&self, sql: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        match &self.pg {
            Some((_, url)) => pg_query(url, sql, |r| (r.get(0), r.get(1))),
            None => self.sqlite().prepare(sql).unwrap().query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().collect::<Result<_, _>>().unwrap(),
        }
    }

    /// The first column of `sql`'s rows as integers.
    pub fn query_ints(&self, sql: &str) -> Vec<i64> {
        match &self.pg {
            Some((_, url)) => pg_query(url, sql, |r| r.get(0)),
            None => self.sqlite().prepare(sql).unwrap().query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap(),
        }
    }

    fn sqlite(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.state.path().join(tfmprov_aggregator::DB_FILE),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the SQLite file")
    }

    pub async fn register(&self, dev: &Device) -> Result<(), tfmprov_aggregator::Error> {
        self.register_chain(&dev.id, &dev.chain_pem).await
    }

    pub async fn register_chain(&self, id: &str, chain: &str) -> Result<(), tfmprov_aggregator::Error> {
        let (base, token, id, chain) = (self.base.clone(), self.token.clone(), id.to_owned(), chain.to_owned());
        tokio::task::spawn_blocking(move || {
            tfmprov_aggregator::client::register(&base, &token, &id, &chain, Duration::from_secs(10))
        })
        .await
        .expect("join")
    }

    /// Wait (bounded: 20 s) until `pred(stats)`; returns the stats or panics with them.
    pub async fn wait_stats(&self, what: &str, pred: impl Fn(&Stats) -> bool) -> Stats {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.agg().stats();
            if pred(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; stats: {s:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn client(&self, name: &str) -> TestClient {
        TestClient::connect(self.broker, name).await
    }

    /// Shut the aggregator down (mosquitto goes with the harness).
    pub async fn stop(mut self) {
        if let Some(a) = self.agg.take() {
            a.shutdown().await;
        }
    }
}

// ---------------------------------------------------------------- MQTT clients

/// A device-side MQTT client (rumqttc) that collects what it receives.
pub struct TestClient {
    pub client: AsyncClient,
    rx: tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>,
    subacks: tokio::sync::mpsc::UnboundedReceiver<()>,
    task: tokio::task::JoinHandle<()>,
}

impl TestClient {
    pub async fn connect(broker: SocketAddr, name: &str) -> TestClient {
        TestClient::connect_with(broker, name, None).await
    }

    /// [`TestClient::connect`] over TLS with `tls` (None: plain TCP).
    pub async fn connect_with(broker: SocketAddr, name: &str, tls: Option<rustls::ClientConfig>) -> TestClient {
        let mut opts = MqttOptions::new(format!("{name}-{}", free_port()), broker.ip().to_string(), broker.port());
        opts.set_keep_alive(Duration::from_secs(30)).set_max_packet_size(4 << 20, 4 << 20).set_inflight(100);
        if let Some(t) = tls {
            opts.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(std::sync::Arc::new(t))));
        }
        let (client, mut ev) = AsyncClient::new(opts, 1000);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (stx, subacks) = tokio::sync::mpsc::unbounded_channel();
        let (ctx, crx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut ctx = Some(ctx);
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(c) = ctx.take() {
                            let _ = c.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(p);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = stx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), crx).await.expect("test client connects").expect("connack");
        TestClient { client, rx, subacks, task }
    }

    pub async fn subscribe(&mut self, filter: &str) {
        self.client.subscribe(filter, QoS::AtLeastOnce).await.expect("subscribe");
        tokio::time::timeout(Duration::from_secs(10), self.subacks.recv()).await.expect("suback").expect("suback");
    }

    pub async fn publish(&self, topic: &str, payload: Vec<u8>, qos: QoS) {
        self.client.publish(topic, qos, false, payload).await.expect("publish");
    }

    /// Next received publish within `t`.
    pub async fn recv(&mut self, t: Duration) -> Option<rumqttc::Publish> {
        tokio::time::timeout(t, self.rx.recv()).await.ok().flatten()
    }

    /// Next error report within 10 s (panics if none).
    pub async fn next_error(&mut self) -> (String, ErrorReport) {
        let p = self.recv(Duration::from_secs(10)).await.expect("an error report within 10 s");
        let r = ErrorReport::from_cbor(&p.payload).expect("errors body decodes");
        (p.topic, r)
    }
}

impl Drop for TestClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A raw MQTT 3.1.1 client over TCP: sends exactly the packets asked for
/// (DUP re-sends with the same packet id, odd payloads).
pub struct RawClient {
    s: TcpStream,
}

fn remaining_len(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
}

fn str16(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

impl RawClient {
    pub fn connect(broker: SocketAddr, client_id: &str) -> RawClient {
        let mut s = TcpStream::connect(broker).expect("raw connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut body = Vec::new();
        str16(b"MQTT", &mut body);
        body.extend_from_slice(&[4, 0x02, 0, 60]);
        str16(client_id.as_bytes(), &mut body);
        let mut pkt = vec![0x10];
        remaining_len(body.len(), &mut pkt);
        pkt.extend_from_slice(&body);
        s.write_all(&pkt).unwrap();
        let mut connack = [0u8; 4];
        s.read_exact(&mut connack).expect("connack");
        assert_eq!(connack, [0x20, 2, 0, 0], "CONNACK accepted");
        RawClient { s }
    }

    /// PUBLISH QoS 1 with packet id `pkid`, DUP flag `dup`; waits for the PUBACK.
    pub fn publish_qos1(&mut self, topic: &str, payload: &[u8], pkid: u16, dup: bool) {
        let mut body = Vec::new();
        str16(topic.as_bytes(), &mut body);
        body.extend_from_slice(&pkid.to_be_bytes());
        body.extend_from_slice(payload);
        let mut pkt = vec![0x32 | if dup { 0x08 } else { 0 }];
        remaining_len(body.len(), &mut pkt);
        pkt.extend_from_slice(&body);
        self.s.write_all(&pkt).unwrap();
        let mut ack = [0u8; 4];
        self.s.read_exact(&mut ack).expect("puback");
        assert_eq!(ack[0], 0x40, "PUBACK");
        assert_eq!(u16::from_be_bytes([ack[2], ack[3]]), pkid);
    }
}
