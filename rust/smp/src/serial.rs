//! Zephyr's "SMP over console" framing (UART / shell / USB CDC ACM transports).
//!
//! Checked against Zephyr `subsys/mgmt/mcumgr/transport/src/serial_util.c`,
//! `include/zephyr/mgmt/mcumgr/transport/serial.h` and the Python `smp` package
//! (`smp.packet`) used by smpclient:
//!
//! * A packet (SMP header + CBOR body) is sent as the byte stream
//!   `len (BE16, = packet length + 2) | packet | CRC16 (BE16)`, where the CRC is
//!   CRC-16/XMODEM (Zephyr `crc16_itu_t` with seed 0: poly 0x1021, no reflection) over the
//!   packet only (not over the length field).
//! * That stream is base64-encoded (standard alphabet, with padding) and cut into frames
//!   (lines) of at most 127 bytes (`MCUMGR_SERIAL_MAX_FRAME`): a 2-byte marker, at most 124
//!   base64 characters (a multiple of 4, so every frame decodes on its own) and `'\n'`.
//!   The first frame's marker is `0x06 0x09` (`MCUMGR_SERIAL_HDR_PKT`), the others'
//!   `0x04 0x14` (`MCUMGR_SERIAL_HDR_FRAG`).
//! * [`encode_packet`] cuts the base64 text into 124-character frames as smpclient does
//!   (Zephyr's own encoder produces the same frames except that it keeps the CRC in the
//!   last frame; receivers accept both).
//!
//! [`Decoder`] is more tolerant than Zephyr's receiver: a marker is recognized anywhere in a
//! line (as smpclient does), so console output without a trailing newline before a frame
//! does not hide it; `'\r'` is ignored; every other line is console noise and skipped.

use alloc::vec::Vec;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::Error;

/// Maximum frame length including marker and newline (`MCUMGR_SERIAL_MAX_FRAME`).
pub const MAX_FRAME: usize = 127;
/// First-frame marker (`MCUMGR_SERIAL_HDR_PKT`).
pub const MARKER_PKT: [u8; 2] = [0x06, 0x09];
/// Continuation-frame marker (`MCUMGR_SERIAL_HDR_FRAG`).
pub const MARKER_FRAG: [u8; 2] = [0x04, 0x14];
/// Base64 characters per frame: the largest multiple of 4 that fits with marker and newline.
const CHARS_PER_FRAME: usize = (MAX_FRAME - 3) / 4 * 4;

/// CRC-16/XMODEM (poly 0x1021, init 0, no reflection, no final xor); Zephyr's
/// `crc16_itu_t(0x0000, ..)`. Check value: `crc16_xmodem(b"123456789") == 0x31C3`.
pub fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Frames one SMP packet for the console; [`Error::TooLarge`] if `packet` is longer than
/// 65533 bytes (its length plus the CRC must fit the 16-bit length field).
pub fn try_encode_packet(packet: &[u8]) -> Result<Vec<u8>, Error> {
    let max = usize::from(u16::MAX) - 2;
    let len = u16::try_from(packet.len() + 2).map_err(|_| Error::TooLarge {
        len: packet.len(),
        max,
    })?;
    let mut raw = Vec::with_capacity(packet.len() + 4);
    raw.extend_from_slice(&len.to_be_bytes());
    raw.extend_from_slice(packet);
    raw.extend_from_slice(&crc16_xmodem(packet).to_be_bytes());
    let text = STANDARD.encode(&raw);
    let text = text.as_bytes();
    let frames = text.len().div_ceil(CHARS_PER_FRAME).max(1);
    let mut out = Vec::with_capacity(text.len() + 3 * frames);
    for (i, chunk) in text.chunks(CHARS_PER_FRAME).enumerate() {
        out.extend_from_slice(if i == 0 { &MARKER_PKT } else { &MARKER_FRAG });
        out.extend_from_slice(chunk);
        out.push(b'\n');
    }
    Ok(out)
}

/// Frames one SMP packet for the console (see the module documentation). A packet too long
/// for the 16-bit length field (over 65533 bytes) gives an empty result: nothing is sent.
pub fn encode_packet(packet: &[u8]) -> Vec<u8> {
    try_encode_packet(packet).unwrap_or_default()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    First,
    Continuation,
}

/// Incremental decoder of console frames into SMP packets.
///
/// Feed it whatever the line delivers with [`Decoder::push`]; each complete packet is
/// reported once, as `Ok(packet)` (the SMP header + body, without length field and CRC) or
/// as an `Err` (bad base64, CRC mismatch, bad length field, larger than `max_packet`, line
/// too long, interrupted by a new packet). After an error the decoder waits for the next
/// first frame. Non-SMP lines are skipped silently, as are continuation frames that belong
/// to no packet (the rest of a packet already reported as an error). Memory use is bounded
/// by about twice `max_packet`.
#[derive(Clone, Debug)]
pub struct Decoder {
    max_packet: usize,
    max_chars: usize,
    prev: u8,
    frame: Option<Kind>,
    chars: Vec<u8>,
    overflow: bool,
    /// Decoded bytes of the packet in progress, length field included.
    pkt: Vec<u8>,
    /// Total decoded length of the packet in progress (2 + length field), if one is.
    expected: Option<usize>,
}

