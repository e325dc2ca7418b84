//! The device's MQTT messages (DESIGN.md "COSE profiles"), built with
//! tfmprov-cose and every crypto step through PSA:
//! - `data`: Sign1 by the telemetry key, with a `seq` that increases across
//!   reboots;
//! - `session`: Sign1(COSE_Encrypt(fresh session key)) to the cloud key
//!   stored at peer ID 0x3F000001, with a session id that never decreases;
//! - `sealed`: Encrypt0 under the session key, with `seq`.
//!
//! Counters are persisted in reserved blocks (one flash write per
//! [`SEQ_BLOCK`] messages): after a reset the device skips the rest of the
//! block, so a sequence number is never used twice.

use crate::text::Text;
use crate::{certs, Device, Error};
use alloc::string::String;
use alloc::vec::Vec;
use tfmprov_cose::{ErrorReport, Kid};
use tfmprov_psa::ids::DeviceKeyId;
use tfmprov_psa::{Psa, PublicKey, StateId};

/// Sequence numbers reserved per persistent write.
pub const SEQ_BLOCK: u64 = 32;
/// Default telemetry signing key: the sample key enrolled into the chain.
pub const DEFAULT_TELEMETRY_KEY: u32 = crate::factory::SAMPLE_KEY_ID_3;

/// When to start a new session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionPolicy {
    /// After this many sealed messages.
    pub max_messages: u32,
    /// After this long (milliseconds of the caller's monotonic clock).
    pub max_age_ms: u64,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy { max_messages: 100, max_age_ms: 3_600_000 }
    }
}

struct ActiveSession {
    id: u32,
    /// The session key as a volatile PSA key: after the session message is
    /// built, its value exists only inside PSA.
    key: tfmprov_psa::SessionKey,
    sent: u32,
    started_ms: u64,
}

/// Counters kept across reboots plus the current session (RAM only: a
/// reboot starts a new session).
pub struct State {
    next_seq: u64,
    reserved_until: u64,
    last_session_id: u32,
    session: Option<ActiveSession>,
    /// The telemetry key configured by the caller (the factory default).
    key: u32,
    /// The key a remote rotation chose (`use-key`, persisted at
    /// 0x3E000007): it wins over the configured one, so that a reboot after
    /// a rotation keeps signing with the new key whatever the firmware's
    /// configuration says.
    rotated: Option<u32>,
    /// kid of the telemetry key, computed once per key (an export and a
    /// SHA-256 through TF-M that would otherwise be half of every data
    /// message's cost); used only while its key ID is the telemetry key's,
    /// and cleared whenever a key may have changed ([`Device::forget_kid`]).
    pub(crate) kid: Option<(u32, Kid)>,
    policy: SessionPolicy,
}

pub(crate) fn be_u64(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.try_into().ok()?))
}

pub(crate) fn be_u32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.try_into().ok()?))
}

impl State {
    /// Loads the counters (from `vault`): the next seq is the end of the
    /// last reserved block.
    pub fn load(psa: &mut Psa, vault: &mut crate::vault::Vault) -> Result<State, Error> {
        let (next_seq, last_session_id) = vault.load_counters(psa)?;
        let rotated = match psa.load_state(StateId::TelemetryKey)? {
            Some(v) => Some(be_u32(&v).ok_or(Error::InvalidArgument("corrupt telemetry key record"))?),
            None => None,
        };
        Ok(State {
            next_seq,
            reserved_until: next_seq,
            last_session_id,
            session: None,
            key: DEFAULT_TELEMETRY_KEY,
            rotated,
            kid: None,
            policy: SessionPolicy::default(),
        })
    }

