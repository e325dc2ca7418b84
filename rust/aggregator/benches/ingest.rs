//! Ingestion throughput (not a test: prints a table, asserts nothing about speed).
//!
//! For each broker (mosquitto, embedded rumqttd) and QoS (0, 1):
//! - **aggregator**: verified messages per second from many publishing
//!   devices, through the broker, into SQLite (time from the first publish
//!   until `stats().accepted` reaches the total);
//! - **broker only**: the same load and QoS to a subscriber that does nothing
//!   but count, on a fresh broker of the same kind (the broker's own rate);
//! - **openssl**: `openssl speed -seconds 3 ecdsap256` verify/s on one core.
//!
//! Bounded: BENCH_MSGS messages (default 20 000) from BENCH_DEVICES devices
//! (default 50), each run capped at 60 s (and ended after 5 s without progress).
//! Run: `cargo bench -p tfmprov-aggregator --bench ingest`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tfmprov_aggregator::{client, start_embedded_broker, Aggregator, BrokerChoice};

const RUN_CAP: Duration = Duration::from_secs(60);
const STALL: Duration = Duration::from_secs(5);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Load {
    devices: Vec<Device>,
    /// Per device: its signed messages.
    msgs: Vec<Vec<Vec<u8>>>,
    total: u64,
}

