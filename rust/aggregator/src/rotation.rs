//! Key rotation, server side (docs/remote.md "Rotation"): one remote
//! command per step, driven from the database so that any instance may take
//! the next step and a restart of the aggregator or the device resumes.
//!
//! ```text
//! generate ─► csr ─► (CA signs) ─► store-cert ─► register ─► use-key ─► grace ─► check-old ─► destroy ─► done
//!     any refusal by the device, the CA or the chain check ─► failed
//! ```
//!
//! - `register` puts the new chain in the `devices` row and keeps the old
//!   key as the *previous* one, accepted without end until the device has
//!   switched (`use-key` answered); from then on for the grace period only.
//!   So at every step the device's telemetry verifies: under the old key
//!   until the switch, under the new one after it (never neither).
//! - `check-old` reads the old key ID's public key back first: it is
//!   destroyed only if it still holds the retired key (never the new one,
//!   never a key put there since).
//! - A step's command is claimed (its cid set) before it is sent, and a
//!   step moves on by a conditional update: with several instances, each
//!   step runs once.

use std::sync::Arc;
use std::time::Duration;

use ciborium::value::Value;
use tfmprov_db::Value as DbValue;

use crate::cloud::kid_of;
use crate::error::{Error, Refusal};
use crate::registry::Registry;
use crate::remote::Remote;
use crate::store::{self, RotationRow};

/// Default grace period: how long the old key stays accepted after the
/// device switched to the new one (messages it queued while offline, in
/// flight through the broker), before it is destroyed and refused.
pub const DEFAULT_ROTATION_GRACE: Duration = Duration::from_secs(24 * 3600);

/// How often the rotations are looked at.
pub(crate) const TICK: Duration = Duration::from_millis(200);

/// A rotation as the API shows it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct RotationInfo {
    /// Rotation id, hex.
    pub rid: String,
    /// The device.
    pub device: String,
    /// The step: generate, csr, store-cert, register, use-key, grace,
    /// check-old, destroy, done or failed.
    pub state: String,
    /// The command of the current step (hex cid), while it waits for the device.
    pub cid: Option<String>,
    /// The new key's ID (the one asked for, or the device's choice).
    pub key_id: Option<u32>,
    /// The new key's kid (hex), once generated.
    pub new_kid: Option<String>,
    /// The retired key's kid (hex).
    pub old_kid: String,
    /// The retired key's ID, once the device told it.
    pub old_key_id: Option<u32>,
    /// Grace period in milliseconds.
    pub grace_ms: i64,
    /// When the old key stops being accepted (ms since the epoch).
    pub retire_at: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was started and last moved (ms since the epoch).
    pub created_at: i64,
    /// When it last moved.
    pub updated_at: i64,
}

