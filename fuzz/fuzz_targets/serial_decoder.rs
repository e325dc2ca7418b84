//! The console frame decoder on arbitrary input, fed in arbitrary pieces: must never panic,
//! every packet it yields respects the size limit, and a valid frame after the noise is
//! always decoded (resynchronization).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tfmprov_smp::serial::{encode_packet, Decoder};

const MAX: usize = 512;

fuzz_target!(|data: &[u8]| {
    let (split, rest) = match data.split_first() {
        Some((s, r)) => (usize::from(*s).max(1), r),
        None => (1, data),
    };
    let mut dec = Decoder::new(MAX);
    let mut out = Vec::new();
    for chunk in rest.chunks(split) {
        dec.push(chunk, &mut out);
    }
    for p in out.iter().flatten() {
        assert!(p.len() <= MAX);
    }
    // after any garbage, a newline and a valid packet must come through
    out.clear();
    let probe = b"\x0a\x00\x00\x01\x00\x00\x07\x00\xa0";
    dec.push(b"\n", &mut out);
    out.clear();
    dec.push(&encode_packet(probe), &mut out);
    assert_eq!(out.last(), Some(&Ok(probe.to_vec())));
});
