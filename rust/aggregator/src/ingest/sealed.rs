//! `prov/{id}/sealed`: COSE_Encrypt0 under a session key of the device.
//!
//! 1. [`prepare`] (MQTT task, cheap): device known and not revoked, size,
//!    profile (`parse_sealed`), session (device, session id) accepted or
//!    pending or stored (by another instance too), else: a session id above
//!    the device's newest one (in a share group: any; a session message may
//!    be on its way, or stored by another instance) is held for `early_sealed_wait`
//!    ([`Shared::park`]), any other is UnknownSession; replay pre-check in
//!    the window of (device, session id).
//! 2. [`open`] (worker): the session key (cache, pending session message, or
//!    the `sessions` table unwrapped with the storage key; none:
//!    UnknownSession), AES-128-GCM open (DecryptionFailed).
//! 3. [`check`] (writer, in the batch transaction): revocation, session
//!    accepted (authoritative), window and horizon (Replay / SeqTooOld),
//!    then the batch's insert into `messages` with kid = the 4-byte session
//!    id (already stored: Replay; the insert is the authority).
//!
//! Reported `kid`: the 4-byte session id; `seq`: the message's.

use tfmprov_cose::{parse_sealed, Error as CoseError, RejectCode, SealedMessage};

use super::{KeyId, Rejection, Shared, Ticket, WindowUndo};
use crate::store::NewMessage;
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
        // Alone, a session below the device's newest can no longer come;
        // in a group, another instance may be storing it right now.
        let may_come = shared.sessions.cloud_kid().is_some()
            && (shared.multi_instance || shared.sessions.last(device_id).is_none_or(|last| msg.session_id > last));
        if may_come && shared.park(device_id, msg.session_id, msg.seq, raw, received_at) {
            return Ok(None);
        }
        return Err(with(RejectCode::UnknownSession));
    }
    shared.replay_precheck(device_id, &key, msg.seq).map_err(with)?;
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

/// Step 3 (writer, inside the batch): revocation, session accepted
/// (authoritative, earlier in the same batch included), window and horizon.
/// `Ok` is the row to insert (see `data::check`).
pub(crate) fn check<'a>(shared: &Shared, v: &'a Verified, undo: &mut WindowUndo) -> Result<NewMessage<'a>, Rejection> {
    let key = KeyId::Session(v.session_id);
    let with = |code| Rejection { code, kid: Some(key), seq: Some(v.seq) };
    match shared.registry.get(&v.device_id) {
        Some(d) if d.revoked => return Err(with(RejectCode::Revoked)),
        None => return Err(with(RejectCode::UnknownDevice)),
        Some(_) => {}
    }
    if !shared.sessions.is_known(&v.device_id, v.session_id) {
        return Err(with(RejectCode::UnknownSession));
    }
    shared.replay_accept(&v.device_id, &key, v.seq, undo).map_err(with)?;
    Ok(NewMessage { device_id: &v.device_id, kid: key, seq: v.seq, received_at: v.received_at, payload: &v.plaintext })
}