impl From<&RotationRow> for RotationInfo {
    fn from(r: &RotationRow) -> Self {
        let u32_of = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
        RotationInfo {
            rid: hex::encode(&r.rid),
            device: r.device_id.clone(),
            state: r.state.clone(),
            cid: r.cid.as_ref().map(hex::encode),
            key_id: u32_of(r.key_id),
            new_kid: r.new_public_key.as_deref().and_then(kid_of_bytes).map(hex::encode),
            old_kid: hex::encode(&r.old_kid),
            old_key_id: u32_of(r.old_key_id),
            grace_ms: r.grace_ms,
            retire_at: r.retire_at,
            error: r.error.clone(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// What rotations need.
pub(crate) struct Rotations {
    pub registry: Arc<Registry>,
    pub remote: Arc<Remote>,
    /// The CA that signs the new keys' CSRs (`None`: rotation refused).
    pub ca_url: Option<String>,
    /// The operator token shown to the CA (scope `sign`).
    pub ca_token: String,
    pub default_grace: Duration,
    pub http_timeout: Duration,
}

/// How a step ended, when it did not simply move on.
enum Stop {
    /// Wait (the device has not answered yet, or another instance moved it).
    Wait,
    /// The rotation failed for this reason.
    Fail(String),
}

fn res_u32(res: &Value, key: &str) -> Result<u32, Stop> {
    res.as_map().and_then(|m| crate::remote::get(m, key))
        .and_then(Value::as_integer)
        .and_then(|i| u32::try_from(i).ok())
        .ok_or_else(|| Stop::Fail(format!("the device's answer has no {key:?}")))
}

fn res_bytes<'a>(res: &'a Value, key: &str) -> Result<&'a [u8], Stop> {
    res.as_map().and_then(|m| crate::remote::get(m, key))
        .and_then(Value::as_bytes)
        .map(Vec::as_slice)
        .ok_or_else(|| Stop::Fail(format!("the device's answer has no {key:?}")))
}

fn db_err(e: impl std::fmt::Display) -> Stop {
    // A database error is not the rotation's fault: try again next tick.
    tracing::warn!(error = %e, "rotation step postponed");
    Stop::Wait
}

fn int(k: &str, v: u32) -> (Value, Value) {
    (Value::Text(k.into()), Value::Integer(v.into()))
}

impl Rotations {
    /// Start rotating `device_id`'s key (blocking). `key_id`: the new key's
    /// ID (default: the device assigns one); `grace`: default
    /// [`Rotations::default_grace`].
    pub(crate) fn start(&self, device_id: &str, key_id: Option<u32>, grace: Option<Duration>) -> Result<RotationInfo, Error> {
        if self.ca_url.is_none() {
            return Err(Refusal::BadRequest("the aggregator has no CA to sign new keys (--rotation-ca)".into()).into());
        }
        if let Some(id) = key_id {
            if !(1..=0x0FFF_FFFF).contains(&id) {
                return Err(Refusal::BadRequest(format!("key id {id:#x}: not a device key ID (0x1..0x0FFFFFFF)")).into());
            }
        }
        let device = self.registry.get(device_id).ok_or_else(|| Refusal::BadRequest(format!("no device {device_id:?}")))?;
        if device.revoked {
            return Err(Refusal::Revoked.into());
        }
        if self.registry.kak(device_id)?.is_none() {
            return Err(Refusal::BadRequest(format!("device {device_id:?} has no key-agreement key registered")).into());
        }
        let grace = grace.unwrap_or(self.default_grace);
        let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        let mut rid = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut rid);
        let inserted = self.registry.with_db(|db| store::insert_rotation(db, &rid, device_id, key_id, &device.kid, grace_ms))?;
        if !inserted {
            return Err(Refusal::BadRequest(format!("device {device_id:?} has a rotation running already")).into());
        }
        tracing::info!(device = device_id, ?key_id, grace_s = grace.as_secs(), "key rotation started");
        self.latest(device_id)?.ok_or_else(|| Error::Cloud("rotation vanished".into()))
    }

    /// The device's latest rotation (blocking).
    pub(crate) fn latest(&self, device_id: &str) -> Result<Option<RotationInfo>, Error> {
        Ok(self.registry.with_db(|db| store::latest_rotation(db, device_id))?.as_ref().map(RotationInfo::from))
    }

    /// One pass over the running rotations (blocking).
    pub(crate) fn tick(&self) {
        let rows = match self.registry.with_db(store::active_rotations) {
            Ok(r) => r,
            Err(e) => return tracing::warn!(error = %e, "cannot read the rotations"),
        };
        for row in rows {
            // Each step moves at most one state per tick; loop so that
            // server-side steps (register, grace) do not wait for a tick.
            let mut row = row;
            for _ in 0..4 {
                match self.step(&row) {
                    Ok(()) => {}
                    Err(Stop::Wait) => break,
                    Err(Stop::Fail(why)) => {
                        self.fail(&row, &why);
                        break;
                    }
                }
                match self.registry.with_db(|db| store::latest_rotation(db, &row.device_id)) {
                    Ok(Some(next)) if next.rid == row.rid && next.state != row.state => row = next,
                    _ => break,
                }
            }
        }
    }

    fn fail(&self, row: &RotationRow, why: &str) {
        tracing::warn!(device = %row.device_id, state = %row.state, "key rotation failed: {why}");
        let moved = self.registry.with_db(|db| {
            store::advance_rotation(db, &row.rid, &row.state, row.cid.as_deref(), "failed", vec![("error", why.into())])
        });
        if let Err(e) = moved {
            tracing::warn!(error = %e, "cannot record a failed rotation");
        }
    }

    /// Move `row` on by one step if it can.
    fn step(&self, row: &RotationRow) -> Result<(), Stop> {
        let key_id = row.key_id.and_then(|v| u32::try_from(v).ok());
        let old_key_id = row.old_key_id.and_then(|v| u32::try_from(v).ok());
        // Server-side steps.
        match row.state.as_str() {
            "done" | "failed" => return Err(Stop::Wait),
            "register" => return self.register(row),
            "grace" => {
                let due = row.retire_at.is_some_and(|t| store::now_ms() >= t);
                return if due { self.advance(row, "check-old", vec![]) } else { Err(Stop::Wait) };
            }
            _ => {}
        }
        // Device steps: the command to send, or its answer.
        let (op, args) = match (row.state.as_str(), key_id, old_key_id) {
            ("generate", Some(id), _) => ("generate", vec![int("id", id)]),
            ("generate", None, _) => ("generate", vec![]),
            ("csr", Some(id), _) => ("csr", vec![int("id", id), (Value::Text("cn".into()), Value::Text(row.device_id.clone()))]),
            ("store-cert", Some(id), _) => {
                let leaf = leaf_der(row.chain_pem.as_deref().unwrap_or(""))?;
                ("store-cert", vec![int("id", id), (Value::Text("cert".into()), Value::Bytes(leaf))])
            }
            ("use-key", Some(id), _) => ("use-key", vec![int("id", id)]),
            ("check-old", _, Some(old)) => ("public", vec![int("id", old)]),
            ("destroy", _, Some(old)) => ("destroy", vec![int("id", old)]),
            (state, ..) => return Err(Stop::Fail(format!("inconsistent rotation in state {state}"))),
        };
        let Some(cid) = &row.cid else {
            let mut cid = [0u8; 16];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut cid);
            if !self.registry.with_db(|db| store::claim_rotation_command(db, &row.rid, &row.state, &cid)).map_err(db_err)? {
                return Err(Stop::Wait);
            }
            return match self.remote.send(&row.device_id, op, &Value::Map(args), &cid) {
                Ok(_) => Err(Stop::Wait),
                Err(e) => Err(Stop::Fail(format!("sending {op}: {e}"))),
            };
        };
        let Some(cmd) = self.registry.with_db(|db| store::command(db, &row.device_id, cid)).map_err(db_err)? else {
            return Err(Stop::Fail(format!("the {op} command is not in the database")));
        };
        if cmd.state != "answered" {
            // Not answered yet: the device may be offline; its persistent
            // session keeps the command until it comes back. Past the
            // command's life (its `exp`) the same command (same cseq, a
            // fresh exp) is published again: the first may be lost (a device
            // that never had a session at the broker, a broker that lost its
            // sessions) or refused as expired; the device runs a cseq once.
            let expired = cmd.sent_at.is_some_and(|t| store::now_ms().saturating_sub(t) > self.remote.timeout_ms);
            if expired {
                if let Err(e) = self.remote.republish(&row.device_id, cid) {
                    tracing::warn!(device = %row.device_id, error = %e, "cannot send a rotation step again");
                }
            }
            return Err(Stop::Wait);
        }
        let rc = cmd.rc.unwrap_or(-1);
        let res: Value = match &cmd.result {
            Some(b) => ciborium::de::from_reader(b.as_slice()).map_err(|e| Stop::Fail(format!("{op} result: {e}")))?,
            None => Value::Map(vec![]),
        };
        self.answered(row, op, rc, &res)
    }

