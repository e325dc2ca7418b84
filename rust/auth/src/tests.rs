//! On SQLite files and on PostgreSQL (the server `scripts/test` starts, or
//! a throwaway cluster).

use std::path::Path;

use tfmprov_db::{migrate, testing::PgServer, Db, DbChoice, Migration, Value};

use super::*;

fn migrated(choice: &DbChoice, dir: &Path) -> Db {
    let db = Db::open(choice, dir, "auth.db").expect("open");
    let m = [
        Migration { version: 1, what: MIGRATION.what, sqlite: MIGRATION.sqlite, postgres: MIGRATION.postgres },
        Migration { version: 2, what: MIGRATION_CERTS.what, sqlite: MIGRATION_CERTS.sqlite, postgres: MIGRATION_CERTS.postgres },
    ];
    migrate(&db, &m, 42).expect("migrate");
    db
}

/// (an `Auth`, a second connection to the same database for tampering),
/// on each engine; the server must outlive them.
fn engines(dir: &Path, server: &PgServer) -> Vec<(&'static str, Auth, Db)> {
    let pg = DbChoice::Postgres(server.fresh_database());
    let mut out = Vec::new();
    for (name, choice) in [("sqlite", DbChoice::Sqlite), ("postgres", pg)] {
        let sub = dir.join(name);
        std::fs::create_dir_all(&sub).expect("dir");
        let auth = Auth::new(migrated(&choice, &sub));
        out.push((name, auth, Db::open(&choice, &sub, "auth.db").expect("second connection")));
    }
    out
}

/// The credentials of a request with this Authorization header (no TLS
/// client certificate).
fn headers(value: Option<&str>) -> Credentials {
    let mut h = http::HeaderMap::new();
    if let Some(v) = value {
        h.insert(http::header::AUTHORIZATION, http::HeaderValue::from_str(v).expect("header"));
    }
    Credentials::of(&h, &http::Extensions::new())
}

/// A certificate from a throwaway CA with this subject and clientAuth (DER).
fn client_cert(cn: &str, ou: Option<&str>, client_auth: bool) -> Vec<u8> {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, cn);
    if let Some(ou) = ou {
        params.distinguished_name.push(DnType::OrganizationalUnitName, ou);
    }
    if client_auth {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    }
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    params.self_signed(&key).expect("cert").der().to_vec()
}

fn sha256(der: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(der).into()
}

