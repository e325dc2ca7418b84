//! Issue 13: operator client certificates, as an administrator and a
//! provisioning station use them. The CA issues one (`tfmprov operator
//! cert`, scope `operators`); it acts for no one until bound on a server
//! (`operator bind-cert`); then the CLI authenticates with it alone
//! (`--client-cert/--client-key`, no token) on the CA and the aggregator,
//! within the operator's scopes; a server or foreign certificate cannot
//! stand in, and revoking the operator ends it.

use std::path::Path;
use std::process::Command;

mod cli;
use cli::{fails, ok, start, text, tfmprov};

fn url_in(line: &str) -> String {
    cli::url_in(line, "https://")
}

fn openssl(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
    assert!(o.status.success(), "openssl {args:?}: {}", text(&o));
    text(&o)
}

#[test]
fn operator_certificates_issued_bound_used_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |s: &str| d.join(s).display().to_string();
    let ca = start(&["ca", "serve", "--state", &p("ca"), "--listen", "127.0.0.1:0"]);
    let ca_url = url_in(&ca.ready);
    let agg = start(&[
        "aggregator", "serve", "--state", &p("agg"), "--listen", "127.0.0.1:0", "--mqtt-listen", "127.0.0.1:0",
        "--ca-root", &p("ca/root_cert.pem"), "--ca-url", &ca_url, "--ca-token-file", &p("ca/operator.token"),
        "--admin-token-file", &p("ca/operator.token"),
    ]);
    let agg_url = url_in(&agg.ready);
    let (root, admin) = (p("ca/root_cert.pem"), p("ca/operator.token"));

    // The station's operator on both servers; the CA issues its certificate.
    ok(&["operator", "add", "--server", "ca", "--state", &p("ca"), "--name", "station-7", "--scopes", "sign,audit", "--out", &p("s7.token")]);
    ok(&["operator", "add", "--server", "aggregator", "--state", &p("agg"), "--name", "station-7", "--scopes", "audit", "--out", &p("s7a.token")]);
    // A station's token (no `operators` scope) cannot have one issued.
    fails(
        &["--https-root", &root, "operator", "cert", "--ca-url", &ca_url, "--name", "station-7",
          "--key-out", &p("x.key"), "--cert-out", &p("x.pem"), "--token-file", &p("s7.token")],
        "lacks the \"operators\" scope",
    );
    ok(&["--https-root", &root, "operator", "cert", "--ca-url", &ca_url, "--name", "station-7",
         "--key-out", &p("s7.key"), "--cert-out", &p("s7.pem"), "--token-file", &admin]);
    let subject = openssl(d, &["x509", "-in", "s7.pem", "-noout", "-subject", "-ext", "extendedKeyUsage"]);
    assert!(subject.contains("CN = station-7") && subject.contains("OU = tfmprov operator"), "{subject}");
    assert!(subject.contains("TLS Web Client Authentication"), "{subject}");
    openssl(d, &["verify", "-CAfile", "ca/root_cert.pem", "-untrusted", "s7.pem", "-purpose", "sslclient", "s7.pem"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(d.join("s7.key")).unwrap().permissions().mode() & 0o777, 0o600);
    }

    let with_cert = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["--https-root", &root, "--client-cert", &p("s7.pem"), "--client-key", &p("s7.key")]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    let run = |args: Vec<String>| tfmprov(&args.iter().map(String::as_str).collect::<Vec<_>>());

    // Not bound yet: the certificate alone is refused (401).
    let o = run(with_cert(&["audit", "show", "--url", &ca_url]));
    assert!(!o.status.success() && text(&o).contains("not bound to an active operator"), "{}", text(&o));

    // A server's certificate (or a device's) cannot be bound as an operator's.
    fails(&["operator", "bind-cert", "--server", "ca", "--state", &p("ca"), "--name", "station-7", "--cert", &p("ca/https.crt")], "no operator role");
    ok(&["operator", "bind-cert", "--server", "ca", "--state", &p("ca"), "--name", "station-7", "--cert", &p("s7.pem")]);
    ok(&["operator", "bind-cert", "--server", "aggregator", "--state", &p("agg"), "--name", "station-7", "--cert", &p("s7.pem")]);
    let listed = ok(&["operator", "list", "--server", "ca", "--state", &p("ca")]);
    assert!(listed.lines().any(|l| l.starts_with("station-7") && l.contains("certificate sha256")), "{listed}");

    // Bound: the CLI works with the certificate and no token, on both
    // servers, as station-7 (the audit log names it).
    let o = run(with_cert(&["audit", "show", "--url", &ca_url]));
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("operator.bind-cert"), "{}", text(&o));
    let o = run(with_cert(&["audit", "show", "--url", &agg_url]));
    assert!(o.status.success(), "{}", text(&o));
    // Within its scopes only: revoking a certificate needs `revoke` (403).
    let o = run(with_cert(&["ca", "revoke", "--url", &ca_url, "--serial", "01"]));
    assert!(!o.status.success() && text(&o).contains("lacks the \"revoke\" scope"), "{}", text(&o));
    let o = run(with_cert(&["audit", "show", "--url", &ca_url, "--after", "0", "--limit", "1000"]));
    assert!(text(&o).contains("station-7"), "the refusal is audited with the operator: {}", text(&o));

    // A certificate from another CA does not get through the handshake.
    openssl(d, &["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                 "-subj", "/CN=station-7/OU=tfmprov operator", "-keyout", "f.key", "-out", "f.pem"]);
    let o = tfmprov(&["--https-root", &root, "--client-cert", &p("f.pem"), "--client-key", &p("f.key"), "audit", "show", "--url", &ca_url]);
    assert!(!o.status.success(), "{}", text(&o));
    // A key that is not the certificate's is refused before any request.
    fails(&["--https-root", &root, "--client-cert", &p("s7.pem"), "--client-key", &p("f.key"), "audit", "show", "--url", &ca_url], "not the certificate's");

    // Revoking the operator ends its certificate too.
    ok(&["operator", "revoke", "--server", "ca", "--state", &p("ca"), "--name", "station-7"]);
    let o = run(with_cert(&["audit", "show", "--url", &ca_url]));
    assert!(!o.status.success() && text(&o).contains("not bound to an active operator"), "{}", text(&o));
}
