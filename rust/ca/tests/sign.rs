//! Signing CSRs in-process: the issued leaf as openssl sees it, refusals, the log.

mod common;

use common::*;
use der::{Decode, Encode};
use tfmprov_ca::{Ca, CaConfig, Error, Refusal};
use x509_cert::Certificate;

#[test]
fn openssl_csr_is_issued_and_verifies_with_openssl() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = open_ca(&tmp.path().join("state"));
    let csr = p256_csr(tmp.path(), "/CN=dev-1");
    let issued = ca.sign_csr(&csr).unwrap();
    assert_eq!(issued.device_id, "dev-1");
    assert!(!issued.rekey);

    // Chain: leaf then intermediate.
    let certs = Certificate::load_pem_chain(issued.chain_pem.as_bytes()).unwrap();
    assert_eq!(certs.len(), 2);
    assert_eq!(certs[0].to_der().unwrap(), issued.leaf_der);
    assert_eq!(certs[1].to_der().unwrap(), ca.intermediate_der());

    let out = openssl_verify(tmp.path(), &ca, &first_pem(&issued.chain_pem));
    assert!(out.trim_end().ends_with("leaf.pem: OK"), "{out}");
    let out = openssl(
        tmp.path(),
        &[
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "intermediate.pem",
            "leaf.pem",
        ],
    );
    assert!(out.contains("OK"), "{out}");

    let text = openssl(tmp.path(), &["x509", "-in", "leaf.pem", "-noout", "-text"]);
    for needle in [
        "X509v3 Basic Constraints: critical",
        "CA:FALSE",
        "X509v3 Key Usage: critical",
        "Digital Signature",
        "TLS Web Client Authentication",
        "X509v3 Subject Key Identifier",
        "X509v3 Authority Key Identifier",
        "Signature Algorithm: ecdsa-with-SHA256",
        "Subject: CN = dev-1",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
    assert!(!text.contains("Non Repudiation"), "{text}");
    assert!(!text.contains("Extended Key Usage: critical"), "{text}");
    assert!(!text.contains("Certificate Sign"), "{text}");

    // AKI of the leaf = SKI of the intermediate.
    let int_ski = openssl(
        tmp.path(),
        &[
            "x509",
            "-in",
            "intermediate.pem",
            "-noout",
            "-ext",
            "subjectKeyIdentifier",
        ],
    );
    let ski = int_ski.lines().nth(1).unwrap().trim();
    assert!(
        text.contains(ski),
        "intermediate SKI {ski} not the leaf's AKI\n{text}"
    );

    // Serial: 16 bytes, positive; validity: 5 minutes back, 365 days ahead.
    let leaf = Certificate::from_der(&issued.leaf_der).unwrap();
    let serial = leaf.tbs_certificate.serial_number.as_bytes();
    assert_eq!(serial.len(), 16);
    assert!(serial[0] & 0x80 == 0 && serial[0] != 0);
    assert_eq!(hex::encode(serial), issued.serial_hex);
    let v = leaf.tbs_certificate.validity;
    let span = v.not_after.to_unix_duration() - v.not_before.to_unix_duration();
    assert_eq!(span.as_secs(), 365 * 86_400 + 300);

    // The key in the leaf is the CSR's key.
    let csr = x509_cert::request::CertReq::from_der(&csr).unwrap();
    assert_eq!(
        leaf.tbs_certificate
            .subject_public_key_info
            .subject_public_key,
        csr.info.public_key.subject_public_key
    );
}

#[test]
fn subject_keeps_cn_o_ou_and_drops_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = open_ca(&tmp.path().join("state"));
    let csr = p256_csr(
        tmp.path(),
        "/C=DE/O=Acme/OU=Sensors/CN=dev-2/emailAddress=x@example.com",
    );
    let issued = ca.sign_csr(&csr).unwrap();
    std::fs::write(tmp.path().join("leaf.pem"), first_pem(&issued.chain_pem)).unwrap();
    let subj = openssl(
        tmp.path(),
        &["x509", "-in", "leaf.pem", "-noout", "-subject"],
    );
    assert_eq!(subj.trim(), "subject=O = Acme, OU = Sensors, CN = dev-2");
}

