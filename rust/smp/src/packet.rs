//! One SMP request packet in, one response packet out.

use alloc::vec::Vec;

use crate::{error_body, HandlerError, Header, MgmtErr, Op, HEADER_LEN};

/// Handles one SMP request packet (one UDP datagram, or one decoded serial packet) and
/// returns the complete response packet (header + CBOR body), or `None` when nothing must
/// be answered.
///
/// Checks, in Zephyr's order (`smp_process_request_packet`, `smp_handle_single_req`):
///
/// 1. Shorter than the 8-byte header: `None` (Zephyr cannot answer without a header).
/// 2. Op 1 or 3 (a *response*): `None`. Answering responses would let two SMP servers
///    reflect error packets at each other forever (e.g. a spoofed UDP source); Zephyr built
///    with `CONFIG_SMP_CLIENT` does not answer them either.
/// 3. Header length differs from the body bytes present: `{"rc": 9}` (MGMT_ERR_ECORRUPT,
///    as Zephyr for a body shorter than announced; a longer one would be a second,
///    concatenated request in Zephyr, which this device does not accept).
/// 4. Op 4..=7: `{"rc": 8}` (MGMT_ERR_ENOTSUP), with op write-response.
/// 5. Version above 1 (SMP v2): `{"rc": 13}` (MGMT_ERR_UNSUPPORTED_TOO_NEW).
/// 6. Otherwise `handler(&header, body)`; `Ok(body)` is sent as is, `Err(e)` becomes
///    [`error_body`]`(header.version, header.group, e)`. A body longer than 65535 bytes
///    becomes `{"rc": 7}` (MGMT_ERR_EMSGSIZE).
///
/// The response header is [`Header::response`]: op + 1, same group, sequence and command,
/// flags 0, version capped at 1.
pub fn handle_packet(
    packet: &[u8],
    mut handler: impl FnMut(&Header, &[u8]) -> Result<Vec<u8>, HandlerError>,
) -> Option<Vec<u8>> {
    let raw: &[u8; HEADER_LEN] = packet.get(..HEADER_LEN)?.try_into().ok()?;
    let body = packet.get(HEADER_LEN..)?;
    let op_bits = raw[0] & 0x07;
    let op = match Op::from_u8(op_bits) {
        Some(Op::ReadRsp | Op::WriteRsp) => return None,
        Some(op) => op,
        // Unknown op: answered below with ENOTSUP as a write response (smp_rsp_op).
        None => Op::Write,
    };
    let header = Header {
        op,
        version: (raw[0] >> 3) & 0x03,
        flags: raw[1],
        len: u16::from_be_bytes([raw[2], raw[3]]),
        group: u16::from_be_bytes([raw[4], raw[5]]),
        seq: raw[6],
        cmd: raw[7],
    };

    let result = if usize::from(header.len) != body.len() {
        Err(HandlerError::Mgmt(MgmtErr::ECorrupt))
    } else if op_bits > 3 {
        Err(HandlerError::Mgmt(MgmtErr::ENotSup))
    } else if header.version > 1 {
        Err(HandlerError::Mgmt(MgmtErr::EUnsupportedTooNew))
    } else {
        handler(&header, body)
    };

    let rsp_body = match result {
        Ok(rsp) if rsp.len() <= usize::from(u16::MAX) => rsp,
        Ok(_) => error_body(header.version, header.group, MgmtErr::EMsgSize.into()),
        Err(e) => error_body(header.version, header.group, e),
    };
    // error bodies are a few bytes: the conversion cannot fail, but do not panic regardless.
    let len = u16::try_from(rsp_body.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(HEADER_LEN + rsp_body.len());
    out.extend_from_slice(&header.response(len).encode());
    out.extend_from_slice(&rsp_body);
    Some(out)
}
