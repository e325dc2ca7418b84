//! The device registry: SQLite `devices` table plus an in-memory copy that
//! ingestion reads without touching the database.
//!
//! Several instances may share the table (docs/deploy.md). A device the
//! copy does not have is looked up in the table (so a registration at
//! another instance counts at once), and [`Registry::refresh`] (every
//! [`REFRESH_EVERY`]) re-reads the rows changed lately, so a revocation or a
//! new chain at another instance counts here within about that time.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use rustls_pki_types::UnixTime;
use tfmprov_cose::{Kid, P256_POINT_LEN};

use crate::chain::{verify_chain, Roots};
use crate::error::{Error, Refusal};
use tfmprov_db::Db;
use crate::store::{self, DeviceRow};

/// How often the aggregator re-reads changed `devices` rows.
pub(crate) const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// How far back each refresh looks (a transaction may commit a little after
/// the time it wrote; clocks of instances on different hosts differ a little).
const REFRESH_LOOKBACK_MS: i64 = 10_000;

/// What ingestion needs to know about a device.
#[derive(Debug)]
pub(crate) struct DeviceEntry {
    pub kid: Kid,
    pub point: [u8; P256_POINT_LEN],
    pub revoked: bool,
    /// The key a rotation replaced, accepted until the end of its grace
    /// period (ms since the epoch): (kid, point, until).
    pub previous: Option<(Kid, [u8; P256_POINT_LEN], i64)>,
}

impl DeviceEntry {
    /// The public point that verifies messages signed under `kid`: the
    /// registered key's, or the previous key's until its grace period ends.
    pub(crate) fn point_for(&self, kid: &Kid) -> Option<&[u8; P256_POINT_LEN]> {
        if *kid == self.kid {
            return Some(&self.point);
        }
        match &self.previous {
            Some((k, p, until)) if k == kid && store::now_ms() < *until => Some(p),
            _ => None,
        }
    }
}

/// Result of a successful registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Registered {
    /// New device (HTTP 201).
    Created,
    /// Same id, same key: chain refreshed (HTTP 200).
    Unchanged,
}

pub(crate) struct Registry {
    roots: Roots,
    db: Mutex<Db>,
    cache: RwLock<HashMap<String, Arc<DeviceEntry>>>,
    /// Ids looked up and not found since the last [`Registry::refresh`]: a
    /// flood of messages for unknown ids costs one query per id per refresh
    /// period, not one per message.
    unknown: Mutex<HashSet<String>>,
}

/// Most ids remembered as unknown between two refreshes.
const MAX_UNKNOWN: usize = 100_000;

fn entry(row: &DeviceRow) -> Arc<DeviceEntry> {
    Arc::new(DeviceEntry { kid: row.kid, point: row.public_key, revoked: row.revoked_at.is_some(), previous: row.previous })
}

impl Registry {
    pub(crate) fn open(roots: Roots, db: Db) -> Result<Registry, Error> {
        let cache = store::all_devices(&db)?
            .iter()
            .map(|r| (r.device_id.clone(), entry(r)))
            .collect();
        Ok(Registry { roots, db: Mutex::new(db), cache: RwLock::new(cache), unknown: Mutex::new(HashSet::new()) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn unknown(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.unknown.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The device as ingestion sees it: the in-memory copy, else the table
    /// (registered at another instance; found at once, or within one refresh
    /// period if the id was looked up in vain during the last one). A
    /// database error counts as unknown and is logged.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<DeviceEntry>> {
        if let Some(e) = self.cache.read().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Some(e.clone());
        }
        if self.unknown().contains(id) {
            return None;
        }
        let row = match store::device(&self.db(), id) {
            Ok(Some(r)) => r,
            Ok(None) => {
                let mut unknown = self.unknown();
                if unknown.len() < MAX_UNKNOWN {
                    unknown.insert(id.to_owned());
                }
                return None;
            }
            Err(e) => {
                tracing::error!(device = id, error = %e, "cannot look a device up");
                return None;
            }
        };
        let e = entry(&row);
        self.cache.write().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned(), e.clone());
        Some(e)
    }

    /// Re-read the rows changed in the last [`REFRESH_LOOKBACK_MS`] (other
    /// instances' registrations, new chains and revocations). Blocking.
    pub(crate) fn refresh(&self) -> Result<usize, Error> {
        let rows = store::devices_changed_since(&self.db(), store::now_ms() - REFRESH_LOOKBACK_MS)?;
        self.unknown().clear();
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        for r in &rows {
            cache.insert(r.device_id.clone(), entry(r));
        }
        Ok(rows.len())
    }

    /// Verify the chain and register (blocking: SQLite).
    pub(crate) fn register(&self, id: &str, chain_pem: &str) -> Result<(Registered, DeviceRow), Error> {
        let leaf = verify_chain(&self.roots, id, chain_pem, UnixTime::now())?;
        let not_after = i64::try_from(leaf.not_after).unwrap_or(i64::MAX);
        let db = self.db();
        let (outcome, row) = db.transaction(|tx| {
            let outcome = match store::device(tx, id)? {
                Some(row) if row.revoked_at.is_some() => return Err(Refusal::Revoked.into()),
                Some(row) if row.kid != leaf.kid || row.public_key != leaf.point => {
                    return Err(Refusal::Conflict.into())
                }
                Some(_) => {
                    store::update_chain(tx, id, &leaf.chain_pem, not_after)?;
                    Registered::Unchanged
                }
                None => {
                    store::insert_device(tx, id, &leaf.kid, &leaf.point, &leaf.spki_der, &leaf.chain_pem, not_after)?;
                    Registered::Created
                }
            };
            let row = store::device(tx, id)?
                .ok_or_else(|| Error::Db(tfmprov_db::DbError::Corrupt("registered row not found".into())))?;
            Ok::<_, Error>((outcome, row))
        })?;
        self.cache.write().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned(), entry(&row));
        Ok((outcome, row))
    }