fn make_load(pki: &Pki, n_devices: usize, n_msgs: usize) -> Load {
    let devices: Vec<Device> = (0..n_devices).map(|i| pki.device(&format!("bench-{i:03}"))).collect();
    let per = n_msgs.div_ceil(n_devices);
    let msgs = std::thread::scope(|s| {
        let handles: Vec<_> = devices
            .iter()
            .map(|d| {
                s.spawn(move || {
                    (1..=per as u64)
                        .map(|seq| d.sign(seq, format!("{{\"t\":21.{seq},\"dev\":\"{}\"}}", d.id).as_bytes()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
    });
    let total = (per * n_devices) as u64;
    Load { devices, msgs, total }
}

/// Connect one publisher per device (all connected before returning).
async fn publishers(broker: SocketAddr, n: usize) -> Vec<(AsyncClient, tokio::task::JoinHandle<()>)> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut o = MqttOptions::new(format!("pub-{i}-{}", free_port()), broker.ip().to_string(), broker.port());
        o.set_keep_alive(Duration::from_secs(30)).set_inflight(100).set_max_packet_size(1 << 20, 1 << 20);
        let (c, mut ev) = AsyncClient::new(o, 512);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut tx = Some(tx);
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(t) = tx.take() {
                            let _ = t.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), rx).await.expect("publisher connects").unwrap();
        out.push((c, task));
    }
    out
}

/// Publish everything (each device on its own task); returns when all is queued.
fn publish_all(pubs: &[(AsyncClient, tokio::task::JoinHandle<()>)], load: &Load, qos: QoS) -> Vec<tokio::task::JoinHandle<()>> {
    pubs.iter()
        .zip(load.devices.iter().zip(load.msgs.iter()))
        .map(|((c, _), (d, msgs))| {
            let (c, topic, msgs) = (c.clone(), d.data_topic(), msgs.clone());
            tokio::spawn(async move {
                for m in msgs {
                    if c.publish(topic.clone(), qos, false, m).await.is_err() {
                        return;
                    }
                }
            })
        })
        .collect()
}

/// Wait until `count()` reaches `total`, stalls for STALL, or RUN_CAP passes.
/// Returns (count, seconds from `t0` to the last progress).
async fn wait_count(t0: Instant, total: u64, count: impl Fn() -> u64) -> (u64, f64) {
    let (mut last, mut last_t) = (0u64, Instant::now());
    loop {
        let n = count();
        if n != last {
            last = n;
            last_t = Instant::now();
        }
        if n >= total || last_t.elapsed() > STALL || t0.elapsed() > RUN_CAP {
            return (n, last_t.duration_since(t0).as_secs_f64().max(1e-6));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

enum Broker {
    Mosquitto(Mosquitto),
    Embedded(SocketAddr),
}

impl Broker {
    fn fresh(kind: BrokerKind) -> Broker {
        match kind {
            // (The database does not matter to the broker-only run.)
            BrokerKind::Mosquitto | BrokerKind::Postgres => Broker::Mosquitto(Mosquitto::start()),
            BrokerKind::Embedded => {
                Broker::Embedded(start_embedded_broker("127.0.0.1:0".parse().unwrap()).expect("rumqttd"))
            }
        }
    }
    fn addr(&self) -> SocketAddr {
        match self {
            Broker::Mosquitto(m) => m.addr(),
            Broker::Embedded(a) => *a,
        }
    }
}

struct Outcome {
    received: u64,
    rate: f64,
    /// CPU seconds by thread during the run (aggregator runs only).
    cpu: String,
}

/// CPU seconds per thread name (this process, plus an optional other process).
fn cpu_by_thread(other_pid: Option<u32>) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let mut dirs = vec![std::path::PathBuf::from("/proc/self/task")];
    if let Some(p) = other_pid {
        dirs.push(format!("/proc/{p}/task").into());
    }
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
            let (Some(l), Some(r)) = (stat.find('('), stat.rfind(')')) else { continue };
            let name = stat[l + 1..r].to_owned();
            let f: Vec<&str> = stat[r + 2..].split_whitespace().collect();
            let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
                + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            let key = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-').to_owned();
            *out.entry(key).or_insert(0.0) += ticks / 100.0;
        }
    }
    out
}

fn cpu_delta(
    a: &std::collections::BTreeMap<String, f64>,
    b: &std::collections::BTreeMap<String, f64>,
) -> String {
    let mut v: Vec<(String, f64)> =
        b.iter().map(|(k, x)| (k.clone(), x - a.get(k).copied().unwrap_or(0.0))).filter(|(_, d)| *d >= 0.05).collect();
    v.sort_by(|x, y| y.1.total_cmp(&x.1));
    v.iter().map(|(k, d)| format!("{k} {d:.2}s")).collect::<Vec<_>>().join(", ")
}

/// The broker's own rate: a subscriber that only counts.
async fn broker_only(kind: BrokerKind, load: &Load, qos: QoS) -> Outcome {
    let broker = Broker::fresh(kind);
    let count = Arc::new(AtomicU64::new(0));
    let mut o = MqttOptions::new(format!("null-sub-{}", free_port()), "127.0.0.1", broker.addr().port());
    o.set_keep_alive(Duration::from_secs(30)).set_max_packet_size(1 << 20, 1 << 20);
    let (c, mut ev) = AsyncClient::new(o, 512);
    let (stx, srx) = tokio::sync::oneshot::channel::<()>();
    let cnt = count.clone();
    let sub = tokio::spawn(async move {
        let mut stx = Some(stx);
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::Publish(_))) => {
                    cnt.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(t) = stx.take() {
                        let _ = t.send(());
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    c.subscribe("prov/+/data", qos).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), srx).await.expect("suback").unwrap();
    let pubs = publishers(broker.addr(), load.devices.len()).await;
    let t0 = Instant::now();
    let tasks = publish_all(&pubs, load, qos);
    let (received, secs) = wait_count(t0, load.total, || count.load(Ordering::Relaxed)).await;
    for t in tasks {
        t.abort();
    }
    for (_, t) in pubs {
        t.abort();
    }
    sub.abort();
    Outcome { received, rate: received as f64 / secs, cpu: String::new() }
}

/// The aggregator: verified and stored messages per second.
async fn aggregator(kind: BrokerKind, pki: &Pki, load: &Load, qos: QoS) -> Outcome {
    let state = tempfile::tempdir().unwrap();
    let mosq = (kind == BrokerKind::Mosquitto).then(Mosquitto::start);
    let broker = match &mosq {
        Some(m) => BrokerChoice::External { url: m.url(), ca_file: None, client_cert: None },
        None => BrokerChoice::Embedded { listen: "127.0.0.1:0".parse().unwrap() },
    };
    let mut cfg = config(state.path(), &pki.root.pem, broker);
    if let Some(w) = std::env::var("BENCH_WORKERS").ok().and_then(|v| v.parse().ok()) {
        cfg.workers = w;
    }
    let agg = Aggregator::start(cfg).await.expect("aggregator");
    let base = format!("http://{}", agg.http_addr());
    let regs: Vec<(String, String)> = load.devices.iter().map(|d| (d.id.clone(), d.chain_pem.clone())).collect();
    let token = admin_token(state.path());
    tokio::task::spawn_blocking(move || {
        for (id, chain) in regs {
            client::register(&base, &token, &id, &chain, Duration::from_secs(10)).expect("register");
        }
    })
    .await
    .unwrap();
    let pubs = publishers(agg.mqtt_addr(), load.devices.len()).await;
    let mosq_pid = mosq.as_ref().map(|m| m.pid());
    let cpu0 = cpu_by_thread(mosq_pid);
    let t0 = Instant::now();
    let tasks = publish_all(&pubs, load, qos);
    let (accepted, secs) = wait_count(t0, load.total, || agg.stats().accepted).await;
    let cpu = format!("wall {secs:.2}s; CPU {}", cpu_delta(&cpu0, &cpu_by_thread(mosq_pid)));
    let rejected = agg.stats().rejected_total();
    if rejected > 0 {
        eprintln!("  (aggregator rejected {rejected}: {:?})", agg.stats().rejected);
    }
    for t in tasks {
        t.abort();
    }
    for (_, t) in pubs {
        t.abort();
    }
    agg.shutdown().await;
    Outcome { received: accepted, rate: accepted as f64 / secs, cpu }
}

/// `openssl speed -seconds 3 ecdsap256` verify/s (one process = one core).
fn openssl_verify_rate() -> Option<f64> {
    let out = std::process::Command::new("openssl")
        .args(["speed", "-seconds", "3", "ecdsap256"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.contains("nistp256") && l.contains("ecdsa"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

/// ring's ES256 verify/s on one core (2 s), for reference.
fn ring_verify_rate(load: &Load) -> f64 {
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
    let d = &load.devices[0];
    let signed = tfmprov_cose::parse_data(&load.msgs[0][0]).unwrap();
    let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &d.point[..]);
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < Duration::from_secs(2) {
        for _ in 0..100 {
            key.verify(signed.tbs(), signed.signature()).unwrap();
        }
        n += 100;
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

fn main() {
    let n_msgs = env_usize("BENCH_MSGS", 20_000);
    let n_devices = env_usize("BENCH_DEVICES", 50);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let pki = Pki::new("bench");
    eprintln!("signing {n_msgs} messages for {n_devices} devices...");
    let load = make_load(&pki, n_devices, n_msgs);
    eprintln!("openssl speed -seconds 3 ecdsap256 ...");
    let openssl = openssl_verify_rate();
    let ring_rate = ring_verify_rate(&load);
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);

    // BENCH_CASES=mosquitto:1,embedded:0 runs a subset; BENCH_AGG_ONLY=1 skips
    // the broker-only runs (for profiling the aggregator alone).
    let cases = std::env::var("BENCH_CASES").unwrap_or_default();
    let agg_only = std::env::var("BENCH_AGG_ONLY").is_ok();
    let mut rows = Vec::new();
    for kind in [BrokerKind::Mosquitto, BrokerKind::Embedded] {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            let name = format!("{}:{}", if kind == BrokerKind::Mosquitto { "mosquitto" } else { "embedded" }, qos as u8);
            if !cases.is_empty() && !cases.split(',').any(|c| c == name) {
                continue;
            }
            eprintln!("{kind:?} QoS {}: broker only...", qos as u8);
            let b = if agg_only {
                Outcome { received: 0, rate: f64::NAN, cpu: String::new() }
            } else {
                rt.block_on(broker_only(kind, &load, qos))
            };
            eprintln!("{kind:?} QoS {}: aggregator...", qos as u8);
            let a = rt.block_on(aggregator(kind, &pki, &load, qos));
            rows.push((kind, qos, a, b));
        }
    }

    println!();
    println!(
        "ingest: {} messages from {} devices, {} CPUs; ES256 verify on 1 core: openssl {}, ring {:.0}/s",
        load.total,
        n_devices,
        cpus,
        openssl.map(|r| format!("{r:.0}/s")).unwrap_or_else(|| "n/a".into()),
        ring_rate
    );
    println!(
        "| broker    | QoS | aggregator msg/s (stored) | broker only msg/s (recv) | agg/broker | agg/openssl-1core |"
    );
    println!("|-----------|-----|---------------------------|--------------------------|------------|-------------------|");
    let mut cpu_lines = Vec::new();
    for (kind, qos, a, b) in rows {
        let name = match kind {
            BrokerKind::Mosquitto => "mosquitto",
            BrokerKind::Embedded => "embedded",
            BrokerKind::Postgres => "mosq+pg",
        };
        println!(
            "| {name:<9} | {:>3} | {:>10.0} ({:>6}/{:<6}) | {:>10.0} ({:>6}/{:<6}) | {:>10.2} | {:>17} |",
            qos as u8,
            a.rate,
            a.received,
            load.total,
            b.rate,
            b.received,
            load.total,
            a.rate / b.rate,
            openssl.map(|o| format!("{:.2}", a.rate / o)).unwrap_or_else(|| "n/a".into()),
        );
        cpu_lines.push(format!("  {name} QoS {}: {}", qos as u8, a.cpu));
    }
    println!("aggregator runs (publishers, broker and aggregator share the CPUs):");
    for l in cpu_lines {
        println!("{l}");
    }
    rt.shutdown_timeout(Duration::from_secs(2));
}