#[test]
fn validity_days_is_used() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = CaConfig::new(tmp.path().join("state"));
    cfg.validity_days = 7;
    let ca = Ca::open_or_create(&cfg).unwrap();
    let issued = ca.sign_csr(&p256_csr(tmp.path(), "/CN=short")).unwrap();
    let v = Certificate::from_der(&issued.leaf_der)
        .unwrap()
        .tbs_certificate
        .validity;
    let span = v.not_after.to_unix_duration() - v.not_before.to_unix_duration();
    assert_eq!(span.as_secs(), 7 * 86_400 + 300);
}

fn refusal(ca: &Ca, csr: &[u8]) -> Refusal {
    match ca.sign_csr(csr) {
        Err(Error::Refused(r)) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn broken_signature_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = open_ca(&tmp.path().join("state"));
    let mut csr = p256_csr(tmp.path(), "/CN=dev-1");
    let last = csr.len() - 1; // last byte of the ECDSA s value
    csr[last] ^= 0x01;
    let r = refusal(&ca, &csr);
    assert_eq!(r, Refusal::BadSignature);
    assert_eq!(r.to_string(), "CSR signature does not verify");
    // A change in the signed part is caught the same way.
    let mut csr = p256_csr(tmp.path(), "/CN=dev-1");
    let pos = csr.windows(5).position(|w| w == b"dev-1").unwrap();
    csr[pos + 4] = b'2';
    assert_eq!(refusal(&ca, &csr), Refusal::BadSignature);
}

#[test]
fn rsa_and_p384_keys_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = open_ca(&tmp.path().join("state"));
    let rsa = openssl_csr(tmp.path(), &["-newkey", "rsa:2048"], "/CN=dev-rsa");
    let r = refusal(&ca, &rsa);
    assert!(matches!(r, Refusal::KeyNotP256(_)), "{r:?}");
    assert!(r.to_string().starts_with("key is not P-256"), "{r}");
    assert!(r.to_string().contains("RSA"), "{r}");

    let p384 = openssl_csr(
        tmp.path(),
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1"],
        "/CN=dev-p384",
    );
    let r = refusal(&ca, &p384);
    assert!(r.to_string().starts_with("key is not P-256"), "{r}");
    assert!(r.to_string().contains("secp384r1"), "{r}");

    let ed = openssl_csr(tmp.path(), &["-newkey", "ed25519"], "/CN=dev-ed");
    assert!(matches!(refusal(&ca, &ed), Refusal::KeyNotP256(_)));
}

#[test]
fn sha384_signature_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = open_ca(&tmp.path().join("state"));
    let csr = openssl_csr(
        tmp.path(),
        &[
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-sha384",
        ],
        "/CN=dev-384",
    );
    let r = refusal(&ca, &csr);
    assert!(matches!(r, Refusal::SignatureAlgorithm(_)), "{r:?}");
    assert!(r.to_string().contains("ecdsa-with-SHA384"), "{r}");
}

#[test]
fn bad_cns_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = open_ca(&tmp.path().join("state"));
    let r = refusal(&ca, &p256_csr(tmp.path(), "/CN=bad cn!"));
    assert_eq!(r, Refusal::CnNotAllowed("bad cn!".into()));
    assert_eq!(
        r.to_string(),
        "CN \"bad cn!\" not allowed: it must match [A-Za-z0-9._-]{1,64}"
    );

    // openssl will not encode a CN over 64 characters; make that CSR in Rust.
    let long = "a".repeat(65);
    let r = refusal(&ca, &rust_csr(&new_key(), &format!("CN={long}")));
    assert_eq!(r, Refusal::CnNotAllowed(long));
    // 64 is fine.
    ca.sign_csr(&rust_csr(&new_key(), &format!("CN={}", "b".repeat(64))))
        .unwrap();

    assert_eq!(
        refusal(&ca, &p256_csr(tmp.path(), "/O=Acme")),
        Refusal::MissingCn
    );
    assert_eq!(
        refusal(&ca, &p256_csr(tmp.path(), "/CN=a/CN=b")),
        Refusal::MultipleCn
    );
    assert_eq!(
        refusal(&ca, &rust_csr(&new_key(), "CN=d\u{e9}v")),
        Refusal::CnNotAllowed("d\u{e9}v".into())
    );
}

#[test]
fn garbage_and_truncated_csrs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = open_ca(&tmp.path().join("state"));
    let csr = p256_csr(tmp.path(), "/CN=dev-1");
    for bad in [&csr[..csr.len() - 1], &csr[..10], &b"hello"[..], &[][..]] {
        assert!(matches!(refusal(&ca, bad), Refusal::Malformed(_)));
    }
    let mut trailing = csr.clone();
    trailing.push(0);
    assert!(matches!(refusal(&ca, &trailing), Refusal::Malformed(_)));
    assert!(matches!(
        ca.sign_csr(&vec![0x30; 70_000]),
        Err(Error::TooLarge { .. })
    ));
}

