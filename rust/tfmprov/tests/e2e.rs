//! End to end on the host: the CA and the aggregator in this process, real
//! `tfmprov device-sim` processes, and the real `tfmprov` binary driving them
//! over SMP/UDP, checked with openssl.

use std::path::Path;
use std::process::Command;
use tfmprov::demo::Servers;
use tfmprov::sim::SimProcess;

const EXE: &str = env!("CARGO_BIN_EXE_tfmprov");

fn tfmprov(args: &[&str]) -> std::process::Output {
    Command::new(EXE).args(args).env("TFMPROV_LOG", "warn").output().expect("run tfmprov")
}

fn ok(args: &[&str]) -> String {
    let out = tfmprov(args);
    assert!(out.status.success(), "tfmprov {args:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn openssl_verify(dir: &Path, root_pem: &str, chain_pem: &str) {
    let certs: Vec<&str> = chain_pem.split_inclusive("-----END CERTIFICATE-----\n").collect();
    assert_eq!(certs.len(), 2, "leaf + intermediate");
    std::fs::write(dir.join("root.pem"), root_pem).unwrap();
    std::fs::write(dir.join("leaf.pem"), certs[0]).unwrap();
    std::fs::write(dir.join("intermediate.pem"), certs[1]).unwrap();
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(["verify", "-CAfile", "root.pem", "-untrusted", "intermediate.pem", "leaf.pem"])
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl verify: {}", String::from_utf8_lossy(&out.stderr));
}


/// The operator token file the test servers share.
fn tf(servers: &Servers) -> &str {
    servers.token_file.to_str().expect("UTF-8 path")
}

#[test]
fn enroll_several_devices_and_check_every_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let servers = Servers::start(dir.path()).unwrap();
    let sims: Vec<SimProcess> = (1..=4)
        .map(|i| {
            let id = format!("e2e-{i}");
            SimProcess::spawn(Path::new(EXE), &dir.path().join(&id), &id, &[]).unwrap()
        })
        .collect();
    let mut args: Vec<String> = vec![
        "enroll".into(),
        "--ca".into(),
        servers.ca_url.clone(),
        "--token-file".into(),
        servers.token_file.display().to_string(),
        "--key-id".into(),
        "0x3".into(),
    ];
    for s in &sims {
        args.push("--device".into());
        args.push(format!("{}@udp:{}", s.device_id, s.udp));
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ok(&argv);
    for s in &sims {
        assert!(out.contains(&format!("{}: key 0x00000003 enrolled", s.device_id)), "{out}");
        let udp = s.udp.to_string();
        // The stored certificate carries the device key's public key.
        let cert = ok(&["certs", "get", "--udp", &udp, "--id", "3"]);
        let pubkey = ok(&["keys", "public", "--udp", &udp, "--id", "3"]);
        let pub_hex = pubkey.split_whitespace().last().unwrap().to_string();
        let d = dir.path().join(format!("{}-check", s.device_id));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("cert.pem"), &cert).unwrap();
        let text = Command::new("openssl").args(["x509", "-in", d.join("cert.pem").to_str().unwrap(), "-noout", "-text"]).output().unwrap();
        let text = String::from_utf8_lossy(&text.stdout).replace([' ', '\n', ':'], "");
        assert!(text.contains(&pub_hex), "certificate of {} does not carry its key", s.device_id);
        assert!(text.contains(&format!("CN={}", s.device_id)) || text.contains(&format!("CN{}", s.device_id)));
        // The CA root is on the device at 0x3F000000.
        let root = ok(&["certs", "get", "--udp", &udp, "--id", "0x3F000000"]);
        assert_eq!(root.trim(), servers.root_pem.trim());
        // Enrolled without --aggregator: no broker certificate to pin.
        assert!(!tfmprov(&["certs", "get", "--udp", &udp, "--id", "0x3F000003"]).status.success());
    }
    // The CA logged each device once (beside the aggregator's "cloud"
    // identity and its broker's TLS certificate).
    let devices: serde_json::Value = serde_json::from_str(&http_get(&format!("{}/v1/devices", servers.ca_url))).unwrap();
    let mut ids: Vec<&str> = devices.as_array().unwrap().iter().filter_map(|d| d["device_id"].as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["cloud", "e2e-1", "e2e-2", "e2e-3", "e2e-4", "tfmprov-broker"], "{devices}");
}

