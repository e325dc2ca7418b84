//! `prov/{id}/sealed`: COSE_Encrypt0 under a session key of the device.
//!
//! 1. [`prepare`] (MQTT task, cheap): device known and not revoked, size,
//!    profile (`parse_sealed`), session (device, session id) accepted or
//!    pending, else: a session id above the device's newest one (a session
//!    message may be on its way) is held for `early_sealed_wait`
//!    ([`Shared::park`]), any other is UnknownSession; replay pre-check in
//!    the window of (device, session id).
//! 2. [`open`] (worker): the session key (cache, pending session message, or
//!    the `sessions` table unwrapped with the storage key; none:
//!    UnknownSession), AES-128-GCM open (DecryptionFailed).
//! 3. [`apply`] (writer, in the batch transaction): revocation, session
//!    accepted (authoritative), window accept (Replay), insert into
//!    `messages` with kid = the 4-byte session id (duplicate: Replay).
//!
//! Reported `kid`: the 4-byte session id; `seq`: the message's.

use tfmprov_cose::{parse_sealed, Error as CoseError, RejectCode, SealedMessage};

use super::{KeyId, Rejection, Shared, Ticket, WindowUndo};
use crate::cloud::{aes128gcm_decrypt, CryptoFailed};

/// A parsed sealed message waiting for decryption.
pub(crate) struct Job {
    pub ticket: Ticket,
    pub device_id: String,
    pub msg: SealedMessage,
    pub received_at: i64,
}

/// A decrypted message waiting to be stored.
pub(crate) struct Verified {
    pub ticket: Ticket,
    pub device_id: String,
    pub session_id: u32,
    pub seq: u64,
    pub received_at: i64,
    pub plaintext: Vec<u8>,
}

/// Step 1: everything but the decryption. `Ok(None)`: held (parked) until
/// its session message comes.
pub(crate) fn prepare(
    shared: &Shared,
    ticket: Ticket,
    device_id: &str,
    raw: &[u8],
    received_at: i64,
) -> Result<Option<Job>, Rejection> {
    shared.admit(device_id, raw.len())?;
    let msg = parse_sealed(raw).map_err(|e| Rejection::new(e.reject_code()))?;
    let key = KeyId::Session(msg.session_id);
    let with = |code| Rejection { code, kid: Some(key), seq: Some(msg.seq) };
    if !shared.sessions.known_or_pending(device_id, msg.session_id) {
        let may_come = shared.sessions.cloud_kid().is_some()
            && shared.sessions.last(device_id).is_none_or(|last| msg.session_id > last);
        if may_come && shared.park(device_id, msg.session_id, msg.seq, raw, received_at) {
            return Ok(None);
        }
        return Err(with(RejectCode::UnknownSession));
    }
    if shared.replay_precheck(device_id, &key, msg.seq).is_err() {
        return Err(with(RejectCode::Replay));
    }
    Ok(Some(Job { ticket, device_id: device_id.to_owned(), msg, received_at }))
}

/// Step 2: AES-128-GCM with the session key.
pub(crate) fn open(job: Job, shared: &Shared) -> Result<Verified, (Ticket, String, Rejection)> {
    let Job { ticket, device_id, msg, received_at } = job;
    let (sid, seq) = (msg.session_id, msg.seq);
    let with = |code| Rejection { code, kid: Some(KeyId::Session(sid)), seq: Some(seq) };
    let Some(key) = shared.sessions.key(&device_id, sid) else {
        return Err((ticket, device_id, with(RejectCode::UnknownSession)));
    };
    let opened: Result<Vec<u8>, CoseError<CryptoFailed>> =
        msg.open(|aad, ct| aes128gcm_decrypt(&key, &msg.iv, aad, ct));
    match opened {
        Ok(plaintext) => Ok(Verified { ticket, device_id, session_id: sid, seq, received_at, plaintext }),
        Err(e) => Err((ticket, device_id, with(e.reject_code()))),
    }
}

/// Step 3 (writer, inside the transaction): `Ok(())` = stored.
pub(crate) fn apply(
    shared: &Shared,
    tx: &rusqlite::Transaction<'_>,
    v: &Verified,
    undo: &mut WindowUndo,
) -> Result<Result<(), Rejection>, rusqlite::Error> {
    let key = KeyId::Session(v.session_id);
    let with = |code| Rejection { code, kid: Some(key), seq: Some(v.seq) };
    match shared.registry.get(&v.device_id) {
        Some(d) if d.revoked => return Ok(Err(with(RejectCode::Revoked))),
        None => return Ok(Err(with(RejectCode::UnknownDevice))),
        Some(_) => {}
    }
    if !shared.sessions.is_known(&v.device_id, v.session_id) {
        return Ok(Err(with(RejectCode::UnknownSession)));
    }
    if shared.replay_accept(&v.device_id, &key, v.seq, undo).is_err() {
        return Ok(Err(with(RejectCode::Replay)));
    }
    if !crate::store::insert_message(tx, &v.device_id, &key.to_vec(), v.seq, v.received_at, &v.plaintext)? {
        return Ok(Err(with(RejectCode::Replay)));
    }
    Ok(Ok(()))
}
