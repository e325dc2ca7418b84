use super::cbor::{map, text, uint};
use crate::*;

fn packet(op: u8, version: u8, group: u16, cmd: u8, seq: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![op | (version << 3), 0];
    p.extend_from_slice(&(body.len() as u16).to_be_bytes());
    p.extend_from_slice(&group.to_be_bytes());
    p.extend_from_slice(&[seq, cmd]);
    p.extend_from_slice(body);
    p
}

fn split(rsp: &[u8]) -> (Header, &[u8]) {
    let h = Header::decode(rsp).unwrap();
    assert_eq!(
        usize::from(h.len),
        rsp.len() - HEADER_LEN,
        "response length field"
    );
    (h, &rsp[HEADER_LEN..])
}

/// A handler that decodes each request type of groups 64/65/66 and answers fixed values.
fn handler(h: &Header, body: &[u8]) -> Result<Vec<u8>, HandlerError> {
    match (h.group, h.cmd) {
        (group::KEYS, cmd::KEYS_GENERATE) => {
            let req: KeyGenerateReq = decode_body(body)?;
            let id =
                u32::try_from(req.id.unwrap_or(0x10000)).map_err(|_| GroupRc::InvalidArgument)?;
            Ok(encode_body(&KeyGenerateRsp {
                id,
                public: vec![4; 65],
            }))
        }
        (group::KEYS, cmd::KEYS_PUBLIC) => {
            let req: KeyIdReq = decode_body(body)?;
            Err(if req.id > 0x3fff_ffff {
                GroupRc::InvalidArgument
            } else {
                GroupRc::NotFound
            }
            .into())
        }
        (group::OS, _) => os::handle(h, body, 256, 2),
        _ => Err(MgmtErr::ENotSup.into()),
    }
}

#[test]
fn short_packets_are_not_answered() {
    for n in 0..HEADER_LEN {
        assert_eq!(handle_packet(&[2u8; 8][..n], handler), None);
    }
}

#[test]
fn success_response_header_and_body() {
    let body = map(&[("id", uint(0x10001))]);
    let rsp = handle_packet(&packet(2, 1, 64, 0, 77, &body), handler).unwrap();
    let (h, b) = split(&rsp);
    assert_eq!(
        h,
        Header {
            op: Op::WriteRsp,
            version: 1,
            flags: 0,
            len: h.len,
            group: 64,
            seq: 77,
            cmd: 0
        }
    );
    assert_eq!(
        decode_body::<KeyGenerateRsp>(b).unwrap(),
        KeyGenerateRsp {
            id: 0x10001,
            public: vec![4; 65]
        }
    );
}

#[test]
fn group_errors_follow_the_request_version() {
    let body = map(&[("id", uint(5))]);
    let rsp = handle_packet(&packet(0, 1, 64, 1, 1, &body), handler).unwrap();
    let (h, b) = split(&rsp);
    assert_eq!((h.op, h.version), (Op::ReadRsp, 1));
    assert_eq!(
        b,
        map(&[("err", map(&[("group", uint(64)), ("rc", uint(2))]))])
    );
    // SMP v1 request: {"rc": ENOENT}
    let rsp = handle_packet(&packet(0, 0, 64, 1, 1, &body), handler).unwrap();
    let (h, b) = split(&rsp);
    assert_eq!(h.version, 0);
    assert_eq!(b, map(&[("rc", uint(5))]));
    // id above u32::MAX reaches the handler's validation
    let big = map(&[("id", uint(1 << 32))]);
    let rsp = handle_packet(&packet(0, 1, 64, 1, 1, &big), handler).unwrap();
    assert_eq!(
        split(&rsp).1,
        map(&[("err", map(&[("group", uint(64)), ("rc", uint(4))]))])
    );
}

#[test]
fn malformed_body_is_einval() {
    let rsp = handle_packet(&packet(0, 1, 64, 1, 9, &[0xa1, 0x62]), handler).unwrap();
    assert_eq!(split(&rsp).1, map(&[("rc", uint(3))]));
    let rsp = handle_packet(&packet(0, 1, 64, 1, 9, &[]), handler).unwrap();
    assert_eq!(split(&rsp).1, map(&[("rc", uint(3))]));
}

#[test]
fn length_mismatch_is_ecorrupt() {
    let body = map(&[("id", uint(1))]);
    let mut p = packet(0, 1, 64, 1, 3, &body);
    p.pop(); // body shorter than the header says
    let rsp = handle_packet(&p, handler).unwrap();
    let (h, b) = split(&rsp);
    assert_eq!((h.op, h.seq, h.group, h.cmd), (Op::ReadRsp, 3, 64, 1));
    assert_eq!(b, map(&[("rc", uint(9))]));
    let mut p = packet(0, 1, 64, 1, 3, &body);
    p.push(0); // longer
    assert_eq!(
        split(&handle_packet(&p, handler).unwrap()).1,
        map(&[("rc", uint(9))])
    );
}

#[test]
fn response_ops_are_not_answered_unknown_ops_are_enotsup() {
    let body = map(&[("id", uint(1))]);
    assert_eq!(handle_packet(&packet(1, 1, 64, 1, 0, &body), handler), None);
    assert_eq!(handle_packet(&packet(3, 1, 64, 1, 0, &body), handler), None);
    for op in 4..8 {
        let rsp = handle_packet(&packet(op, 1, 64, 1, 0, &body), handler).unwrap();
        let (h, b) = split(&rsp);
        assert_eq!(h.op, Op::WriteRsp);
        assert_eq!(b, map(&[("rc", uint(8))]));
    }
}

#[test]
fn too_new_version_is_refused() {
    let body = map(&[("d", text("x"))]);
    for v in [2, 3] {
        let rsp = handle_packet(&packet(2, v, 0, 0, 0, &body), handler).unwrap();
        let (h, b) = split(&rsp);
        assert_eq!(h.version, 1);
        assert_eq!(b, map(&[("rc", uint(13))]));
    }
}

#[test]
fn oversized_handler_output_is_emsgsize() {
    let rsp = handle_packet(&packet(0, 1, 64, 9, 0, &[0xa0]), |_, _| Ok(vec![0; 70_000])).unwrap();
    assert_eq!(split(&rsp).1, map(&[("rc", uint(7))]));
}
