//! Issue 13: the servers as a user starts them, on HTTPS by default. `tfmprov
//! ca serve` gets its certificate from itself, `tfmprov aggregator serve`
//! from the CA; `tfmprov enroll` reaches both once given the root
//! (`--https-root`) and is refused without it; plain HTTP only on loopback.

use std::path::Path;
use std::process::{Command, Stdio};

use tfmprov::sim::SimProcess;

mod cli;
use cli::{start, tfmprov, url_in, EXE};

fn s_client_verifies(dir: &Path, url: &str) -> String {
    let addr = url.trim_start_matches("https://");
    let out = Command::new("openssl")
        .args(["s_client", "-connect", addr, "-CAfile", "ca/root_cert.pem", "-verify_ip", "127.0.0.1", "-verify_return_error", "-brief"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn servers_on_https_and_the_cli_trusting_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |s: &str| d.join(s).display().to_string();
    let ca = start(&["ca", "serve", "--state", &p("ca"), "--listen", "127.0.0.1:0"]);
    let ca_url = url_in(&ca.ready, "https://");
    let agg = start(&[
        "aggregator", "serve", "--state", &p("agg"), "--listen", "127.0.0.1:0", "--mqtt-listen", "127.0.0.1:0",
        "--ca-root", &p("ca/root_cert.pem"), "--ca-url", &ca_url, "--ca-token-file", &p("ca/operator.token"),
        "--admin-token-file", &p("ca/operator.token"),
    ]);
    let agg_url = url_in(&agg.ready, "https://");
    // openssl agrees with both certificates (from the CA, for 127.0.0.1).
    for url in [&ca_url, &agg_url] {
        let text = s_client_verifies(d, url);
        assert!(text.contains("Verification: OK"), "{url}: {text}");
    }

    let sim = SimProcess::spawn(Path::new(EXE), &d.join("dev-1"), "dev-1", &[]).unwrap();
    let device = format!("dev-1@udp:{}", sim.udp);
    let token = p("ca/operator.token");
    let enroll = |extra: &[&str]| {
        let mut args = vec!["enroll", "--ca", &ca_url, "--aggregator", &agg_url, "--token-file", &token, "--device", &device];
        args.extend_from_slice(extra);
        tfmprov(&args)
    };
    // Without the root: the CA's certificate is not trusted.
    let out = enroll(&[]);
    let text = String::from_utf8_lossy(&out.stderr).to_lowercase() + &String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(!out.status.success() && text.contains("issuer"), "{text}");
    // With it: enrolled and registered over HTTPS at both servers.
    let root = p("ca/root_cert.pem");
    let out = enroll(&["--https-root", &root]);
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("dev-1: key") && text.contains("enrolled"), "{text}");
    assert!(tfmprov_aggregator::client::device(&agg_url, "dev-1").is_err(), "this test process trusts no root yet");
    tfmprov_tls::trust_for_https(&std::fs::read_to_string(&root).unwrap()).unwrap();
    let dev = tfmprov_aggregator::client::device(&agg_url, "dev-1").unwrap().expect("dev-1 registered");
    assert_eq!(dev.device_id, "dev-1");

    // Plain HTTP: on loopback with the flag, never elsewhere.
    let plain = start(&["ca", "serve", "--state", &p("ca2"), "--listen", "127.0.0.1:0", "--plain-http"]);
    assert!(plain.ready.contains("ca ready http://127.0.0.1:"), "{}", plain.ready);
    let out = tfmprov(&["ca", "serve", "--state", &p("ca3"), "--listen", "0.0.0.0:0", "--plain-http"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("only served on a loopback address"), "{err}");
    drop(sim);
}
