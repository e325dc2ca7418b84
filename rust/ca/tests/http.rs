//! The HTTP API on 127.0.0.1:0: /v1/csr (DER and PEM), /v1/ca, /v1/devices,
//! EST cacerts + simpleenroll (checked with openssl), errors, and the blocking client.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tfmprov_ca::{client, Error};

fn sh(dir: &Path, script: &str) -> Vec<u8> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// POST with the operator token (the CA's first one).
fn post(token: &str, url: &str, content_type: &str, body: &[u8]) -> (u16, String, String) {
    answer(
        agent()
            .post(url)
            .header("Authorization", &format!("Bearer {token}"))
            .header("Content-Type", content_type)
            .send(body)
            .unwrap(),
    )
}

fn get(url: &str) -> (u16, String, String) {
    answer(agent().get(url).call().unwrap())
}

#[test]
fn csr_der_and_pem_bodies_devices_and_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Arc::new(open_ca(&tmp.path().join("state")));
    let server = Server::start(ca.clone());

    assert_eq!(get(&format!("{}/healthz", server.base)).0, 200);
    let (status, ct, body) = get(&format!("{}/v1/ca", server.base));
    assert_eq!(
        (status, ct.as_str()),
        (200, "application/pem-certificate-chain")
    );
    assert_eq!(body, format!("{}{}", ca.root_pem(), ca.intermediate_pem()));

    // DER body.
    let der = p256_csr(tmp.path(), "/CN=dev-der");
    let (status, ct, chain) = post(
        &server.token,
        &format!("{}/v1/csr", server.base),
        "application/pkcs10",
        &der,
    );
    assert_eq!(status, 200, "{chain}");
    assert_eq!(ct, "application/pem-certificate-chain");
    assert_eq!(chain.matches("-----BEGIN CERTIFICATE-----").count(), 2);
    assert!(chain.ends_with(&ca.intermediate_pem()));
    let out = openssl_verify(tmp.path(), &ca, &first_pem(&chain));
    assert!(out.contains("leaf.pem: OK"), "{out}");
    let subj = openssl(
        tmp.path(),
        &["x509", "-in", "leaf.pem", "-noout", "-subject"],
    );
    assert_eq!(subj.trim(), "subject=CN = dev-der");

    // PEM body (openssl's default output).
    openssl(
        tmp.path(),
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-subj",
            "/CN=dev-pem",
            "-nodes",
            "-keyout",
            "k.pem",
            "-out",
            "csr.pem",
        ],
    );
    let pem = std::fs::read(tmp.path().join("csr.pem")).unwrap();
    assert!(pem.starts_with(b"-----BEGIN CERTIFICATE REQUEST-----"));
    let (status, _, chain) = post(
        &server.token,
        &format!("{}/v1/csr", server.base),
        "application/x-pem-file",
        &pem,
    );
    assert_eq!(status, 200, "{chain}");
    let out = openssl_verify(tmp.path(), &ca, &first_pem(&chain));
    assert!(out.contains("leaf.pem: OK"), "{out}");

    // Devices as JSON.
    let (status, ct, body) = get(&format!("{}/v1/devices", server.base));
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    let devices: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ids: Vec<&str> = devices
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["dev-der", "dev-pem"]);
    let d = &devices[0];
    assert_eq!(d["spki_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(d["serial_hex"].as_str().unwrap().len(), 32);
    assert_eq!(d["rekey"], false);
    assert!(d["issued_at_utc"].as_str().unwrap().ends_with('Z'));

    // The log names the peer.
    let log = ca.requests(10).unwrap();
    assert_eq!(log.len(), 2);
    assert!(
        log.iter().all(|r| r.source.starts_with("http 127.0.0.1:")),
        "{log:?}"
    );
}

#[test]
fn refusals_are_400_with_a_reason_and_logged() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Arc::new(open_ca(&tmp.path().join("state")));
    let server = Server::start(ca.clone());
    let url = format!("{}/v1/csr", server.base);

    let mut broken = p256_csr(tmp.path(), "/CN=dev-1");
    let last = broken.len() - 1;
    broken[last] ^= 0x01;
    let rsa = openssl_csr(tmp.path(), &["-newkey", "rsa:2048"], "/CN=dev-rsa");
    let p384 = openssl_csr(
        tmp.path(),
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1"],
        "/CN=dev-384",
    );
    let bad_cn = p256_csr(tmp.path(), "/CN=bad cn!");
    let long_cn = rust_csr(&new_key(), &format!("CN={}", "x".repeat(65)));

    let cases: [(&[u8], &str); 6] = [
        (&broken, "CSR signature does not verify"),
        (&rsa, "key is not P-256 (RSA key)"),
        (&p384, "key is not P-256 (EC curve secp384r1)"),
        (&bad_cn, "CN \"bad cn!\" not allowed"),
        (&long_cn, "not allowed: it must match [A-Za-z0-9._-]{1,64}"),
        (b"not a csr", "malformed CSR"),
    ];
    for (body, reason) in cases {
        let (status, ct, text) = post(&server.token, &url, "application/pkcs10", body);
        assert_eq!(status, 400, "{text}");
        assert!(ct.starts_with("text/plain"), "{ct}");
        assert!(text.starts_with("CSR refused: "), "{text}");
        assert!(text.contains(reason), "{reason:?} not in {text:?}");
    }

    // Over 64 KiB: 413.
    let (status, _, text) = post(&server.token, &url, "application/pkcs10", &vec![0x30; 64 * 1024 + 1]);
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("too large"), "{text}");
    // Exactly 64 KiB is read (and refused as a bad CSR).
    assert_eq!(
        post(&server.token, &url, "application/pkcs10", &vec![0x30; 64 * 1024]).0,
        400
    );

    // Nothing issued, every request logged as refused.
    assert!(ca.devices().unwrap().is_empty());
    let log = ca.requests(100).unwrap();
    assert_eq!(log.len(), 8);
    assert!(log.iter().all(|r| r.outcome == "refused"), "{log:?}");
    assert_eq!(
        log[0].reason.as_deref(),
        Some("CSR signature does not verify")
    );
    assert_eq!(log[0].device_id.as_deref(), Some("dev-1"));
    assert!(log[6].reason.as_deref().unwrap().contains("too large"));

    // /metrics counts the same, and issues nothing: 8 refused, 0 issued.
    let (status, ct, page) = get(&format!("{}/metrics", server.base));
    assert_eq!(status, 200);
    assert!(ct.starts_with("application/openmetrics-text; version=1.0.0"), "{ct}");
    for line in [
        "# TYPE tfmprov_ca_certificates_issued counter",
        "tfmprov_ca_requests_failed_total{outcome=\"refused\"} 8",
        "tfmprov_ca_requests_failed_total{outcome=\"error\"} 0",
        "tfmprov_ca_certificates_issued_total{rekey=\"false\"} 0",
        "# EOF",
    ] {
        assert!(page.lines().any(|l| l == line), "missing {line:?} in\n{page}");
    }
    post(&server.token, &url, "application/pkcs10", &p256_csr(tmp.path(), "/CN=dev-ok"));
    let (_, _, page) = get(&format!("{}/metrics", server.base));
    assert!(page.lines().any(|l| l == "tfmprov_ca_certificates_issued_total{rekey=\"false\"} 1"), "{page}");

    // Unknown path and wrong method.
    assert_eq!(get(&format!("{}/v1/nothing", server.base)).0, 404);
    assert_eq!(get(&url).0, 405);
}

