//! The SMP dispatcher for groups 64 (keys), 65 (csr) and 66 (certs):
//! `(op, group, cmd, CBOR request) -> Response or SMP error`. The firmware's
//! C glue calls [`Device::handle_command`] from its mcumgr handlers; the host
//! simulator calls [`Device::handle_packet`] with whole SMP packets (and gets
//! the OS group's echo and parameters too, as a Zephyr device with the OS
//! group enabled answers them).

use crate::certs;
use crate::csr::{self, Subject};
use crate::{Device, Error};
use alloc::vec::Vec;
use tfmprov_psa::ids::{CertTarget, DeviceKeyId};
use tfmprov_psa::{KeyOrigin, PublicKey};
use tfmprov_cbor::Enc;
use crate::vault::AuditOp;
use tfmprov_smp::{
    cmd, decode_request, group, AuditReq, CertGetReq, CertStoreReq, CsrCreateReq, EmptyReq, HandlerError, KeyGenerateReq, KeyIdReq,
    MgmtErr, Op,
};

/// SMP buffer parameters the simulator reports (OS group, command 6); the
/// largest response is a 4096-byte certificate plus framing.
pub const SMP_BUF_SIZE: u32 = 4608;
/// Number of SMP buffers reported.
pub const SMP_BUF_COUNT: u32 = 4;

/// A successful answer of groups 64/65/66, before CBOR encoding (the C glue
/// encodes these fields with zcbor; Rust with [`Response::to_cbor`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// `{"id", "pub"}` (generate, public).
    Key {
        /// Key ID.
        id: u32,
        /// Uncompressed public key.
        public: PublicKey,
    },
    /// `{"id", "present"}` (status).
    Status {
        /// Key ID.
        id: u32,
        /// Whether the key exists.
        present: bool,
    },
    /// `{}` (destroy, certs store).
    Empty,
    /// `{"csr"}`: DER PKCS#10.
    Csr(Vec<u8>),
    /// `{"cert"}`: DER certificate.
    Cert(Vec<u8>),
    /// `{"log"}`: the CBOR audit log ([`Device::audit_log`]).
    Audit(Vec<u8>),
}

impl Response {
    /// The CBOR map of this response, written with the bounded writer
    /// rather than serde + ciborium (about 1 KiB of firmware flash on the
    /// remote path); the tests hold it equal to `tfmprov_smp`'s serde
    /// encoding of the `*Rsp` structs.
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut e = Enc::with_capacity(16 + self.data_len());
        match self {
            Response::Key { id, public } => e.map(2).text("id").uint((*id).into()).text("pub").bytes(public),
            Response::Status { id, present } => e.map(2).text("id").uint((*id).into()).text("present").bool(*present),
            Response::Empty => e.map(0),
            Response::Csr(der) => e.map(1).text("csr").bytes(der),
            Response::Cert(der) => e.map(1).text("cert").bytes(der),
            Response::Audit(log) => e.map(1).text("log").bytes(log),
        };
        e.finish()
    }

    fn data_len(&self) -> usize {
        match self {
            Response::Key { public, .. } => public.len(),
            Response::Csr(der) | Response::Cert(der) | Response::Audit(der) => der.len(),
            Response::Status { .. } | Response::Empty => 0,
        }
    }
}

fn group_err(e: Error) -> HandlerError {
    HandlerError::Group(e.group_rc())
}

fn key_id(raw: u64) -> Result<DeviceKeyId, HandlerError> {
    DeviceKeyId::new(raw).map_err(|e| group_err(e.into()))
}

