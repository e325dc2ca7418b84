//! `tfmprov operator …` and `tfmprov audit …` (issue 13) with the real
//! binary against servers in this process: a scoped token made, listed,
//! used and revoked; the audit log shown over HTTP and verified in the
//! database, and an edited entry or a cut at its end found. The CLI takes
//! its credential from a file or the environment, and says so when there is
//! none.

use std::process::Command;
use std::time::Duration;

use tfmprov::demo::Servers;

mod cli;
use cli::{ok, tfmprov, EXE};

/// A P-256 CSR for CN=dev-cli, made by openssl.
fn csr() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("openssl")
        .current_dir(dir.path())
        .args(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "k.pem"])
        .args(["-subj", "/CN=dev-cli", "-outform", "DER"])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

#[test]
fn operators_and_the_audit_log_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let servers = Servers::start(dir.path()).unwrap();
    let ca_state = dir.path().join("ca");
    let state = ca_state.to_str().unwrap();
    let admin_file = servers.token_file.to_str().unwrap();

    // A station token with the sign scope, written 0600.
    let station_file = dir.path().join("station.token");
    let out = ok(&["operator", "add", "--server", "ca", "--state", state, "--name", "station", "--scopes", "sign", "--out", station_file.to_str().unwrap()]);
    assert!(out.contains("operator station (sign) added"), "{out}");
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&station_file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let station = std::fs::read_to_string(&station_file).unwrap().trim().to_owned();
    let listed = ok(&["operator", "list", "--server", "ca", "--state", state]);
    assert!(listed.contains("admin") && listed.contains("station") && listed.contains("active"), "{listed}");
    assert!(!listed.contains(&station), "never a token in the list");
    let dup = tfmprov(&["operator", "add", "--server", "ca", "--state", state, "--name", "station", "--scopes", "sign"]);
    assert!(!dup.status.success() && String::from_utf8_lossy(&dup.stderr).contains("exists"));
    let bad = tfmprov(&["operator", "add", "--server", "ca", "--state", state, "--name", "x", "--scopes", "root"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown scope"));

    // It signs; revoked, it does not.
    tfmprov_ca::client::submit_csr(&servers.ca_url, &station, &csr(), Duration::from_secs(10)).expect("signed");
    let out = ok(&["operator", "revoke", "--server", "ca", "--state", state, "--name", "station"]);
    assert!(out.contains("station revoked"), "{out}");
    match tfmprov_ca::client::submit_csr(&servers.ca_url, &station, &csr(), Duration::from_secs(10)) {
        Err(tfmprov_ca::Error::Http { status: 401, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(ok(&["operator", "list", "--server", "ca", "--state", state]).contains("revoked at"));

    // The log over HTTP, with the credential from a file and from the environment.
    let shown = ok(&["audit", "show", "--url", &servers.ca_url, "--token-file", admin_file]);
    for want in ["operator.add", "certificate.issue", "station", "operator.revoke", "auth.refused"] {
        assert!(shown.contains(want), "{want} not in\n{shown}");
    }
    let env = Command::new(EXE)
        .args(["audit", "show", "--url", &servers.ca_url])
        .env("TFMPROV_TOKEN_FILE", admin_file)
        .output()
        .unwrap();
    assert!(env.status.success() && String::from_utf8_lossy(&env.stdout).contains("certificate.issue"));
    let none = tfmprov(&["audit", "show", "--url", &servers.ca_url]);
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("TFMPROV_TOKEN_FILE"), "{}", String::from_utf8_lossy(&none.stderr));

    // Verified in the database; the head noted.
    let out = ok(&["audit", "verify", "--server", "ca", "--state", state]);
    let head = out.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(out.starts_with("audit log intact") && head.contains(':'), "{out}");
    let db = tfmprov_db::Db::open(&tfmprov_db::DbChoice::Sqlite, &ca_state, tfmprov_ca::store::DB_FILE).unwrap();
    // An edited entry: found, exit status 1.
    let actor_2 = db.query_opt("SELECT actor FROM audit WHERE seq = 2", vec![]).unwrap().unwrap().text(0).unwrap();
    db.execute("UPDATE audit SET actor = 'someone-else' WHERE seq = 2", vec![]).unwrap();
    let out = tfmprov(&["audit", "verify", "--server", "ca", "--state", state]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("entry 2 was edited"), "{}", String::from_utf8_lossy(&out.stdout));
    db.execute("UPDATE audit SET actor = $1 WHERE seq = 2", vec![actor_2.as_str().into()]).unwrap();
    assert!(ok(&["audit", "verify", "--server", "ca", "--state", state]).starts_with("audit log intact"), "restored");
    // A cut at the end: intact alone, not against the noted head.
    db.execute("DELETE FROM audit WHERE seq = (SELECT MAX(seq) FROM audit)", vec![]).unwrap();
    assert!(ok(&["audit", "verify", "--server", "ca", "--state", state]).starts_with("audit log intact"));
    let out = tfmprov(&["audit", "verify", "--server", "ca", "--state", state, "--head", &head]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("were removed"), "{}", String::from_utf8_lossy(&out.stdout));
    // A server that never ran here.
    let empty = tempfile::tempdir().unwrap();
    let out = tfmprov(&["audit", "verify", "--server", "aggregator", "--state", empty.path().to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("start the aggregator once"));
}
