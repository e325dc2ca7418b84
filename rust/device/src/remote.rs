//! Remote provisioning commands on the device (docs/remote.md): one
//! `prov/{id}/cmd` body in, one `prov/{id}/reply` body out. The same code
//! runs in the simulator and (through the C ABI, later) in the firmware.
//!
//! 1. The envelope must be bound to this device and the command direction,
//!    signed by the cloud key (the certificate at 0x3F000001) and encrypted
//!    to this device's key-agreement key (KAK). Anything else is answered
//!    with an *unsigned* [`RC_BAD_COMMAND`] reply and changes nothing.
//! 2. `cseq` against the last executed command (state record 0x3E000006):
//!    lower → [`RC_STALE`], nothing done; equal → the stored reply again
//!    (a QoS 1 redelivery is never executed twice; a read keeps no reply and
//!    is read again); higher → executed.
//! 3. `op` + `args` run through the SMP dispatcher of groups 64/65/66, so a
//!    remote command does exactly what the same SMP request does, with the
//!    same return codes. One operation is remote only: `use-key` (`{"id"}`),
//!    a rotation's switch of the telemetry key
//!    ([`Device::use_telemetry_key`]), answered `{"id", "prev"}`.
//! 4. The reply `{cseq, cid, rc, res?}` is encrypted to the cloud key and
//!    signed by the telemetry key, or by the new key after a `generate`
//!    (proof of possession); with no key at all it goes unsigned. It is
//!    stored with its `cseq` before it is returned.
//!
//! The cloud certificate's chain to the CA root is checked at each command
//! ([`crate::certs::check_peer_chain`]). A command whose `exp` (Unix
//! seconds) has passed is answered [`RC_EXPIRED`] and not run, when the
//! caller knows the time (a device without a clock passes `None`: the
//! strictly increasing `cseq` still bounds a replay).

use alloc::string::String;
use alloc::vec::Vec;

use tfmprov_cbor::{Enc, MapReader};
use tfmprov_cose::{build_envelope, parse_envelope, seal_envelope, Direction, Kid, SessionCrypto};
use tfmprov_psa::ids::{CertTarget, DeviceKeyId, PeerId, PEER_CLOUD};
use tfmprov_psa::{PublicKey, StateId};
use tfmprov_smp::{group, HandlerError, Op};

use crate::dispatch::Response;
use crate::telemetry::kid_of;
use crate::{certs, Device, Error};

/// Reply code: the command's `cseq` is below the last executed one.
/// Continues the group return codes (0..=9); only remote replies use it.
pub const RC_STALE: u16 = 10;
/// Reply code: the command failed verification (binding, signature,
/// recipient, decryption or its map); nothing was done.
pub const RC_BAD_COMMAND: u16 = 11;
/// Reply code: the command's `exp` has passed by the device's clock; nothing
/// was done and its `cseq` is not used up (the server may send it again
/// under a new one).
pub const RC_EXPIRED: u16 = 12;
/// The largest command or reply body a device has to take or send: a
/// `store-cert` / `get-cert` of the largest certificate TF-M stores
/// ([`tfmprov_psa::MAX_BLOB_LEN`], 4,060 B) plus the envelope, with room to
/// spare (a test measures both). The firmware's MQTT buffers for `cmd` and
/// `reply` (`CONFIG_TFMPROV_MQTT_CMD_BUF_SIZE`) default to it.
pub const MAX_ENVELOPE_LEN: usize = 4608;
/// Reply code of an `op` no group implements (the SMP group code "unknown").
const RC_UNKNOWN: u16 = 1;
/// Nesting allowed in a command map (the args map inside it).
const MAX_DEPTH: usize = 4;

/// A decrypted, decoded command.
struct Command {
    cseq: u64,
    cid: [u8; 16],
    exp: Option<u64>,
    op: String,
    args: Vec<u8>,
}

