//! Session keys in memory: which sessions each device has (accepted, the
//! newest [`SESSIONS_KEPT`]), a cache of their unwrapped keys (filled lazily
//! from the `sessions` table, e.g. after a restart), and the session messages
//! still in the pipeline.
//!
//! A device publishes its `session` message and then, at once, `sealed`
//! messages under it. The session is accepted only in the writer, after the
//! ECDSA + ECDH work; so a sealed message that arrives meanwhile must not be
//! refused as an unknown session. Sessions in the pipeline are therefore
//! *pending*: a sealed message naming a pending session passes the cheap
//! checks, and its worker (the same one as the session message's: one
//! worker per device, in arrival order) takes the key the session message
//! decrypted. The writer stays authoritative: a sealed message is stored
//! only if its session was accepted (earlier in the same batch included).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use tfmprov_cose::Kid;
use zeroize::Zeroizing;

use crate::cloud::{CloudKey, StorageKey};
use tfmprov_db::Db;
use crate::store;

/// Sessions kept per device: when a device's session is accepted, its
/// sessions older than the newest `SESSIONS_KEPT` are forgotten (key and
/// replay window deleted; their stored messages stay). A sealed message of a
/// forgotten session is rejected as an unknown session. This bounds memory
/// and the table while leaving room for sealed messages delayed across a
/// few session changes.
pub const SESSIONS_KEPT: usize = 8;

/// A session key in memory (wiped when the last reference goes).
pub(crate) type SessionKey = Arc<Zeroizing<[u8; 16]>>;

#[derive(Default)]
struct Pending {
    /// Session messages with this id in the pipeline.
    count: usize,
    /// The key, once a worker verified and decrypted one of them.
    key: Option<SessionKey>,
}

#[derive(Default)]
struct DeviceSessions {
    /// Accepted session ids (in memory as soon as the writer accepts them,
    /// before the commit; undone if the transaction fails).
    known: BTreeSet<u32>,
    /// Unwrapped keys of accepted sessions (a cache of the table).
    keys: HashMap<u32, SessionKey>,
    /// Session messages in the pipeline.
    pending: HashMap<u32, Pending>,
}

impl DeviceSessions {
    fn is_empty(&self) -> bool {
        self.known.is_empty() && self.keys.is_empty() && self.pending.is_empty()
    }
}

/// The session state shared by the pipeline.
pub(crate) struct Sessions {
    cloud: Option<Arc<CloudKey>>,
    storage: StorageKey,
    db: Mutex<Db>,
    devices: Mutex<HashMap<String, DeviceSessions>>,
}

/// Keeps a session message counted as pending while it is in the pipeline.
pub(crate) struct PendingGuard {
    sessions: Arc<Sessions>,
    device_id: String,
    session_id: u32,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        let mut all = self.sessions.devices();
        if let Some(d) = all.get_mut(&self.device_id) {
            if let Some(p) = d.pending.get_mut(&self.session_id) {
                p.count = p.count.saturating_sub(1);
                if p.count == 0 {
                    d.pending.remove(&self.session_id);
                }
            }
            if d.is_empty() {
                all.remove(&self.device_id);
            }
        }
    }
}

impl Sessions {
    /// `db`: a connection for lazy key loads; `ids`: the accepted session ids
    /// from the table.
    pub(crate) fn new(
        cloud: Option<Arc<CloudKey>>,
        storage: StorageKey,
        db: Db,
        ids: HashMap<String, BTreeSet<u32>>,
    ) -> Sessions {
        let devices = ids
            .into_iter()
            .map(|(id, known)| (id, DeviceSessions { known, ..Default::default() }))
            .collect();
        Sessions { cloud, storage, db: Mutex::new(db), devices: Mutex::new(devices) }
    }

    fn devices(&self) -> MutexGuard<'_, HashMap<String, DeviceSessions>> {
        self.devices.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cloud identity, if the aggregator has one.
    pub(crate) fn cloud(&self) -> Option<&CloudKey> {
        self.cloud.as_deref()
    }

    /// The cloud identity, shared (remote commands sign with it).
    pub(crate) fn cloud_shared(&self) -> Option<Arc<CloudKey>> {
        self.cloud.clone()
    }

    /// The cloud key's kid (what a session message must name).
    pub(crate) fn cloud_kid(&self) -> Option<Kid> {
        self.cloud.as_ref().map(|c| c.kid)
    }

    /// The storage key (wraps session keys).
    pub(crate) fn storage(&self) -> &StorageKey {
        &self.storage
    }

    /// The newest accepted session id of a device.
    pub(crate) fn last(&self, device_id: &str) -> Option<u32> {
        self.devices().get(device_id).and_then(|d| d.known.last().copied())
    }

