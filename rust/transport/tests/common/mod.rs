//! Shared test helpers: a fake device dispatcher built on tfmprov-smp, temp dirs.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use tfmprov_smp::*;

/// A tiny in-memory stand-in for the device's groups 64/65/66 (no crypto: the "public key"
/// is derived from the id), enough to exercise every typed client helper and error form.
#[derive(Default)]
pub struct FakeDevice {
    keys: HashMap<u32, Vec<u8>>,
    certs: HashMap<u32, Vec<u8>>,
}

pub const BUF_SIZE: u32 = 2048;
pub const BUF_COUNT: u32 = 4;

fn fake_pub(id: u32, seed: u8) -> Vec<u8> {
    let mut p = vec![0x04];
    p.extend((0..64u32).map(|i| (i as u8) ^ (id as u8) ^ seed));
    p
}

fn key_id(id: u64) -> Result<u32, HandlerError> {
    match u32::try_from(id) {
        Ok(id @ 1..=0x0fff_ffff) => Ok(id),
        _ => Err(GroupRc::InvalidArgument.into()),
    }
}

impl FakeDevice {
    pub fn dispatch(&mut self, h: &Header, body: &[u8]) -> Result<Vec<u8>, HandlerError> {
        match (h.group, h.cmd, h.op) {
            (group::OS, _, _) => os::handle(h, body, BUF_SIZE, BUF_COUNT),
            (group::KEYS, cmd::KEYS_GENERATE, Op::Write) => {
                let req: KeyGenerateReq = decode_body(body)?;
                let id = match req.id {
                    Some(id) => key_id(id)?,
                    None => (0x10000..)
                        .find(|i| !self.keys.contains_key(i))
                        .ok_or(GroupRc::StorageFull)?,
                };
                if self.keys.contains_key(&id) && req.replace != Some(true) {
                    return Err(GroupRc::Exists.into());
                }
                let seed = match &req.private {
                    Some(p) if p.len() == 32 => p[0],
                    Some(_) => return Err(GroupRc::InvalidArgument.into()),
                    None => 0x5a,
                };
                let public = fake_pub(id, seed);
                self.keys.insert(id, public.clone());
                Ok(encode_body(&KeyGenerateRsp { id, public }))
            }
            (group::KEYS, cmd::KEYS_PUBLIC, Op::Read) => {
                let id = key_id(decode_body::<KeyIdReq>(body)?.id)?;
                let public = self.keys.get(&id).ok_or(GroupRc::NotFound)?.clone();
                Ok(encode_body(&KeyPublicRsp { id, public }))
            }
            (group::KEYS, cmd::KEYS_STATUS, Op::Read) => {
                let id = key_id(decode_body::<KeyIdReq>(body)?.id)?;
                Ok(encode_body(&KeyStatusRsp {
                    id,
                    present: self.keys.contains_key(&id),
                }))
            }
            (group::KEYS, cmd::KEYS_DESTROY, Op::Write) => {
                let id = key_id(decode_body::<KeyIdReq>(body)?.id)?;
                self.keys.remove(&id).ok_or(GroupRc::NotFound)?;
                self.certs.remove(&id);
                Ok(encode_body(&EmptyRsp {}))
            }
            (group::CSR, cmd::CSR_CREATE, Op::Write) => {
                let req: CsrCreateReq = decode_body(body)?;
                let id = key_id(req.id)?;
                if !self.keys.contains_key(&id) {
                    return Err(GroupRc::NotFound.into());
                }
                let csr = [
                    b"CSR:".as_slice(),
                    req.cn.as_bytes(),
                    b"/",
                    req.o.unwrap_or_default().as_bytes(),
                ]
                .concat();
                Ok(encode_body(&CsrCreateRsp { csr }))
            }
            (group::CERTS, cmd::CERTS_STORE, Op::Write) => {
                let req: CertStoreReq = decode_body(body)?;
                let id = key_id(req.id)?;
                if !self.keys.contains_key(&id) {
                    return Err(GroupRc::Mismatch.into());
                }
                self.certs.insert(id, req.cert);
                Ok(encode_body(&EmptyRsp {}))
            }
            (group::CERTS, cmd::CERTS_GET, Op::Read) => {
                let id = key_id(decode_body::<CertGetReq>(body)?.id)?;
                let cert = self.certs.get(&id).ok_or(GroupRc::NotFound)?.clone();
                Ok(encode_body(&CertGetRsp { cert }))
            }
            _ => Err(MgmtErr::ENotSup.into()),
        }
    }

    /// The packet handler the servers take.
    pub fn handler(mut self) -> impl FnMut(&[u8]) -> Option<Vec<u8>> {
        move |packet| handle_packet(packet, |h, b| self.dispatch(h, b))
    }
}

/// A fresh, empty directory under the system temp dir (removed by `TempDir::drop`).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
            "tfmprov-transport-{tag}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
