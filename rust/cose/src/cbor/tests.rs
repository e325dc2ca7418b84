//! The decoder the parsers use; the check and the writer are tested in
//! `tfmprov-cbor`.

use super::*;
use crate::MAX_CBOR_DEPTH;

#[test]
fn decode_matches_ciborium_and_refuses_trailing_items() {
    let mut e = Enc::new();
    e.array(3).uint(23).uint(24).uint(65536);
    let b = e.finish();
    assert_eq!(b, [0x83, 0x17, 0x18, 0x18, 0x1a, 0x00, 0x01, 0x00, 0x00]);
    let v = decode(&b, MAX_CBOR_DEPTH).unwrap();
    assert_eq!(v, Value::Array(vec![Value::from(23), Value::from(24), Value::from(65536)]));
    let mut e = Enc::new();
    e.map(1).text("k").bytes(&[1; 300]).null();
    let b = e.finish();
    assert_eq!(&b[..6], &[0xa1, 0x61, b'k', 0x59, 0x01, 0x2c]);
    // the trailing null makes it two items after the map: refused
    assert!(decode(&b, MAX_CBOR_DEPTH).is_err());
    // a key without a value in an indefinite map: refused before ciborium
    assert!(decode(&[0xbf, 0x41, 0x2e, 0xff], MAX_CBOR_DEPTH).is_err());
}

#[test]
fn wipe_zeroes() {
    let mut b = [0xaau8; 16];
    wipe(&mut b);
    assert_eq!(b, [0u8; 16]);
}
