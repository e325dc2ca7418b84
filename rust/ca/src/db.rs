//! The SQLite log (`ca.sqlite`): issued certificates and every request's outcome.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::error::Error;

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS issued (
    serial_hex  TEXT PRIMARY KEY,      -- leaf serial, lowercase hex
    device_id   TEXT NOT NULL,         -- the CN
    spki_sha256 TEXT NOT NULL,         -- SHA-256 of the SubjectPublicKeyInfo DER, hex
    issued_at   INTEGER NOT NULL,      -- unix seconds
    not_after   INTEGER NOT NULL,      -- unix seconds
    rekey       INTEGER NOT NULL,      -- 1: the CN was known with a different key
    cert_der    BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS issued_by_device ON issued(device_id);
CREATE TABLE IF NOT EXISTS requests (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,      -- unix seconds
    source      TEXT NOT NULL,         -- 'local', 'http <peer>', 'est <peer>'
    outcome     TEXT NOT NULL,         -- 'issued' | 'refused' | 'error'
    reason      TEXT,                  -- refusal reason / error text
    device_id   TEXT,                  -- the CN when it could be read
    spki_sha256 TEXT,                  -- when the key could be read
    serial_hex  TEXT                   -- when issued
);
";

/// One device known to the CA: its latest issued certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceRecord {
    /// The device id (the certificate's CN).
    pub device_id: String,
    /// SHA-256 (hex) of the SubjectPublicKeyInfo DER of the latest certificate's key.
    pub spki_sha256: String,
    /// Serial (hex) of the latest certificate.
    pub serial_hex: String,
    /// When the latest certificate was issued (unix seconds).
    pub issued_at: u64,
    /// The same as RFC 3339 UTC (`2026-01-01T00:00:00Z`).
    pub issued_at_utc: String,
    /// The latest certificate's notAfter (unix seconds).
    pub not_after: u64,
    /// Whether the latest certificate was a re-key (the CN was known with another key).
    pub rekey: bool,
    /// How many certificates were issued to this device id.
    pub certificates: u64,
    /// How many distinct keys this device id has had certificates for.
    pub keys: u64,
}

/// One entry of the request log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    /// Sequence number.
    pub id: i64,
    /// When (unix seconds).
    pub at: u64,
    /// Where the request came from (`local`, `http 127.0.0.1:5555`, `est ...`).
    pub source: String,
    /// `issued`, `refused` or `error`.
    pub outcome: String,
    /// The refusal reason or error text.
    pub reason: Option<String>,
    /// The CN, when it could be read.
    pub device_id: Option<String>,
    /// SHA-256 (hex) of the key's SPKI DER, when it could be read.
    pub spki_sha256: Option<String>,
    /// The issued serial (hex).
    pub serial_hex: Option<String>,
}

pub(crate) struct NewIssue<'a> {
    pub serial_hex: &'a str,
    pub device_id: &'a str,
    pub spki_sha256: &'a str,
    pub issued_at: u64,
    pub not_after: u64,
    pub cert_der: &'a [u8],
}

pub(crate) struct Db {
    conn: Mutex<Connection>,
}

pub(crate) fn utc(unix: u64) -> String {
    der::DateTime::from_unix_duration(Duration::from_secs(unix))
        .map(|d| d.to_string())
        .unwrap_or_default()
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Db {
    pub fn open(path: &Path) -> Result<Db, Error> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(mode, "SQLite did not switch to WAL mode");
        }
        conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(Error::state(
                path,
                format!("database schema version {version} is newer than this program's {SCHEMA_VERSION}"),
            ));
        }
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
        Ok(Db {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (its own
        // transactions roll back), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an issued certificate and its request; returns the re-key flag.
    pub fn record_issue(&self, issue: &NewIssue<'_>, source: &str) -> Result<bool, Error> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let previous: Option<String> = tx
            .query_row(
                "SELECT spki_sha256 FROM issued WHERE device_id = ?1 ORDER BY rowid DESC LIMIT 1",
                params![issue.device_id],
                |r| r.get(0),
            )
            .optional()?;
        let rekey = previous.is_some_and(|p| p != issue.spki_sha256);
        tx.execute(
            "INSERT INTO issued (serial_hex, device_id, spki_sha256, issued_at, not_after, rekey, cert_der)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                issue.serial_hex,
                issue.device_id,
                issue.spki_sha256,
                to_i64(issue.issued_at),
                to_i64(issue.not_after),
                rekey,
                issue.cert_der
            ],
        )?;
        tx.execute(
            "INSERT INTO requests (at, source, outcome, reason, device_id, spki_sha256, serial_hex)
             VALUES (?1, ?2, 'issued', ?3, ?4, ?5, ?6)",
            params![
                to_i64(issue.issued_at),
                source,
                if rekey { Some("re-key") } else { None },
                issue.device_id,
                issue.spki_sha256,
                issue.serial_hex
            ],
        )?;
        tx.commit()?;
        Ok(rekey)
    }

    /// Records a request that did not lead to a certificate.
    pub fn record_failure(
        &self,
        at: u64,
        source: &str,
        outcome: &str,
        reason: &str,
        device_id: Option<&str>,
        spki_sha256: Option<&str>,
    ) -> Result<(), Error> {
        self.lock().execute(
            "INSERT INTO requests (at, source, outcome, reason, device_id, spki_sha256)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![to_i64(at), source, outcome, reason, device_id, spki_sha256],
        )?;
        Ok(())
    }

    pub fn devices(&self) -> Result<Vec<DeviceRecord>, Error> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT i.device_id, i.spki_sha256, i.serial_hex, i.issued_at, i.not_after, i.rekey,
                    (SELECT COUNT(*) FROM issued c WHERE c.device_id = i.device_id),
                    (SELECT COUNT(DISTINCT spki_sha256) FROM issued c WHERE c.device_id = i.device_id)
             FROM issued i
             WHERE i.rowid = (SELECT MAX(rowid) FROM issued j WHERE j.device_id = i.device_id)
             ORDER BY i.device_id",
        )?;
        let rows = stmt.query_map([], |r| {
            let issued_at = to_u64(r.get(3)?);
            Ok(DeviceRecord {
                device_id: r.get(0)?,
                spki_sha256: r.get(1)?,
                serial_hex: r.get(2)?,
                issued_at,
                issued_at_utc: utc(issued_at),
                not_after: to_u64(r.get(4)?),
                rekey: r.get(5)?,
                certificates: to_u64(r.get(6)?),
                keys: to_u64(r.get(7)?),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub fn requests(&self, limit: usize) -> Result<Vec<RequestRecord>, Error> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT id, at, source, outcome, reason, device_id, spki_sha256, serial_hex
             FROM requests ORDER BY id DESC LIMIT ?1",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![limit], |r| {
            Ok(RequestRecord {
                id: r.get(0)?,
                at: to_u64(r.get(1)?),
                source: r.get(2)?,
                outcome: r.get(3)?,
                reason: r.get(4)?,
                device_id: r.get(5)?,
                spki_sha256: r.get(6)?,
                serial_hex: r.get(7)?,
            })
        })?;
        let mut out = rows.collect::<Result<Vec<_>, _>>()?;
        out.reverse();
        Ok(out)
    }

    /// The DER of an issued certificate by serial (hex).
    pub fn certificate(&self, serial_hex: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self
            .lock()
            .query_row(
                "SELECT cert_der FROM issued WHERE serial_hex = ?1",
                params![serial_hex],
                |r| r.get(0),
            )
            .optional()?)
    }
}