/// `{"cseq": uint, "cid": bstr .size 16, "exp"?: uint, "op": tstr, "args":
/// map, ...}`; other keys are skipped.
fn decode_command(pt: &[u8]) -> Result<Command, tfmprov_cbor::Error> {
    let mut r = MapReader::new(pt, MAX_DEPTH)?;
    let (mut cseq, mut cid, mut exp, mut op, mut args) = (None, None, None, None, None);
    while let Some(key) = r.next_key()? {
        match &*key {
            "cseq" => MapReader::set(&mut cseq, r.uint("cseq")?, "cseq")?,
            "cid" => MapReader::set(&mut cid, r.bytes("cid")?, "cid")?,
            "exp" => MapReader::set(&mut exp, r.uint("exp")?, "exp")?,
            "op" => MapReader::set(&mut op, r.text("op")?, "op")?,
            "args" => MapReader::set(&mut args, r.map_bytes("args")?.to_vec(), "args")?,
            _ => r.skip()?,
        }
    }
    let cid: [u8; 16] = cid
        .ok_or(tfmprov_cbor::Error::Missing("cid"))?
        .try_into()
        .map_err(|_| tfmprov_cbor::Error::WrongType("cid"))?;
    Ok(Command {
        cseq: cseq.ok_or(tfmprov_cbor::Error::Missing("cseq"))?,
        cid,
        exp,
        op: op.ok_or(tfmprov_cbor::Error::Missing("op"))?,
        args: args.unwrap_or_else(|| alloc::vec![0xa0]),
    })
}

/// The SMP request an `op` stands for: (op, group, command).
fn route(op: &str) -> Option<(Op, u16, u8)> {
    Some(match op {
        "generate" => (Op::Write, group::KEYS, 0),
        "public" => (Op::Read, group::KEYS, 1),
        "status" => (Op::Read, group::KEYS, 2),
        "destroy" => (Op::Write, group::KEYS, 3),
        "csr" => (Op::Write, group::CSR, 0),
        "store-cert" => (Op::Write, group::CERTS, 0),
        "get-cert" => (Op::Read, group::CERTS, 1),
        "audit" => (Op::Read, group::KEYS, 5),
        _ => return None,
    })
}

/// `{"cseq"?, "cid"?, "rc", "res"?}`.
fn encode_reply(cseq: Option<u64>, cid: Option<&[u8; 16]>, rc: u16, res: Option<&[u8]>) -> Vec<u8> {
    let n = 1 + u64::from(cseq.is_some()) + u64::from(cid.is_some()) + u64::from(res.is_some());
    let mut e = Enc::with_capacity(32 + res.map_or(0, <[u8]>::len));
    e.map(n);
    if let Some(s) = cseq {
        e.text("cseq").uint(s);
    }
    if let Some(c) = cid {
        e.text("cid").bytes(c);
    }
    e.text("rc").uint(u64::from(rc));
    if let Some(r) = res {
        e.text("res").raw(r);
    }
    e.finish()
}

