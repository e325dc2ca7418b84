//! Crate-level helpers: kid, SPKI, error mapping; and a bounded
//! never-panic sweep over all parsers.

use super::*;
use crate::test_crypto::*;

#[test]
fn spki_is_prefix_plus_point_and_parses_as_der_spki() {
    let kp = keypair();
    let der = p256_spki_der(&kp.public);
    assert_eq!(der.len(), 91);
    assert_eq!(&der[..26], &P256_SPKI_PREFIX);
    assert_eq!(&der[26..], &kp.public);
    // An independent parser agrees that this is the SPKI of the key.
    use p256::pkcs8::DecodePublicKey;
    let pk = p256::PublicKey::from_public_key_der(&der).expect("valid SPKI");
    assert_eq!(pk, p256::PublicKey::from(kp.sk.verifying_key()));
}

#[test]
fn kid_is_first_8_bytes_of_digest() {
    let mut d = [0u8; 32];
    for (i, b) in d.iter_mut().enumerate() {
        *b = i as u8;
    }
    assert_eq!(kid_from_spki_digest(&d), [0, 1, 2, 3, 4, 5, 6, 7]);
}

#[test]
fn error_cast_and_reject_codes() {
    let e: Error<CryptoError> = Error::Profile("x").cast();
    assert_eq!(e, Error::Profile("x"));
    assert_eq!(
        Error::<()>::TooLarge(70000).reject_code(),
        RejectCode::TooLarge
    );
    assert_eq!(Error::<()>::Cbor.reject_code(), RejectCode::MalformedCose);
    assert_eq!(
        Error::<()>::Profile("x").reject_code(),
        RejectCode::MalformedCose
    );
    assert_eq!(Error::Signature(()).reject_code(), RejectCode::BadSignature);
    assert_eq!(
        Error::Decrypt(()).reject_code(),
        RejectCode::DecryptionFailed
    );
    assert_eq!(
        Error::<()>::Profile("kid is not 8 bytes").to_string(),
        "COSE profile violation: kid is not 8 bytes"
    );
}

/// Deterministic xorshift so the sweep is reproducible.
fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

/// Run every parser over `buf`; none may panic (the test fails on a panic).
pub(crate) fn parse_all(buf: &[u8]) {
    let _ = parse_data(buf);
    let _ = parse_session(buf);
    let _ = parse_sealed(buf);
    for dir in [crate::Direction::Command, crate::Direction::Reply] {
        if let Ok(env) = crate::parse_envelope(dir, "dev-1", buf) {
            let _ = env.verify(|_, _| Err::<(), ()>(()));
            let _ = env.open(
                |_eph| Ok::<_, ()>([0u8; 32]),
                |_ikm, _info, len| Ok(alloc::vec![0u8; len]),
                |_key, _iv, _aad, ct| Ok(ct[..ct.len().saturating_sub(16)].to_vec()),
            );
        }
    }
    let _ = ErrorReport::from_cbor(buf);
    let _ = crate::cbor::check_wellformed(buf, MAX_CBOR_DEPTH);
}

#[test]
fn parsers_survive_mutations_of_valid_messages() {
    let dev = keypair();
    let cloud = keypair();
    let data = sign_data(&dev.kid, 7, b"hello", signer(&dev.sk)).unwrap();
    let session = build_session(
        3,
        &[9u8; 16],
        &cloud.kid,
        &cloud.public,
        &dev.kid,
        crypto(),
        signer(&dev.sk),
    )
    .unwrap();
    let sealed = seal(3, 1, &sealed_iv(3, 1), b"payload", |aad, pt| {
        gcm_encrypt(&[9u8; 16], &sealed_iv(3, 1), aad, pt)
    })
    .unwrap();
    let report = ErrorReport {
        code: 6,
        reason: "replay or duplicate".into(),
        kid: Some(dev.kid.to_vec()),
        seq: Some(7),
    }
    .to_cbor();
    let command = crate::build_envelope(
        crate::Direction::Command,
        "dev-1",
        b"\xa1\x62op\x66status",
        &dev.kid,
        &dev.public,
        &cloud.kid,
        crypto(),
        signer(&cloud.sk),
    )
    .unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for base in [&data, &session, &sealed, &report, &command] {
        parse_all(base);
        for _ in 0..2000 {
            let mut m = base.clone();
            let n = 1 + (xorshift(&mut state) % 4) as usize;
            for _ in 0..n {
                let r = xorshift(&mut state);
                match r % 4 {
                    0 => {
                        let i = (r >> 8) as usize % m.len();
                        m[i] = (r >> 32) as u8;
                    }
                    1 => {
                        let i = (r >> 8) as usize % m.len();
                        m.truncate(i);
                    }
                    2 => {
                        let i = (r >> 8) as usize % (m.len() + 1);
                        m.insert(i, (r >> 32) as u8);
                    }
                    _ => {
                        let i = (r >> 8) as usize % m.len();
                        m[i] ^= 1 << ((r >> 40) % 8);
                    }
                }
                if m.is_empty() {
                    break;
                }
            }
            parse_all(&m);
        }
    }
    // Pure random bytes too.
    for _ in 0..5000 {
        let len = (xorshift(&mut state) % 64) as usize;
        let buf: Vec<u8> = (0..len).map(|_| xorshift(&mut state) as u8).collect();
        parse_all(&buf);
    }
}

#[test]
fn deep_nesting_and_huge_lengths_are_refused_quickly() {
    // 10 000 nested arrays: refused by depth, no recursion.
    let deep = vec![0x81u8; 10_000];
    assert_eq!(parse_data(&deep), Err(Error::Cbor));
    // An array claiming 2^64-1 items, a bstr claiming 2^32 bytes.
    assert_eq!(
        parse_data(&[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
        Err(Error::Cbor)
    );
    assert_eq!(
        parse_sealed(&[0x5a, 0xff, 0xff, 0xff, 0xff, 0x00]),
        Err(Error::Cbor)
    );
    assert_eq!(
        ErrorReport::from_cbor(&[0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        Err(Error::Cbor)
    );
    // Over 64 KiB: refused before decoding.
    let big = vec![0u8; MAX_MESSAGE_LEN + 1];
    assert_eq!(parse_data(&big), Err(Error::TooLarge(MAX_MESSAGE_LEN + 1)));
    assert_eq!(
        parse_session(&big),
        Err(Error::TooLarge(MAX_MESSAGE_LEN + 1))
    );
    assert_eq!(
        parse_sealed(&big),
        Err(Error::TooLarge(MAX_MESSAGE_LEN + 1))
    );
    assert_eq!(
        ErrorReport::from_cbor(&big),
        Err(Error::TooLarge(MAX_MESSAGE_LEN + 1))
    );
}

#[test]
fn deeply_nested_protected_header_is_refused() {
    // Sign1 whose protected bstr holds 300 nested arrays.
    let mut prot = vec![0x81u8; 300];
    prot.push(0x00);
    let mut msg = vec![0xd2, 0x84, 0x59];
    msg.extend_from_slice(&(prot.len() as u16).to_be_bytes());
    msg.extend_from_slice(&prot);
    msg.extend_from_slice(&[0xa0, 0x40, 0x40]);
    assert_eq!(parse_data(&msg), Err(Error::Cbor));
}
