//! Registration: chain verification (webpki + keyUsage policy), CN, key,
//! HTTP status codes and body forms. The broker plays no part here, so these
//! run once, on the embedded broker.

mod common;

use std::time::Duration;

use common::*;
use rcgen::{date_time_ymd, ExtendedKeyUsagePurpose, IsCa, BasicConstraints, KeyUsagePurpose};
use tfmprov_aggregator::{client, Error};

fn status_and_message(r: Result<(), Error>) -> (u16, String) {
    match r {
        Err(Error::Http { status, message }) => (status, message),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

async fn refused(h: &Harness, id: &str, chain: &str, status: u16, needle: &str) {
    let (s, m) = status_and_message(h.register_chain(id, chain).await);
    assert_eq!(s, status, "{m}");
    assert!(m.contains(needle), "{needle:?} not in {m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_checks_the_chain() {
    let h = Harness::start(BrokerKind::Embedded).await;
    let pki = &h.pki;
    let untrusted = "does not verify to the configured root";

    // Good chain: 201, then the same key again: 200 (record returned both times).
    let dev = pki.device("dev-1");
    let (base, token, chain) = (h.base.clone(), h.token.clone(), dev.chain_pem.clone());
    let rec = tokio::task::spawn_blocking(move || client::register_device(&base, &token, "dev-1", &chain, Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("registered");
    assert_eq!(rec.kid, hex::encode(dev.kid));
    assert_eq!(rec.public_key, hex::encode(dev.point));
    assert!(!rec.revoked);
    h.register(&dev).await.expect("same key again is fine");

    // Same id, other key: 409.
    let again = pki.device("dev-1");
    refused(&h, "dev-1", &again.chain_pem, 409, "different key").await;

    // Chain from another root.
    let other = Pki::new("other");
    refused(&h, "dev-2", &other.device("dev-2").chain_pem, 400, untrusted).await;

    // Leaf alone (intermediate missing).
    let d = pki.device("dev-3");
    let leaf_only = d.chain_pem.split_inclusive("-----END CERTIFICATE-----\n").next().unwrap().to_owned();
    refused(&h, "dev-3", &leaf_only, 400, untrusted).await;

    // Root included at the end is fine.
    let d = pki.device("dev-4");
    h.register_chain("dev-4", &format!("{}{}", d.chain_pem, pki.root.pem)).await.expect("with root");

    // CN differs from the device id.
    refused(&h, "dev-5", &pki.device("dev-6").chain_pem, 400, "CN").await;

    // Expired leaf.
    let d = pki.device_custom("dev-7", |p| {
        p.not_before = date_time_ymd(2019, 1, 1);
        p.not_after = date_time_ymd(2020, 1, 1);
    });
    refused(&h, "dev-7", &d.chain_pem, 400, untrusted).await;

    // Not yet valid leaf.
    let d = pki.device_custom("dev-8", |p| {
        p.not_before = date_time_ymd(2090, 1, 1);
        p.not_after = date_time_ymd(2091, 1, 1);
    });
    refused(&h, "dev-8", &d.chain_pem, 400, untrusted).await;

    // Leaf keyUsage without digitalSignature.
    let d = pki.device_custom("dev-9", |p| p.key_usages = vec![KeyUsagePurpose::KeyEncipherment]);
    refused(&h, "dev-9", &d.chain_pem, 400, "digitalSignature").await;

    // Leaf extended key usage serverAuth only.
    let d = pki.device_custom("dev-10", |p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth]);
    refused(&h, "dev-10", &d.chain_pem, 400, untrusted).await;

    // Leaf that is a CA.
    let d = pki.device_custom("dev-11", |p| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained));
    refused(&h, "dev-11", &d.chain_pem, 400, untrusted).await;

    // Intermediate whose keyUsage lacks keyCertSign (webpki alone accepts this).
    let bad_inter = pki.root.intermediate_without_cert_sign("no-certsign");
    let d = bad_inter.device_with("dev-12", Ca::leaf_params("dev-12"), &bad_inter.pem);
    refused(&h, "dev-12", &d.chain_pem, 400, "keyCertSign").await;

    // Path length: root -> inter (pathlen 0) -> sub CA -> leaf.
    let sub = pki.inter.intermediate_unconstrained("too-deep");
    let d = sub.device_with("dev-13", Ca::leaf_params("dev-13"), &format!("{}{}", sub.pem, pki.inter.pem));
    refused(&h, "dev-13", &d.chain_pem, 400, untrusted).await;
    // ... while the same depth under an unconstrained intermediate is fine.
    let free = pki.root.intermediate_unconstrained("unconstrained");
    let sub = free.intermediate_pathlen0("below-unconstrained");
    let d = sub.device_with("dev-14", Ca::leaf_params("dev-14"), &format!("{}{}", sub.pem, free.pem));
    h.register_chain("dev-14", &d.chain_pem).await.expect("3-level chain within path length");

    // Bad device id, garbage, empty.
    refused(&h, "bad/id", &pki.device("bad/id").chain_pem, 400, "device id").await;
    refused(&h, "dev-15", "not a pem", 400, "no PEM CERTIFICATE").await;
    refused(&h, "dev-15", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", 400, "bad certificate chain").await;

    // Nothing refused was stored.
    let base = h.base.clone();
    let missing = tokio::task::spawn_blocking(move || {
        ["dev-2", "dev-3", "dev-5", "dev-7", "dev-9", "dev-12", "dev-13"]
            .iter()
            .all(|id| client::device(&base, id).unwrap().is_none())
    })
    .await
    .unwrap();
    assert!(missing);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_body_forms() {
    let h = Harness::start(BrokerKind::Embedded).await;
    let dev = h.pki.device("pem-dev");
    let other = h.pki.device("json-dev");
    let (base, token) = (h.base.clone(), h.token.clone());
    let auth = format!("Bearer {token}");
    let (chain, ochain) = (dev.chain_pem.clone(), other.chain_pem.clone());
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::new_with_config(ureq::Agent::config_builder().http_status_as_error(false).build());
        // PEM body with ?device_id=: 201, then 200.
        for want in [201, 200] {
            let r = agent
                .post(format!("{base}/v1/devices?device_id=pem-dev"))
                .header("Authorization", &auth)
                .header("Content-Type", "application/pem-certificate-chain")
                .send(chain.as_bytes())
                .unwrap();
            assert_eq!(r.status().as_u16(), want);
        }
        // PEM body without the id: 400.
        let mut r = agent
            .post(format!("{base}/v1/devices"))
            .header("Authorization", &auth)
            .header("Content-Type", "application/pem-certificate-chain")
            .send(chain.as_bytes())
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
        assert!(r.body_mut().read_to_string().unwrap().contains("device_id"));
        // Broken JSON: 400; unknown content type: 400.
        let r = agent.post(format!("{base}/v1/devices")).header("Authorization", &auth).header("Content-Type", "application/json").send("{").unwrap();
        assert_eq!(r.status().as_u16(), 400);
        let r = agent.post(format!("{base}/v1/devices")).header("Authorization", &auth).header("Content-Type", "image/png").send("x").unwrap();
        assert_eq!(r.status().as_u16(), 400);
        // JSON: 201.
        let body = serde_json::json!({"device_id": "json-dev", "chain_pem": ochain}).to_string();
        let r = agent.post(format!("{base}/v1/devices")).header("Authorization", &auth).header("Content-Type", "application/json").send(body).unwrap();
        assert_eq!(r.status().as_u16(), 201);
        // Too large: 400/413, or the connection closed before the client
        // finished sending (seen under load: the server answers and closes
        // while the body is still going out). Not a crash: the requests
        // below still get their answers.
        let big = "A".repeat(200 * 1024);
        match agent.post(format!("{base}/v1/devices?device_id=x")).header("Authorization", &auth).header("Content-Type", "application/pem-certificate-chain").send(big) {
            Ok(r) => assert!(r.status().as_u16() == 400 || r.status().as_u16() == 413, "{}", r.status()),
            Err(ureq::Error::Io(e)) => assert!(
                matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset),
                "{e}"
            ),
            Err(e) => panic!("{e}"),
        }
        // GET / DELETE of an unknown device: 404.
        assert_eq!(agent.get(format!("{base}/v1/devices/nope")).call().unwrap().status().as_u16(), 404);
        assert_eq!(agent.delete(format!("{base}/v1/devices/nope")).header("Authorization", &auth).call().unwrap().status().as_u16(), 404);
        // DELETE twice keeps the first revocation time.
        let a = client::revoke(&base, &token, "json-dev").unwrap();
        let b = client::revoke(&base, &token, "json-dev").unwrap();
        assert_eq!(a.revoked_at, b.revoked_at);
        assert!(b.revoked);
    })
    .await
    .unwrap();
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_is_refused() {
    use tfmprov_aggregator::{Aggregator, BrokerChoice};
    let state = tempfile::tempdir().unwrap();
    let pki = Pki::new("cfg");
    let embedded = BrokerChoice::Embedded { listen: "127.0.0.1:0".parse().unwrap() };

    let mut cfg = config(state.path(), "no certificate here", embedded.clone());
    assert!(matches!(Aggregator::start(cfg.clone()).await, Err(Error::Config(_))));
    cfg.ca_root_pem = pki.root.pem.clone();
    cfg.replay_horizon = 0;
    assert!(matches!(Aggregator::start(cfg.clone()).await, Err(Error::Config(_))));
    cfg.replay_horizon = 1000;
    cfg.max_message = 1 << 20;
    assert!(matches!(Aggregator::start(cfg.clone()).await, Err(Error::Config(_))));
    cfg.max_message = 16 * 1024;

    // Nothing listens there: the start fails instead of hanging.
    let port = free_port();
    cfg.broker = BrokerChoice::External { url: format!("mqtt://127.0.0.1:{port}"), ca_file: None, client_cert: None };
    assert!(matches!(Aggregator::start(cfg.clone()).await, Err(Error::Mqtt(_))));

    // The embedded broker's port is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    cfg.broker = BrokerChoice::Embedded { listen: taken.local_addr().unwrap() };
    assert!(matches!(Aggregator::start(cfg).await, Err(Error::Broker(_))));
}

/// A rotation that cannot run is refused when asked, with its reason: no CA
/// configured, unknown or revoked device, no key-agreement key, a key ID
/// outside the device range, a malformed body. Nothing is started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_requests_that_cannot_run_are_refused() {
    let rotate = |h: &Harness, id: &'static str, key: Option<u32>| {
        let (base, token) = (h.base.clone(), h.token.clone());
        tokio::task::spawn_blocking(move || client::start_rotation(&base, &token, id, key, Some(1)).map(|_| ()))
    };
    // Without a CA for new keys.
    let h = Harness::start(BrokerKind::Embedded).await;
    h.register(&h.pki.device("dev-1")).await.unwrap();
    let (s, m) = status_and_message(rotate(&h, "dev-1", None).await.unwrap());
    assert_eq!(s, 400);
    assert!(m.contains("no CA to sign new keys"), "{m}");

    // With one (never reached: each request is refused before).
    let h = Harness::start_with(BrokerKind::Embedded, |c| c.rotation_ca = Some("http://127.0.0.1:9".into())).await;
    let dev = h.pki.device("dev-1");
    h.register(&dev).await.unwrap();
    let (s, m) = status_and_message(rotate(&h, "dev-9", None).await.unwrap());
    assert_eq!((s, m.contains("no device \"dev-9\"")), (400, true), "{m}");
    let (s, m) = status_and_message(rotate(&h, "dev-1", None).await.unwrap());
    assert_eq!((s, m.contains("no key-agreement key")), (400, true), "{m}");
    let (base, token) = (h.base.clone(), h.token.clone());
    let kak = dev.point;
    tokio::task::spawn_blocking(move || client::set_kak(&base, &token, "dev-1", &kak, Duration::from_secs(5))).await.unwrap().unwrap();
    let (s, m) = status_and_message(rotate(&h, "dev-1", Some(0x3E00_0005)).await.unwrap());
    assert_eq!((s, m.contains("not a device key ID")), (400, true), "{m}");
    let (base, token) = (h.base.clone(), h.token.clone());
    let bad_body = tokio::task::spawn_blocking(move || {
        ureq::post(&format!("{base}/v1/devices/dev-1/rotation"))
            .header("Authorization", &format!("Bearer {token}"))
            .config()
            .http_status_as_error(false)
            .build()
            .send("{\"grace\": 5}")
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(bad_body.status().as_u16(), 400);
    let (base, token) = (h.base.clone(), h.token.clone());
    assert!(tokio::task::spawn_blocking(move || client::rotation(&base, &token, "dev-1")).await.unwrap().unwrap().is_none(), "nothing started");
    // Revoked.
    let (base, token) = (h.base.clone(), h.token.clone());
    tokio::task::spawn_blocking(move || client::revoke(&base, &token, "dev-1")).await.unwrap().unwrap();
    let (s, _) = status_and_message(rotate(&h, "dev-1", None).await.unwrap());
    assert_eq!(s, 409);
}
