use super::*;
use crate::test_crypto::*;
use crate::SEQ_LABEL;
use ciborium::value::Value;
use coset::{Header, ProtectedHeader, TaggedCborSerializable};

const KEY: [u8; 16] = [0x42; 16];

fn sealed(sid: u32, seq: u64, pt: &[u8]) -> Vec<u8> {
    let iv = sealed_iv(sid, seq);
    seal(sid, seq, &iv, pt, |aad, pt| gcm_encrypt(&KEY, &iv, aad, pt)).unwrap()
}

fn open(m: &SealedMessage, key: &[u8; 16]) -> Result<Vec<u8>, Error<CryptoError>> {
    m.open(|aad, ct| gcm_decrypt(key, &m.iv, aad, ct))
}

#[test]
fn round_trip() {
    let msg = sealed(5, 99, b"secret reading");
    assert_eq!(msg[0], 0xd0, "tag 16");
    let m = parse_sealed(&msg).unwrap();
    assert_eq!((m.session_id, m.seq), (5, 99));
    assert_eq!(m.iv, sealed_iv(5, 99));
    assert_eq!(open(&m, &KEY).unwrap(), b"secret reading");
    // empty plaintext is fine
    let m = parse_sealed(&sealed(5, 100, b"")).unwrap();
    assert_eq!(open(&m, &KEY).unwrap(), b"");
}

#[test]
fn iv_layout_and_header_bytes() {
    assert_eq!(
        sealed_iv(0x01020304, 0x05),
        [1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 5]
    );
    let msg = sealed(1, 2, b"x");
    let e = CoseEncrypt0::from_tagged_slice(&msg).unwrap();
    assert_eq!(
        e.protected.original_data.unwrap(),
        [0xa3, 0x01, 0x01, 0x04, 0x44, 0, 0, 0, 1, 0x3a, 0x00, 0x01, 0x00, 0x00, 0x02]
    );
    assert_eq!(e.unprotected.iv, sealed_iv(1, 2));
}

#[test]
fn wrong_key_and_tampering_fail() {
    let msg = sealed(5, 1, b"secret");
    let m = parse_sealed(&msg).unwrap();
    assert_eq!(
        open(&m, &[0x43; 16]),
        Err(Error::Decrypt(CryptoError("decrypt")))
    );
    // Every single-byte change: refused by the parser or by the AEAD.
    for i in 0..msg.len() {
        let mut t = msg.clone();
        t[i] ^= 0x04;
        if let Ok(m) = parse_sealed(&t) {
            assert!(open(&m, &KEY).is_err(), "flip at {i} still opens");
        }
    }
    // Changing seq in the protected header (re-encoded): the AAD changes.
    let mut e = CoseEncrypt0::from_tagged_slice(&msg).unwrap();
    e.protected.original_data = None;
    e.protected.header.rest[0].1 = Value::from(2);
    let m = parse_sealed(&e.to_tagged_vec().unwrap()).unwrap();
    assert_eq!(m.seq, 2);
    assert_eq!(open(&m, &KEY), Err(Error::Decrypt(CryptoError("decrypt"))));
}

#[test]
#[allow(clippy::type_complexity)]
fn profile_violations_are_rejected() {
    let msg = sealed(5, 1, b"secret");
    let base = CoseEncrypt0::from_tagged_slice(&msg).unwrap();
    let check = |edit: &dyn Fn(&mut Header, &mut Header, &mut Option<Vec<u8>>),
                 want: &'static str| {
        let mut e = base.clone();
        let mut p = e.protected.header.clone();
        edit(&mut p, &mut e.unprotected, &mut e.ciphertext);
        e.protected = ProtectedHeader {
            original_data: None,
            header: p,
        };
        assert_eq!(
            parse_sealed(&e.to_tagged_vec().unwrap()),
            Err(Error::Profile(want)),
            "{want}"
        );
    };
    check(
        &|p, _, _| {
            p.alg = Some(coset::Algorithm::Assigned(
                iana::Algorithm::AES_CCM_16_128_128,
            ))
        },
        "wrong algorithm",
    );
    check(
        &|p, _, _| p.key_id = vec![0; 8],
        "session id is not a 4-byte kid",
    );
    check(
        &|p, _, _| p.key_id = vec![],
        "session id missing from protected header",
    );
    check(
        &|p, _, _| p.rest.clear(),
        "seq missing from protected header",
    );
    check(
        &|p, _, _| p.rest[0].1 = Value::from(-5),
        "seq is not a uint",
    );
    check(&|_, u, _| u.iv = vec![0; 16], "IV is not 12 bytes");
    check(&|_, u, _| u.iv = vec![], "IV missing");
    check(&|p, _, _| p.iv = vec![0; 12], "IV in protected header");
    check(
        &|p, _, _| p.partial_iv = vec![1],
        "partial IV is not supported",
    );
    check(
        &|_, u, _| u.rest.push((coset::Label::Int(SEQ_LABEL), Value::from(1))),
        "seq in unprotected header",
    );
    check(
        &|_, _, c| *c = Some(vec![0; 15]),
        "ciphertext shorter than the GCM tag",
    );
    check(&|_, _, c| *c = None, "ciphertext is detached");
    // A data message is not a sealed message.
    let d = crate::sign_data(&[0; 8], 1, b"x", |_| Ok::<_, ()>([0; 64])).unwrap();
    assert_eq!(parse_sealed(&d), Err(Error::Profile("unexpected CBOR tag")));
    assert_eq!(
        parse_sealed(&d[1..]),
        Err(Error::Profile("not a COSE_Encrypt0"))
    );
}

#[test]
fn crypto_output_and_size_checks() {
    let iv = sealed_iv(1, 1);
    assert_eq!(
        seal(1, 1, &iv, b"abc", |_, _| Err::<Vec<u8>, _>("psa")),
        Err(Error::Crypto("psa"))
    );
    assert_eq!(
        seal(1, 1, &iv, b"abc", |_, pt| Ok::<_, ()>(pt.to_vec())),
        Err(Error::CryptoOutput(
            "AES-GCM output is not plaintext + 16 bytes"
        ))
    );
    let big = vec![0u8; crate::MAX_MESSAGE_LEN + 1];
    assert!(matches!(
        seal(1, 1, &iv, &big, |_, _| Ok::<Vec<u8>, ()>(vec![])),
        Err(Error::TooLarge(_))
    ));
    let m = parse_sealed(&sealed(1, 1, b"abc")).unwrap();
    assert_eq!(
        m.open(|_, _| Ok::<_, ()>(vec![1])),
        Err(Error::CryptoOutput(
            "AES-GCM output is not ciphertext - 16 bytes"
        ))
    );
}
