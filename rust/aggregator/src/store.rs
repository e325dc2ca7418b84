//! SQLite state under the state directory (`aggregator.sqlite`, WAL).
//!
//! Tables:
//! - `devices`: one row per registered device id (key, kid, chain, revocation).
//! - `messages`: accepted `data` and `sealed` messages (plaintext payload),
//!   `UNIQUE(device_id, kid, seq)`; kid is the 8-byte signing kid for `data`,
//!   the 4-byte session id (big endian) for `sealed`.
//! - `replay`: the anti-replay window per (device, key id): highest seq +
//!   128-bit bitmap; key id as in `messages` (8 bytes: data kid, 4 bytes:
//!   session id), so the two kinds never share a window.
//! - `sessions`: accepted session keys per (device, session id), wrapped
//!   with the storage key (AES-256-GCM, AAD = device id || session id BE).
//!
//! `seq` is a u64 on the wire and is stored as the SQLite INTEGER with the
//! same 64 bits (values above `i64::MAX` read back correctly through [`seq_to_db`]
//! and [`seq_from_db`], but sort negative in SQL).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use tfmprov_cose::{Kid, ReplayWindow, P256_POINT_LEN};

use crate::error::Error;
use crate::ingest::KeyId;

/// The database file name inside the state directory.
pub const DB_FILE: &str = "aggregator.sqlite";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS devices (
    device_id     TEXT PRIMARY KEY,
    kid           BLOB NOT NULL,
    public_key    BLOB NOT NULL,
    spki          BLOB NOT NULL,
    chain_pem     TEXT NOT NULL,
    not_after     INTEGER NOT NULL,
    registered_at INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    revoked_at    INTEGER
);
CREATE TABLE IF NOT EXISTS messages (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT NOT NULL,
    kid         BLOB NOT NULL,
    seq         INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    payload     BLOB NOT NULL,
    UNIQUE (device_id, kid, seq)
);
CREATE TABLE IF NOT EXISTS sessions (
    device_id   TEXT NOT NULL,
    session_id  INTEGER NOT NULL,
    nonce       BLOB NOT NULL,
    wrapped_key BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (device_id, session_id)
);
CREATE TABLE IF NOT EXISTS replay (
    device_id TEXT NOT NULL,
    kid       BLOB NOT NULL,
    highest   INTEGER NOT NULL,
    bitmap    BLOB NOT NULL,
    PRIMARY KEY (device_id, kid)
);
";

