//! Issue 13: a certificate the CA revokes is refused by the aggregator
//! within one CRL interval. The real CA and aggregator in this process (the
//! aggregator fetching the CA's CRL every second): a registered device is
//! revoked through its CRL (audited as actor `crl`); a certificate already
//! in the CRL cannot be registered (409); a CRL with the CA's name but
//! another key is refused.

use std::process::Command;
use std::time::{Duration, Instant};

use tfmprov::demo::Servers;

const EXE: &str = env!("CARGO_BIN_EXE_tfmprov");

/// A P-256 key and CSR for `cn`, made by openssl; (DER CSR).
fn csr(dir: &std::path::Path, cn: &str) -> Vec<u8> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-keyout", &format!("{cn}.key"), "-subj", &format!("/CN={cn}"), "-outform", "DER"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn serial_of(chain_pem: &str) -> String {
    let leaf = &x509_cert::Certificate::load_pem_chain(chain_pem.as_bytes()).unwrap()[0];
    hex::encode(leaf.tbs_certificate.serial_number.as_bytes())
}

#[test]
fn a_certificate_revoked_at_the_ca_is_refused_by_the_aggregator() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = tfmprov_aggregator::BrokerChoice::Embedded { listen: "127.0.0.1:0".parse().unwrap() };
    let servers = Servers::start_with(dir.path(), embedded, |c| c.crl_interval = Duration::from_secs(1)).unwrap();
    let (ca, agg, token) = (servers.ca_url.as_str(), servers.aggregator_url.as_str(), servers.token.as_str());
    let t = Duration::from_secs(10);

    let chain_a = tfmprov_ca::client::submit_csr(ca, token, &csr(dir.path(), "dev-a"), t).unwrap();
    let chain_b = tfmprov_ca::client::submit_csr(ca, token, &csr(dir.path(), "dev-b"), t).unwrap();
    tfmprov_aggregator::client::register(agg, token, "dev-a", &chain_a, t).unwrap();

    // dev-b's certificate revoked before it was ever registered, dev-a's
    // while registered: once dev-a shows revoked, the aggregator holds a
    // CRL with both.
    // dev-b's with the CLI, dev-a's with the client library.
    let out = Command::new(EXE)
        .args(["ca", "revoke", "--url", ca, "--serial", &serial_of(&chain_b), "--reason", "test"])
        .args(["--token-file", servers.token_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("revoked: dev-b serial "), "{}", String::from_utf8_lossy(&out.stdout));
    let r = tfmprov_ca::client::revoke(ca, token, &serial_of(&chain_a), "test", t).unwrap();
    assert_eq!(r.device_id, "dev-a");
    let start = Instant::now();
    while !tfmprov_aggregator::client::device(agg, "dev-a").unwrap().unwrap().revoked {
        assert!(start.elapsed() < Duration::from_secs(15), "dev-a not revoked within 15 s of the CA's revocation");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("revoked at the aggregator {:?} after the CA", start.elapsed());
    match tfmprov_aggregator::client::register(agg, token, "dev-b", &chain_b, t) {
        Err(tfmprov_aggregator::Error::Http { status: 409, message }) => assert!(message.contains("CRL lists it"), "{message}"),
        other => panic!("dev-b registered with a revoked certificate: {other:?}"),
    }
    let log = tfmprov_aggregator::client::audit(agg, token, 0, 1000).unwrap();
    let by_crl: Vec<_> = log.iter().filter(|e| e.action == "device.revoke" && e.actor == "crl").collect();
    assert_eq!(by_crl.len(), 1, "{log:?}");
    assert!(by_crl[0].subject == "dev-a" && by_crl[0].result.contains(&serial_of(&chain_a)), "{:?}", by_crl[0]);
    assert!(log.iter().any(|e| e.action == "device.register" && e.subject == "dev-b" && e.result.contains("CRL lists it")));

    // The CRL as the aggregator checks it: the CA's verifies and lists both;
    // another CA's (same names, other keys) does not verify with this one.
    let crl = ureq::get(&format!("{ca}/v1/crl")).call().unwrap().into_body().read_to_vec().unwrap();
    let inter = chain_a.split_inclusive("-----END CERTIFICATE-----\n").nth(1).unwrap();
    let mut want = vec![serial_of(&chain_a), serial_of(&chain_b)];
    want.sort();
    assert_eq!(tfmprov_aggregator::verify_crl(&crl, inter).unwrap(), want);
    let other = tfmprov_ca::Ca::open_or_create(&tfmprov_ca::CaConfig::new(dir.path().join("other-ca"))).unwrap();
    let forged = other.crl_der().unwrap();
    let e = tfmprov_aggregator::verify_crl(&forged, inter).unwrap_err();
    assert!(e.contains("does not verify") || e.contains("not an intermediate"), "{e}");
    let mut flipped = crl.clone();
    let n = flipped.len();
    flipped[n - 5] ^= 1;
    assert!(tfmprov_aggregator::verify_crl(&flipped, inter).is_err());
}
