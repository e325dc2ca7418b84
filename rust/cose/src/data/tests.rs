use super::*;
use crate::test_crypto::*;
use crate::{parse_data, MAX_MESSAGE_LEN, SEQ_LABEL};
use ciborium::value::Value;
use coset::{HeaderBuilder, ProtectedHeader, TaggedCborSerializable};

#[test]
fn round_trip_with_p256() {
    let kp = keypair();
    let msg = sign_data(&kp.kid, 42, b"temperature=21.5", signer(&kp.sk)).unwrap();
    assert_eq!(msg[0], 0xd2, "tag 18");
    let d = parse_data(&msg).unwrap();
    assert_eq!(d.kid, kp.kid);
    assert_eq!(d.seq, 42);
    assert_eq!(d.payload, b"temperature=21.5");
    d.verify(verifier(&kp.public)).unwrap();
    // The ToBeSigned is Sig_structure ["Signature1", protected, h'', payload].
    assert_eq!(
        &d.tbs()[..12],
        &[0x84, 0x6a, b'S', b'i', b'g', b'n', b'a', b't', b'u', b'r', b'e', b'1']
    );
}

#[test]
fn protected_header_bytes_are_exactly_the_profile() {
    let kid = [1, 2, 3, 4, 5, 6, 7, 8];
    let msg = sign_data(&kid, 1000, b"", |_| Ok::<_, ()>([7u8; 64])).unwrap();
    let s = CoseSign1::from_tagged_slice(&msg).unwrap();
    let mut want = vec![0xa3, 0x01, 0x26, 0x04, 0x48];
    want.extend_from_slice(&kid);
    want.extend_from_slice(&[0x3a, 0x00, 0x01, 0x00, 0x00, 0x19, 0x03, 0xe8]); // -65537: 1000
    assert_eq!(s.protected.original_data.unwrap(), want);
    assert!(s.unprotected.is_empty());
}

#[test]
fn other_key_and_every_flipped_byte_fail() {
    let kp = keypair();
    let other = keypair();
    let msg = sign_data(&kp.kid, 1, b"abc", signer(&kp.sk)).unwrap();
    let d = parse_data(&msg).unwrap();
    assert_eq!(
        d.verify(verifier(&other.public)),
        Err(Error::Signature(CryptoError("bad signature")))
    );
    for i in 0..msg.len() {
        let mut m = msg.clone();
        m[i] ^= 0x01;
        if let Ok(d) = parse_data(&m) {
            assert!(
                d.verify(verifier(&kp.public)).is_err(),
                "flip at {i} still verifies"
            );
        }
    }
}

#[test]
fn untagged_is_accepted_other_tags_are_not() {
    let kp = keypair();
    let msg = sign_data(&kp.kid, 5, b"x", signer(&kp.sk)).unwrap();
    let untagged = &msg[1..];
    let d = parse_data(untagged).unwrap();
    d.verify(verifier(&kp.public)).unwrap();
    let mut wrong = msg.clone();
    wrong[0] = 0xd0; // tag 16
    assert_eq!(
        parse_data(&wrong),
        Err(Error::Profile("unexpected CBOR tag"))
    );
}

#[test]
fn sign_error_is_crypto() {
    let r = sign_data(&[0; 8], 0, b"", |_| Err::<[u8; 64], _>("psa"));
    assert_eq!(r, Err(Error::Crypto("psa")));
}

#[test]
fn payload_over_64k_is_refused() {
    let big = vec![0u8; MAX_MESSAGE_LEN];
    let r = sign_data(&[0; 8], 0, &big, |_| Ok::<_, ()>([0u8; 64]));
    assert!(matches!(r, Err(Error::TooLarge(_))));
}

/// A Sign1 with a hand-made protected header (signature is garbage: these are
/// profile checks before verification).
fn with_protected(h: coset::Header, unprotected: coset::Header) -> Vec<u8> {
    CoseSign1 {
        protected: ProtectedHeader {
            original_data: None,
            header: h,
        },
        unprotected,
        payload: Some(b"p".to_vec()),
        signature: vec![0; 64],
    }
    .to_tagged_vec()
    .unwrap()
}

fn seq(v: i64) -> Value {
    Value::Integer(v.into())
}

