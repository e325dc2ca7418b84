//! `prov/{id}/session`: Sign1 by the registered device key over a
//! COSE_Encrypt that carries a fresh session key to our cloud key.
//!
//! 1. [`prepare`] (MQTT task, cheap): device known and not revoked, size,
//!    profile (`parse_session`), Sign1 kid = the registered kid
//!    (KidMismatch), cloud kid = ours (UnknownSession: we hold no such key,
//!    also when the aggregator has no cloud identity), session id above the
//!    device's newest accepted one (StaleSession pre-check: a replayed old
//!    session message costs no ECDSA/ECDH). The session becomes *pending*
//!    (see [`crate::sessions`]).
//! 2. [`open`] (worker): ES256 with *ring* over the outer Sign1
//!    (BadSignature), then ECDH with the cloud private key (p256), HKDF-SHA256
//!    and AES-128-GCM via `SessionMessage::decrypt` (DecryptionFailed), then
//!    the key is wrapped with the storage key (AES-256-GCM, random nonce).
//! 3. [`apply`] (writer, in the batch transaction): revocation and kid again,
//!    session id > the device's newest accepted one (StaleSession: also a
//!    replayed older session message and a duplicate), insert into
//!    `sessions` on the condition that no equal or newer id is stored (the
//!    authority when instances share the database; refused: StaleSession),
//!    key into the in-memory cache.
//!
//! Reported `kid`: the Sign1 kid for KidMismatch / BadSignature / Revoked,
//! the cloud kid named by the message for UnknownSession, the session id
//! (4 bytes) for StaleSession / DecryptionFailed. Never a `seq` (a session
//! message has none).

use std::sync::Arc;

use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use tfmprov_cose::{parse_session, Error as CoseError, Kid, RejectCode, SessionMessage, P256_POINT_LEN};
use zeroize::Zeroizing;

use super::{KeyId, Rejection, Shared, Ticket, Undo};
use crate::cloud::{aes128gcm_decrypt, hkdf_sha256, CryptoFailed};
use crate::registry::DeviceEntry;
use crate::sessions::{PendingGuard, SessionKey};

/// A parsed session message waiting for verification and decryption.
pub(crate) struct Job {
    pub ticket: Ticket,
    pub device_id: String,
    pub device: Arc<DeviceEntry>,
    pub msg: SessionMessage,
    pub received_at: i64,
    pub pending: PendingGuard,
}

/// A verified, decrypted session waiting to be stored.
pub(crate) struct Verified {
    pub ticket: Ticket,
    pub device_id: String,
    pub device_kid: Kid,
    pub session_id: u32,
    pub key: SessionKey,
    pub nonce: [u8; 12],
    pub wrapped: Vec<u8>,
    pub received_at: i64,
    /// Keeps the session pending until the writer is done with it.
    pub _pending: PendingGuard,
}

/// Step 1: everything but the crypto.
pub(crate) fn prepare(
    shared: &Shared,
    ticket: Ticket,
    device_id: &str,
    msg: &[u8],
    received_at: i64,
) -> Result<Job, Rejection> {
    let device = shared.admit(device_id, msg.len())?;
    let msg = parse_session(msg).map_err(|e| Rejection::new(e.reject_code()))?;
    let with = |code, kid| Rejection { code, kid: Some(kid), seq: None };
    if device.point_for(&msg.device_kid).is_none() {
        return Err(with(RejectCode::KidMismatch, KeyId::Key(msg.device_kid)));
    }
    if shared.sessions.cloud_kid() != Some(msg.cloud_kid) {
        return Err(with(RejectCode::UnknownSession, KeyId::Key(msg.cloud_kid)));
    }
    if shared.sessions.last(device_id).is_some_and(|last| msg.session_id <= last) {
        return Err(with(RejectCode::StaleSession, KeyId::Session(msg.session_id)));
    }
    let pending = shared.sessions.begin_pending(device_id, msg.session_id);
    Ok(Job { ticket, device_id: device_id.to_owned(), device, msg, received_at, pending })
}

/// Step 2: signature, key agreement, decryption, wrapping.
pub(crate) fn open(job: Job, shared: &Shared) -> Result<Verified, (Ticket, String, Rejection)> {
    let Job { ticket, device_id, device, msg, received_at, pending } = job;
    let sid = msg.session_id;
    let fail = |device_id: String, code, kid| Err((ticket, device_id, Rejection { code, kid: Some(kid), seq: None }));

    // prepare() found the kid; a key retired since then fails as a bad signature.
    let point = device.point_for(&msg.device_kid).copied().unwrap_or([0; P256_POINT_LEN]);
    let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point);
    let verified: Result<(), CoseError<ring::error::Unspecified>> = msg.verify(|tbs, sig| key.verify(tbs, sig));
    if let Err(e) = verified {
        return fail(device_id, e.reject_code(), KeyId::Key(msg.device_kid));
    }

    let Some(cloud) = shared.sessions.cloud() else {
        return fail(device_id, RejectCode::UnknownSession, KeyId::Key(msg.cloud_kid));
    };
    let decrypted: Result<[u8; 16], CoseError<CryptoFailed>> =
        msg.decrypt(|p| cloud.ecdh(p), hkdf_sha256, aes128gcm_decrypt);
    let session_key: SessionKey = match decrypted {
        Ok(k) => Arc::new(Zeroizing::new(k)),
        Err(e) => return fail(device_id, e.reject_code(), KeyId::Session(sid)),
    };
    let Ok((nonce, wrapped)) = shared.sessions.storage().wrap(&device_id, sid, &session_key) else {
        tracing::error!(device = %device_id, session_id = sid, "wrapping a session key failed");
        return fail(device_id, RejectCode::DecryptionFailed, KeyId::Session(sid));
    };
    shared.sessions.set_pending_key(&device_id, sid, session_key.clone());
    Ok(Verified {
        ticket,
        device_id,
        device_kid: msg.device_kid,
        session_id: sid,
        key: session_key,
        nonce,
        wrapped,
        received_at,
        _pending: pending,
    })
}

/// Step 3 (writer, inside the transaction): `Ok(())` = stored.
pub(crate) fn apply(
    shared: &Shared,
    tx: &tfmprov_db::Db,
    v: &Verified,
    undo: &mut Undo,
) -> Result<Result<(), Rejection>, tfmprov_db::DbError> {
    let with = |code, kid| Ok(Err(Rejection { code, kid: Some(kid), seq: None }));
    match shared.registry.get(&v.device_id) {
        Some(d) if d.revoked => return with(RejectCode::Revoked, KeyId::Key(v.device_kid)),
        Some(d) if d.point_for(&v.device_kid).is_none() => return with(RejectCode::KidMismatch, KeyId::Key(v.device_kid)),
        None => return with(RejectCode::UnknownDevice, KeyId::Key(v.device_kid)),
        Some(_) => {}
    }
    if shared.sessions.last(&v.device_id).is_some_and(|last| v.session_id <= last) {
        return with(RejectCode::StaleSession, KeyId::Session(v.session_id));
    }
    if !crate::store::insert_session(tx, &v.device_id, v.session_id, &v.nonce, &v.wrapped, v.received_at)? {
        return with(RejectCode::StaleSession, KeyId::Session(v.session_id));
    }
    shared.sessions.accept(&v.device_id, v.session_id, v.key.clone());
    undo.sessions.push((v.device_id.clone(), v.session_id));
    tracing::debug!(device = %v.device_id, session_id = v.session_id, "session accepted");
    Ok(Ok(()))
}
