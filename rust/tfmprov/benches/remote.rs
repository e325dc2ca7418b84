//! Remote commands per second through the aggregator to simulated devices
//! (issue 12; not a test: prints a table, asserts nothing about speed).
//!
//! Each run: the CA and the aggregator in this process on one broker (the
//! embedded one, then mosquitto), BENCH_DEVICES `tfmprov device-sim`
//! processes (default 100) enrolled by `factory` over SMP/UDP, then started
//! on MQTT only. BENCH_COMMANDS `status` commands per device (default 5) are
//! posted over HTTP from 8 threads; each is signed, encrypted to the device's
//! key-agreement key, published, opened and executed by the device, answered
//! signed and encrypted, and recorded by the aggregator. Measured: time from
//! the first post until the last answer is recorded, and each command's
//! latency (answered_at - created_at).
//!
//! Everything shares this machine's 2 cores (the devices' PSA crypto too):
//! the table compares brokers, it is not a capacity figure. Bounded: each
//! phase is capped at 300 s. Run: `cargo bench -p tfmprov --bench remote`.

#[path = "../../aggregator/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use tfmprov::demo::Servers;
use tfmprov::sim::SimProcess;
use tfmprov_aggregator::{client, BrokerChoice};

const EXE: &str = env!("CARGO_BIN_EXE_tfmprov");
const CAP: Duration = Duration::from_secs(300);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Row {
    broker: &'static str,
    devices: usize,
    commands: usize,
    answered: usize,
    secs: f64,
    p50_ms: i64,
    p99_ms: i64,
    enroll_secs: f64,
}

fn run(broker: &'static str, choice: BrokerChoice, devices: usize, per_device: usize) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let servers = Servers::start_on(dir.path(), choice).unwrap();
    let ids: Vec<String> = (1..=devices).map(|i| format!("b-{i}")).collect();

    // Factory enrollment over SMP/UDP (key 3, chain, cloud certificate, KAK).
    let t0 = Instant::now();
    let sims: Vec<SimProcess> = ids.iter().map(|id| SimProcess::spawn(Path::new(EXE), &dir.path().join(id), id, &[]).unwrap()).collect();
    let targets: Vec<tfmprov::target::Target> = sims
        .iter()
        .map(|s| tfmprov::target::Target { device_id: s.device_id.clone(), link: tfmprov_transport::Link::Udp(s.udp) })
        .collect();
    let opts = tfmprov::enroll::EnrollOptions {
        http_timeout: Duration::from_secs(30),
        ..tfmprov::enroll::EnrollOptions::new(&servers.ca_url, Some(&servers.aggregator_url), &servers.token)
    };
    let value = |id: &str, n: u8| -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(format!("bench {id} {n}").as_bytes()).into()
    };
    let summary = tfmprov::batch::run(&targets, 8, false, "factory", |t| {
        tfmprov::enroll::factory(t, &opts, &value(&t.device_id, 2), &value(&t.device_id, 3))
    });
    assert!(summary.all_ok(), "{}", summary.report("enrollment"));
    let enroll_secs = t0.elapsed().as_secs_f64();
    for s in sims {
        s.stop();
    }

    // In the field: MQTT only, one data message an hour (commands dominate).
    let args: Vec<String> = ["--mqtt", &servers.mqtt_url, "--interval", "3600000"].iter().map(|s| s.to_string()).collect();
    let sims: Vec<SimProcess> =
        ids.iter().map(|id| SimProcess::spawn(Path::new(EXE), &dir.path().join(id), id, &args).unwrap()).collect();
    let deadline = Instant::now() + CAP;
    while servers.stats().accepted < devices as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }

    // Post every command from 8 threads, then wait for every answer.
    let agg = servers.aggregator_url.clone();
    let jobs: Vec<String> = ids.iter().flat_map(|id| std::iter::repeat_n(id.clone(), per_device)).collect();
    let start = Instant::now();
    let chunks: Vec<Vec<String>> = jobs.chunks(jobs.len().div_ceil(8)).map(<[String]>::to_vec).collect();
    let cids: Vec<(String, String)> = std::thread::scope(|sc| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let agg = agg.clone();
                let token = servers.token.clone();
                sc.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|id| {
                            let args = serde_json::json!({ "id": 3 });
                            let info = client::submit_command(&agg, &token, &id, "status", args).unwrap();
                            (id, info.cid)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let mut latencies = Vec::new();
    let mut last_answer = start;
    for (id, cid) in &cids {
        loop {
            let info = client::command(&agg, &servers.token, id, cid).unwrap().unwrap();
            if info.state == "answered" {
                latencies.push(info.answered_at.unwrap_or(0) - info.created_at);
                last_answer = Instant::now();
                break;
            }
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let secs = last_answer.duration_since(start).as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1))).copied().unwrap_or(-1);
    let row = Row {
        broker,
        devices,
        commands: cids.len(),
        answered: latencies.len(),
        secs,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        enroll_secs,
    };
    drop(sims);
    row
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken.
    let devices = env_usize("BENCH_DEVICES", 100);
    let per_device = env_usize("BENCH_COMMANDS", 5);
    let mut rows = vec![run("embedded (rumqttd)", BrokerChoice::Embedded { listen: "127.0.0.1:0".parse().unwrap() }, devices, per_device)];
    let mosq = common::Mosquitto::start();
    rows.push(run("mosquitto", BrokerChoice::External { url: mosq.url(), ca_file: None, client_cert: None }, devices, per_device));

    println!();
    println!("remote commands (status) through the aggregator, {devices} simulated devices, {per_device} each, 2 cores shared by all");
    println!("{:<20} {:>8} {:>9} {:>9} {:>9} {:>10} {:>9} {:>9} {:>12}", "broker", "devices", "commands", "answered", "seconds", "cmds/s", "p50 ms", "p99 ms", "enroll s");
    for r in rows {
        println!(
            "{:<20} {:>8} {:>9} {:>9} {:>9.2} {:>10.1} {:>9} {:>9} {:>12.1}",
            r.broker,
            r.devices,
            r.commands,
            r.answered,
            r.secs,
            r.answered as f64 / r.secs.max(1e-9),
            r.p50_ms,
            r.p99_ms,
            r.enroll_secs
        );
    }
}
