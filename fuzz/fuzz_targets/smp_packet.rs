//! handle_packet with a handler that decodes every request type of groups 0/64/65/66:
//! must never panic, and every answer must be a well-formed response packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tfmprov_smp::*;

fn handler(h: &Header, body: &[u8]) -> Result<Vec<u8>, HandlerError> {
    match (h.group, h.cmd) {
        (group::OS, _) => os::handle(h, body, 2048, 4),
        (group::KEYS, cmd::KEYS_GENERATE) => {
            let req: KeyGenerateReq = decode_body(body)?;
            let id =
                u32::try_from(req.id.unwrap_or(0x10000)).map_err(|_| GroupRc::InvalidArgument)?;
            if req.private.as_ref().is_some_and(|p| p.len() != 32) {
                return Err(GroupRc::InvalidArgument.into());
            }
            Ok(encode_body(&KeyGenerateRsp {
                id,
                public: vec![4; 65],
            }))
        }
        (group::KEYS, cmd::KEYS_PUBLIC | cmd::KEYS_STATUS | cmd::KEYS_DESTROY) => {
            let req: KeyIdReq = decode_body(body)?;
            let id = u32::try_from(req.id).map_err(|_| GroupRc::InvalidArgument)?;
            Ok(encode_body(&KeyStatusRsp {
                id,
                present: id % 2 == 0,
            }))
        }
        (group::CSR, cmd::CSR_CREATE) => {
            let req: CsrCreateReq = decode_body(body)?;
            Ok(encode_body(&CsrCreateRsp {
                csr: req.cn.into_bytes(),
            }))
        }
        (group::CERTS, cmd::CERTS_STORE) => {
            let req: CertStoreReq = decode_body(body)?;
            if req.cert.is_empty() {
                return Err(GroupRc::Mismatch.into());
            }
            Ok(encode_body(&EmptyRsp {}))
        }
        (group::CERTS, cmd::CERTS_GET) => {
            let req: CertGetReq = decode_body(body)?;
            Err(if req.id > 0x3fff_ffff {
                GroupRc::InvalidArgument
            } else {
                GroupRc::NotFound
            }
            .into())
        }
        _ => Err(MgmtErr::ENotSup.into()),
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(rsp) = handle_packet(data, handler) {
        let h = Header::decode(&rsp).expect("response header");
        assert!(matches!(h.op, Op::ReadRsp | Op::WriteRsp));
        assert_eq!(usize::from(h.len), rsp.len() - HEADER_LEN);
        assert_eq!(h.seq, data[6]);
        // every response body is a well-formed map
        let _ = response_error(&rsp[HEADER_LEN..]).expect("response body is a CBOR map");
    }
});
