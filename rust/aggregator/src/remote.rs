//! Remote provisioning, server side (docs/remote.md): commands queued over
//! HTTP, sent on `{prefix}/{id}/cmd` as envelopes signed by the cloud key
//! and encrypted to the device's key-agreement key; replies taken from
//! `{prefix}/{id}/reply`, opened with the cloud key, checked, and recorded.
//!
//! The database is the state: `commands` (cid, device, cseq, op, args,
//! state queued → sent → answered, rc, result). `cseq` is the device's next
//! (unique per device across instances). A command not answered within the
//! configured timeout reads as `timed_out`.

use std::sync::Arc;

use ciborium::value::Value;
use tfmprov_cose::{build_envelope, envelope_topic, parse_envelope, Direction, SessionCrypto, P256_POINT_LEN};
use tokio::sync::mpsc::UnboundedSender;

use crate::cloud::{aes128gcm_decrypt, aes128gcm_encrypt, ecdh_ephemeral, hkdf_sha256, kid_of, CloudKey, CryptoFailed};
use crate::error::{Error, Refusal};
use crate::ingest::Out;
use crate::registry::Registry;
use crate::store;

/// The operations (docs/remote.md: those of SMP groups 64/65/66, `audit`
/// the device's audit log of key operations). Plus `use-key`, a
/// rotation's switch of the device's telemetry key.
pub const OPS: [&str; 9] = ["status", "public", "generate", "destroy", "csr", "store-cert", "get-cert", "use-key", "audit"];

/// What the remote side needs.
pub(crate) struct Remote {
    pub registry: Arc<Registry>,
    pub cloud: Option<Arc<CloudKey>>,
    pub prefix: String,
    pub out: UnboundedSender<Out>,
    pub timeout_ms: i64,
    /// Held from a command's `cseq` to its publication: commands leave in
    /// `cseq` order, so a device never gets one behind a later one (which it
    /// would refuse as stale, rc 10, running nothing).
    pub send_order: std::sync::Mutex<()>,
}

/// A command as the API shows it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct CommandInfo {
    /// Command id, hex.
    pub cid: String,
    /// The device's command sequence number.
    pub cseq: u64,
    /// The operation.
    pub op: String,
    /// `queued`, `sent`, `answered` or `timed_out`.
    pub state: String,
    /// The device's return code (group codes; 10 stale, 11 bad command, 12 expired).
    pub rc: Option<i64>,
    /// The device's result map, as JSON (byte strings as hex).
    pub result: Option<serde_json::Value>,
    /// When it was queued, sent and answered (ms since the epoch).
    pub created_at: i64,
    /// When it was published.
    pub sent_at: Option<i64>,
    /// When its answer was recorded.
    pub answered_at: Option<i64>,
}

/// JSON args -> the CBOR map the device's SMP dispatcher reads. Known keys
/// only, with their types: `id`/`from` (uint), `replace` (bool),
/// `cn`/`o`/`ou` (text), `priv`/`cert` (hex).
fn args_to_cbor(args: &serde_json::Map<String, serde_json::Value>) -> Result<Value, Refusal> {
    let mut entries = Vec::new();
    for (k, v) in args {
        let bad = |what: &str| Refusal::BadRequest(format!("args.{k}: {what}"));
        let value = match (k.as_str(), v) {
            ("id" | "from", serde_json::Value::Number(n)) => {
                Value::Integer(n.as_u64().ok_or_else(|| bad("not a uint"))?.into())
            }
            ("replace", serde_json::Value::Bool(b)) => Value::Bool(*b),
            ("cn" | "o" | "ou", serde_json::Value::String(s)) => Value::Text(s.clone()),
            ("priv" | "cert", serde_json::Value::String(h)) => Value::Bytes(hex::decode(h).map_err(|_| bad("not hex"))?),
            ("id" | "from" | "replace" | "cn" | "o" | "ou" | "priv" | "cert", _) => return Err(bad("wrong type")),
            _ => return Err(bad("unknown argument")),
        };
        entries.push((Value::Text(k.clone()), value));
    }
    Ok(Value::Map(entries))
}

