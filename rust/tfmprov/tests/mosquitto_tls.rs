//! Issue 13 on a broker nobody here wrote: mosquitto with mutual TLS, the
//! certificate's CN as identity and the project's ACL
//! (`docs/mosquitto/tfmprov.acl`), its certificate and the aggregator's
//! issued by the project's CA. A simulated device enrolled through the
//! aggregator (which serves mosquitto's chain, `--broker-cert`) connects
//! with its PSA key, checks mosquitto's chain and pins its key; the
//! aggregator, on its ACL identity `tfmprov-aggregator`, accepts every
//! message.

#[path = "../../aggregator/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use p256::pkcs8::{EncodePrivateKey, LineEnding};
use tfmprov::demo::Servers;
use tfmprov::sim::SimProcess;
use tfmprov_aggregator::BrokerChoice;

const EXE: &str = env!("CARGO_BIN_EXE_tfmprov");
const ACL: &str = include_str!("../../../docs/mosquitto/tfmprov.acl");

/// A key and the CA's certificate for it: (chain PEM, key PEM).
fn issued(ca_url: &str, token: &str, cn: &str, server_names: Option<&[&str]>) -> (String, String) {
    let key = p256::ecdsa::SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let csr = tfmprov_ca::server_identity::csr(&key, cn).unwrap();
    let t = Duration::from_secs(10);
    let chain = match server_names {
        Some(names) => tfmprov_ca::client::submit_server_csr(ca_url, token, &csr, names, t),
        None => tfmprov_ca::client::submit_csr(ca_url, token, &csr, t),
    }
    .unwrap();
    let pem = p256::SecretKey::from(&key).to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    (chain, pem)
}

#[test]
fn a_device_on_mosquitto_with_its_psa_key_pinning_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let w = |name: &str, text: &str| {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let mut mosq = None;
    let mut tls_port = 0;
    // The CA is up when the tweak runs: mosquitto's certificate and the
    // aggregator's come from it, then mosquitto starts, then the aggregator.
    let placeholder = BrokerChoice::External { url: "mqtt://127.0.0.1:1".into(), ca_file: None, client_cert: None };
    let servers = Servers::start_with(d, placeholder, |cfg| {
        let (ca_url, token) = (cfg.rotation_ca.clone().unwrap(), cfg.ca_token.clone().unwrap());
        let (broker_chain, broker_key) = issued(&ca_url, &token, "tfmprov-broker", Some(&["127.0.0.1"]));
        let (agg_chain, agg_key) = issued(&ca_url, &token, "tfmprov-aggregator", None);
        let root = w("root.pem", &cfg.ca_root_pem);
        let conf = format!(
            "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\nuse_identity_as_username true\nacl_file {}\n",
            root.display(),
            w("broker.pem", &broker_chain).display(),
            w("broker.key", &broker_key).display(),
            w("tfmprov.acl", ACL).display(),
        );
        tls_port = common::free_port();
        mosq = Some(common::Mosquitto::start_with(|_, _| format!("listener {tls_port} 127.0.0.1\n{conf}")));
        cfg.broker = BrokerChoice::External {
            url: format!("mqtts://127.0.0.1:{tls_port}"),
            ca_file: Some(root),
            client_cert: Some((w("agg.pem", &agg_chain), w("agg.key", &agg_key))),
        };
        cfg.external_broker_chain_pem = Some(broker_chain);
    })
    .unwrap();

    // Enrolled through the aggregator: mosquitto's certificate goes to 0x3F000003.
    let state = d.join("dev-1");
    let sim = SimProcess::spawn(Path::new(EXE), &state, "dev-1", &[]).unwrap();
    let token_file = servers.token_file.display().to_string();
    let device = format!("dev-1@udp:{}", sim.udp);
    let out = Command::new(EXE)
        .args(["factory", "--ca", &servers.ca_url, "--aggregator", &servers.aggregator_url, "--token-file", &token_file, "--device", &device])
        .env("TFMPROV_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    sim.stop();

    let url = format!("mqtts://127.0.0.1:{tls_port}");
    let sim = SimProcess::spawn(Path::new(EXE), &state, "dev-1", &["--mqtt".into(), url, "--interval".into(), "100".into(), "--count".into(), "5".into()]).unwrap();
    // 5 data + 5 sealed messages (+ 1 session), each verified and stored.
    let deadline = Instant::now() + Duration::from_secs(30);
    while servers.stats().accepted < 11 {
        assert!(Instant::now() < deadline, "accepted {:?}", servers.stats());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(servers.stats().rejected_total(), 0, "{:?}", servers.stats());
    drop(sim);
    drop(servers);
    drop(mosq);
}