fn http_get(url: &str) -> String {
    ureq::get(url).call().expect("GET").body_mut().read_to_string().expect("body")
}

#[test]
fn factory_chain_verifies_and_state_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let servers = Servers::start(dir.path()).unwrap();
    let state = dir.path().join("dev-a");
    let sim = SimProcess::spawn(Path::new(EXE), &state, "dev-a", &[]).unwrap();
    let target = format!("dev-a@udp:{}", sim.udp);
    let out = ok(&["factory", "--ca", &servers.ca_url, "--aggregator", &servers.aggregator_url, "--token-file", tf(&servers), "--device", &target]);
    assert!(out.contains("dev-a: key 0x00000003 enrolled"), "{out}");
    assert!(out.contains("registered"), "{out}");
    let udp = sim.udp.to_string();
    let cert_before = ok(&["certs", "get", "--udp", &udp, "--id", "3"]);
    // Enrollment with an aggregator also stored its cloud certificate (for session keys).
    let cloud = ok(&["certs", "get", "--udp", &udp, "--id", "0x3F000001"]);
    let agg_cloud = http_get(&format!("{}/v1/cloud", servers.aggregator_url));
    assert!(agg_cloud.starts_with(cloud.trim()), "device cloud cert is the aggregator's");
    let pub_random = ok(&["keys", "public", "--udp", &udp, "--id", "0x10000"]);
    // The 2-level chain verifies with openssl.
    let inter = {
        let all = http_get(&format!("{}/v1/ca", servers.ca_url));
        all.split_inclusive("-----END CERTIFICATE-----\n").nth(1).unwrap().to_string()
    };
    openssl_verify(dir.path(), &servers.root_pem, &format!("{cert_before}{inter}"));
    // Restart the device: keys and certificates are still there.
    sim.stop();
    let sim = SimProcess::spawn(Path::new(EXE), &state, "dev-a", &[]).unwrap();
    let udp = sim.udp.to_string();
    assert_eq!(ok(&["certs", "get", "--udp", &udp, "--id", "3"]), cert_before);
    assert_eq!(ok(&["keys", "public", "--udp", &udp, "--id", "0x10000"]), pub_random);
    assert!(ok(&["keys", "status", "--udp", &udp, "--id", "2"]).contains("present"));
    // The device's audit log (its simulated secure partition) kept the
    // factory's key operations across the restart, with their results.
    let audit = ok(&["keys", "audit", "--udp", &udp]);
    assert!(audit.starts_with("audit log (secure partition): oldest #1, "), "{audit}");
    for line in ["generate         id 0x00010000 rc 0", "import           id 0x00000003 rc 0", "csr              id 0x00000003 rc 0", "store-cert       id 0x00000003 rc 0"] {
        assert!(audit.contains(line), "{line:?} not in {audit}");
    }
    // Running the factory again keeps the keys (idempotent) and re-issues key 3's certificate.
    let target = format!("dev-a@udp:{udp}");
    ok(&["factory", "--ca", &servers.ca_url, "--token-file", tf(&servers), "--device", &target]);
    assert_eq!(ok(&["keys", "public", "--udp", &udp, "--id", "0x10000"]), pub_random);
}