/// CBOR result -> JSON (byte strings as hex).
fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Integer(i) => i64::try_from(*i).map_or(serde_json::Value::Null, Into::into),
        Value::Bytes(b) => hex::encode(b).into(),
        Value::Text(t) => t.clone().into(),
        Value::Bool(b) => (*b).into(),
        Value::Map(m) => serde_json::Value::Object(
            m.iter().map(|(k, v)| (k.as_text().unwrap_or("?").to_owned(), to_json(v))).collect(),
        ),
        Value::Array(a) => a.iter().map(to_json).collect(),
        _ => serde_json::Value::Null,
    }
}

/// The value of text key `key` in a CBOR map's entries.
pub(crate) fn get<'a>(m: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    m.iter().find(|(k, _)| k.as_text() == Some(key)).map(|(_, v)| v)
}

impl Remote {
    /// Queue and send a command (blocking: database). Returns its info.
    pub(crate) fn submit(
        &self,
        device_id: &str,
        op: &str,
        args: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<CommandInfo, Error> {
        if !OPS.contains(&op) {
            return Err(Refusal::BadRequest(format!("op {op:?}: expected one of {}", OPS.join(", "))).into());
        }
        let args = args_to_cbor(args)?;
        let mut cid = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut cid);
        self.send(device_id, op, &args, &cid)?;
        self.info(device_id, &cid)?.ok_or_else(|| Error::Cloud("command vanished".into()))
    }

    /// Queue the command `cid` (a new `cseq`), build it and publish it.
    pub(crate) fn send(&self, device_id: &str, op: &str, args: &Value, cid: &[u8; 16]) -> Result<u64, Error> {
        let mut args_cbor = Vec::new();
        ciborium::ser::into_writer(args, &mut args_cbor).map_err(|e| Error::Cloud(e.to_string()))?;
        self.kak_of(device_id)?; // refused before a cseq is used
        // A poisoned lock guards no data: still usable.
        let _in_order = self.send_order.lock().unwrap_or_else(|p| p.into_inner());
        let cseq = self.registry.with_db(|db| store::insert_command(db, cid, device_id, op, &args_cbor))?;
        self.publish(device_id, cseq, cid, op, args)?;
        tracing::info!(device = device_id, cseq, op, "remote command sent");
        Ok(cseq)
    }

    /// Publish the sent command `cid` again: the same `cseq` (so the device
    /// runs it at most once: a copy it already ran is answered from its
    /// stored reply) with a fresh `exp`. For a rotation step not answered in
    /// time (docs/remote.md "Rotation").
    pub(crate) fn republish(&self, device_id: &str, cid: &[u8]) -> Result<(), Error> {
        let Some(row) = self.registry.with_db(|db| store::command(db, device_id, cid))? else {
            return Err(Error::Cloud("no such command".into()));
        };
        let args: Value = ciborium::de::from_reader(row.args.as_slice()).map_err(|e| Error::Cloud(e.to_string()))?;
        let cid: [u8; 16] = cid.try_into().map_err(|_| Error::Cloud("cid is not 16 bytes".into()))?;
        self.publish(device_id, row.cseq, &cid, &row.op, &args)?;
        tracing::info!(device = device_id, cseq = row.cseq, op = %row.op, "remote command sent again");
        Ok(())
    }