/// Open (creating if needed) the database with WAL, a busy timeout and the schema.
pub(crate) fn open(state_dir: &Path) -> Result<Connection, Error> {
    std::fs::create_dir_all(state_dir)?;
    let conn = Connection::open(state_dir.join(DB_FILE))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// u64 seq to its SQLite INTEGER (same bits).
pub(crate) fn seq_to_db(seq: u64) -> i64 {
    i64::from_ne_bytes(seq.to_ne_bytes())
}

/// SQLite INTEGER back to the u64 seq.
pub(crate) fn seq_from_db(v: i64) -> u64 {
    u64::from_ne_bytes(v.to_ne_bytes())
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A row of `devices`.
#[derive(Clone, Debug)]
pub(crate) struct DeviceRow {
    pub device_id: String,
    pub kid: Kid,
    pub public_key: [u8; P256_POINT_LEN],
    pub chain_pem: String,
    pub not_after: i64,
    pub registered_at: i64,
    pub updated_at: i64,
    pub revoked_at: Option<i64>,
}

fn row_to_device(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRow> {
    let kid: Vec<u8> = r.get(1)?;
    let pk: Vec<u8> = r.get(2)?;
    let bad = |i, what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Blob,
            format!("{what} has a wrong length").into(),
        )
    };
    Ok(DeviceRow {
        device_id: r.get(0)?,
        kid: Kid::try_from(kid.as_slice()).map_err(|_| bad(1, "kid"))?,
        public_key: <[u8; P256_POINT_LEN]>::try_from(pk.as_slice()).map_err(|_| bad(2, "public_key"))?,
        chain_pem: r.get(3)?,
        not_after: r.get(4)?,
        registered_at: r.get(5)?,
        updated_at: r.get(6)?,
        revoked_at: r.get(7)?,
    })
}

const DEVICE_COLS: &str =
    "device_id, kid, public_key, chain_pem, not_after, registered_at, updated_at, revoked_at";

pub(crate) fn device(conn: &Connection, id: &str) -> Result<Option<DeviceRow>, Error> {
    Ok(conn
        .query_row(&format!("SELECT {DEVICE_COLS} FROM devices WHERE device_id = ?1"), [id], row_to_device)
        .optional()?)
}

pub(crate) fn all_devices(conn: &Connection) -> Result<Vec<DeviceRow>, Error> {
    let mut st = conn.prepare(&format!("SELECT {DEVICE_COLS} FROM devices ORDER BY device_id"))?;
    let rows = st.query_map([], row_to_device)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub(crate) fn insert_device(
    conn: &Connection,
    id: &str,
    kid: &Kid,
    point: &[u8],
    spki: &[u8],
    chain_pem: &str,
    not_after: i64,
) -> Result<(), Error> {
    let now = now_ms();
    conn.execute(
        "INSERT INTO devices (device_id, kid, public_key, spki, chain_pem, not_after, registered_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        params![id, &kid[..], point, spki, chain_pem, not_after, now],
    )?;
    Ok(())
}

/// Same key registered again: keep the key, refresh the chain.
pub(crate) fn update_chain(conn: &Connection, id: &str, chain_pem: &str, not_after: i64) -> Result<(), Error> {
    conn.execute(
        "UPDATE devices SET chain_pem = ?2, not_after = ?3, updated_at = ?4 WHERE device_id = ?1",
        params![id, chain_pem, not_after, now_ms()],
    )?;
    Ok(())
}

/// Mark revoked (keeps the first revocation time). Returns false for an unknown id.
pub(crate) fn revoke(conn: &Connection, id: &str) -> Result<bool, Error> {
    let n = conn.execute(
        "UPDATE devices SET revoked_at = COALESCE(revoked_at, ?2) WHERE device_id = ?1",
        params![id, now_ms()],
    )?;
    Ok(n == 1)
}

/// A stored message.
#[derive(Clone, Debug)]
pub(crate) struct MessageRow {
    pub kid: Vec<u8>,
    pub seq: u64,
    pub received_at: i64,
    pub payload: Vec<u8>,
}

pub(crate) fn messages(conn: &Connection, id: &str, limit: u32) -> Result<Vec<MessageRow>, Error> {
    let mut st = conn.prepare(
        "SELECT kid, seq, received_at, payload FROM messages WHERE device_id = ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = st.query_map(params![id, limit], |r| {
        Ok(MessageRow {
            kid: r.get(0)?,
            seq: seq_from_db(r.get(1)?),
            received_at: r.get(2)?,
            payload: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// All persisted replay windows.
pub(crate) fn load_windows(conn: &Connection) -> Result<HashMap<(String, KeyId), ReplayWindow>, Error> {
    let mut st = conn.prepare("SELECT device_id, kid, highest, bitmap FROM replay")?;
    let mut out = HashMap::new();
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        let kid: Vec<u8> = r.get(1)?;
        let highest: i64 = r.get(2)?;
        let bitmap: Vec<u8> = r.get(3)?;
        let (Some(kid), Ok(bitmap)) = (KeyId::from_bytes(&kid), <[u8; 16]>::try_from(bitmap.as_slice()))
        else {
            return Err(Error::Db(rusqlite::Error::InvalidColumnType(
                1,
                "replay.kid/bitmap".into(),
                rusqlite::types::Type::Blob,
            )));
        };
        out.insert(
            (id, kid),
            ReplayWindow::from_parts(Some(seq_from_db(highest)), u128::from_be_bytes(bitmap)),
        );
    }
    Ok(out)
}

/// Upsert one replay window (inside the writer's transaction).
pub(crate) fn save_window(conn: &Connection, id: &str, kid: &KeyId, w: &ReplayWindow) -> Result<(), rusqlite::Error> {
    let Some(h) = w.highest() else { return Ok(()) };
    conn.prepare_cached(
        "INSERT INTO replay (device_id, kid, highest, bitmap) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (device_id, kid) DO UPDATE SET highest = excluded.highest, bitmap = excluded.bitmap",
    )?
    .execute(params![id, &kid.to_vec()[..], seq_to_db(h), &w.bitmap().to_be_bytes()[..]])?;
    Ok(())
}

/// Insert an accepted message; false if (device, kid, seq) was already stored.
/// `kid`: the 8-byte signing kid (`data`) or the 4-byte session id (`sealed`).
pub(crate) fn insert_message(
    conn: &Connection,
    id: &str,
    kid: &[u8],
    seq: u64,
    received_at: i64,
    payload: &[u8],
) -> Result<bool, rusqlite::Error> {
    let n = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO messages (device_id, kid, seq, received_at, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![id, kid, seq_to_db(seq), received_at, payload])?;
    Ok(n == 1)
}

/// The accepted session ids of every device.
pub(crate) fn load_session_ids(conn: &Connection) -> Result<HashMap<String, BTreeSet<u32>>, Error> {
    let mut st = conn.prepare("SELECT device_id, session_id FROM sessions")?;
    let mut out: HashMap<String, BTreeSet<u32>> = HashMap::new();
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        let sid: i64 = r.get(1)?;
        let sid = u32::try_from(sid).map_err(|_| {
            Error::Db(rusqlite::Error::IntegralValueOutOfRange(1, sid))
        })?;
        out.entry(id).or_default().insert(sid);
    }
    Ok(out)
}

/// Store an accepted session key (wrapped); false if (device, session id) exists.
pub(crate) fn insert_session(
    conn: &Connection,
    id: &str,
    session_id: u32,
    nonce: &[u8],
    wrapped_key: &[u8],
    created_at: i64,
) -> Result<bool, rusqlite::Error> {
    let n = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO sessions (device_id, session_id, nonce, wrapped_key, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![id, i64::from(session_id), nonce, wrapped_key, created_at])?;
    Ok(n == 1)
}

/// (nonce, wrapped key) of a stored session.
pub(crate) type WrappedSession = (Vec<u8>, Vec<u8>);

/// The [`WrappedSession`] of (device, session id), if stored.
pub(crate) fn session_row(conn: &Connection, id: &str, session_id: u32) -> Result<Option<WrappedSession>, rusqlite::Error> {
    conn.prepare_cached("SELECT nonce, wrapped_key FROM sessions WHERE device_id = ?1 AND session_id = ?2")?
        .query_row(params![id, i64::from(session_id)], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
}

/// Forget sessions of a device: their keys and their replay windows (their
/// stored messages stay).
pub(crate) fn delete_sessions(conn: &Connection, id: &str, session_ids: &[u32]) -> Result<(), rusqlite::Error> {
    for sid in session_ids {
        conn.prepare_cached("DELETE FROM sessions WHERE device_id = ?1 AND session_id = ?2")?
            .execute(params![id, i64::from(*sid)])?;
        conn.prepare_cached("DELETE FROM replay WHERE device_id = ?1 AND kid = ?2")?
            .execute(params![id, &KeyId::Session(*sid).to_vec()[..]])?;
    }
    Ok(())
}