impl Decoder {
    /// A decoder accepting packets of at most `max_packet` bytes (SMP header + body).
    pub fn new(max_packet: usize) -> Self {
        let raw = max_packet.saturating_add(4);
        let max_chars = raw.div_ceil(3).saturating_mul(4).max(CHARS_PER_FRAME);
        Decoder {
            max_packet,
            max_chars,
            prev: 0,
            frame: None,
            chars: Vec::new(),
            overflow: false,
            pkt: Vec::new(),
            expected: None,
        }
    }

    /// The largest packet accepted.
    pub fn max_packet(&self) -> usize {
        self.max_packet
    }

    /// Forgets any partial line and packet.
    pub fn reset(&mut self) {
        self.prev = 0;
        self.frame = None;
        self.chars.clear();
        self.overflow = false;
        self.reset_packet();
    }

    /// Feeds received bytes; completed packets (or their errors) are appended to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Result<Vec<u8>, Error>>) {
        for &b in bytes {
            if b == b'\n' {
                self.end_line(out);
            } else if [self.prev, b] == MARKER_PKT {
                self.start_frame(Kind::First);
            } else if [self.prev, b] == MARKER_FRAG {
                self.start_frame(Kind::Continuation);
            } else if self.frame.is_some() && b != b'\r' {
                if self.chars.len() < self.max_chars {
                    self.chars.push(b);
                } else {
                    self.overflow = true;
                }
            }
            self.prev = b;
        }
    }

    fn start_frame(&mut self, kind: Kind) {
        self.frame = Some(kind);
        self.chars.clear();
        self.overflow = false;
    }

    fn reset_packet(&mut self) {
        self.pkt.clear();
        self.expected = None;
    }

    fn end_line(&mut self, out: &mut Vec<Result<Vec<u8>, Error>>) {
        if let Some(kind) = self.frame.take() {
            if let Some(result) = self.frame_done(kind, out) {
                out.push(result);
            }
        }
        self.chars.clear();
        self.overflow = false;
    }

    /// Processes one complete frame; returns the packet's outcome when it is complete.
    fn frame_done(
        &mut self,
        kind: Kind,
        out: &mut Vec<Result<Vec<u8>, Error>>,
    ) -> Option<Result<Vec<u8>, Error>> {
        match (kind, self.expected.is_some()) {
            (Kind::Continuation, false) => return None, // stray continuation: skip
            (Kind::First, true) => {
                out.push(Err(Error::Interrupted));
                self.reset_packet();
            }
            _ => {}
        }
        if self.overflow {
            self.reset_packet();
            return Some(Err(Error::FrameTooLong));
        }
        if STANDARD.decode_vec(&self.chars, &mut self.pkt).is_err() {
            self.reset_packet();
            return Some(Err(Error::Base64));
        }
        let expected = match self.expected {
            Some(expected) => expected,
            None => {
                let Some(&[hi, lo]) = self.pkt.get(..2) else {
                    let len = self.pkt.len();
                    self.reset_packet();
                    return Some(Err(Error::Truncated { len }));
                };
                let len = u16::from_be_bytes([hi, lo]);
                if len < 2 {
                    self.reset_packet();
                    return Some(Err(Error::BadLength(len)));
                }
                let packet_len = usize::from(len) - 2;
                if packet_len > self.max_packet {
                    self.reset_packet();
                    return Some(Err(Error::TooLarge {
                        len: packet_len,
                        max: self.max_packet,
                    }));
                }
                let expected = usize::from(len) + 2;
                self.expected = Some(expected);
                expected
            }
        };
        if self.pkt.len() < expected {
            return None;
        }
        let result = if self.pkt.len() > expected {
            Err(Error::Overrun)
        } else {
            match (self.pkt.get(2..expected - 2), self.pkt.get(expected - 2..)) {
                (Some(packet), Some(&[hi, lo])) => {
                    let received = u16::from_be_bytes([hi, lo]);
                    let computed = crc16_xmodem(packet);
                    if received == computed {
                        Ok(packet.to_vec())
                    } else {
                        Err(Error::BadCrc { received, computed })
                    }
                }
                _ => Err(Error::Overrun), // unreachable: expected >= 4 and pkt.len() == expected
            }
        };
        self.reset_packet();
        Some(result)
    }
}