/// `tfmprov keys audit` against a device without the partition (the
/// non-secure fallback), then the same device restarted with it: the log
/// reads the same way from both homes, and a bad `--from` is refused.
#[test]
fn the_audit_log_reads_the_same_without_and_with_the_partition() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("dev-f");
    let sim = SimProcess::spawn(Path::new(EXE), &state, "dev-f", &["--no-partition".to_string()]).unwrap();
    let udp = sim.udp.to_string();
    ok(&["keys", "generate", "--udp", &udp, "--id", "0x20"]);
    let out = tfmprov(&["keys", "generate", "--udp", &udp, "--id", "0x20"]);
    assert_eq!(out.status.code(), Some(2), "exists");
    let audit = ok(&["keys", "audit", "--udp", &udp]);
    assert_eq!(
        audit,
        "audit log (non-secure fallback): oldest #1, next #3, missed 0\n\
         #1 generate         id 0x00000020 rc 0\n\
         #2 generate         id 0x00000020 rc 3\n"
    );
    sim.stop();
    let sim = SimProcess::spawn(Path::new(EXE), &state, "dev-f", &[]).unwrap();
    let udp = sim.udp.to_string();
    ok(&["keys", "destroy", "--udp", &udp, "--id", "0x20"]);
    let audit = ok(&["keys", "audit", "--udp", &udp, "--from", "1"]);
    assert_eq!(audit, "audit log (secure partition): oldest #1, next #2, missed 0\n#1 destroy          id 0x00000020 rc 0\n");
    let out = tfmprov(&["keys", "audit", "--udp", &udp, "--from", "-1"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn one_failing_device_does_not_stop_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let servers = Servers::start(dir.path()).unwrap();
    let good = SimProcess::spawn(Path::new(EXE), &dir.path().join("good"), "good-1", &[]).unwrap();
    // Nothing listens on this port: that device fails after its retries.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let out = tfmprov(&[
        "enroll", "--ca", &servers.ca_url, "--token-file", tf(&servers), "--timeout-ms", "200", "--retries", "1",
        "--device", &format!("dead-1@udp:{dead_addr}"),
        "--device", &format!("good-1@udp:{}", good.udp),
    ]);
    assert_eq!(out.status.code(), Some(1), "exit code says not all succeeded");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("good-1: key 0x00010000 enrolled"), "{stdout}");
    assert!(stderr.contains("FAILED  dead-1"), "{stderr}");
    assert!(stderr.contains("1 of 2 devices succeeded"), "{stderr}");
}

#[test]
fn bad_input_gets_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimProcess::spawn(Path::new(EXE), &dir.path().join("d"), "bad-1", &[]).unwrap();
    let udp = sim.udp.to_string();
    let out = tfmprov(&["keys", "public", "--udp", &udp, "--id", "0x2"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not found") || err.contains("rc 2"), "{err}");
    let out = tfmprov(&["keys", "generate", "--udp", &udp, "--id", "0x10000000"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid argument"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = tfmprov(&["keys", "generate", "--udp", &udp, "--private-hex", "abcd"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("32 bytes"));
    let out = tfmprov(&["enroll", "--device", "bad id@udp:127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_demo_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(EXE)
        .args(["demo", "--devices", "2", "--messages", "3", "--state"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("demo: OK"), "{stdout}");
    assert!(stdout.contains("rejected: code 6 (replay or duplicate)"), "{stdout}");
    assert!(stdout.contains("rejected: code 4 (bad signature)"), "{stdout}");
    // 2 devices x (3 data + 1 session + 3 sealed) accepted.
    assert!(stdout.lines().any(|l| l.contains("accepted (data + session + sealed)") && l.trim_end().ends_with("14")), "{stdout}");
    // dev-1's key rotated through the broker, nothing refused meanwhile.
    assert!(stdout.lines().any(|l| l.contains("dev-1 key rotated remotely") && l.trim_end().ends_with("done")), "{stdout}");
    assert!(stdout.lines().any(|l| l.contains("rejected during the rotation") && l.trim_end().ends_with(" 0")), "{stdout}");
    // Issue 13: no credential, no certificate; 2 devices + the cloud key +
    // the broker's TLS certificate + the rotated key issued, 2
    // registrations, both audit logs intact. The devices' telemetry went
    // over mutual TLS (the accepted count above).
    assert!(stdout.lines().any(|l| l.contains("CSR without an operator token") && l.trim_end().ends_with("401")), "{stdout}");
    assert!(stdout.lines().any(|l| l.contains("audit (CA): certificates issued") && l.split_whitespace().rev().take(2).all(|w| w == "5")), "{stdout}");
    assert!(stdout.contains("devices on mqtts://127.0.0.1:"), "{stdout}");
    assert!(stdout.lines().any(|l| l.contains("audit (aggregator): registrations") && l.split_whitespace().rev().take(2).all(|w| w == "2")), "{stdout}");
    assert_eq!(stdout.matches("chain intact, head ").count(), 2, "{stdout}");
}
