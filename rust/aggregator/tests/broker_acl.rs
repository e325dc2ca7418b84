//! Issue 13, broker authorisation on mosquitto: mutual TLS, the client
//! certificate's CN as the user name, and the project's pattern ACL
//! (`docs/mosquitto/tfmprov.acl`, used here as shipped). dev-2 cannot read
//! dev-1's error reports nor publish as dev-1; each device still has its own
//! topics, and the aggregator all of them.

mod common;

use std::time::Duration;

use common::*;
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use rumqttc::QoS;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

const ACL: &str = include_str!("../../../docs/mosquitto/tfmprov.acl");

/// A client configuration for a leaf (PEM chain) and its PKCS#8 key, the
/// broker checked to `root`.
fn tls_for(root: &Ca, chain_pem: &str, pkcs8: &[u8]) -> rustls::ClientConfig {
    let key = rustls::crypto::ring::sign::any_ecdsa_type(&PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.to_vec()))).unwrap();
    let identity = tfmprov_tls::ClientIdentity { chain: tfmprov_tls::pem_certificates(chain_pem).unwrap(), key };
    let roots = tfmprov_tls::roots(&[root.der.clone().into()]).unwrap();
    tfmprov_tls::client_config(tfmprov_tls::ServerCheck::Chain(roots), Some(identity)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_reach_only_their_own_topics_on_mosquitto() {
    let pki = Pki::new("acl");
    let files = tempfile::tempdir().unwrap();
    let w = |name: &str, s: &str| {
        let p = files.path().join(name);
        std::fs::write(&p, s).unwrap();
        p
    };
    // The broker's certificate (from the same CA, as the project's CA issues it).
    let server_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut sp = CertificateParams::new(Vec::<String>::new()).unwrap();
    sp.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    sp.distinguished_name.push(DnType::CommonName, "tfmprov-broker");
    sp.is_ca = IsCa::ExplicitNoCa;
    sp.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = sp.signed_by(&server_key, &Issuer::from_params(&pki.inter.params, &pki.inter.key)).unwrap();
    let conf = format!(
        "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\nuse_identity_as_username true\nacl_file {}\n",
        w("root.pem", &pki.root.pem).display(),
        w("server.pem", &format!("{}{}", server.pem(), pki.inter.pem)).display(),
        w("server.key", &server_key.serialize_pem()).display(),
        w("tfmprov.acl", ACL).display(),
    );
    let tls_port = free_port();
    let mosq = Mosquitto::start_with(|_, _| format!("listener {tls_port} 127.0.0.1\n{conf}"));
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], tls_port).into();

    let (dev1, dev2) = (pki.device("dev-1"), pki.device("dev-2"));
    let agg_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let agg_cert = Ca::leaf_params("tfmprov-aggregator")
        .signed_by(&agg_key, &Issuer::from_params(&pki.inter.params, &pki.inter.key))
        .unwrap();
    let agg_chain = format!("{}{}", agg_cert.pem(), pki.inter.pem);

    let mut agg = TestClient::connect_with(addr, "agg", Some(tls_for(&pki.root, &agg_chain, &agg_key.serialize_der()))).await;
    agg.subscribe("prov/+/data").await;
    let mut d1 = TestClient::connect_with(addr, "dev-1", Some(tls_for(&pki.root, &dev1.chain_pem, &dev1.pkcs8_der))).await;
    let mut d2 = TestClient::connect_with(addr, "dev-2", Some(tls_for(&pki.root, &dev2.chain_pem, &dev2.pkcs8_der))).await;
    d1.subscribe("prov/dev-1/errors").await;
    // dev-2 asks for dev-1's reports, and for its own.
    d2.subscribe("prov/dev-1/errors").await;
    d2.subscribe("prov/+/errors").await;
    d2.subscribe("prov/dev-2/errors").await;

    agg.publish("prov/dev-1/errors", b"for dev-1".to_vec(), QoS::AtLeastOnce).await;
    agg.publish("prov/dev-2/errors", b"for dev-2".to_vec(), QoS::AtLeastOnce).await;
    let p = d1.recv(Duration::from_secs(10)).await.expect("dev-1 reads its own reports");
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("prov/dev-1/errors", &b"for dev-1"[..]));
    // dev-2 gets its own report (once per matching subscription at most),
    // never dev-1's.
    let mut got = Vec::new();
    while let Some(p) = d2.recv(Duration::from_millis(800)).await {
        got.push((p.topic.clone(), p.payload.to_vec()));
    }
    assert!(!got.is_empty(), "dev-2 reads its own reports");
    assert!(got.iter().all(|(t, b)| t == "prov/dev-2/errors" && b == b"for dev-2"), "{got:?}");

    // dev-2 publishes as dev-1, then as itself (in this order, one connection).
    d2.publish("prov/dev-1/data", b"forged".to_vec(), QoS::AtLeastOnce).await;
    d2.publish("prov/dev-2/data", b"own".to_vec(), QoS::AtLeastOnce).await;
    let p = agg.recv(Duration::from_secs(10)).await.expect("the aggregator gets dev-2's own message");
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("prov/dev-2/data", &b"own"[..]), "the forged message came first");
    d1.publish("prov/dev-1/data", b"real".to_vec(), QoS::AtLeastOnce).await;
    let p = agg.recv(Duration::from_secs(10)).await.expect("dev-1's message");
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("prov/dev-1/data", &b"real"[..]));
    // A device cannot send commands to another (or to itself).
    d2.publish("prov/dev-1/cmd", b"cmd".to_vec(), QoS::AtLeastOnce).await;
    assert!(d1.recv(Duration::from_millis(500)).await.is_none());
    drop(mosq);
}