/// Operator certificates: only one with the operator role, issued for that
/// operator's name, can be bound; a connection with it then acts as the
/// operator (scopes, revocation) without a token; an unbound one is 401.
#[test]
fn operator_certificates_are_bound_scoped_and_revocable() {
    let dir = tempfile::tempdir().expect("dir");
    let server = PgServer::get();
    for (engine, auth, _raw) in engines(dir.path(), &server) {
        auth.add_operator("station-2", &[Scope::Sign]).expect("add");
        auth.add_operator("auditor", &[Scope::Audit]).expect("add");
        let good = client_cert("station-2", Some(OPERATOR_OU), true);
        let by_cert = |der: &[u8]| Credentials { token: None, client_certificate: Some(sha256(der)) };

        // Refused bindings, each with its reason.
        for (der, why) in [
            (client_cert("station-2", None, true), "no operator role"),
            (client_cert("station-2", Some("devices"), true), "no operator role"),
            (client_cert("station-2", Some(OPERATOR_OU), false), "clientAuth"),
            (client_cert("auditor", Some(OPERATOR_OU), true), "issued for operator \"auditor\""),
            (b"\x30\x03\x02\x01\x01".to_vec(), "not a DER X.509"),
        ] {
            let err = auth.bind_certificate("station-2", &der).expect_err(why);
            assert!(matches!(&err, Error::NotOperatorCertificate(m) if m.contains(why)), "{engine}: {err}");
        }
        assert!(matches!(auth.bind_certificate("nobody", &client_cert("nobody", Some(OPERATOR_OU), true)), Err(Error::NoSuchOperator(_))));

        // Unbound: 401. Bound: the operator, with its scopes only.
        let denied = auth.authorize(&by_cert(&good), Scope::Sign, "POST /v1/csr").expect_err("unbound");
        assert_eq!(denied.status, 401, "{denied:?}");
        let op = auth.bind_certificate("station-2", &good).expect("bind");
        assert_eq!(op.certificate_sha256, Some(hex::encode(sha256(&good))));
        assert_eq!(auth.authorize(&by_cert(&good), Scope::Sign, "POST /v1/csr").expect("bound").name, "station-2");
        assert_eq!(auth.authorize(&by_cert(&good), Scope::Devices, "POST /v1/devices").expect_err("403").status, 403);
        // One certificate, one operator.
        let err = auth.bind_certificate("auditor", &good).expect_err("taken");
        assert!(matches!(&err, Error::NotOperatorCertificate(m) if m.contains("issued for operator")), "{err}");
        // A token, when sent, decides (here: the auditor's, without `sign`).
        let (_, audit_token) = auth.add_operator("auditor-2", &[Scope::Audit]).expect("add");
        let both = Credentials { token: Some(audit_token), client_certificate: Some(sha256(&good)) };
        assert_eq!(auth.authorize(&both, Scope::Sign, "POST /v1/csr").expect_err("token decides").status, 403);

        // Revoking the operator ends the certificate too.
        auth.revoke_operator("station-2").expect("revoke");
        assert_eq!(auth.authorize(&by_cert(&good), Scope::Sign, "POST /v1/csr").expect_err("revoked").status, 401);
        let log = auth.audit_page(0, 1000).expect("page");
        assert!(log.iter().any(|e| e.action == "operator.bind-cert" && e.subject == "station-2"), "{engine}");
        auth.verify_audit(None).expect("verifies");
    }
}

#[test]
fn tokens_are_stored_hashed_scoped_and_revocable() {
    let dir = tempfile::tempdir().expect("dir");
    let server = PgServer::get();
    for (engine, auth, raw) in engines(dir.path(), &server) {
        // First start: admin with every scope, token in a 0600 file; the
        // second start makes nothing.
        let file = dir.path().join(format!("{engine}.token"));
        let admin = auth.bootstrap(&file).expect("bootstrap").expect("made");
        assert_eq!(std::fs::read_to_string(&file).expect("file").trim(), admin);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(auth.bootstrap(&file).expect("again"), None, "{engine}");

        let (station, token) = auth.add_operator("station-1", &[Scope::Sign]).expect("add");
        assert!(token.starts_with("tfp_") && token.len() == 47, "{token}");
        assert_eq!(station.scopes, vec![Scope::Sign]);
        assert!(matches!(auth.add_operator("station-1", &[Scope::Sign]), Err(Error::NameTaken(_))));
        assert!(matches!(auth.add_operator("bad name", &[Scope::Sign]), Err(Error::InvalidName(_))));
        assert!(matches!(Scope::parse_list("sign,root"), Err(Error::UnknownScope(_))));
        assert_eq!(Scope::parse_list("all").expect("all"), Scope::ALL.to_vec());

        // The database holds the hash, never the token.
        for row in raw.query("SELECT name, token_sha256, scopes FROM operators", vec![]).expect("rows") {
            let stored = row.blob(1).expect("hash");
            assert_eq!(stored.len(), 32);
            assert!(!stored.windows(8).any(|w| token.as_bytes().windows(8).any(|t| t == w)));
        }

        // 200 with the scope, 403 without, 401 without a known token.
        let ok = auth.authorize(&headers(Some(&format!("Bearer {token}"))), Scope::Sign, "POST /v1/csr");
        assert_eq!(ok.expect("authorized").name, "station-1");
        let lower = auth.authorize(&headers(Some(&format!("bearer {token}"))), Scope::Sign, "POST /v1/csr");
        assert!(lower.is_ok(), "the scheme is case-insensitive");
        let denied = auth.authorize(&headers(Some(&format!("Bearer {token}"))), Scope::Devices, "POST /v1/devices");
        assert_eq!(denied.expect_err("403").status, 403);
        for h in [None, Some("Bearer"), Some("Basic dXNlcjpwYXNz"), Some("Bearer tfp_wrong")] {
            assert_eq!(auth.authorize(&headers(h), Scope::Sign, "POST /v1/csr").expect_err("401").status, 401, "{h:?}");
        }

        // Revoked: 401 at once, still listed with the time.
        auth.revoke_operator("station-1").expect("revoke");
        let again = auth.authorize(&headers(Some(&format!("Bearer {token}"))), Scope::Sign, "POST /v1/csr");
        assert_eq!(again.expect_err("401").status, 401);
        let listed = auth.operators().expect("list");
        assert_eq!(listed.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["admin", "station-1"]);
        assert!(listed[1].revoked_ms.is_some() && listed[0].revoked_ms.is_none());
        assert!(matches!(auth.revoke_operator("nobody"), Err(Error::NoSuchOperator(_))));

        // Every refusal is in the audit log, and the log verifies.
        let log = auth.audit_page(0, 1000).expect("page");
        let refused: Vec<_> = log.iter().filter(|e| e.action == "auth.refused").collect();
        assert_eq!(refused.len(), 6, "{engine}: {refused:?}");
        assert!(refused.iter().any(|e| e.actor == "station-1" && e.subject == "POST /v1/devices"));
        let head = auth.verify_audit(None).expect("verifies");
        assert_eq!(head.seq, log.len() as i64);
    }
}