#[test]
fn est_simpleenroll_and_cacerts_parse_with_openssl() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = Arc::new(open_ca(&dir.join("state")));
    let server = Server::start(ca.clone());

    let b64 = sh(
        dir,
        "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -subj /CN=dev-est \
         -nodes -keyout est_key.pem -outform DER | base64",
    );
    let (status, ct, body) = post(
        &server.token,
        &format!("{}/.well-known/est/simpleenroll", server.base),
        "application/pkcs10",
        &b64,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(ct, "application/pkcs7-mime; smime-type=certs-only");
    std::fs::write(dir.join("enroll.b64"), &body).unwrap();
    let certs = sh(
        dir,
        "base64 -d enroll.b64 | openssl pkcs7 -inform DER -print_certs",
    );
    let certs = String::from_utf8(certs).unwrap();
    assert_eq!(
        certs.matches("-----BEGIN CERTIFICATE-----").count(),
        1,
        "{certs}"
    );
    assert!(certs.contains("subject=CN = dev-est"), "{certs}");
    // The certificate in it is the device's and verifies.
    let out = openssl_verify(
        dir,
        &ca,
        &first_pem(&certs[certs.find("-----BEGIN").unwrap()..]),
    );
    assert!(out.contains("leaf.pem: OK"), "{out}");
    let leaf_key = openssl(dir, &["x509", "-in", "leaf.pem", "-noout", "-pubkey"]);
    let csr_key = openssl(dir, &["pkey", "-in", "est_key.pem", "-pubout"]);
    assert_eq!(leaf_key, csr_key);
    assert_eq!(
        ca.requests(1).unwrap()[0].source.split(' ').next(),
        Some("est")
    );

    let (status, ct, body) = get(&format!("{}/.well-known/est/cacerts", server.base));
    assert_eq!(status, 200);
    assert_eq!(ct, "application/pkcs7-mime");
    std::fs::write(dir.join("cacerts.b64"), &body).unwrap();
    let cacerts = sh(
        dir,
        "base64 -d cacerts.b64 | openssl pkcs7 -inform DER -print_certs",
    );
    let cacerts = String::from_utf8(cacerts).unwrap();
    assert_eq!(
        cacerts.matches("-----BEGIN CERTIFICATE-----").count(),
        2,
        "{cacerts}"
    );
    assert!(
        cacerts.contains("subject=O = tfmprov, CN = tfmprov Root CA"),
        "{cacerts}"
    );
    assert!(
        cacerts.contains("subject=O = tfmprov, CN = tfmprov Intermediate CA"),
        "{cacerts}"
    );
    for pem in [ca.root_pem(), ca.intermediate_pem()] {
        assert!(cacerts.contains(pem.trim()), "{cacerts}");
    }

    // EST refusals are 400 too.
    let (status, _, text) = post(
        &server.token,
        &format!("{}/.well-known/est/simpleenroll", server.base),
        "application/pkcs10",
        b"%%%",
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("not base64"), "{text}");
    let bad = sh(
        dir,
        "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -subj '/CN=bad cn!' \
         -nodes -keyout k2.pem -outform DER | base64",
    );
    let (status, _, text) = post(
        &server.token,
        &format!("{}/.well-known/est/simpleenroll", server.base),
        "application/pkcs10",
        &bad,
    );
    assert_eq!(status, 400);
    assert!(text.contains("not allowed"), "{text}");
}