#[test]
fn profile_violations_are_rejected() {
    let kid = vec![0u8; 8];
    let good = || {
        HeaderBuilder::new()
            .algorithm(iana::Algorithm::ES256)
            .key_id(kid.clone())
            .value(SEQ_LABEL, seq(1))
    };
    assert!(parse_data(&with_protected(good().build(), Header::default())).is_ok());

    let cases: Vec<(coset::Header, coset::Header, &str)> = vec![
        (
            HeaderBuilder::new()
                .algorithm(iana::Algorithm::ES384)
                .key_id(kid.clone())
                .value(SEQ_LABEL, seq(1))
                .build(),
            Header::default(),
            "wrong algorithm",
        ),
        (
            HeaderBuilder::new()
                .key_id(kid.clone())
                .value(SEQ_LABEL, seq(1))
                .build(),
            Header::default(),
            "algorithm missing from protected header",
        ),
        (
            HeaderBuilder::new()
                .key_id(kid.clone())
                .value(SEQ_LABEL, seq(1))
                .build(),
            HeaderBuilder::new()
                .algorithm(iana::Algorithm::ES256)
                .build(),
            "algorithm in unprotected header",
        ),
        (
            HeaderBuilder::new()
                .algorithm(iana::Algorithm::ES256)
                .key_id(vec![0; 7])
                .value(SEQ_LABEL, seq(1))
                .build(),
            Header::default(),
            "kid is not 8 bytes",
        ),
        (
            HeaderBuilder::new()
                .algorithm(iana::Algorithm::ES256)
                .value(SEQ_LABEL, seq(1))
                .build(),
            HeaderBuilder::new().key_id(kid.clone()).build(),
            "kid missing from protected header",
        ),
        (
            HeaderBuilder::new()
                .algorithm(iana::Algorithm::ES256)
                .key_id(kid.clone())
                .build(),
            Header::default(),
            "seq missing from protected header",
        ),
        (
            HeaderBuilder::new()
                .algorithm(iana::Algorithm::ES256)
                .key_id(kid.clone())
                .build(),
            HeaderBuilder::new().value(SEQ_LABEL, seq(1)).build(),
            "seq in unprotected header",
        ),
        (
            HeaderBuilder::new()
                .algorithm(iana::Algorithm::ES256)
                .key_id(kid.clone())
                .value(SEQ_LABEL, seq(-1))
                .build(),
            Header::default(),
            "seq is not a uint",
        ),
        (
            HeaderBuilder::new()
                .algorithm(iana::Algorithm::ES256)
                .key_id(kid.clone())
                .value(SEQ_LABEL, Value::Bytes(vec![1]))
                .build(),
            Header::default(),
            "seq is not a uint",
        ),
        (
            crit_header(),
            Header::default(),
            "critical header parameters are not supported",
        ),
    ];
    for (p, u, want) in cases {
        assert_eq!(parse_data(&with_protected(p, u)), Err(Error::Profile(want)));
    }
}

fn crit_header() -> coset::Header {
    let mut h = HeaderBuilder::new()
        .algorithm(iana::Algorithm::ES256)
        .key_id(vec![0; 8])
        .value(SEQ_LABEL, seq(1))
        .build();
    h.crit
        .push(coset::RegisteredLabelWithPrivate::PrivateUse(SEQ_LABEL));
    h
}

#[test]
fn structural_violations_are_rejected() {
    let kp = keypair();
    let msg = sign_data(&kp.kid, 1, b"abc", signer(&kp.sk)).unwrap();
    let mut s = CoseSign1::from_tagged_slice(&msg).unwrap();
    // detached payload
    let mut d = s.clone();
    d.payload = None;
    assert_eq!(
        parse_data(&d.to_tagged_vec().unwrap()),
        Err(Error::Profile("payload is detached"))
    );
    // short signature
    s.signature.pop();
    assert_eq!(
        parse_data(&s.to_tagged_vec().unwrap()),
        Err(Error::Profile("signature is not 64 bytes"))
    );
    // trailing bytes
    let mut t = msg.clone();
    t.push(0x00);
    assert_eq!(parse_data(&t), Err(Error::Cbor));
    // not a Sign1 at all
    assert_eq!(
        parse_data(&[0x83, 0x40, 0xa0, 0x40]),
        Err(Error::Profile("not a COSE_Sign1"))
    );
    assert_eq!(parse_data(&[0x01]), Err(Error::Profile("not a COSE_Sign1")));
}