    fn kak_of(&self, device_id: &str) -> Result<[u8; P256_POINT_LEN], Error> {
        let device = self.registry.get(device_id).ok_or_else(|| Refusal::BadRequest(format!("no device {device_id:?}")))?;
        if device.revoked {
            return Err(Refusal::Revoked.into());
        }
        Ok(self
            .registry
            .kak(device_id)?
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| Refusal::BadRequest(format!("device {device_id:?} has no key-agreement key registered")))?)
    }

    /// Build the command envelope (a fresh `exp`) and publish it; mark it sent.
    fn publish(&self, device_id: &str, cseq: u64, cid: &[u8; 16], op: &str, args: &Value) -> Result<(), Error> {
        let cloud = self
            .cloud
            .as_ref()
            .ok_or_else(|| Refusal::BadRequest("the aggregator has no cloud identity: it cannot sign commands".into()))?;
        let kak = self.kak_of(device_id)?;

        // Past `exp` a device that knows the time refuses the command (rc 12)
        // instead of running it late: the same bound as `timed_out` here.
        let exp = u64::try_from(store::now_ms().saturating_add(self.timeout_ms) / 1000).unwrap_or(0);
        let mut pt = Vec::new();
        let body = Value::Map(vec![
            (Value::Text("cseq".into()), Value::Integer(cseq.into())),
            (Value::Text("cid".into()), Value::Bytes(cid.to_vec())),
            (Value::Text("exp".into()), Value::Integer(exp.into())),
            (Value::Text("op".into()), Value::Text(op.into())),
            (Value::Text("args".into()), args.clone()),
        ]);
        ciborium::ser::into_writer(&body, &mut pt).map_err(|e| Error::Cloud(e.to_string()))?;
        let kak_kid = kid_of(&kak);
        let crypto = SessionCrypto::new(ecdh_ephemeral, hkdf_sha256, aes128gcm_encrypt, |buf: &mut [u8]| {
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, buf);
            Ok::<(), CryptoFailed>(())
        });
        let msg = build_envelope(Direction::Command, device_id, &pt, &kak_kid, &kak, &cloud.kid, crypto, |tbs| cloud.sign(tbs))
            .map_err(|e| Error::Cloud(format!("building the command: {e}")))?;
        let _ = self.out.send(Out::Publish { topic: envelope_topic(&self.prefix, device_id, Direction::Command), body: msg });
        self.registry.with_db(|db| store::command_sent(db, cid))?;
        Ok(())
    }

    /// A command's info (blocking).
    pub(crate) fn info(&self, device_id: &str, cid: &[u8]) -> Result<Option<CommandInfo>, Error> {
        let Some(row) = self.registry.with_db(|db| store::command(db, device_id, cid))? else { return Ok(None) };
        let timed_out = row.state == "sent" && row.sent_at.is_some_and(|t| store::now_ms() - t > self.timeout_ms);
        let result = match &row.result {
            Some(b) => Some(to_json(&ciborium::de::from_reader::<Value, _>(b.as_slice()).map_err(|e| Error::Cloud(e.to_string()))?)),
            None => None,
        };
        Ok(Some(CommandInfo {
            cid: hex::encode(&row.cid),
            cseq: row.cseq,
            op: row.op,
            state: if timed_out { "timed_out".into() } else { row.state },
            rc: row.rc,
            result,
            created_at: row.created_at,
            sent_at: row.sent_at,
            answered_at: row.answered_at,
        }))
    }

    /// One `{prefix}/{id}/reply` body (blocking): a reply to a command, or
    /// the device announcing its key-agreement key. Refusals are logged:
    /// nothing is answered to a reply.
    pub(crate) fn reply(&self, device_id: &str, payload: &[u8]) {
        let taken = match tfmprov_cose::parse_kak_announcement(device_id, payload) {
            Ok(a) => self.take_announcement(device_id, &a),
            Err(_) => self.take_reply(device_id, payload),
        };
        if let Err(why) = taken {
            tracing::warn!(device = device_id, "reply refused: {why}");
        }
    }

    /// A signed announcement of the device's KAK: signed by its registered
    /// key (or the previous one in a rotation's grace period), newer than the
    /// last one stored.
    fn take_announcement(&self, device_id: &str, a: &tfmprov_cose::KakAnnouncement) -> Result<(), String> {
        let device = self.registry.get(device_id).ok_or("unknown device")?;
        if device.revoked {
            return Err("revoked device".into());
        }
        let point = *device.point_for(&a.signer_kid).ok_or("announcement signed by a key that is not registered")?;
        let key = ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point);
        a.verify(|tbs, sig| key.verify(tbs, sig)).map_err(|e| e.to_string())?;
        if p256::PublicKey::from_sec1_bytes(&a.kak).is_err() {
            return Err("announced key is not on P-256".into());
        }
        let stored = self
            .registry
            .with_db(|db| store::set_announced_kak(db, device_id, &a.kak, a.seq))
            .map_err(|e| e.to_string())?;
        if stored {
            tracing::info!(device = device_id, seq = a.seq, "key-agreement key announced");
        }
        Ok(())
    }

    fn take_reply(&self, device_id: &str, payload: &[u8]) -> Result<(), String> {
        let cloud = self.cloud.as_ref().ok_or("no cloud identity")?;
        let device = self.registry.get(device_id).ok_or("unknown device")?;
        let env = parse_envelope(Direction::Reply, device_id, payload).map_err(|e| e.to_string())?;
        if env.recipient_kid != cloud.kid {
            return Err("not encrypted to our cloud key".into());
        }
        let pt = env
            .open(|eph| cloud.ecdh(eph), hkdf_sha256, aes128gcm_decrypt)
            .map_err(|e: tfmprov_cose::Error<CryptoFailed>| e.to_string())?;
        let v: Value = ciborium::de::from_reader(pt.as_slice()).map_err(|e| e.to_string())?;
        let m = v.as_map().ok_or("reply is not a map")?;
        let rc = get(m, "rc").and_then(|x| x.as_integer()).and_then(|i| i64::try_from(i).ok()).ok_or("no rc")?;
        let (Some(cid), Some(cseq)) = (
            get(m, "cid").and_then(Value::as_bytes),
            get(m, "cseq").and_then(|x| x.as_integer()).and_then(|i| u64::try_from(i).ok()),
        ) else {
            return Err(format!("the device refused a command it could not read (rc {rc})"));
        };
        let res = get(m, "res");
        // Who signed: the registered key, or the key a `generate` just made
        // (its public key is in the result: proof of possession). Unsigned:
        // only as the answer to a command we sent (the cid is the proof).
        if let Some(kid) = env.signer_kid {
            // The previous key too, in a rotation's grace period: the device
            // signs with it until it switched to the new one.
            let signer: [u8; P256_POINT_LEN] = if let Some(p) = device.point_for(&kid) {
                *p
            } else {
                let p = res
                    .and_then(Value::as_map)
                    .and_then(|r| get(r, "pub"))
                    .and_then(Value::as_bytes)
                    .and_then(|b| <[u8; P256_POINT_LEN]>::try_from(b.as_slice()).ok())
                    .ok_or("signed by a key that is neither registered nor new")?;
                if kid_of(&p) != kid {
                    return Err("signer kid does not match the new key".into());
                }
                p
            };
            let key = ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, signer);
            env.verify(|tbs, sig| key.verify(tbs, sig)).map_err(|e| e.to_string())?;
        }
        // An expired copy of a rotation step: not its answer (the step is
        // published again under the same cseq; the device runs it once).
        const RC_EXPIRED: i64 = 12;
        if rc == RC_EXPIRED && self.registry.with_db(|db| store::is_rotation_command(db, cid)).map_err(|e| e.to_string())? {
            tracing::info!(device = device_id, cseq, "an expired copy of a rotation step was refused by the device");
            return Ok(());
        }
        let mut result = Vec::new();
        if let Some(r) = res {
            ciborium::ser::into_writer(r, &mut result).map_err(|e| e.to_string())?;
        }
        let recorded = self
            .registry
            .with_db(|db| store::command_answered(db, device_id, cid, cseq, rc, res.map(|_| result.as_slice())))
            .map_err(|e| e.to_string())?;
        if !recorded {
            return Err("no such command waiting for an answer".into());
        }
        tracing::info!(device = device_id, cseq, rc, "remote command answered");
        Ok(())
    }
}