#[test]
fn blocking_client_against_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Arc::new(open_ca(&tmp.path().join("state")));
    let server = Server::start(ca.clone());

    let (root, intermediate) = client::fetch_ca(&server.base).unwrap();
    assert_eq!((root, intermediate), (ca.root_pem(), ca.intermediate_pem()));

    let csr = p256_csr(tmp.path(), "/CN=dev-client");
    let chain =
        client::submit_csr(&format!("{}/", server.base), &server.token, &csr, Duration::from_secs(30)).unwrap();
    let out = openssl_verify(tmp.path(), &ca, &first_pem(&chain));
    assert!(out.contains("leaf.pem: OK"), "{out}");

    let bad = p256_csr(tmp.path(), "/CN=bad cn!");
    match client::submit_csr(&server.base, &server.token, &bad, Duration::from_secs(30)) {
        Err(Error::Http {
            status: 400,
            message,
        }) => {
            assert!(message.contains("CN \"bad cn!\" not allowed"), "{message}")
        }
        other => panic!("expected HTTP 400, got {other:?}"),
    }
    drop(server);

    // Nobody listening: a transport error, not a panic.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = client::submit_csr(
        &format!("http://127.0.0.1:{port}"),
        "tfp_none",
        &csr,
        Duration::from_secs(5),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
}

