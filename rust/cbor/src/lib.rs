//! Bounded CBOR (RFC 8949) for the device side: what the firmware reads
//! (SMP request maps, `errors` reports) and writes (COSE messages, the
//! sample payload), without serde and without value trees.
//!
//! - [`check_wellformed`] walks untrusted bytes iteratively (constant stack,
//!   no allocation) and refuses truncated items, lengths beyond the input,
//!   reserved or malformed heads, trailing bytes and nesting deeper than a
//!   limit. Everything else here only runs on input that passed it.
//! - [`MapReader`] reads one top-level map entry by entry, with typed
//!   accessors; keys are compared as text, other keys and unknown values are
//!   skipped without recursion.
//! - [`Enc`] writes deterministic CBOR (shortest heads, definite lengths).
//!
//! Why not `ciborium` on the device: measured in the linked Cortex-M33
//! firmware, its serde deserializer, `Value` and the float formatting its
//! error messages pull in were about 18 KiB of a 64 KiB budget
//! (docs/firmware.md, "Footprint"). The host side keeps `ciborium` and
//! `coset`, and the tests here check this crate against `ciborium`.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod cursor;
mod enc;
mod reader;
mod wellformed;

pub use cursor::{Cursor, Label};
pub use enc::Enc;
pub use reader::MapReader;
pub use wellformed::check_wellformed;

#[cfg(test)]
mod tests;

/// Everything that can go wrong reading CBOR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Not one well-formed CBOR item within the depth limit (truncated,
    /// trailing bytes, reserved head, a length beyond the input, too deep).
    Malformed,
    /// The top-level item is not a map.
    NotAMap,
    /// A value of the wrong type for its key (the key is named).
    WrongType(&'static str),
    /// A text string that is not UTF-8.
    NotUtf8,
    /// A known key appears twice (named).
    Duplicate(&'static str),
    /// A required key is missing (named).
    Missing(&'static str),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Malformed => f.write_str("malformed CBOR"),
            Error::NotAMap => f.write_str("not a CBOR map"),
            Error::WrongType(k) => write!(f, "{k}: wrong type"),
            Error::NotUtf8 => f.write_str("text is not UTF-8"),
            Error::Duplicate(k) => write!(f, "{k}: duplicate key"),
            Error::Missing(k) => write!(f, "{k}: missing"),
        }
    }
}

/// One decoded item head: major type, additional information, argument
/// (`None` for an indefinite length) and where the item's content starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub major: u8,
    pub info: u8,
    pub arg: Option<u64>,
    pub next: usize,
}

/// Reads the head at `pos`; `None` when truncated or reserved (28..30).
pub(crate) fn read_head(buf: &[u8], pos: usize) -> Option<Head> {
    let initial = *buf.get(pos)?;
    let (major, info) = (initial >> 5, initial & 0x1f);
    let start = pos + 1;
    let (arg, next) = match info {
        0..=23 => (Some(u64::from(info)), start),
        24..=27 => {
            let end = start.checked_add(1usize << (info - 24))?;
            let bytes = buf.get(start..end)?;
            (Some(bytes.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b))), end)
        }
        31 => (None, start),
        _ => return None,
    };
    Some(Head { major, info, arg, next })
}
