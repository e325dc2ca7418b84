//! One against two aggregator instances, on SQLite and on PostgreSQL (not a
//! test: prints a table, asserts nothing about speed).
//!
//! Each run: a fresh database, mosquitto, 1 or 2 `tfmprov aggregator serve`
//! processes in one shared-subscription group, BENCH_DEVICES devices
//! (default 50) publishing BENCH_MSGS signed messages (default 20 000, QoS 1)
//! as fast as the broker takes them. Measured: time from the first publish
//! until every message is in the database; the instances' CPU time
//! (`/proc/PID/stat` utime + stime) per message; and, in the same run,
//! `openssl speed -seconds 3 ecdsap256` verify/s on one core, the bound the
//! aggregator must not fall below per core it uses.
//!
//! Everything (publishers, broker, database, instances) shares this machine's
//! cores: the table compares configurations, it is not a capacity figure.
//! Bounded: each run is capped at 180 s. Run:
//! `cargo bench -p tfmprov --bench cluster`.

#[path = "../../aggregator/tests/common/mod.rs"]
mod common;
#[path = "../tests/cluster_support/mod.rs"]
mod cluster_support;

use std::time::{Duration, Instant};

use cluster_support::Cluster;
use common::*;
use rumqttc::QoS;
use tfmprov_aggregator::client;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Clock ticks per second of /proc (`getconf CLK_TCK`; 100 on Linux).
fn clk_tck() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// utime + stime of a process, in microseconds.
fn cpu_us(pid: u32, hz: u64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the ")" that ends the command name: state, ppid, pgrp, session,
    // tty_nr, tpgid, flags, minflt, cminflt, majflt, cmajflt, utime, stime.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (field(11) + field(12)) * 1_000_000 / hz.max(1)
}

struct Row {
    db: &'static str,
    instances: usize,
    msgs: u64,
    secs: f64,
    cpu_us_per_msg: f64,
}

async fn run(postgres: bool, instances: usize, n_dev: usize, n_msgs: usize) -> Row {
    let mut cl = Cluster::empty(postgres);
    cl.a = Some(cl.instance("a"));
    if instances == 2 {
        cl.b = Some(cl.instance("b"));
    }
    let per = n_msgs.div_ceil(n_dev) as u64;
    let devs: Vec<Device> = (0..n_dev).map(|i| cl.pki.device(&format!("bench-{i:03}"))).collect();
    for d in &devs {
        let (base, token, id, chain) = (cl.a().base.clone(), cl.token(), d.id.clone(), d.chain_pem.clone());
        tokio::task::spawn_blocking(move || client::register(&base, &token, &id, &chain, Duration::from_secs(10)))
            .await
            .unwrap()
            .expect("register");
    }
    let loads: Vec<Vec<Vec<u8>>> = std::thread::scope(|s| {
        let hs: Vec<_> = devs
            .iter()
            .map(|d| s.spawn(move || (1..=per).map(|q| d.sign_fast(q, format!("{{\"t\":{q}}}").as_bytes())).collect()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let total = per * n_dev as u64;
    let pids: Vec<u32> = [cl.a.as_ref(), cl.b.as_ref()].into_iter().flatten().map(|i| i.pid()).collect();
    let mut clients = Vec::new();
    for d in &devs {
        clients.push((TestClient::connect(cl.mosq.addr(), &d.id).await, d.data_topic()));
    }
    let hz = clk_tck();
    let cpu0: u64 = pids.iter().map(|p| cpu_us(*p, hz)).sum();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for ((c, topic), msgs) in clients.into_iter().zip(loads) {
        tasks.push(tokio::spawn(async move {
            for m in msgs {
                c.publish(&topic, m, QoS::AtLeastOnce).await;
            }
            c
        }));
    }
    let cl_ref = &cl;
    tokio::task::block_in_place(|| cl_ref.wait_stored(total, Duration::from_secs(180)));
    let secs = t0.elapsed().as_secs_f64();
    let cpu1: u64 = pids.iter().map(|p| cpu_us(*p, hz)).sum();
    for t in tasks {
        drop(t.await);
    }
    Row {
        db: if postgres { "PostgreSQL" } else { "SQLite" },
        instances,
        msgs: total,
        secs,
        cpu_us_per_msg: (cpu1 - cpu0) as f64 / total as f64,
    }
}

fn openssl_verify_per_s() -> Option<f64> {
    let out = std::process::Command::new("openssl").args(["speed", "-seconds", "3", "ecdsap256"]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "256 bits ecdsa (nistp256)   0.0000s   0.0001s  40000.0  12000.0"
    let line = text.lines().find(|l| l.contains("ecdsa (nistp256)"))?;
    line.split_whitespace().last()?.parse().ok()
}

fn main() {
    let n_dev = env_usize("BENCH_DEVICES", 50);
    let n_msgs = env_usize("BENCH_MSGS", 20_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut rows = Vec::new();
    for postgres in [false, true] {
        for instances in [1, 2] {
            let r = rt.block_on(run(postgres, instances, n_dev, n_msgs));
            eprintln!("{} x{}: {:.0} msg/s", r.db, r.instances, r.msgs as f64 / r.secs);
            rows.push(r);
        }
    }
    let verify = openssl_verify_per_s();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!();
    println!("aggregator instances on one broker and one database ({n_dev} devices, QoS 1, {cores} cores shared by everything)");
    println!("| database | instances | messages | seconds | msg/s | instance CPU µs/msg |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.2} | {:.0} | {:.0} |",
            r.db,
            r.instances,
            r.msgs,
            r.secs,
            r.msgs as f64 / r.secs,
            r.cpu_us_per_msg
        );
    }
    match verify {
        Some(v) => println!(
            "\nopenssl speed ecdsap256: {v:.0} verify/s on one core = {:.0} µs per verification",
            1e6 / v
        ),
        None => println!("\nopenssl speed ecdsap256: could not run openssl"),
    }
}
