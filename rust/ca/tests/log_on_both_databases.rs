//! The CA's log on SQLite and on PostgreSQL (issue 14): the same requests
//! give the same device records and request log, and survive a reopen.

mod common;

use common::*;
use tfmprov_ca::{Ca, CaConfig};
use tfmprov_db::testing::PgServer;
use tfmprov_db::DbChoice;

/// (device id, re-key, certificates, keys) per device; (outcome, reason) per request.
type Log = (Vec<(String, bool, u64, u64)>, Vec<(String, Option<String>)>);

/// Issue, re-key, refuse; returns what the log says.
fn exercise(dir: &std::path::Path, database: DbChoice) -> Log {
    let mut cfg = CaConfig::new(dir.join("state"));
    cfg.database = database.clone();
    let ca = Ca::open_or_create(&cfg).expect("open the CA");
    ca.sign_csr_from(&p256_csr(dir, "/CN=dev-a"), "local").expect("issue dev-a");
    ca.sign_csr_from(&p256_csr(dir, "/CN=dev-b"), "local").expect("issue dev-b");
    let again = ca.sign_csr_from(&p256_csr(dir, "/CN=dev-a"), "local").expect("re-key dev-a");
    assert!(again.rekey, "a new key for a known CN is a re-key");
    assert!(ca.sign_csr_from(b"not a csr", "local").is_err());
    let serial = again.serial_hex.clone();
    drop(ca);
    // Reopened: same log, and the certificate by serial.
    let ca = Ca::open_or_create(&cfg).expect("reopen the CA");
    let devices = ca.devices().unwrap().into_iter().map(|d| (d.device_id, d.rekey, d.certificates, d.keys)).collect();
    let log = ca.requests(10).unwrap().into_iter().map(|r| (r.outcome, r.reason)).collect();
    assert!(ca.certificate(&serial).unwrap().is_some_and(|der| der == again.leaf_der));
    (devices, log)
}

#[test]
fn the_log_is_the_same_on_sqlite_and_postgresql() {
    let server = PgServer::get();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let on_sqlite = exercise(a.path(), DbChoice::Sqlite);
    let on_pg = exercise(b.path(), DbChoice::Postgres(server.fresh_database()));
    assert!(!b.path().join("state").join(tfmprov_ca::store::DB_FILE).exists(), "nothing written to SQLite");
    assert_eq!(on_sqlite, on_pg);
    let (devices, log) = on_pg;
    assert_eq!(devices, [("dev-a".to_owned(), true, 2, 2), ("dev-b".to_owned(), false, 1, 1)]);
    assert_eq!(log.len(), 4);
    assert_eq!(log[2], ("issued".to_owned(), Some("re-key".to_owned())));
    assert_eq!(log[3].0, "refused");
}