#[test]
fn the_audit_log_finds_edits_removals_moves_and_cuts() {
    let dir = tempfile::tempdir().expect("dir");
    let server = PgServer::get();
    for (engine, auth, raw) in engines(dir.path(), &server) {
        for i in 1..=6 {
            auth.append("admin", "device.register", &format!("dev-{i}"), "ok").expect("append");
        }
        let head = auth.verify_audit(None).expect("clean");
        assert_eq!(head.seq, 6);
        let kept: Head = head.to_string().parse().expect("round trip");
        assert_eq!(auth.verify_audit(Some(&kept)).expect("still"), head);

        // Each tampering on a fresh copy of the six rows, then restored.
        let rows = raw.query("SELECT seq, time_ms, actor, action, subject, result, prev_sha256, sha256 FROM audit", vec![]).expect("rows");
        let restore = || {
            raw.execute("DELETE FROM audit", vec![]).expect("clear");
            for r in &rows {
                raw.execute(
                    "INSERT INTO audit (seq, time_ms, actor, action, subject, result, prev_sha256, sha256) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    (0..8)
                        .map(|i| match i {
                            0 | 1 => Value::Int(r.int(i).expect("int")),
                            6 | 7 => Value::Blob(r.blob(i).expect("blob")),
                            _ => Value::Text(r.text(i).expect("text")),
                        })
                        .collect(),
                )
                .expect("insert");
            }
        };
        let cases: Vec<(&str, &str, Tamper)> = vec![
            ("edited", "UPDATE audit SET result = 'refused' WHERE seq = 3", Tamper::Edited { seq: 3 }),
            ("edited actor", "UPDATE audit SET actor = 'mallory' WHERE seq = 1", Tamper::Edited { seq: 1 }),
            ("removed", "DELETE FROM audit WHERE seq = 4", Tamper::Missing { expected: 4, found: 5 }),
            ("removed first", "DELETE FROM audit WHERE seq = 1", Tamper::Missing { expected: 1, found: 2 }),
            // Renumbering goes through negative numbers: the primary key is
            // checked row by row.
            (
                "moved (numbers swapped)",
                "UPDATE audit SET seq = -seq WHERE seq IN (2, 5); UPDATE audit SET seq = 5 WHERE seq = -2; UPDATE audit SET seq = 2 WHERE seq = -5",
                Tamper::BrokenLink { seq: 2 },
            ),
            (
                "removed and renumbered",
                "DELETE FROM audit WHERE seq = 2; UPDATE audit SET seq = 1 - seq WHERE seq > 2; UPDATE audit SET seq = -seq WHERE seq < 0",
                Tamper::BrokenLink { seq: 2 },
            ),
            ("slipped in below", "INSERT INTO audit SELECT 0, time_ms, actor, action, subject, result, prev_sha256, sha256 FROM audit WHERE seq = 1", Tamper::Missing { expected: 1, found: 0 }),
        ];
        for (what, sql, want) in cases {
            raw.batch(sql).expect(what);
            match auth.verify_audit(None) {
                Err(Error::Tampered(t)) => assert_eq!(t, want, "{engine}: {what}"),
                other => panic!("{engine}: {what}: {other:?}"),
            }
            restore();
            assert_eq!(auth.verify_audit(Some(&kept)).expect("restored"), head, "{engine}: {what}");
        }

        // A cut at the end verifies on its own, but not against the kept head.
        raw.execute("DELETE FROM audit WHERE seq = 6", vec![]).expect("cut");
        assert!(auth.verify_audit(None).is_ok());
        match auth.verify_audit(Some(&kept)) {
            Err(Error::Tampered(Tamper::Truncated { expected: 6, found: 5 })) => {}
            other => panic!("{engine}: cut: {other:?}"),
        }
        // Rewritten from entry 6 on (a new, valid entry 6): not the kept head.
        auth.append("mallory", "device.register", "dev-6", "ok").expect("append");
        match auth.verify_audit(Some(&kept)) {
            Err(Error::Tampered(Tamper::Rewritten { seq: 6 })) => {}
            other => panic!("{engine}: rewritten: {other:?}"),
        }
        assert!("6:xyz".parse::<Head>().is_err() && "x:00".parse::<Head>().is_err());
    }
}