    /// Accepted (per the writer's current view, else the table).
    pub(crate) fn is_known(&self, device_id: &str, session_id: u32) -> bool {
        let here = self.devices().get(device_id).is_some_and(|d| d.known.contains(&session_id));
        here || self.stored(device_id, session_id)
    }

    /// Accepted, or a session message with this id is in the pipeline.
    pub(crate) fn known_or_pending(&self, device_id: &str, session_id: u32) -> bool {
        let here = self
            .devices()
            .get(device_id)
            .is_some_and(|d| d.known.contains(&session_id) || d.pending.contains_key(&session_id));
        here || self.stored(device_id, session_id)
    }

    /// Accepted by another instance sharing the database (then known here
    /// from now on). Blocking: one indexed read.
    pub(crate) fn stored(&self, device_id: &str, session_id: u32) -> bool {
        let found = {
            let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
            store::session_exists(&db, device_id, session_id)
        };
        match found {
            Ok(true) => {
                self.devices().entry(device_id.to_owned()).or_default().known.insert(session_id);
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::error!(device = device_id, session_id, error = %e, "cannot look a session up");
                false
            }
        }
    }

    /// A session message enters the pipeline.
    pub(crate) fn begin_pending(self: &Arc<Self>, device_id: &str, session_id: u32) -> PendingGuard {
        let mut all = self.devices();
        let d = all.entry(device_id.to_owned()).or_default();
        d.pending.entry(session_id).or_default().count += 1;
        PendingGuard { sessions: self.clone(), device_id: device_id.to_owned(), session_id }
    }

    /// A worker verified and decrypted a pending session message.
    pub(crate) fn set_pending_key(&self, device_id: &str, session_id: u32, key: SessionKey) {
        if let Some(p) = self.devices().get_mut(device_id).and_then(|d| d.pending.get_mut(&session_id)) {
            p.key = Some(key);
        }
    }

    /// The key of a session: from the cache, from a pending (verified)
    /// session message, or loaded from the table and unwrapped.
    pub(crate) fn key(&self, device_id: &str, session_id: u32) -> Option<SessionKey> {
        {
            let all = self.devices();
            let d = all.get(device_id)?;
            if let Some(k) = d.keys.get(&session_id) {
                return Some(k.clone());
            }
            if let Some(k) = d.pending.get(&session_id).and_then(|p| p.key.clone()) {
                return Some(k);
            }
            if !d.known.contains(&session_id) {
                return None;
            }
        }
        let row = {
            let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
            store::session_row(&db, device_id, session_id)
        };
        let (nonce, wrapped) = match row {
            Ok(Some(r)) => r,
            Ok(None) => return None,
            Err(e) => {
                tracing::error!(device = device_id, session_id, error = %e, "cannot read a session key");
                return None;
            }
        };
        let key = match self.storage.unwrap(device_id, session_id, &nonce, &wrapped) {
            Ok(k) => Arc::new(k),
            Err(_) => {
                tracing::error!(
                    device = device_id,
                    session_id,
                    "stored session key does not unwrap (storage.key replaced or the row altered)"
                );
                return None;
            }
        };
        let mut all = self.devices();
        let d = all.get_mut(device_id)?;
        // Forgotten meanwhile (pruned): do not resurrect it.
        if !d.known.contains(&session_id) {
            return None;
        }
        Some(d.keys.entry(session_id).or_insert(key).clone())
    }

    /// The writer accepted a session (before the commit; see [`Sessions::undo`]).
    pub(crate) fn accept(&self, device_id: &str, session_id: u32, key: SessionKey) {
        let mut all = self.devices();
        let d = all.entry(device_id.to_owned()).or_default();
        d.known.insert(session_id);
        d.keys.insert(session_id, key);
    }

    /// The transaction that accepted these sessions failed.
    pub(crate) fn undo(&self, accepted: &[(String, u32)]) {
        let mut all = self.devices();
        for (id, sid) in accepted {
            if let Some(d) = all.get_mut(id) {
                d.known.remove(sid);
                d.keys.remove(sid);
            }
        }
    }

    /// Sessions of a device beyond the newest [`SESSIONS_KEPT`].
    pub(crate) fn surplus(&self, device_id: &str) -> Vec<u32> {
        match self.devices().get(device_id) {
            Some(d) if d.known.len() > SESSIONS_KEPT => {
                d.known.iter().take(d.known.len() - SESSIONS_KEPT).copied().collect()
            }
            _ => Vec::new(),
        }
    }

    /// Forget sessions (after their rows were deleted).
    pub(crate) fn forget(&self, device_id: &str, session_ids: &[u32]) {
        let mut all = self.devices();
        if let Some(d) = all.get_mut(device_id) {
            for sid in session_ids {
                d.known.remove(sid);
                d.keys.remove(sid);
            }
        }
    }
}