#[test]
fn concurrent_requests_all_get_distinct_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Arc::new(open_ca(&tmp.path().join("state")));
    let server = Server::start(ca.clone());
    let base = server.base.clone();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let base = base.clone();
            let token = server.token.clone();
            std::thread::spawn(move || {
                (0..10)
                    .map(|i| {
                        let csr = rust_csr(&new_key(), &format!("CN=dev-{t}-{i}"));
                        client::submit_csr(&base, &token, &csr, Duration::from_secs(30)).unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut chains: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    chains.sort();
    chains.dedup();
    assert_eq!(chains.len(), 40);
    assert_eq!(ca.devices().unwrap().len(), 40);
    assert_eq!(ca.requests(100).unwrap().len(), 40);
}

/// Issue 13: signing needs an operator token with the `sign` scope, on both
/// `/v1/csr` and EST `simpleenroll`; none / unknown / revoked is 401 (with
/// `WWW-Authenticate: Bearer`), another scope 403, and nothing is signed. The
/// audit log records each certificate issued with its operator and each
/// refusal, and needs the `audit` scope to read.
#[test]
fn signing_needs_an_operator_with_the_sign_scope() {
    use tfmprov_auth::Scope;
    let tmp = tempfile::tempdir().unwrap();
    let ca = Arc::new(open_ca(&tmp.path().join("state")));
    let server = Server::start(ca.clone());
    let (_, station) = ca.auth().add_operator("station-1", &[Scope::Sign]).unwrap();
    let (_, reader) = ca.auth().add_operator("auditor", &[Scope::Audit]).unwrap();
    let (_, gone) = ca.auth().add_operator("gone", &[Scope::Sign]).unwrap();
    ca.auth().revoke_operator("gone").unwrap();

    let csr = rust_csr(&new_key(), "CN=dev-auth");
    for path in ["/v1/csr", "/.well-known/est/simpleenroll"] {
        let url = format!("{}{path}", server.base);
        let body = if path == "/v1/csr" {
            csr.clone()
        } else {
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &csr).into_bytes()
        };
        let resp = agent().post(&url).header("Content-Type", "application/pkcs10").send(&body[..]).unwrap();
        let www = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
        let (status, _, text) = answer(resp);
        assert_eq!((status, www.as_deref()), (401, Some("Bearer realm=\"tfmprov\"")), "{path}: {text}");
        assert!(text.contains("no credential"), "{text}");
        for (token, want) in [("tfp_unknown-token-unknown-token-unknown-00", 401), (gone.as_str(), 401), (reader.as_str(), 403)] {
            let (status, _, text) = post(token, &url, "application/pkcs10", &body);
            assert_eq!(status, want, "{path} with {token}: {text}");
        }
        let (status, _, text) = post(&station, &url, "application/pkcs10", &body);
        assert_eq!(status, 200, "{path}: {text}");
    }
    // Two certificates issued (one per path), both by station-1.
    assert_eq!(ca.devices().unwrap().len(), 1, "one device, re-issued");
    let log = ca.auth().audit_page(0, 1000).unwrap();
    let issued: Vec<_> = log.iter().filter(|e| e.action == "certificate.issue").collect();
    assert_eq!(issued.len(), 2, "{log:?}");
    assert!(issued.iter().all(|e| e.actor == "station-1" && e.subject.starts_with("dev-auth serial ") && e.result == "ok"));
    let refused: Vec<_> = log.iter().filter(|e| e.action == "auth.refused").collect();
    assert_eq!(refused.len(), 2 * 4, "{refused:?}");
    assert!(refused.iter().any(|e| e.actor == "auditor" && e.subject == "POST /.well-known/est/simpleenroll"));
    // Reading the log over HTTP: the audit scope, not the sign scope.
    let url = format!("{}/v1/audit?after=0&limit=1000", server.base);
    let get_with = |t: &str| answer(agent().get(&url).header("Authorization", &format!("Bearer {t}")).call().unwrap());
    assert_eq!(get_with(&station).0, 403);
    let (status, _, body) = get_with(&reader);
    assert_eq!(status, 200, "{body}");
    let entries: Vec<tfmprov_auth::AuditEntry> = serde_json::from_str(&body).unwrap();
    assert_eq!(entries.len(), log.len() + 1, "the 403 just above is in it too");
    assert!(ca.auth().verify_audit(None).is_ok());
}

/// Issue 13: a certificate revoked by an operator with the `revoke` scope
/// is in the CA's CRL (`GET /v1/crl`, DER, signed by the intermediate), and
/// openssl agrees: the CRL verifies, `openssl verify -crl_check` refuses the
/// revoked leaf and accepts the other. Wrong scope 403, unknown serial 404,
/// bad body 400; each revocation is in the audit log; CRL numbers grow.
#[test]
fn revoked_certificates_are_in_a_crl_that_openssl_checks() {
    use tfmprov_auth::Scope;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = Arc::new(open_ca(&dir.join("state")));
    let server = Server::start(ca.clone());
    let (_, revoker) = ca.auth().add_operator("revoker", &[Scope::Revoke]).unwrap();
    let chain_a = client::submit_csr(&server.base, &server.token, &rust_csr(&new_key(), "CN=dev-a"), Duration::from_secs(30)).unwrap();
    let chain_b = client::submit_csr(&server.base, &server.token, &rust_csr(&new_key(), "CN=dev-b"), Duration::from_secs(30)).unwrap();
    let serial_of = |id: &str| ca.devices().unwrap().into_iter().find(|d| d.device_id == id).unwrap().serial_hex;
    let (serial_a, serial_b) = (serial_of("dev-a"), serial_of("dev-b"));

    let url = format!("{}/v1/revocations", server.base);
    let body = serde_json::json!({ "serial": serial_a, "reason": "key compromise" }).to_string();
    let (s, _, _) = post("tfp_not-a-token-not-a-token-not-a-token-0000", &url, "application/json", body.as_bytes());
    assert_eq!(s, 401);
    let (_, signer) = ca.auth().add_operator("signer", &[Scope::Sign]).unwrap();
    assert_eq!(post(&signer, &url, "application/json", body.as_bytes()).0, 403);
    let (s, _, text) = post(&revoker, &url, "application/json", body.as_bytes());
    assert_eq!(s, 200, "{text}");
    let r: tfmprov_ca::Revoked = serde_json::from_str(&text).unwrap();
    assert_eq!((r.device_id.as_str(), r.serial_hex.as_str()), ("dev-a", serial_a.as_str()));
    // Again: the same record (first time kept).
    let (_, _, again) = post(&revoker, &url, "application/json", body.as_bytes());
    assert_eq!(serde_json::from_str::<tfmprov_ca::Revoked>(&again).unwrap(), r);
    let unknown = serde_json::json!({ "serial": "0badc0de" }).to_string();
    assert_eq!(post(&revoker, &url, "application/json", unknown.as_bytes()).0, 404);
    for bad in [r#"{"serial":"xyz"}"#, r#"{"serial":""}"#, "{", r#"{"serial":"00","extra":1}"#] {
        assert_eq!(post(&revoker, &url, "application/json", bad.as_bytes()).0, 400, "{bad}");
    }

    // The CRL, checked by openssl.
    let crl = |n: &str| {
        let resp = agent().get(&format!("{}/v1/crl", server.base)).call().unwrap();
        assert_eq!(resp.headers().get("content-type").unwrap(), "application/pkix-crl");
        let der = resp.into_body().read_to_vec().unwrap();
        std::fs::write(dir.join(format!("{n}.der")), &der).unwrap();
        openssl(dir, &["crl", "-inform", "DER", "-in", &format!("{n}.der"), "-out", &format!("{n}.pem")]);
        openssl(dir, &["crl", "-in", &format!("{n}.pem"), "-noout", "-text"])
    };
    let text = crl("crl1");
    std::fs::write(dir.join("root.pem"), ca.root_pem()).unwrap();
    std::fs::write(dir.join("inter.pem"), ca.intermediate_pem()).unwrap();
    let check = Command::new("openssl").current_dir(dir).args(["crl", "-in", "crl1.pem", "-CAfile", "inter.pem", "-noout"]).output().unwrap();
    assert!(String::from_utf8_lossy(&check.stderr).contains("verify OK"), "{}", String::from_utf8_lossy(&check.stderr));
    assert!(text.to_ascii_lowercase().contains(&serial_a.to_ascii_lowercase()), "{text}");
    assert!(!text.to_ascii_lowercase().contains(&serial_b.to_ascii_lowercase()), "{text}");
    for (name, chain, revoked) in [("a", &chain_a, true), ("b", &chain_b, false)] {
        std::fs::write(dir.join(format!("leaf_{name}.pem")), first_pem(chain)).unwrap();
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(["verify", "-crl_check", "-CAfile", "root.pem", "-untrusted", "inter.pem", "-CRLfile", "crl1.pem"])
            .arg(format!("leaf_{name}.pem"))
            .output()
            .unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(!out.status.success(), revoked, "{name}: {said}");
        if revoked {
            assert!(said.contains("certificate revoked"), "{said}");
        }
    }
    let number = |t: &str| -> u64 {
        let i = t.find("X509v3 CRL Number:").unwrap();
        t[i..].lines().nth(1).unwrap().trim().parse().unwrap()
    };
    assert!(number(&crl("crl2")) > number(&text), "CRL numbers grow");

    let log = ca.auth().audit_page(0, 1000).unwrap();
    let revocations: Vec<_> = log.iter().filter(|e| e.action == "certificate.revoke").collect();
    assert_eq!(revocations.len(), 2 + 1 + 4, "two ok, one unknown, four bad: {revocations:?}");
    assert!(revocations[0].actor == "revoker" && revocations[0].result == "ok" && revocations[0].subject.starts_with("dev-a serial "));
}

/// Issue 13: server certificates (`?profile=server&name=...`, scope
/// `servers`): serverAuth and the names in subjectAltName, which openssl
/// checks for TLS servers (`-purpose sslserver -verify_hostname/-verify_ip`);
/// a device certificate is not one. Bad names and the sign-only scope are
/// refused.
#[test]
fn server_certificates_carry_names_and_need_the_servers_scope() {
    use tfmprov_auth::Scope;
    let tmp = tempfile::tempdir().unwrap();
    let ca = Arc::new(open_ca(&tmp.path().join("state")));
    let server = Server::start(ca.clone());
    let (_, station) = ca.auth().add_operator("station-1", &[Scope::Sign]).unwrap();
    let csr = rust_csr(&new_key(), "CN=tfmprov-broker");

    let err = client::submit_server_csr(&server.base, &station, &csr, &["localhost"], Duration::from_secs(10)).unwrap_err();
    assert!(matches!(err, Error::Http { status: 403, .. }), "{err:?}");

    let chain = client::submit_server_csr(&server.base, &server.token, &csr, &["localhost", "127.0.0.1", "broker.example"], Duration::from_secs(10))
        .unwrap();
    let leaf = first_pem(&chain);
    let dir = tmp.path();
    std::fs::write(dir.join("srv.pem"), &leaf).unwrap();
    let ext = openssl(dir, &["x509", "-noout", "-ext", "subjectAltName,extendedKeyUsage", "-in", "srv.pem"]);
    assert!(ext.contains("DNS:localhost") && ext.contains("IP Address:127.0.0.1") && ext.contains("DNS:broker.example"), "{ext}");
    assert!(ext.contains("TLS Web Server Authentication") && !ext.contains("Client"), "{ext}");
    std::fs::write(dir.join("root.pem"), ca.root_pem()).unwrap();
    std::fs::write(dir.join("intermediate.pem"), ca.intermediate_pem()).unwrap();
    let verify = |extra: &[&str], cert: &str| {
        let mut args = vec!["openssl", "verify", "-CAfile", "root.pem", "-untrusted", "intermediate.pem", "-purpose", "sslserver"];
        args.extend_from_slice(extra);
        args.push(cert);
        Command::new(args[0]).args(&args[1..]).current_dir(dir).output().unwrap()
    };
    assert!(verify(&["-verify_hostname", "localhost"], "srv.pem").status.success());
    assert!(verify(&["-verify_ip", "127.0.0.1"], "srv.pem").status.success());
    assert!(!verify(&["-verify_hostname", "other.example"], "srv.pem").status.success());
    // A device certificate is not a server certificate.
    let device_chain = client::submit_csr(&server.base, &station, &rust_csr(&new_key(), "CN=dev-1"), Duration::from_secs(10)).unwrap();
    std::fs::write(dir.join("dev.pem"), first_pem(&device_chain)).unwrap();
    assert!(!verify(&[], "dev.pem").status.success());

    // Refusals: no name, a bad name, an unknown profile or parameter (400).
    for (query, want) in [
        ("profile=server", "0 names given"),
        ("profile=server&name=bad_name", "not a host name"),
        ("profile=server&name=-x.example", "not a host name"),
        ("profile=client&name=a", "unknown profile"),
        ("name=a", "needs profile=server"),
        ("profile=server&name=a&x=1", "unknown query parameter"),
    ] {
        let (status, _, text) = post(&server.token, &format!("{}/v1/csr?{query}", server.base), "application/pkcs10", &csr);
        assert_eq!(status, 400, "{query}: {text}");
        assert!(text.contains(want), "{query}: {text}");
    }
    assert!(client::submit_server_csr(&server.base, &server.token, &csr, &["a&b"], Duration::from_secs(10)).is_err());
    let log = ca.auth().audit_page(0, 1000).unwrap();
    assert!(log.iter().any(|e| e.action == "certificate.issue" && e.actor == "admin" && e.subject.starts_with("tfmprov-broker serial ")));
}

/// Issue 13: operator certificates (`profile=operator`): scope
/// `operators`, subject `CN=<name>, OU=tfmprov operator` whatever the
/// request asked, clientAuth only, the request's CN must be the name; each
/// refusal a 400 with its reason.
#[test]
fn operator_certificates_carry_the_role_and_need_the_operators_scope() {
    use tfmprov_auth::Scope;
    let tmp = tempfile::tempdir().unwrap();
    let ca = Arc::new(open_ca(&tmp.path().join("state")));
    let server = Server::start(ca.clone());
    let (_, station) = ca.auth().add_operator("station-1", &[Scope::Sign, Scope::Servers]).unwrap();
    // The request asks for another OU: the CA writes the role itself.
    let csr = rust_csr(&new_key(), "CN=station-9,OU=anything");
    let t = Duration::from_secs(10);
    let err = client::submit_operator_csr(&server.base, &station, "station-9", &csr, t).unwrap_err();
    assert!(matches!(err, Error::Http { status: 403, .. }), "{err:?}");
    let chain = client::submit_operator_csr(&server.base, &server.token, "station-9", &csr, t).unwrap();
    let leaf = first_pem(&chain);
    let dir = tmp.path();
    std::fs::write(dir.join("op.pem"), &leaf).unwrap();
    let out = openssl(dir, &["x509", "-noout", "-subject", "-ext", "extendedKeyUsage", "-in", "op.pem"]);
    assert!(out.contains("CN = station-9") && out.contains("OU = tfmprov operator") && !out.contains("anything"), "{out}");
    assert!(out.contains("TLS Web Client Authentication") && !out.contains("Server"), "{out}");
    let der = tfmprov_tls::pem_certificates(&leaf).unwrap();
    assert_eq!(tfmprov_auth::operator_certificate_name(&der[0]).unwrap(), "station-9");

    for (query, csr, want) in [
        ("profile=operator&name=station-8", &csr, "CN must be the operator name"),
        ("profile=operator", &csr, "exactly one name="),
        ("profile=operator&name=a&name=b", &csr, "exactly one name="),
        ("profile=operator&name=bad%20name", &csr, "must be 1 to 64 characters"),
        ("profile=operator&profile=server&name=a", &csr, "given twice"),
    ] {
        let (status, _, text) = post(&server.token, &format!("{}/v1/csr?{query}", server.base), "application/pkcs10", csr);
        assert_eq!(status, 400, "{query}: {text}");
        assert!(text.contains(want), "{query}: {text}");
    }
}

/// Issue 13: the CA on HTTPS with a certificate it issues itself at the
/// first start (reused after): the blocking client works once the root is
/// trusted, openssl's s_client verifies the chain for the IP address, and a
/// server whose root is not trusted is refused.
#[test]
fn https_with_a_certificate_from_the_ca_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let ca = Arc::new(open_ca(&state));
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let id = ca.server_identity(&names).unwrap();
    // Reused, not re-issued, at the next start.
    let again = open_ca(&state).server_identity(&names).unwrap();
    assert_eq!(again.chain_pem, id.chain_pem);
    assert_eq!(ca.auth().audit_page(0, 100).unwrap().iter().filter(|e| e.action == "certificate.issue" && e.actor == "ca").count(), 1);

    let server = HttpsServer::start(ca.clone(), id.config.clone());
    let url = format!("https://{}", server.addr);
    // Not trusted yet: refused by the TLS check, nothing sent.
    let untrusted = client::fetch_ca(&url).unwrap_err();
    assert!(untrusted.to_string().to_lowercase().contains("issuer"), "{untrusted}");
    tfmprov_tls::trust_for_https(&ca.root_pem()).unwrap();
    let (root, _) = client::fetch_ca(&url).unwrap();
    assert_eq!(root, ca.root_pem());
    let token = std::fs::read_to_string(state.join(tfmprov_ca::ADMIN_TOKEN_FILE)).unwrap();
    let chain = client::submit_csr(&url, &token, &rust_csr(&new_key(), "CN=dev-https"), Duration::from_secs(10)).unwrap();
    assert!(chain.contains("BEGIN CERTIFICATE"));

    std::fs::write(tmp.path().join("root.pem"), ca.root_pem()).unwrap();
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &server.addr.to_string(), "-CAfile", "root.pem", "-verify_ip", "127.0.0.1", "-verify_return_error", "-brief"])
        .current_dir(tmp.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("Verification: OK"), "{text}");

    // A CA whose root nobody registered: its HTTPS server is refused.
    let other = Arc::new(open_ca(&tmp.path().join("other")));
    let other_id = other.server_identity(&names).unwrap();
    let other_server = HttpsServer::start(other, other_id.config);
    let err = client::fetch_ca(&format!("https://{}", other_server.addr)).unwrap_err();
    assert!(err.to_string().to_lowercase().contains("issuer"), "{err}");
}