#[test]
fn rekey_is_flagged_and_everything_is_logged() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = open_ca(&tmp.path().join("state"));
    let key_a = new_key();
    let first = ca.sign_csr(&rust_csr(&key_a, "CN=dev-7")).unwrap();
    assert!(!first.rekey);
    // Same key again: a renewal, not a re-key.
    let renewal = ca.sign_csr(&rust_csr(&key_a, "CN=dev-7")).unwrap();
    assert!(!renewal.rekey);
    assert_eq!(renewal.spki_sha256, first.spki_sha256);
    assert_ne!(renewal.serial_hex, first.serial_hex);
    // Another key under the same CN: re-key.
    let rekeyed = ca.sign_csr(&rust_csr(&new_key(), "CN=dev-7")).unwrap();
    assert!(rekeyed.rekey);
    assert_ne!(rekeyed.spki_sha256, first.spki_sha256);
    // Another device is not affected.
    assert!(
        !ca.sign_csr(&rust_csr(&new_key(), "CN=dev-8"))
            .unwrap()
            .rekey
    );
    // A refused one.
    refusal(&ca, &p256_csr(tmp.path(), "/CN=bad cn!"));

    let devices = ca.devices().unwrap();
    assert_eq!(devices.len(), 2);
    let d7 = &devices[0];
    assert_eq!(d7.device_id, "dev-7");
    assert!(d7.rekey);
    assert_eq!(d7.serial_hex, rekeyed.serial_hex);
    assert_eq!(d7.spki_sha256, rekeyed.spki_sha256);
    assert_eq!((d7.certificates, d7.keys), (3, 2));
    assert_eq!(devices[1].device_id, "dev-8");
    assert!(!devices[1].rekey);

    // The SPKI hash is SHA-256 of the key's SubjectPublicKeyInfo DER.
    let spki = p256::pkcs8::EncodePublicKey::to_public_key_der(key_a.verifying_key()).unwrap();
    assert_eq!(first.spki_sha256, tfmprov_ca::spki_sha256(spki.as_bytes()));

    let log = ca.requests(100).unwrap();
    let outcomes: Vec<(&str, Option<&str>)> = log
        .iter()
        .map(|r| (r.outcome.as_str(), r.reason.as_deref()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("issued", None),
            ("issued", None),
            ("issued", Some("re-key")),
            ("issued", None),
            (
                "refused",
                Some("CN \"bad cn!\" not allowed: it must match [A-Za-z0-9._-]{1,64}")
            ),
        ]
    );
    assert_eq!(log[4].device_id.as_deref(), Some("bad cn!"));
    assert!(log[4].spki_sha256.is_some());
    assert!(log.iter().all(|r| r.source == "local"));

    // The log survives a reopen, and issued certificates can be looked up.
    drop(ca);
    let ca = open_ca(&tmp.path().join("state"));
    assert_eq!(ca.devices().unwrap().len(), 2);
    assert_eq!(
        ca.certificate(&first.serial_hex).unwrap(),
        Some(first.leaf_der)
    );
    assert_eq!(ca.certificate("00").unwrap(), None);
}

#[test]
fn compressed_point_csr_gets_an_uncompressed_leaf_key() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = open_ca(&tmp.path().join("state"));
    openssl(
        tmp.path(),
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-conv_form",
            "compressed",
            "-out",
            "ck.pem",
        ],
    );
    openssl(
        tmp.path(),
        &[
            "req",
            "-new",
            "-key",
            "ck.pem",
            "-subj",
            "/CN=dev-c",
            "-outform",
            "DER",
            "-out",
            "c.der",
        ],
    );
    let csr_der = std::fs::read(tmp.path().join("c.der")).unwrap();
    let csr = x509_cert::request::CertReq::from_der(&csr_der).unwrap();
    let point_len = csr.info.public_key.subject_public_key.raw_bytes().len();
    let issued = ca.sign_csr(&csr_der).unwrap();
    let leaf = Certificate::from_der(&issued.leaf_der).unwrap();
    let key = leaf
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    assert_eq!(key.len(), 65, "CSR point was {point_len} bytes");
    assert_eq!(key[0], 0x04);
}
