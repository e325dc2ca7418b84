use super::*;

#[test]
fn codes_table() {
    let want = [
        (1, "unknown device"),
        (2, "revoked"),
        (3, "malformed COSE"),
        (4, "bad signature"),
        (5, "kid mismatch"),
        (6, "replay or duplicate"),
        (7, "too large"),
        (8, "unknown session"),
        (9, "stale session id"),
        (10, "decryption failed"),
        (11, "seq beyond the replay horizon"),
    ];
    for (c, (code, reason)) in RejectCode::ALL.iter().zip(want) {
        assert_eq!(c.code(), code);
        assert_eq!(c.reason(), reason);
        assert_eq!(RejectCode::from_code(code), Some(*c));
    }
    assert_eq!(RejectCode::from_code(0), None);
    assert_eq!(RejectCode::from_code(12), None);
}

#[test]
fn exact_bytes_and_round_trip() {
    let r = ErrorReport::new(RejectCode::BadSignature);
    let b = r.to_cbor();
    // {"code": 4, "reason": "bad signature"}
    let mut want = vec![0xa2, 0x64, b'c', b'o', b'd', b'e', 0x04, 0x66];
    want.extend_from_slice(b"reason");
    want.push(0x6d);
    want.extend_from_slice(b"bad signature");
    assert_eq!(b, want);
    assert_eq!(ErrorReport::from_cbor(&b).unwrap(), r);
    assert_eq!(r.reject_code(), Some(RejectCode::BadSignature));

    let full = ErrorReport {
        code: 6,
        reason: "replay or duplicate".into(),
        kid: Some(vec![1; 8]),
        seq: Some(u64::MAX),
    };
    assert_eq!(ErrorReport::from_cbor(&full.to_cbor()).unwrap(), full);
    let unknown = ErrorReport {
        code: 4000,
        reason: String::new(),
        kid: Some(vec![]),
        seq: Some(0),
    };
    assert_eq!(ErrorReport::from_cbor(&unknown.to_cbor()).unwrap(), unknown);
    assert_eq!(unknown.reject_code(), None);
}

fn enc(f: impl FnOnce(&mut Enc)) -> Vec<u8> {
    let mut e = Enc::new();
    f(&mut e);
    e.finish()
}

#[test]
fn decoding_rules() {
    // unknown keys (text and int) are ignored
    let b = enc(|e| {
        e.map(4)
            .text("code")
            .uint(1)
            .text("reason")
            .text("x")
            .text("extra")
            .uint(5)
            .uint(1)
            .uint(2);
    });
    assert_eq!(
        ErrorReport::from_cbor(&b).unwrap(),
        ErrorReport {
            code: 1,
            reason: "x".into(),
            kid: None,
            seq: None
        }
    );
    let missing_code = enc(|e| {
        e.map(1).text("reason").text("x");
    });
    assert_eq!(
        ErrorReport::from_cbor(&missing_code),
        Err(Error::Profile("code missing"))
    );
    let missing_reason = enc(|e| {
        e.map(1).text("code").uint(1);
    });
    assert_eq!(
        ErrorReport::from_cbor(&missing_reason),
        Err(Error::Profile("reason missing"))
    );
    let big_code = enc(|e| {
        e.map(2).text("code").uint(1 << 32).text("reason").text("x");
    });
    assert_eq!(
        ErrorReport::from_cbor(&big_code),
        Err(Error::Profile("code is not a u32"))
    );
    let neg_code = [
        0xa2, 0x64, b'c', b'o', b'd', b'e', 0x20, 0x66, b'r', b'e', b'a', b's', b'o', b'n', 0x60,
    ];
    assert_eq!(
        ErrorReport::from_cbor(&neg_code),
        Err(Error::Profile("code is not a uint"))
    );
    let dup = enc(|e| {
        e.map(3)
            .text("code")
            .uint(1)
            .text("reason")
            .text("x")
            .text("code")
            .uint(2);
    });
    assert_eq!(
        ErrorReport::from_cbor(&dup),
        Err(Error::Profile("duplicate key in errors body"))
    );
    let kid_text = enc(|e| {
        e.map(3)
            .text("code")
            .uint(1)
            .text("reason")
            .text("x")
            .text("kid")
            .text("k");
    });
    assert_eq!(
        ErrorReport::from_cbor(&kid_text),
        Err(Error::Profile("kid is not a bstr"))
    );
    let seq_bytes = enc(|e| {
        e.map(3)
            .text("code")
            .uint(1)
            .text("reason")
            .text("x")
            .text("seq")
            .bytes(&[1]);
    });
    assert_eq!(
        ErrorReport::from_cbor(&seq_bytes),
        Err(Error::Profile("seq is not a uint"))
    );
    assert_eq!(
        ErrorReport::from_cbor(&[0x80]),
        Err(Error::Profile("errors body is not a map"))
    );
    assert_eq!(
        ErrorReport::from_cbor(&[0xa1, 0x64, b'c']),
        Err(Error::Cbor)
    );
    // invalid UTF-8 in reason
    let bad_utf8 = [
        0xa2, 0x64, b'c', b'o', b'd', b'e', 0x01, 0x66, b'r', b'e', b'a', b's', b'o', b'n', 0x61,
        0xff,
    ];
    assert_eq!(ErrorReport::from_cbor(&bad_utf8), Err(Error::Cbor));
}
