//! Devices enrolled per second, end to end over SMP/UDP: 100 simulated
//! devices (one `tfmprov device-sim` process each, real PSA), the CA in
//! process over HTTP. Prints a table; bounded in count and time.

use std::path::Path;
use std::time::{Duration, Instant};
use tfmprov::demo::Servers;
use tfmprov::enroll::{enroll, EnrollOptions};
use tfmprov::sim::SimProcess;
use tfmprov::target::{LinkOptions, Target};

const EXE: &str = env!("CARGO_BIN_EXE_tfmprov");
const DEVICES: usize = 100;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let servers = Servers::start(dir.path()).expect("servers");
    let start = Instant::now();
    let sims: Vec<SimProcess> = (0..DEVICES)
        .map(|i| {
            let id = format!("bench-{i}");
            SimProcess::spawn(Path::new(EXE), &dir.path().join(&id), &id, &[]).expect("device-sim")
        })
        .collect();
    println!("started {DEVICES} device-sim processes in {:.2} s", start.elapsed().as_secs_f64());
    let targets: Vec<Target> =
        sims.iter().map(|s| Target { device_id: s.device_id.clone(), link: tfmprov_transport::Link::Udp(s.udp) }).collect();
    println!();
    println!("| parallel | devices | seconds | devices/s | ms/device |");
    println!("| --- | --- | --- | --- | --- |");
    for (round, parallel) in [1usize, 4, 8].into_iter().enumerate() {
        let opts = EnrollOptions {
            // A new key each round, so every round does the full flow.
            key_id: Some(0x100 + round as u32),
            regenerate: true,
            link: LinkOptions { timeout: Duration::from_secs(5), retries: 1 },
            ..EnrollOptions::new(&servers.ca_url, None, &servers.token)
        };
        let summary = tfmprov::batch::run(&targets, parallel, false, "enroll", |t| enroll(t, &opts));
        assert!(summary.all_ok(), "{}", summary.report("enroll"));
        let s = summary.elapsed.as_secs_f64();
        println!("| {parallel} | {DEVICES} | {s:.2} | {:.1} | {:.1} |", DEVICES as f64 / s, s * 1000.0 / DEVICES as f64);
        if start.elapsed() > Duration::from_secs(300) {
            println!("(stopped early: time cap)");
            break;
        }
    }
}
