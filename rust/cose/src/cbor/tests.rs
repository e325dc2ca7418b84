use super::*;

fn ok(b: &[u8]) -> bool {
    check_wellformed(b, MAX_CBOR_DEPTH).is_ok()
}

#[test]
fn accepts_well_formed_items() {
    assert!(ok(&[0x00]));
    assert!(ok(&[0x3a, 0x00, 0x01, 0x00, 0x00])); // -65537
    assert!(ok(&[0x1b, 1, 2, 3, 4, 5, 6, 7, 8]));
    assert!(ok(&[0x43, 1, 2, 3]));
    assert!(ok(&[0x63, b'a', b'b', b'c']));
    assert!(ok(&[0x82, 0x01, 0x80])); // [1, []]
    assert!(ok(&[0xa1, 0x01, 0xa0])); // {1: {}}
    assert!(ok(&[0xd2, 0x84, 0x40, 0xa0, 0xf6, 0x40])); // 18([h'', {}, nil, h''])
    assert!(ok(&[0x9f, 0x01, 0x02, 0xff])); // [_ 1, 2]
    assert!(ok(&[0xbf, 0x01, 0x02, 0xff])); // {_ 1: 2}
    assert!(ok(&[0x5f, 0x41, 0x01, 0x42, 0x02, 0x03, 0xff])); // (_ h'01', h'0203')
    assert!(ok(&[0xf9, 0x3c, 0x00])); // 1.0 half
    assert!(ok(&[0xf8, 0x20])); // simple(32)
}

#[test]
fn refuses_malformed_items() {
    assert!(!ok(&[]));
    assert!(!ok(&[0x00, 0x00])); // trailing
    assert!(!ok(&[0x18])); // truncated argument
    assert!(!ok(&[0x43, 1, 2])); // truncated bstr
    assert!(!ok(&[0x82, 0x01])); // truncated array
    assert!(!ok(&[0xa1, 0x01])); // map missing value
    assert!(!ok(&[0x1c])); // reserved additional info
    assert!(!ok(&[0xff])); // stray break
    assert!(!ok(&[0x9f, 0x01])); // unterminated indefinite array
    assert!(!ok(&[0x5f, 0x61, b'a', 0xff])); // text chunk in byte string
    assert!(!ok(&[0x5f, 0x5f, 0xff, 0xff])); // nested indefinite chunk
    assert!(!ok(&[0x1f])); // indefinite uint
    assert!(!ok(&[0xdf, 0x00])); // indefinite tag
    assert!(!ok(&[0xf8, 0x10])); // simple < 32 in 1-byte form
    assert!(!ok(&[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])); // length > input
    assert!(!ok(&[0xa2, 0x01, 0x02, 0x03])); // map count > input / 2
}

#[test]
fn depth_limit() {
    let mut v = vec![0x81u8; 4];
    v.push(0x00);
    assert!(check_wellformed(&v, 4).is_ok());
    assert!(check_wellformed(&v, 3).is_err());
    let mut tags = vec![0xc0u8; 5];
    tags.push(0x00);
    assert!(check_wellformed(&tags, 5).is_ok());
    assert!(check_wellformed(&tags, 4).is_err());
}

#[test]
fn decode_matches_ciborium_and_encoder_is_minimal() {
    let mut e = Enc::new();
    e.array(3).uint(23).uint(24).uint(65536);
    let b = e.finish();
    assert_eq!(b, [0x83, 0x17, 0x18, 0x18, 0x1a, 0x00, 0x01, 0x00, 0x00]);
    let v = decode(&b, MAX_CBOR_DEPTH).unwrap();
    assert_eq!(
        v,
        Value::Array(vec![Value::from(23), Value::from(24), Value::from(65536)])
    );
    let mut e = Enc::new();
    e.map(1).text("k").bytes(&[1; 300]).null();
    let b = e.finish();
    assert_eq!(&b[..6], &[0xa1, 0x61, b'k', 0x59, 0x01, 0x2c]);
    // the trailing null makes it two items after the map: refused
    assert!(decode(&b, MAX_CBOR_DEPTH).is_err());
}

#[test]
fn wipe_zeroes() {
    let mut b = [0xaau8; 16];
    wipe(&mut b);
    assert_eq!(b, [0u8; 16]);
}