    /// A key rotation's registration (docs/remote.md "Rotation"): `chain_pem`
    /// must verify as `id`'s, for the key `expected`; the registered key,
    /// still `old_kid`, becomes the previous one (accepted until
    /// [`Registry::retire_previous`] sets an end). `step` runs in the same
    /// transaction (the rotation's own step change); if it says false,
    /// nothing is changed and the answer is false.
    pub(crate) fn rotate_key(
        &self,
        id: &str,
        chain_pem: &str,
        expected: &[u8],
        old_kid: &[u8],
        step: impl FnOnce(&Db) -> Result<bool, tfmprov_db::DbError>,
    ) -> Result<bool, Error> {
        let leaf = verify_chain(&self.roots, id, chain_pem, UnixTime::now())?;
        if leaf.point[..] != *expected {
            return Err(Refusal::BadRequest("the CA's certificate is not for the device's new key".into()).into());
        }
        let not_after = i64::try_from(leaf.not_after).unwrap_or(i64::MAX);
        let done = self.db().transaction(|tx| {
            if !step(tx)? {
                return Ok(false);
            }
            let (kid, point, spki, chain) = (&leaf.kid, &leaf.point, &leaf.spki_der, &leaf.chain_pem);
            if !store::rotate_device_key(tx, id, old_kid, kid, point, spki, chain, not_after, i64::MAX)? {
                // Rolls the step back too.
                return Err(Refusal::Conflict.into());
            }
            Ok::<_, Error>(true)
        })?;
        self.reload(id)?;
        Ok(done)
    }

    /// The previous key `prev_kid` of `id` is accepted until `until` (ms).
    pub(crate) fn retire_previous(&self, id: &str, prev_kid: &[u8], until: i64) -> Result<bool, Error> {
        let done = store::set_prev_until(&self.db(), id, prev_kid, until)?;
        self.reload(id)?;
        Ok(done)
    }

    fn reload(&self, id: &str) -> Result<(), Error> {
        if let Some(row) = store::device(&self.db(), id)? {
            self.cache.write().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned(), entry(&row));
        }
        Ok(())
    }

    /// The stored record.
    pub(crate) fn device(&self, id: &str) -> Result<Option<DeviceRow>, Error> {
        Ok(store::device(&self.db(), id)?)
    }

    /// Revoke: later messages of this device are rejected. `None` for an unknown id.
    pub(crate) fn revoke(&self, id: &str) -> Result<Option<DeviceRow>, Error> {
        let db = self.db();
        if !store::revoke(&db, id)? {
            return Ok(None);
        }
        let row = store::device(&db, id)?;
        if let Some(row) = &row {
            self.cache.write().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned(), entry(row));
        }
        Ok(row)
    }

    /// `f` with the registry's connection (blocking).
    pub(crate) fn with_db<T>(&self, f: impl FnOnce(&Db) -> Result<T, tfmprov_db::DbError>) -> Result<T, Error> {
        Ok(f(&self.db())?)
    }

    /// The device's key-agreement key, if registered (docs/remote.md).
    pub(crate) fn kak(&self, id: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(store::kak(&self.db(), id)?)
    }

    /// Register the device's key-agreement key: a P-256 point. `None`: no
    /// such device.
    pub(crate) fn set_kak(&self, id: &str, kak: &[u8]) -> Result<Option<()>, Error> {
        if p256::PublicKey::from_sec1_bytes(kak).is_err() || kak.len() != P256_POINT_LEN {
            return Err(Refusal::KeyNotP256("the key-agreement key is not an uncompressed P-256 point".into()).into());
        }
        Ok(store::set_kak(&self.db(), id, kak)?.then_some(()))
    }

    /// Stored messages of a device (oldest first).
    pub(crate) fn messages(&self, id: &str, limit: u32) -> Result<Vec<store::MessageRow>, Error> {
        Ok(store::messages(&self.db(), id, limit)?)
    }
}
