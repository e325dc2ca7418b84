use crate::{Error, Header, Op, HEADER_LEN};

fn sample() -> Header {
    Header {
        op: Op::Write,
        version: 1,
        flags: 0,
        len: 0x0102,
        group: 64,
        seq: 0xab,
        cmd: 3,
    }
}

#[test]
fn encode_layout_matches_zephyr_smp_hdr() {
    // byte 0: op in bits 0-2, version in bits 3-4
    assert_eq!(
        sample().encode(),
        [0x0a, 0x00, 0x01, 0x02, 0x00, 0x40, 0xab, 0x03]
    );
    let v1 = Header {
        version: 0,
        op: Op::Read,
        ..sample()
    };
    assert_eq!(v1.encode()[0], 0x00);
}

#[test]
fn round_trip_all_ops_and_versions() {
    for op in [Op::Read, Op::ReadRsp, Op::Write, Op::WriteRsp] {
        for version in 0..4u8 {
            for (group, seq, cmd, len) in [
                (0u16, 0u8, 0u8, 0u16),
                (66, 255, 1, 65535),
                (0xffff, 7, 255, 1),
            ] {
                let h = Header {
                    op,
                    version,
                    flags: 0x5a,
                    len,
                    group,
                    seq,
                    cmd,
                };
                let bytes = h.encode();
                assert_eq!(bytes.len(), HEADER_LEN);
                assert_eq!(Header::decode(&bytes).unwrap(), h);
            }
        }
    }
}

#[test]
fn decode_ignores_trailing_bytes_and_reserved_bits() {
    let mut bytes = sample().encode().to_vec();
    bytes[0] |= 0xe0; // reserved bits 5-7
    bytes.extend_from_slice(&[0xa0, 1, 2]);
    assert_eq!(Header::decode(&bytes).unwrap(), sample());
}

#[test]
fn truncated_header_is_an_error() {
    let bytes = sample().encode();
    for n in 0..HEADER_LEN {
        assert_eq!(
            Header::decode(&bytes[..n]),
            Err(Error::Truncated { len: n })
        );
    }
}

#[test]
fn bad_op_is_an_error() {
    for op in 4..8u8 {
        let mut bytes = sample().encode();
        bytes[0] = (bytes[0] & !0x07) | op;
        assert_eq!(Header::decode(&bytes), Err(Error::BadOp(op)));
    }
}

#[test]
fn response_header() {
    let req = Header {
        op: Op::Read,
        version: 1,
        flags: 3,
        len: 9,
        group: 65,
        seq: 42,
        cmd: 0,
    };
    let rsp = req.response(77);
    assert_eq!(
        rsp,
        Header {
            op: Op::ReadRsp,
            version: 1,
            flags: 0,
            len: 77,
            group: 65,
            seq: 42,
            cmd: 0
        }
    );
    assert_eq!(sample().response(1).op, Op::WriteRsp);
    // version capped at SMP v2 like Zephyr's smp_make_rsp_hdr
    assert_eq!(Header { version: 3, ..req }.response(0).version, 1);
    assert_eq!(Header { version: 0, ..req }.response(0).version, 0);
}

#[test]
fn error_display_is_informative() {
    assert_eq!(
        Error::Truncated { len: 3 }.to_string(),
        "SMP header truncated: 3 of 8 bytes"
    );
    assert!(Error::BadCrc {
        received: 1,
        computed: 2
    }
    .to_string()
    .contains("0x0001"));
}