    /// The device answered the current step's command with `rc` / `res`.
    fn answered(&self, row: &RotationRow, op: &str, rc: i64, res: &Value) -> Result<(), Stop> {
        const RC_NOT_FOUND: i64 = 2;
        if rc != 0 && !(row.state == "check-old" && rc == RC_NOT_FOUND) {
            return Err(Stop::Fail(format!("the device answered {op} with rc {rc}")));
        }
        match row.state.as_str() {
            "generate" => {
                let id = res_u32(res, "id")?;
                let public = res_bytes(res, "pub")?.to_vec();
                self.advance(row, "csr", vec![("key_id", id.into()), ("new_public_key", public.into())])
            }
            "csr" => {
                let csr = res_bytes(res, "csr")?;
                let ca = self.ca_url.as_deref().ok_or_else(|| Stop::Fail("no CA configured".into()))?;
                let chain = tfmprov_ca::client::submit_csr(ca, &self.ca_token, csr, self.http_timeout)
                    .map_err(|e| Stop::Fail(format!("the CA refused the new key's CSR: {e}")))?;
                self.advance(row, "store-cert", vec![("chain_pem", chain.as_str().into())])
            }
            "store-cert" => self.advance(row, "register", vec![]),
            "use-key" => {
                let prev = res_u32(res, "prev")?;
                let retire_at = store::now_ms().saturating_add(row.grace_ms);
                self.registry.retire_previous(&row.device_id, &row.old_kid, retire_at).map_err(db_err)?;
                if Some(i64::from(prev)) == row.key_id {
                    // The device already used the new key (a step repeated):
                    // nothing of the old key to destroy by ID.
                    return self.advance(row, "done", vec![("retire_at", retire_at.into())]);
                }
                self.advance(row, "grace", vec![("old_key_id", prev.into()), ("retire_at", retire_at.into())])
            }
            "check-old" => {
                let holds_old = rc == 0 && res_bytes(res, "pub").ok().and_then(kid_of_bytes).is_some_and(|k| k[..] == row.old_kid[..]);
                if holds_old {
                    self.advance(row, "destroy", vec![])
                } else {
                    // Gone already, or another key there now: not ours to destroy.
                    tracing::warn!(device = %row.device_id, "the old key ID no longer holds the retired key: not destroyed");
                    self.advance(row, "done", vec![])
                }
            }
            "destroy" => self.advance(row, "done", vec![]),
            state => Err(Stop::Fail(format!("no answer expected in state {state}"))),
        }
    }

