//! OS management group (0): the two commands the provisioning device answers.
//!
//! * cmd 0 echo (read or write, as Zephyr registers it for both): `{"d": tstr}` -> `{"r": tstr}`.
//! * cmd 6 MCUmgr parameters (read): `{"buf_size": uint, "buf_count": uint}`; smpclient reads
//!   it on connect to size its serial fragments.
//!
//! Everything else in the group is MGMT_ERR_ENOTSUP.

use alloc::vec::Vec;

use crate::{cmd, decode_body, encode_body, group, EchoReq, EchoRsp, HandlerError, Header};
use crate::{MgmtErr, Op, ParamsRsp};

/// Handles an OS group request; `buf_size` / `buf_count` are reported by the parameters
/// command (the transport's largest packet and number of buffers).
pub fn handle(
    header: &Header,
    body: &[u8],
    buf_size: u32,
    buf_count: u32,
) -> Result<Vec<u8>, HandlerError> {
    if header.group != group::OS {
        return Err(MgmtErr::ENotSup.into());
    }
    match (header.cmd, header.op) {
        (cmd::OS_ECHO, Op::Read | Op::Write) => {
            let req: EchoReq = decode_body(body)?;
            Ok(encode_body(&EchoRsp { r: req.d }))
        }
        (cmd::OS_PARAMS, Op::Read) => Ok(encode_body(&ParamsRsp {
            buf_size,
            buf_count,
        })),
        _ => Err(MgmtErr::ENotSup.into()),
    }
}