impl Device {
    /// Handles one request of groups 64/65/66. Malformed CBOR, a missing
    /// field or a wrong type is `MGMT_ERR_EINVAL`; an unknown group, command
    /// or op is `MGMT_ERR_ENOTSUP` (as Zephyr answers for a missing handler);
    /// everything the request asks that cannot be done is a group rc.
    pub fn handle_command(&mut self, op: Op, grp: u16, command: u8, body: &[u8]) -> Result<Response, HandlerError> {
        let not_supported = HandlerError::Mgmt(MgmtErr::ENotSup);
        match (grp, command, op) {
            (group::KEYS, cmd::KEYS_GENERATE, Op::Write) => {
                let req: KeyGenerateReq = decode_request(body)?;
                let id = req.id.map(key_id).transpose()?;
                let origin = match &req.private {
                    Some(value) => KeyOrigin::Known(value),
                    None => KeyOrigin::Random,
                };
                let id = self.create_key(id, origin, req.replace.unwrap_or(false)).map_err(|e| group_err(e.into()))?;
                let public = self.psa.public_key(id).map_err(|e| group_err(e.into()))?;
                Ok(Response::Key { id: id.get(), public })
            }
            (group::KEYS, cmd::KEYS_PUBLIC, Op::Read) => {
                let id = key_id(decode_request::<KeyIdReq>(body)?.id)?;
                let public = self.psa.public_key(id).map_err(|e| group_err(e.into()))?;
                Ok(Response::Key { id: id.get(), public })
            }
            (group::KEYS, cmd::KEYS_STATUS, Op::Read) => {
                let id = key_id(decode_request::<KeyIdReq>(body)?.id)?;
                let present = self.psa.key_present(id).map_err(|e| group_err(e.into()))?;
                Ok(Response::Status { id: id.get(), present })
            }
            (group::KEYS, cmd::KEYS_DESTROY, Op::Write) => {
                let id = key_id(decode_request::<KeyIdReq>(body)?.id)?;
                self.destroy_key_and_cert(id).map_err(group_err)?;
                Ok(Response::Empty)
            }
            (group::KEYS, cmd::KEYS_KAK, Op::Read) => {
                decode_request::<EmptyReq>(body)?;
                let public = self.psa.kak_public().map_err(|e| group_err(e.into()))?;
                Ok(Response::Key { id: tfmprov_psa::ids::STATE_KAK, public })
            }
            (group::KEYS, cmd::KEYS_AUDIT, Op::Read) => {
                let req: AuditReq = decode_request(body)?;
                Ok(Response::Audit(self.audit_log(req.from.unwrap_or(0)).map_err(group_err)?))
            }
            (group::CSR, cmd::CSR_CREATE, Op::Write) => {
                let req: CsrCreateReq = decode_request(body)?;
                let id = key_id(req.id)?;
                let subject = Subject { cn: &req.cn, o: req.o.as_deref(), ou: req.ou.as_deref() };
                Ok(Response::Csr(self.create_csr(id, &subject).map_err(group_err)?))
            }
            (group::CERTS, cmd::CERTS_STORE, Op::Write) => {
                let req: CertStoreReq = decode_request(body)?;
                let target = CertTarget::new(req.id).map_err(|e| group_err(e.into()))?;
                self.store_certificate(target, &req.cert).map_err(group_err)?;
                Ok(Response::Empty)
            }
            (group::CERTS, cmd::CERTS_GET, Op::Read) => {
                let req: CertGetReq = decode_request(body)?;
                let target = CertTarget::new(req.id).map_err(|e| group_err(e.into()))?;
                Ok(Response::Cert(certs::get(&self.psa, target).map_err(group_err)?))
            }
            _ => Err(not_supported),
        }
    }

    // The key operations: every way in (SMP, shell, remote commands, the
    // sample set) goes through these, so each is in the audit log with its
    // result.

    /// Creates a key ([`tfmprov_psa::Psa::create_key`]) on behalf of SMP or
    /// the shell; a replace invalidates the cached telemetry kid.
    pub fn create_key(
        &mut self,
        id: Option<DeviceKeyId>,
        origin: KeyOrigin<'_>,
        replace: bool,
    ) -> Result<DeviceKeyId, tfmprov_psa::Error> {
        self.forget_kid();
        let op = match (&origin, replace) {
            (KeyOrigin::Random, false) => AuditOp::Generate,
            (KeyOrigin::Known(_), false) => AuditOp::Import,
            (KeyOrigin::Random, true) => AuditOp::GenerateReplace,
            (KeyOrigin::Known(_), true) => AuditOp::ImportReplace,
        };
        let result = self.psa.create_key(id, origin, replace);
        // An auto-assigned ID that was never assigned is logged as 0.
        let logged = result.as_ref().map_or(id.map_or(0, DeviceKeyId::get), |k| k.get());
        self.audit(op, logged, &result);
        result
    }

    /// Destroys a key and its certificate (DESIGN.md: `destroy` removes both).
    pub fn destroy_key_and_cert(&mut self, id: DeviceKeyId) -> Result<(), Error> {
        self.forget_kid();
        let result = self.psa.destroy_key(id).and_then(|()| self.psa.delete_cert(id.cert_slot())).map_err(Error::from);
        self.audit(AuditOp::Destroy, id.get(), &result);
        result
    }

    /// A CSR signed by key `id` ([`csr::create`]).
    pub fn create_csr(&mut self, id: DeviceKeyId, subject: &Subject<'_>) -> Result<Vec<u8>, Error> {
        let result = csr::create(&self.psa, id, subject);
        self.audit(AuditOp::Csr, id.get(), &result);
        result
    }

    /// Stores a certificate in its slot ([`certs::store`]).
    pub fn store_certificate(&mut self, target: CertTarget, der: &[u8]) -> Result<(), Error> {
        let result = certs::store(&mut self.psa, target, der);
        self.audit(AuditOp::StoreCert, target.id(), &result);
        result
    }

    /// Handles one whole SMP packet (header + CBOR) and returns the response
    /// packet, or `None` when there is nothing to answer (shorter than a
    /// header). Groups 64/65/66 and the OS group's echo and parameters.
    pub fn handle_packet(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        tfmprov_smp::handle_packet(packet, |header, body| {
            if header.group == group::OS {
                return tfmprov_smp::os::handle(header, body, SMP_BUF_SIZE, SMP_BUF_COUNT);
            }
            self.handle_command(header.op, header.group, header.cmd, body).map(|r| r.to_cbor())
        })
    }
}