    /// The new chain becomes the registered one; the old key stays accepted.
    fn register(&self, row: &RotationRow) -> Result<(), Stop> {
        let (Some(chain), Some(public)) = (&row.chain_pem, &row.new_public_key) else {
            return Err(Stop::Fail("register without a chain".into()));
        };
        let moved = self.registry.rotate_key(&row.device_id, chain, public, &row.old_kid, |tx| {
            store::advance_rotation(tx, &row.rid, "register", None, "use-key", vec![])
        });
        match moved {
            Ok(true) => {
                let new_kid = kid_of_bytes(public).map(hex::encode).unwrap_or_default();
                tracing::info!(device = %row.device_id, new_kid, "rotated key registered");
                Ok(())
            }
            Ok(false) => Err(Stop::Wait),
            Err(Error::Db(e)) => Err(db_err(e)),
            Err(e) => Err(Stop::Fail(format!("registering the new chain: {e}"))),
        }
    }

    fn advance(&self, row: &RotationRow, to: &str, sets: Vec<(&'static str, DbValue)>) -> Result<(), Stop> {
        let moved = self
            .registry
            .with_db(|db| store::advance_rotation(db, &row.rid, &row.state, row.cid.as_deref(), to, sets))
            .map_err(db_err)?;
        if !moved {
            return Err(Stop::Wait);
        }
        tracing::info!(device = %row.device_id, from = %row.state, to, "key rotation step");
        Ok(())
    }
}

/// The kid of an uncompressed P-256 point given as bytes.
fn kid_of_bytes(point: &[u8]) -> Option<tfmprov_cose::Kid> {
    point.try_into().ok().map(kid_of)
}

/// The leaf of a PEM chain, DER.
fn leaf_der(chain_pem: &str) -> Result<Vec<u8>, Stop> {
    let certs = x509_cert::Certificate::load_pem_chain(chain_pem.as_bytes())
        .map_err(|e| Stop::Fail(format!("the stored chain: {e}")))?;
    let leaf = certs.first().ok_or_else(|| Stop::Fail("the stored chain has no certificate".into()))?;
    der::Encode::to_der(leaf).map_err(|e| Stop::Fail(format!("the stored chain: {e}")))
}
