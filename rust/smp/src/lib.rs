//! SMP (Simple Management Protocol, "mcumgr") for the provisioning groups.
//!
//! Device side and host side share this crate: it is `no_std` + `alloc` and builds for
//! `thumbv8m.main-none-eabi`.
//!
//! * [`Header`]: the 8-byte SMP header (op, version, flags, length, group, sequence, command).
//! * [`group`] / [`cmd`]: group and command ids of DESIGN.md ("SMP (mcumgr) groups").
//! * [`MgmtErr`], [`GroupRc`], [`HandlerError`]: the two kinds of return code.
//! * Request/response messages of groups 64/65/66 and the OS group ([`KeyGenerateReq`], ...).
//! * [`decode_request`]: the device's request decoding (no serde: `tfmprov_cbor`'s map reader).
//! * [`decode_body`] / [`encode_body`] / [`error_body`] / [`response_error`]: CBOR bodies
//!   (serde + ciborium: the host side, and the reference `decode_request` is tested against).
//! * [`handle_packet`]: one request packet in, one response packet out, around a group handler.
//! * [`os`]: OS group echo and MCUmgr parameters.
//! * [`serial`]: Zephyr's "SMP over console" framing (base64 lines with CRC16).
//!
//! Behaviour checked against Zephyr's `subsys/mgmt/mcumgr` sources (smp.c, serial_util.c,
//! mgmt_defines.h, smp_internal.h); deviations are listed in `docs/smp.md`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod body;
mod codes;
mod header;
mod msg;
pub mod os;
mod packet;
mod request;
pub mod serial;

#[cfg(test)]
mod tests;

pub use body::{
    decode_body, encode_body, error_body, response_error, try_encode_body, ResponseError,
    MAX_CBOR_DEPTH,
};
pub use codes::{GroupRc, HandlerError, MgmtErr};
pub use header::{Header, Op, HEADER_LEN};
pub use msg::*;
pub use packet::handle_packet;
pub use request::{decode_request, EmptyReq, Request};

/// SMP group ids (DESIGN.md "SMP (mcumgr) groups"; OS is Zephyr's group 0).
pub mod group {
    /// Zephyr OS management group (echo, MCUmgr parameters).
    pub const OS: u16 = 0;
    /// Device keys (generate, public, status, destroy).
    pub const KEYS: u16 = 64;
    /// Certificate signing requests.
    pub const CSR: u16 = 65;
    /// Certificates (store, get).
    pub const CERTS: u16 = 66;
}

/// SMP command ids, per group.
pub mod cmd {
    /// OS group: echo `{"d": tstr}` -> `{"r": tstr}`.
    pub const OS_ECHO: u8 = 0;
    /// OS group: MCUmgr parameters -> `{"buf_size": uint, "buf_count": uint}`.
    pub const OS_PARAMS: u8 = 6;
    /// Keys group: generate or import a key (write).
    pub const KEYS_GENERATE: u8 = 0;
    /// Keys group: export the public key (read).
    pub const KEYS_PUBLIC: u8 = 1;
    /// Keys group: is the key present (read).
    pub const KEYS_STATUS: u8 = 2;
    /// Keys group: destroy a key and its certificate (write).
    pub const KEYS_DESTROY: u8 = 3;
    /// Keys group: the public key of the device's key-agreement key (read,
    /// `{}` -> `{"id": 0x3E000005, "pub": bstr}`; docs/remote.md). Created on
    /// first read.
    pub const KEYS_KAK: u8 = 4;
    /// Keys group: read the audit log of key operations (read,
    /// `{"from"?: uint}` -> `{"log": bstr .cbor AuditLog}`; docs/smp.md).
    pub const KEYS_AUDIT: u8 = 5;
    /// CSR group: create a PKCS#10 request signed by the key (write).
    pub const CSR_CREATE: u8 = 0;
    /// Certs group: store a DER certificate (write).
    pub const CERTS_STORE: u8 = 0;
    /// Certs group: read a stored certificate (read).
    pub const CERTS_GET: u8 = 1;
}

/// The errors of this crate (header and serial framing; CBOR body problems are reported as
/// [`HandlerError`] because they become SMP return codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Fewer bytes than an SMP header (8) were given.
    Truncated {
        /// Number of bytes available.
        len: usize,
    },
    /// The op field of the header is not 0..=3.
    BadOp(u8),
    /// The header's length field does not match the number of body bytes.
    LengthMismatch {
        /// Body length announced in the header.
        header: usize,
        /// Body bytes actually present.
        actual: usize,
    },
    /// Serial frame: the payload is not valid base64.
    Base64,
    /// Serial packet: the CRC16 does not match.
    BadCrc {
        /// CRC carried by the packet.
        received: u16,
        /// CRC computed over the received packet.
        computed: u16,
    },
    /// Serial packet: the length field is smaller than the CRC it must include.
    BadLength(u16),
    /// Serial packet larger than the decoder's maximum.
    TooLarge {
        /// Announced packet length (without length field and CRC).
        len: usize,
        /// Maximum accepted.
        max: usize,
    },
    /// Serial packet: more bytes arrived than the length field announced.
    Overrun,
    /// Serial frame line longer than any valid frame for the decoder's maximum packet.
    FrameTooLong,
    /// Serial packet: a new packet started before the previous one was complete.
    Interrupted,
    /// CBOR encoding failed (not expected for the message types of this crate).
    Encode,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Truncated { len } => {
                write!(f, "SMP header truncated: {len} of {HEADER_LEN} bytes")
            }
            Error::BadOp(op) => write!(f, "SMP header has invalid op {op}"),
            Error::LengthMismatch { header, actual } => write!(
                f,
                "SMP header announces a {header}-byte body but {actual} bytes are present"
            ),
            Error::Base64 => f.write_str("SMP serial frame is not valid base64"),
            Error::BadCrc { received, computed } => write!(
                f,
                "SMP serial packet CRC mismatch: received {received:#06x}, computed {computed:#06x}"
            ),
            Error::BadLength(len) => write!(f, "SMP serial packet length field {len} is invalid"),
            Error::TooLarge { len, max } => {
                write!(
                    f,
                    "SMP serial packet of {len} bytes exceeds the maximum of {max}"
                )
            }
            Error::Overrun => f.write_str("SMP serial packet longer than its length field"),
            Error::FrameTooLong => f.write_str("SMP serial frame line too long"),
            Error::Interrupted => {
                f.write_str("SMP serial packet interrupted by the start of a new packet")
            }
            Error::Encode => f.write_str("CBOR encoding failed"),
        }
    }
}

impl core::error::Error for Error {}
