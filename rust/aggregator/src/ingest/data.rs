//! `prov/{id}/data`: COSE_Sign1, ES256 by the registered device key.
//!
//! Three steps, each in its own place of the pipeline:
//! 1. [`prepare`] (MQTT task, cheap): device known and not revoked, size,
//!    COSE profile (`tfmprov_cose::parse_data`), kid = the registered kid,
//!    replay pre-check (as RFC 4303 3.4.3 does before the ICV check, so
//!    replayed traffic costs no signature verification).
//! 2. [`verify`] (worker pool): ES256 with *ring* over the ToBeSigned bytes.
//! 3. [`check`] (writer thread, inside the batch transaction): revocation
//!    re-check, window and horizon again + window update; then the batch's
//!    insert, the authority on replays (`UNIQUE (device_id, kid, seq)`).

use std::sync::Arc;

use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use tfmprov_cose::{parse_data, Error as CoseError, Kid, RejectCode, SignedData, P256_POINT_LEN};

use super::{KeyId, Rejection, Shared, Ticket};
use crate::store::NewMessage;
use crate::registry::DeviceEntry;

/// A parsed message waiting for signature verification.
pub(crate) struct Job {
    pub ticket: Ticket,
    pub device_id: String,
    pub device: Arc<DeviceEntry>,
    pub signed: SignedData,
    pub received_at: i64,
}

/// A verified message waiting to be stored.
pub(crate) struct Verified {
    pub ticket: Ticket,
    pub device_id: String,
    pub kid: Kid,
    pub seq: u64,
    pub received_at: i64,
    pub payload: Vec<u8>,
}

/// Step 1: everything but the signature.
pub(crate) fn prepare(
    shared: &Shared,
    ticket: Ticket,
    device_id: &str,
    msg: &[u8],
    received_at: i64,
) -> Result<Job, Rejection> {
    let device = shared.admit(device_id, msg.len())?;
    let signed = parse_data(msg).map_err(|e| Rejection::new(e.reject_code()))?;
    let (kid, seq) = (signed.kid, signed.seq);
    let with = |code| Rejection { code, kid: Some(KeyId::Key(kid)), seq: Some(seq) };
    if device.point_for(&kid).is_none() {
        return Err(with(RejectCode::KidMismatch));
    }
    shared.replay_precheck(device_id, &KeyId::Key(kid), seq).map_err(with)?;
    Ok(Job { ticket, device_id: device_id.to_owned(), device, signed, received_at })
}

/// Step 2: the ES256 signature with the registered public point.
pub(crate) fn verify(job: Job) -> Result<Verified, (Ticket, String, Rejection)> {
    // prepare() found the kid; a key retired since then fails as a bad signature.
    let point = job.device.point_for(&job.signed.kid).copied().unwrap_or([0; P256_POINT_LEN]);
    let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point);
    let res: Result<(), CoseError<ring::error::Unspecified>> =
        job.signed.verify(|tbs, sig| key.verify(tbs, sig));
    let SignedData { kid, seq, payload, .. } = job.signed;
    match res {
        Ok(()) => Ok(Verified {
            ticket: job.ticket,
            device_id: job.device_id,
            kid,
            seq,
            received_at: job.received_at,
            payload,
        }),
        Err(e) => Err((
            job.ticket,
            job.device_id,
            Rejection { code: e.reject_code(), kid: Some(KeyId::Key(kid)), seq: Some(seq) },
        )),
    }
}

/// Step 3 (writer, inside the batch): everything in memory (revocation, kid,
/// window and horizon). `Ok` is the row to insert; the batch inserts its rows
/// together, and the unique key then decides (see `super::try_batch`).
pub(crate) fn check<'a>(
    shared: &Shared,
    v: &'a Verified,
    undo: &mut super::WindowUndo,
) -> Result<NewMessage<'a>, Rejection> {
    let with = |code| Rejection { code, kid: Some(KeyId::Key(v.kid)), seq: Some(v.seq) };
    match shared.registry.get(&v.device_id) {
        Some(d) if d.revoked => return Err(with(RejectCode::Revoked)),
        Some(d) if d.point_for(&v.kid).is_none() => return Err(with(RejectCode::KidMismatch)),
        None => return Err(with(RejectCode::UnknownDevice)),
        Some(_) => {}
    }
    shared.replay_accept(&v.device_id, &KeyId::Key(v.kid), v.seq, undo).map_err(with)?;
    Ok(NewMessage {
        device_id: &v.device_id,
        kid: KeyId::Key(v.kid),
        seq: v.seq,
        received_at: v.received_at,
        payload: &v.payload,
    })
}
