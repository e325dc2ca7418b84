//! The device registry: SQLite `devices` table plus an in-memory copy that
//! ingestion reads without touching the database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use rusqlite::Connection;
use rustls_pki_types::UnixTime;
use tfmprov_cose::{Kid, P256_POINT_LEN};

use crate::chain::{verify_chain, Roots};
use crate::error::{Error, Refusal};
use crate::store::{self, DeviceRow};

/// What ingestion needs to know about a device.
#[derive(Debug)]
pub(crate) struct DeviceEntry {
    pub kid: Kid,
    pub point: [u8; P256_POINT_LEN],
    pub revoked: bool,
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
    db: Mutex<Connection>,
    cache: RwLock<HashMap<String, Arc<DeviceEntry>>>,
}

fn entry(row: &DeviceRow) -> Arc<DeviceEntry> {
    Arc::new(DeviceEntry { kid: row.kid, point: row.public_key, revoked: row.revoked_at.is_some() })
}

impl Registry {
    pub(crate) fn open(roots: Roots, db: Connection) -> Result<Registry, Error> {
        let cache = store::all_devices(&db)?
            .iter()
            .map(|r| (r.device_id.clone(), entry(r)))
            .collect();
        Ok(Registry { roots, db: Mutex::new(db), cache: RwLock::new(cache) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The device as ingestion sees it.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<DeviceEntry>> {
        self.cache.read().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// Verify the chain and register (blocking: SQLite).
    pub(crate) fn register(&self, id: &str, chain_pem: &str) -> Result<(Registered, DeviceRow), Error> {
        let leaf = verify_chain(&self.roots, id, chain_pem, UnixTime::now())?;
        let not_after = i64::try_from(leaf.not_after).unwrap_or(i64::MAX);
        let db = self.db();
        let tx = db.unchecked_transaction()?;
        let outcome = match store::device(&tx, id)? {
            Some(row) if row.revoked_at.is_some() => return Err(Refusal::Revoked.into()),
            Some(row) if row.kid != leaf.kid || row.public_key != leaf.point => {
                return Err(Refusal::Conflict.into())
            }
            Some(_) => {
                store::update_chain(&tx, id, &leaf.chain_pem, not_after)?;
                Registered::Unchanged
            }
            None => {
                store::insert_device(&tx, id, &leaf.kid, &leaf.point, &leaf.spki_der, &leaf.chain_pem, not_after)?;
                Registered::Created
            }
        };
        let row = store::device(&tx, id)?.ok_or_else(|| Error::Db(rusqlite::Error::QueryReturnedNoRows))?;
        tx.commit()?;
        self.cache.write().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned(), entry(&row));
        Ok((outcome, row))
    }

    /// The stored record.
    pub(crate) fn device(&self, id: &str) -> Result<Option<DeviceRow>, Error> {
        store::device(&self.db(), id)
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

    /// Stored messages of a device (oldest first).
    pub(crate) fn messages(&self, id: &str, limit: u32) -> Result<Vec<store::MessageRow>, Error> {
        store::messages(&self.db(), id, limit)
    }
}