impl Device {
    /// Handle one `prov/{id}/cmd` body; the `prov/{id}/reply` body to
    /// publish. `now_unix_s`: the time, if the device knows it (then an
    /// expired command is refused). `Err` only when no reply can be built at
    /// all (no cloud certificate, storage failing): the caller logs it and
    /// publishes nothing.
    pub fn remote_command(&mut self, msg: &[u8], now_unix_s: Option<u64>) -> Result<Vec<u8>, Error> {
        let cloud = self.cloud_public()?;
        let cloud_kid = kid_of(&self.psa, &cloud)?;
        let cmd = match self.open_command(msg, &cloud, &cloud_kid) {
            Ok(c) => c,
            // Unsigned: the device does not sign what an attacker may have
            // chosen; the server treats it as a hint.
            Err(()) => return self.seal_reply(&encode_reply(None, None, RC_BAD_COMMAND, None), &cloud, &cloud_kid, None),
        };
        let last = self.psa.load_state(StateId::Remote)?;
        if let Some(rec) = &last {
            let stored = rec.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_be_bytes);
            match stored {
                Some(s) if cmd.cseq < s => {
                    let signer = self.reply_signer(None);
                    let body = encode_reply(Some(cmd.cseq), Some(&cmd.cid), RC_STALE, None);
                    return self.seal_reply(&body, &cloud, &cloud_kid, signer);
                }
                // The stored reply; a read's record has none: it runs again.
                Some(s) if cmd.cseq == s && rec.len() > 8 => return Ok(rec[8..].to_vec()),
                _ => {}
            }
        }
        if let (Some(exp), Some(now)) = (cmd.exp, now_unix_s) {
            if now > exp {
                let signer = self.reply_signer(None);
                let body = encode_reply(Some(cmd.cseq), Some(&cmd.cid), RC_EXPIRED, None);
                return self.seal_reply(&body, &cloud, &cloud_kid, signer);
            }
        }
        let routed = route(&cmd.op);
        let (rc, res, new_key) = match routed {
            None if cmd.op == "use-key" => match self.use_key(&cmd.args) {
                Ok(res) => (0, Some(res), None),
                Err(e) => (e.group_rc().code(), None, None),
            },
            None => (RC_UNKNOWN, None, None),
            Some((op, grp, id)) => match self.handle_command(op, grp, id, &cmd.args) {
                Ok(rsp) => {
                    let new_key = match (&rsp, grp, id) {
                        (Response::Key { id, .. }, group::KEYS, 0) => DeviceKeyId::new((*id).into()).ok(),
                        _ => None,
                    };
                    (0, Some(rsp.to_cbor()), new_key)
                }
                Err(HandlerError::Group(g)) => (g.code(), None, None),
                Err(HandlerError::Mgmt(_)) => (RC_BAD_COMMAND, None, None),
            },
        };
        let body = encode_reply(Some(cmd.cseq), Some(&cmd.cid), rc, res.as_deref());
        let signer = self.reply_signer(new_key);
        let reply = self.seal_reply(&body, &cloud, &cloud_kid, signer)?;
        let mut record = Vec::with_capacity(8 + reply.len());
        record.extend_from_slice(&cmd.cseq.to_be_bytes());
        // A read (status, public, get-cert) is kept as its cseq only: a
        // copy runs the read again, which changes nothing and answers the
        // same (nothing newer ran in between), and its reply (4.3 KB for a
        // get-cert of the largest certificate, more than one storage record
        // holds; ITS on AN521 has 16 KiB in all) costs no storage. Every
        // other op's reply is small and kept, so a copy of it is answered
        // without running twice.
        if !matches!(routed, Some((Op::Read, ..))) {
            record.extend_from_slice(&reply);
        }
        self.psa.store_state(StateId::Remote, &record)?;
        Ok(reply)
    }

    /// `use-key {"id"}` → `{"id", "prev"}`.
    #[inline(never)]
    fn use_key(&mut self, args: &[u8]) -> Result<Vec<u8>, Error> {
        let mut r = MapReader::new(args, MAX_DEPTH).map_err(|_| Error::InvalidArgument("use-key: args"))?;
        let mut id = None;
        while let Some(key) = r.next_key().map_err(|_| Error::InvalidArgument("use-key: args"))? {
            match &*key {
                "id" => id = Some(r.uint("id").map_err(|_| Error::InvalidArgument("use-key: id"))?),
                _ => r.skip().map_err(|_| Error::InvalidArgument("use-key: args"))?,
            }
        }
        let id = DeviceKeyId::new(id.ok_or(Error::InvalidArgument("use-key: no id"))?)?;
        let prev = self.use_telemetry_key(id);
        self.audit(crate::vault::AuditOp::UseKey, id.get(), &prev);
        let prev = prev?;
        let mut e = Enc::with_capacity(24);
        e.map(2).text("id").uint(id.get().into()).text("prev").uint(prev.into());
        Ok(e.finish())
    }

    /// The KAK's public key (created on first use): what the server
    /// encrypts commands to, read at the factory or announced signed.
    pub fn kak_public(&mut self) -> Result<PublicKey, Error> {
        Ok(self.psa.kak_public()?)
    }

    #[inline(never)]
    pub(crate) fn cloud_public(&self) -> Result<PublicKey, Error> {
        let der = certs::get(&self.psa, CertTarget::Peer(PeerId::new(PEER_CLOUD.into())?))?;
        certs::check_peer_chain(&self.psa, &der)?;
        certs::certificate_public_key(&der)?
            .try_into()
            .map_err(|_| Error::InvalidArgument("cloud certificate key is not an uncompressed P-256 point"))
    }

    /// Parse, check the signer, verify, check the recipient, decrypt,
    /// decode. `Err(())`: refused (why is not told to the sender).
    #[inline(never)]
    fn open_command(&mut self, msg: &[u8], cloud: &PublicKey, cloud_kid: &Kid) -> Result<Command, ()> {
        let device_id = String::from(self.device_id());
        let env = parse_envelope(Direction::Command, &device_id, msg).map_err(drop)?;
        if env.signer_kid != Some(*cloud_kid) {
            return Err(());
        }
        let psa = &self.psa;
        env.verify(|tbs, sig| {
            let digest = psa.sha256(tbs)?;
            psa.verify_with_public(cloud, &digest, sig)
        })
        .map_err(drop)?;
        let kak = self.psa.kak_public().map_err(drop)?;
        if env.recipient_kid != kid_of(&self.psa, &kak).map_err(drop)? {
            return Err(());
        }
        let psa = &self.psa;
        let pt = env
            .open(
                |eph: &[u8; 65]| psa.kak_ecdh(eph),
                |ikm: &[u8], info: &[u8], len: usize| psa.hkdf_sha256(ikm, info, len),
                |k: &[u8; 16], iv: &[u8; 12], aad: &[u8], ct: &[u8]| psa.session_key(k)?.decrypt(iv, aad, ct),
            )
            .map_err(drop)?;
        decode_command(&pt).map_err(drop)
    }

    /// The key that signs a reply: the new key after a `generate`, else the
    /// telemetry key if it exists; `None`: the reply goes unsigned.
    fn reply_signer(&mut self, new_key: Option<DeviceKeyId>) -> Option<DeviceKeyId> {
        if new_key.is_some() {
            return new_key;
        }
        let id = self.active_telemetry_key().ok()?;
        self.psa.key_present(id).ok()?.then_some(id)
    }

    #[inline(never)]
    fn seal_reply(&mut self, body: &[u8], cloud: &PublicKey, cloud_kid: &Kid, signer: Option<DeviceKeyId>) -> Result<Vec<u8>, Error> {
        let device_id = String::from(self.device_id());
        let signer_kid = match signer {
            Some(id) => Some((id, kid_of(&self.psa, &self.psa.public_key(id)?)?)),
            None => None,
        };
        let psa = &self.psa;
        let crypto = SessionCrypto::new(
            |peer: &[u8; 65]| psa.ecdh_ephemeral(peer).map_err(Error::from),
            |ikm: &[u8], info: &[u8], len: usize| psa.hkdf_sha256(ikm, info, len).map_err(Error::from),
            |k: &[u8; 16], iv: &[u8; 12], aad: &[u8], pt: &[u8]| {
                psa.session_key(k).and_then(|sk| sk.encrypt(iv, aad, pt)).map_err(Error::from)
            },
            |buf: &mut [u8]| psa.random(buf).map_err(Error::from),
        );
        let built = match signer_kid {
            Some((id, kid)) => build_envelope(Direction::Reply, &device_id, body, cloud_kid, cloud, &kid, crypto, |tbs| {
                psa.sign_message(id, tbs).map_err(Error::from)
            }),
            None => seal_envelope(Direction::Reply, &device_id, body, cloud_kid, cloud, crypto),
        };
        built.map_err(crate::telemetry::cose_err)
    }
}