    fn next_seq(&mut self, psa: &mut Psa, vault: &mut crate::vault::Vault) -> Result<u64, Error> {
        while self.next_seq >= self.reserved_until {
            let until = self.next_seq.checked_add(SEQ_BLOCK).ok_or(Error::InvalidArgument("seq exhausted"))?;
            let stored = vault.reserve_seq(psa, until)?;
            if stored == until {
                self.reserved_until = until;
            } else {
                // The stored end was already further (numbers up to it may
                // have been used): continue from there.
                self.next_seq = stored;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        Ok(seq)
    }
}

pub(crate) fn cose_err<E>(e: tfmprov_cose::Error<E>) -> Error
where
    E: Into<Error>,
{
    match e {
        tfmprov_cose::Error::Crypto(inner) | tfmprov_cose::Error::Signature(inner) | tfmprov_cose::Error::Decrypt(inner) => {
            inner.into()
        }
        _ => Error::Cose("message could not be built"),
    }
}

/// kid of a P-256 public key: first 8 bytes of SHA-256(SPKI DER).
pub fn kid_of(psa: &Psa, public: &PublicKey) -> Result<Kid, Error> {
    let spki = tfmprov_cose::p256_spki_der(public);
    Ok(tfmprov_cose::kid_from_spki_digest(&psa.sha256(&spki)?))
}

/// The payload the sample publishes: a small CBOR map
/// `{"n": counter, "t": uptime_ms}`.
pub fn sample_payload(counter: u64, uptime_ms: u64) -> Vec<u8> {
    let mut e = tfmprov_cbor::Enc::with_capacity(24);
    e.map(2).text("n").uint(counter).text("t").uint(uptime_ms);
    e.finish()
}

/// A one-line description of a report received on the errors topic.
pub fn describe_error_report(bytes: &[u8]) -> String {
    let mut t = Text::new();
    match ErrorReport::from_cbor(bytes) {
        Ok(r) => {
            t.str("rejected: code ").dec(u64::from(r.code)).str(" (").str(&r.reason).str(")");
            if let Some(seq) = r.seq {
                t.str(" seq ").dec(seq);
            }
            if let Some(kid) = &r.kid {
                t.str(" kid ").hex(kid);
            }
        }
        Err(_) => {
            t.str("undecodable error report (").dec(bytes.len() as u64).str(" bytes)");
        }
    }
    t.into_string()
}

impl Device {
    /// Chooses the key that signs telemetry and session messages (default
    /// [`DEFAULT_TELEMETRY_KEY`]). It need not exist yet: messages fail with
    /// not-found until it does. A key chosen by a remote rotation
    /// ([`Device::use_telemetry_key`]) takes precedence over this one.
    pub fn set_telemetry_key(&mut self, id: DeviceKeyId) {
        self.telemetry.key = id.get();
    }

    /// Switches telemetry to `id` for good (a key rotation's last step
    /// before the old key is retired): the key must exist and carry its
    /// certificate, so that the server can have registered it. The choice
    /// is persisted (0x3E000007) and the current session ends, since the
    /// next session message must be signed by the new key. Returns the key
    /// it replaces.
    pub fn use_telemetry_key(&mut self, id: DeviceKeyId) -> Result<u32, Error> {
        let public = self.psa.public_key(id)?;
        let cert = certs::get(&self.psa, tfmprov_psa::ids::CertTarget::DeviceKey(id))?;
        if certs::certificate_public_key(&cert)? != public.as_slice() {
            return Err(Error::Mismatch);
        }
        let previous = self.telemetry_key_id();
        self.psa.store_state(StateId::TelemetryKey, &id.get().to_be_bytes())?;
        self.telemetry.rotated = Some(id.get());
        self.telemetry.session = None;
        self.forget_kid();
        Ok(previous)
    }

    /// Drops the cached kid: called by every path that may replace or
    /// destroy a key.
    pub(crate) fn forget_kid(&mut self) {
        self.telemetry.kid = None;
    }

    /// Sets when sessions rotate.
    pub fn set_session_policy(&mut self, policy: SessionPolicy) {
        self.telemetry.policy = policy;
    }

    /// The telemetry key's ID (it may not exist).
    pub(crate) fn telemetry_key_id(&self) -> u32 {
        self.telemetry.rotated.unwrap_or(self.telemetry.key)
    }

    fn telemetry_key(&mut self) -> Result<(DeviceKeyId, Kid), Error> {
        let id = self.active_telemetry_key()?;
        if let Some((cached_id, kid)) = self.telemetry.kid {
            if cached_id == id.get() {
                return Ok((id, kid));
            }
        }
        let public = self.psa.public_key(id)?;
        let kid = kid_of(&self.psa, &public)?;
        self.telemetry.kid = Some((id.get(), kid));
        Ok((id, kid))
    }

    /// The device's identity for mutual TLS with the broker: the telemetry
    /// key (the one its messages are signed with) and its certificate, the
    /// root, the broker's pin ([`crate::certs::tls_identity`]).
    pub fn tls_identity(&self) -> Result<crate::certs::TlsIdentity, Error> {
        crate::certs::tls_identity(&self.psa, self.active_telemetry_key()?)
    }

    /// The key that signs telemetry and the TLS handshake now: the one
    /// [`Device::set_telemetry_key`] chose, or the one a remote `use-key`
    /// switched to since.
    pub fn active_telemetry_key(&self) -> Result<DeviceKeyId, Error> {
        Ok(DeviceKeyId::new(self.telemetry_key_id().into())?)
    }

    /// Certificate `which` of the device's TLS identity, for the
    /// [`Device::active_telemetry_key`] ([`crate::certs::tls_certificate`]).
    pub fn tls_certificate(&self, which: crate::certs::TlsCert) -> Result<Vec<u8>, Error> {
        crate::certs::tls_certificate(&self.psa, self.active_telemetry_key()?, which)
    }

    /// The TLS server's leaf certificate (DER) carries the broker key
    /// pinned at enrollment ([`crate::certs::check_broker_key`]):
    /// [`Error::Mismatch`] when it carries another.
    pub fn check_broker_key(&self, presented: &[u8]) -> Result<(), Error> {
        crate::certs::check_broker_key(&self.psa, presented)
    }

    /// SHA-256 then ECDSA with key `key` through PSA: the TLS handshake
    /// signature (the digest comes from rustls or Mbed TLS).
    pub fn sign_digest(&self, key: DeviceKeyId, digest: &[u8; 32]) -> Result<[u8; 64], Error> {
        Ok(self.psa.sign_hash(key, digest)?)
    }

    /// The next `data` message: Sign1 over `payload` with the next seq.
    pub fn data_message(&mut self, payload: &[u8]) -> Result<Vec<u8>, Error> {
        let (key, kid) = self.telemetry_key()?;
        let seq = self.telemetry.next_seq(&mut self.psa, &mut self.vault)?;
        let psa = &self.psa;
        tfmprov_cose::sign_data(&kid, seq, payload, |tbs| psa.sign_message(key, tbs).map_err(Error::from))
            .map_err(cose_err)
    }

    /// The signed announcement of the key-agreement key (docs/remote.md
    /// "Keys", the field path): the KAK's point, signed by the telemetry key
    /// with the next `seq`, for `prov/{id}/reply`. A device enrolled before
    /// remote provisioning existed joins it by publishing this once it is
    /// connected.
    pub fn kak_announcement(&mut self) -> Result<Vec<u8>, Error> {
        let (key, kid) = self.telemetry_key()?;
        let kak = self.psa.kak_public()?;
        let seq = self.telemetry.next_seq(&mut self.psa, &mut self.vault)?;
        let psa = &self.psa;
        let device_id = String::from(self.device_id());
        tfmprov_cose::sign_kak_announcement(&device_id, &kak, &kid, seq, |tbs| psa.sign_message(key, tbs).map_err(Error::from))
            .map_err(cose_err)
    }

    /// Whether a new session is due (none yet, or the policy says so).
    pub fn session_due(&self, now_ms: u64) -> bool {
        match &self.telemetry.session {
            None => true,
            Some(s) => {
                s.sent >= self.telemetry.policy.max_messages
                    || now_ms.saturating_sub(s.started_ms) >= self.telemetry.policy.max_age_ms
            }
        }
    }

    /// Starts a new session and returns its `session` message. The new
    /// session id is persisted before the message exists, so it never
    /// decreases, even across a reset right after.
    pub fn session_message(&mut self, now_ms: u64) -> Result<Vec<u8>, Error> {
        let (key, device_kid) = self.telemetry_key()?;
        let cloud = self.cloud_public()?;
        let cloud_kid = kid_of(&self.psa, &cloud)?;
        let mut session_key = [0u8; 16];
        self.psa.random(&mut session_key)?;
        let id = self.vault.next_session_id(&mut self.psa, self.telemetry.last_session_id)?;
        self.telemetry.last_session_id = id;
        let psa = &self.psa;
        let crypto = tfmprov_cose::SessionCrypto::new(
            |peer: &[u8; 65]| psa.ecdh_ephemeral(peer).map_err(Error::from),
            |ikm: &[u8], info: &[u8], len: usize| psa.hkdf_sha256(ikm, info, len).map_err(Error::from),
            |k: &[u8; 16], iv: &[u8; 12], aad: &[u8], pt: &[u8]| {
                psa.session_key(k).and_then(|sk| sk.encrypt(iv, aad, pt)).map_err(Error::from)
            },
            |buf: &mut [u8]| psa.random(buf).map_err(Error::from),
        );
        let msg = tfmprov_cose::build_session(id, &session_key, &cloud_kid, &cloud, &device_kid, crypto, |tbs| {
            psa.sign_message(key, tbs).map_err(Error::from)
        })
        .map_err(cose_err);
        let key = self.psa.session_key(&session_key);
        session_key.fill(0);
        let msg = msg?;
        self.telemetry.session = Some(ActiveSession { id, key: key?, sent: 0, started_ms: now_ms });
        Ok(msg)
    }

    /// The current session id, if a session is active.
    pub fn session_id(&self) -> Option<u32> {
        self.telemetry.session.as_ref().map(|s| s.id)
    }

    /// The next `sealed` message under the current session key.
    pub fn sealed_message(&mut self, payload: &[u8]) -> Result<Vec<u8>, Error> {
        let seq = {
            if self.telemetry.session.is_none() {
                return Err(Error::NoSession);
            }
            self.telemetry.next_seq(&mut self.psa, &mut self.vault)?
        };
        let session = self.telemetry.session.as_mut().ok_or(Error::NoSession)?;
        let iv = tfmprov_cose::sealed_iv(session.id, seq);
        let key = &session.key;
        let msg = tfmprov_cose::seal(session.id, seq, &iv, payload, |aad, pt| key.encrypt(&iv, aad, pt).map_err(Error::from))
            .map_err(cose_err)?;
        session.sent = session.sent.saturating_add(1);
        Ok(msg)
    }
}