#[test]
fn concurrent_appends_keep_one_chain() {
    let dir = tempfile::tempdir().expect("dir");
    let server = PgServer::get();
    for (engine, auth, _raw) in engines(dir.path(), &server) {
        let auth = std::sync::Arc::new(auth);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let auth = auth.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        auth.append(&format!("op-{t}"), "command.submit", &format!("dev-{i}"), "ok").expect("append");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(auth.verify_audit(None).expect("one chain").seq, 100, "{engine}");
        let long = "x".repeat(2000);
        let seq = auth.append("admin", "device.register", &long, "ok").expect("long");
        let e = auth.audit_page(seq - 1, 1).expect("page");
        assert!(e[0].subject.chars().count() <= 513 && e[0].subject.ends_with('…'));
    }
}

#[test]
fn the_first_operator_adopts_a_given_token_file_and_refuses_a_bad_one() {
    let dir = tempfile::tempdir().expect("dir");
    let given = operators::generate_token();
    let file = dir.path().join("shared.token");
    write_secret(&file, &given).expect("write");
    let auth = Auth::new(migrated(&DbChoice::Sqlite, dir.path()));
    assert_eq!(auth.bootstrap(&file).expect("bootstrap"), Some(given.clone()));
    assert_eq!(std::fs::read_to_string(&file).expect("file").trim(), given, "left as it was");
    let op = auth.authorize(&headers(Some(&format!("Bearer {given}"))), Scope::Audit, "GET /v1/audit").expect("admin");
    assert_eq!(op.name, "admin");

    let other = tempfile::tempdir().expect("dir");
    let bad = other.path().join("bad.token");
    std::fs::write(&bad, "password123\n").expect("write");
    let auth = Auth::new(migrated(&DbChoice::Sqlite, other.path()));
    assert!(matches!(auth.bootstrap(&bad), Err(Error::TokenFile { .. })));
    assert!(auth.operators().expect("list").is_empty(), "nothing made");
}
