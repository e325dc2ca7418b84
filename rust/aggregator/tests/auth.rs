//! Who may do what on the aggregator (issue 13): every endpoint that
//! registers, revokes, sets a KAK, sends or reads commands and rotations,
//! or reads the audit log needs an operator token with its scope (401
//! without one, 403 with another scope, 401 once revoked); the reads of
//! devices, messages and stats stay open. Each action and each refusal is in
//! the hash-chained audit log, which `GET /v1/audit` pages through.

mod common;

use common::*;
use tfmprov_auth::{Auth, Scope};

/// (status, WWW-Authenticate header) of `method path` with `token`.
fn call(base: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, Option<String>) {
    let agent = ureq::Agent::new_with_config(ureq::Agent::config_builder().http_status_as_error(false).build());
    let url = format!("{base}{path}");
    let auth = token.map(|t| format!("Bearer {t}"));
    let resp = match method {
        "GET" | "DELETE" => {
            let mut r = if method == "GET" { agent.get(&url) } else { agent.delete(&url) };
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call()
        }
        _ => {
            let mut r = if method == "POST" { agent.post(&url) } else { agent.put(&url) };
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.header("Content-Type", "application/json").send(body)
        }
    }
    .expect("HTTP exchange");
    let www = resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (resp.status().as_u16(), www)
}

fn auth_of(h: &Harness) -> Auth {
    let db = tfmprov_db::Db::open(&tfmprov_db::DbChoice::Sqlite, h.state.path(), tfmprov_aggregator::DB_FILE).unwrap();
    Auth::new(db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protected_endpoint_wants_its_scope() {
    let h = Harness::start(BrokerKind::Embedded).await;
    let dev = h.pki.device("dev-1");
    h.register(&dev).await.unwrap();
    let auth = auth_of(&h);
    let (_, devices_only) = auth.add_operator("station", &[Scope::Devices]).unwrap();
    let (_, commands_only) = auth.add_operator("ops", &[Scope::Commands]).unwrap();
    let (_, revoked) = auth.add_operator("gone", Scope::ALL.as_slice()).unwrap();
    auth.revoke_operator("gone").unwrap();
    let base = h.base.clone();
    let admin = h.token.clone();
    let chain = serde_json::json!({ "device_id": "dev-2", "chain_pem": h.pki.device("dev-2").chain_pem }).to_string();
    let kak = serde_json::json!({ "kak": hex::encode(dev.point) }).to_string();

    tokio::task::spawn_blocking(move || {
        // (method, path, body, the scope it needs, a token of another scope)
        let cases: Vec<(&str, String, String, &str, &str)> = vec![
            ("POST", "/v1/devices".into(), chain.clone(), "devices", &commands_only),
            ("PUT", "/v1/devices/dev-1/kak".into(), kak.clone(), "devices", &commands_only),
            ("DELETE", "/v1/devices/nobody".into(), String::new(), "devices", &commands_only),
            ("POST", "/v1/devices/dev-1/commands".into(), r#"{"op":"status","args":{"id":3}}"#.into(), "commands", &devices_only),
            ("GET", "/v1/devices/dev-1/commands/00".into(), String::new(), "commands", &devices_only),
            ("POST", "/v1/devices/dev-1/rotation".into(), String::new(), "commands", &devices_only),
            ("GET", "/v1/devices/dev-1/rotation".into(), String::new(), "commands", &devices_only),
            ("GET", "/v1/audit".into(), String::new(), "audit", &devices_only),
        ];
        for (method, path, body, scope, other) in &cases {
            let (s, www) = call(&base, method, path, None, body);
            assert_eq!(s, 401, "{method} {path} without a token");
            assert_eq!(www.as_deref(), Some("Bearer realm=\"tfmprov\""), "{method} {path}");
            assert_eq!(call(&base, method, path, Some("tfp_not-a-real-token-at-all-000000000000000"), body).0, 401, "{method} {path}: unknown");
            assert_eq!(call(&base, method, path, Some(&revoked), body).0, 401, "{method} {path}: revoked");
            assert_eq!(call(&base, method, path, Some(other), body).0, 403, "{method} {path} with a token without {scope}");
            let (s, _) = call(&base, method, path, Some(&admin), body);
            assert!(s != 401 && s != 403, "{method} {path} with the admin token: {s}");
        }
        // The scoped tokens do what their scope allows.
        assert_eq!(call(&base, "POST", "/v1/devices", Some(&devices_only), &chain).0, 200, "dev-2 again: unchanged");
        // Reads stay open.
        for path in ["/v1/devices/dev-1", "/v1/devices/dev-1/messages", "/v1/stats", "/healthz", "/metrics"] {
            assert_eq!(call(&base, "GET", path, None, "").0, 200, "{path}");
        }
    })
    .await
    .unwrap();

    // The log: the registrations, the KAK, the refusals; intact.
    let page = tfmprov_aggregator::client::audit(&h.base, &h.token, 0, 1000).unwrap();
    let count = |action: &str, actor: &str| page.iter().filter(|e| e.action == action && e.actor == actor).count();
    assert_eq!(count("device.register", "admin"), 2, "dev-1 in the harness, dev-2 here");
    assert_eq!(count("device.register", "station"), 1);
    assert_eq!(count("device.kak", "admin"), 1);
    assert_eq!(count("command.submit", "admin"), 1);
    assert_eq!(count("auth.refused", "-"), 8 * 3, "no, unknown and revoked token on each endpoint");
    assert!(page.iter().any(|e| e.action == "auth.refused" && e.actor == "ops" && e.subject == "POST /v1/devices"));
    assert!(page.iter().any(|e| e.action == "device.revoke" && e.subject == "nobody" && e.result == "no such device"));
    let head = auth.verify_audit(None).unwrap();
    assert_eq!(head.seq, page.last().unwrap().seq);
    // Paging: after N, at most M.
    let second = tfmprov_aggregator::client::audit(&h.base, &h.token, 2, 3).unwrap();
    assert_eq!(second.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5]);
    // A sign-only token cannot read it.
    let (_, sign_only) = auth.add_operator("signer", &[Scope::Sign]).unwrap();
    match tfmprov_aggregator::client::audit(&h.base, &sign_only, 0, 10) {
        Err(tfmprov_aggregator::Error::Http { status: 403, message }) => assert!(message.contains("audit"), "{message}"),
        other => panic!("{other:?}"),
    }
    h.stop().await;
}

/// A restart keeps the operators (no second admin, the token still works).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_survive_a_restart() {
    let mut h = Harness::start(BrokerKind::Embedded).await;
    let before = h.token.clone();
    h.restart().await;
    assert_eq!(admin_token(h.state.path()), before, "the token file is not rewritten");
    assert_eq!(auth_of(&h).operators().unwrap().len(), 1);
    h.register(&h.pki.device("dev-r")).await.unwrap();
    h.stop().await;
}
