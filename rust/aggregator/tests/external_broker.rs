//! External-broker specifics, on mosquitto: mqtts with a CA file and a client
//! certificate, and the persistent session (messages published while the
//! aggregator is down are ingested when it comes back).

mod common;

use std::path::PathBuf;

use common::*;
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use rumqttc::QoS;
use tfmprov_aggregator::{client, Aggregator, BrokerChoice, Error};
use tfmprov_cose::RejectCode;

struct BrokerTls {
    ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    other_ca: PathBuf,
}

/// Broker CA, server certificate for 127.0.0.1, client certificate; files in `dir`.
fn broker_tls(dir: &std::path::Path) -> (BrokerTls, String) {
    let ca = Ca::root("broker ca");
    let server_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut sp = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    sp.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    sp.distinguished_name.push(DnType::CommonName, "mosquitto");
    sp.is_ca = IsCa::ExplicitNoCa;
    sp.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = sp.signed_by(&server_key, &Issuer::from_params(&ca.params, &ca.key)).unwrap();
    let client_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let client = Ca::leaf_params("aggregator")
        .signed_by(&client_key, &Issuer::from_params(&ca.params, &ca.key))
        .unwrap();
    let w = |name: &str, s: &str| {
        let p = dir.join(name);
        std::fs::write(&p, s).unwrap();
        p
    };
    let tls = BrokerTls {
        ca: w("ca.pem", &ca.pem),
        client_cert: w("client.pem", &client.pem()),
        client_key: w("client.key", &client_key.serialize_pem()),
        other_ca: w("other-ca.pem", &Ca::root("unrelated").pem),
    };
    let server_cert = w("server.pem", &server.pem());
    let server_key = w("server.key", &server_key.serialize_pem());
    let conf = format!(
        "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
        tls.ca.display(),
        server_cert.display(),
        server_key.display()
    );
    (tls, conf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_with_client_certificate() {
    let files = tempfile::tempdir().unwrap();
    let tls_port = free_port();
    let (tls, tls_conf) = broker_tls(files.path());
    // Plain listener for the devices, TLS listener (client cert required) for the aggregator.
    let mosq = Mosquitto::start_with(|_, _| format!("listener {tls_port} 127.0.0.1\n{tls_conf}"));
    let pki = Pki::new("tls");
    let state = tempfile::tempdir().unwrap();
    let url = format!("mqtts://127.0.0.1:{tls_port}");

    // Without a client certificate the broker refuses the aggregator.
    let no_cert = BrokerChoice::External { url: url.clone(), ca_file: Some(tls.ca.clone()), client_cert: None };
    let r = Aggregator::start(config(state.path(), &pki.root.pem, no_cert)).await;
    assert!(matches!(r, Err(Error::Mqtt(_))), "{:?}", r.err());
    // A CA file that does not verify the broker: refused too.
    let wrong_ca = BrokerChoice::External {
        url: url.clone(),
        ca_file: Some(tls.other_ca.clone()),
        client_cert: Some((tls.client_cert.clone(), tls.client_key.clone())),
    };
    let r = Aggregator::start(config(state.path(), &pki.root.pem, wrong_ca)).await;
    assert!(matches!(r, Err(Error::Mqtt(_))), "{:?}", r.err());

    let good = BrokerChoice::External {
        url,
        ca_file: Some(tls.ca.clone()),
        client_cert: Some((tls.client_cert.clone(), tls.client_key.clone())),
    };
    let agg = Aggregator::start(config(state.path(), &pki.root.pem, good)).await.expect("mqtts start");
    assert_eq!(agg.mqtt_addr().port(), tls_port);
    let base = format!("http://{}", agg.http_addr());
    let dev = pki.device("tls-dev");
    let (b, chain, token) = (base.clone(), dev.chain_pem.clone(), common::admin_token(state.path()));
    tokio::task::spawn_blocking(move || client::register(&b, &token, "tls-dev", &chain, std::time::Duration::from_secs(10)))
        .await
        .unwrap()
        .unwrap();
    let mut c = TestClient::connect(mosq.addr(), "tls-dev").await;
    c.subscribe(&dev.errors_topic()).await;
    c.publish(&dev.data_topic(), dev.sign(1, b"over tls"), QoS::AtLeastOnce).await;
    let mut bad = dev.sign(2, b"over tls");
    let n = bad.len();
    bad[n - 3] ^= 0x40;
    c.publish(&dev.data_topic(), bad, QoS::AtLeastOnce).await;
    // The error report went out over the aggregator's TLS connection.
    let (_, r) = c.next_error().await;
    assert_eq!(r.reject_code(), Some(RejectCode::BadSignature));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while agg.stats().accepted < 1 {
        assert!(std::time::Instant::now() < deadline, "{:?}", agg.stats());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    agg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_while_down_are_ingested_after_restart() {
    let mut h = Harness::start(BrokerKind::Mosquitto).await;
    let dev = h.pki.device("offline-dev");
    h.register(&dev).await.unwrap();
    let c = TestClient::connect(h.mosq.as_ref().unwrap().addr(), "offline-dev").await;
    c.publish(&dev.data_topic(), dev.sign(1, b"online"), QoS::AtLeastOnce).await;
    h.wait_stats("1 accepted", |s| s.accepted == 1).await;

    h.agg.take().unwrap().shutdown().await;
    for seq in 2..=4 {
        c.publish(&dev.data_topic(), dev.sign(seq, b"while down"), QoS::AtLeastOnce).await;
    }
    // Let mosquitto take them (PUBACKed to the device) before the restart.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    h.restart().await;
    let s = h.wait_stats("3 queued messages", |s| s.accepted == 3).await;
    assert_eq!(s.rejected_total(), 0, "{s:?}");
    let (base, id) = (h.base.clone(), dev.id.clone());
    let stored = tokio::task::spawn_blocking(move || client::messages(&base, &id, 100)).await.unwrap().unwrap();
    assert_eq!(stored.len(), 4);
    h.stop().await;
}
