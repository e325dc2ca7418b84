//! Bounded CBOR decoding for the parsers (server side) and secret wiping.
//!
//! `tfmprov_cbor::check_wellformed` walks untrusted bytes iteratively (no
//! recursion, no allocation) and refuses truncated items, lengths larger
//! than what is left, trailing bytes and nesting deeper than a limit. Only
//! input that passed it is handed to `ciborium`, so `ciborium`'s recursion
//! and allocations are bounded by the input itself.

use ciborium::value::Value;

pub(crate) use tfmprov_cbor::{check_wellformed, Enc};

/// Decode untrusted bytes into a [`Value`] after [`check_wellformed`].
pub(crate) fn decode(buf: &[u8], max_depth: usize) -> Result<Value, ()> {
    check_wellformed(buf, max_depth).map_err(drop)?;
    // A small scratch buffer: byte strings longer than it are read in chunks.
    let mut scratch = [0u8; 128];
    ciborium::de::from_reader_with_buffer(buf, &mut scratch).map_err(|_| ())
}

/// Overwrite secret bytes with zeros in a way the optimizer keeps.
pub(crate) fn wipe(buf: &mut [u8]) {
    for b in buf.iter_mut() {
        // SAFETY: `b` is a valid, aligned, exclusive reference to a u8.
        unsafe { core::ptr::write_volatile(b as *mut u8, 0) };
    }
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
}

#[cfg(test)]
mod tests;
