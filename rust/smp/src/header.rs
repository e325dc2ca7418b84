//! The 8-byte SMP header.
//!
//! Layout (Zephyr `struct smp_hdr`, little-endian bitfields in byte 0):
//!
//! | byte | field |
//! | --- | --- |
//! | 0 | bits 0-2 op, bits 3-4 version (0 = SMP v1, 1 = SMP v2), bits 5-7 reserved |
//! | 1 | flags |
//! | 2-3 | body length, big-endian |
//! | 4-5 | group id, big-endian |
//! | 6 | sequence number |
//! | 7 | command id |

use crate::Error;

/// Length of the SMP header in bytes.
pub const HEADER_LEN: usize = 8;

/// SMP operation (3-bit field of header byte 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Op {
    /// Read request.
    Read = 0,
    /// Read response.
    ReadRsp = 1,
    /// Write request.
    Write = 2,
    /// Write response.
    WriteRsp = 3,
}

impl Op {
    /// The op for a raw value, `None` for 4..=7 (and anything larger).
    pub fn from_u8(value: u8) -> Option<Op> {
        match value {
            0 => Some(Op::Read),
            1 => Some(Op::ReadRsp),
            2 => Some(Op::Write),
            3 => Some(Op::WriteRsp),
            _ => None,
        }
    }

    /// True for [`Op::Read`] and [`Op::Write`].
    pub fn is_request(self) -> bool {
        matches!(self, Op::Read | Op::Write)
    }

    /// The response op for a request op, as Zephyr's `smp_rsp_op`: read -> read response,
    /// anything else -> write response.
    pub fn response(self) -> Op {
        match self {
            Op::Read => Op::ReadRsp,
            _ => Op::WriteRsp,
        }
    }
}

/// A decoded SMP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// Operation.
    pub op: Op,
    /// Protocol version: 0 = SMP v1 (original), 1 = SMP v2 (group errors as `{"err": ...}`).
    /// Two bits on the wire; [`Header::encode`] keeps only the low two bits.
    pub version: u8,
    /// Flags (reserved, 0).
    pub flags: u8,
    /// Body length in bytes.
    pub len: u16,
    /// Group id.
    pub group: u16,
    /// Sequence number, echoed in the response.
    pub seq: u8,
    /// Command id within the group.
    pub cmd: u8,
}

impl Header {
    /// Decodes the first [`HEADER_LEN`] bytes of `bytes` (extra bytes are ignored).
    ///
    /// Errors: [`Error::Truncated`] if fewer than 8 bytes, [`Error::BadOp`] if the op is
    /// not 0..=3. The reserved bits 5-7 of byte 0 are ignored, as Zephyr does.
    pub fn decode(bytes: &[u8]) -> Result<Header, Error> {
        let raw: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(Error::Truncated { len: bytes.len() })?;
        let op_bits = raw[0] & 0x07;
        let op = Op::from_u8(op_bits).ok_or(Error::BadOp(op_bits))?;
        Ok(Header {
            op,
            version: (raw[0] >> 3) & 0x03,
            flags: raw[1],
            len: u16::from_be_bytes([raw[2], raw[3]]),
            group: u16::from_be_bytes([raw[4], raw[5]]),
            seq: raw[6],
            cmd: raw[7],
        })
    }

    /// Encodes the header (version is truncated to its two bits).
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let len = self.len.to_be_bytes();
        let group = self.group.to_be_bytes();
        [
            (self.op as u8 & 0x07) | ((self.version & 0x03) << 3),
            self.flags,
            len[0],
            len[1],
            group[0],
            group[1],
            self.seq,
            self.cmd,
        ]
    }

    /// The header of the response to this request: response op ([`Op::response`]), same
    /// group, sequence and command, flags 0, version capped at 1 (SMP v2) as Zephyr's
    /// `smp_make_rsp_hdr` does, and the given body length.
    pub fn response(&self, body_len: u16) -> Header {
        Header {
            op: self.op.response(),
            version: self.version.min(1),
            flags: 0,
            len: body_len,
            group: self.group,
            seq: self.seq,
            cmd: self.cmd,
        }
    }
}
