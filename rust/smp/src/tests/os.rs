use super::cbor::{map, text, uint};
use crate::*;

fn hdr(op: Op, cmd: u8) -> Header {
    Header {
        op,
        version: 1,
        flags: 0,
        len: 0,
        group: group::OS,
        seq: 0,
        cmd,
    }
}

#[test]
fn echo_read_and_write() {
    for op in [Op::Read, Op::Write] {
        let rsp = os::handle(
            &hdr(op, cmd::OS_ECHO),
            &map(&[("d", text("hello"))]),
            256,
            4,
        )
        .unwrap();
        assert_eq!(rsp, map(&[("r", text("hello"))]));
    }
    assert_eq!(
        os::handle(&hdr(Op::Write, 0), &[0xa0], 256, 4),
        Err(MgmtErr::EInval.into())
    );
}

#[test]
fn params() {
    let rsp = os::handle(&hdr(Op::Read, cmd::OS_PARAMS), &[0xa0], 384, 4).unwrap();
    assert_eq!(rsp, map(&[("buf_size", uint(384)), ("buf_count", uint(4))]));
    // empty body accepted too (nothing to read)
    assert!(os::handle(&hdr(Op::Read, cmd::OS_PARAMS), &[], 384, 4).is_ok());
    assert_eq!(
        os::handle(&hdr(Op::Write, cmd::OS_PARAMS), &[0xa0], 1, 1),
        Err(MgmtErr::ENotSup.into())
    );
}

#[test]
fn other_commands_and_groups_are_enotsup() {
    for c in [1u8, 2, 3, 4, 5, 7, 8, 255] {
        assert_eq!(
            os::handle(&hdr(Op::Read, c), &[0xa0], 1, 1),
            Err(MgmtErr::ENotSup.into())
        );
    }
    let h = Header {
        group: 64,
        ..hdr(Op::Read, 0)
    };
    assert_eq!(os::handle(&h, &[0xa0], 1, 1), Err(MgmtErr::ENotSup.into()));
}
