use super::*;
use crate::oracle::sign1;
use coset::Label;
use crate::test_crypto::*;
use coset::{CborSerializable, CoseSign1, TaggedCborSerializable};

const KEY: [u8; 16] = *b"0123456789abcdef";

fn build(dev: &KeyPair, cloud: &KeyPair, sid: u32) -> Vec<u8> {
    build_session(
        sid,
        &KEY,
        &cloud.kid,
        &cloud.public,
        &dev.kid,
        crypto(),
        signer(&dev.sk),
    )
    .unwrap()
}

#[test]
fn build_parse_verify_decrypt_round_trip() {
    let (dev, cloud) = (keypair(), keypair());
    let msg = build(&dev, &cloud, 0x0102_0304);
    assert_eq!(msg[0], 0xd2);
    let s = parse_session(&msg).unwrap();
    assert_eq!(s.device_kid, dev.kid);
    assert_eq!(s.session_id, 0x0102_0304);
    assert_eq!(s.cloud_kid, cloud.kid);
    assert_eq!(s.ephemeral[0], 0x04);
    s.verify(verifier(&dev.public)).unwrap();
    let key = s
        .decrypt(ecdh_static(&cloud.sk), hkdf_sha256, gcm_decrypt)
        .unwrap();
    assert_eq!(key, KEY);
}

#[test]
fn inner_message_has_the_profile_layout() {
    let (dev, cloud) = (keypair(), keypair());
    let msg = build(&dev, &cloud, 7);
    let outer = CoseSign1::from_tagged_slice(&msg).unwrap();
    let mut want = vec![0xa2, 0x01, 0x26, 0x04, 0x48];
    want.extend_from_slice(&dev.kid);
    assert_eq!(
        outer.protected.original_data.clone().unwrap(),
        want,
        "{{1: -7, 4: kid}}, no seq"
    );
    let inner = outer.payload.unwrap();
    assert_eq!(&inner[..2], &[0xd8, 0x60], "tag 96");
    let enc = CoseEncrypt::from_tagged_slice(&inner).unwrap();
    assert_eq!(
        enc.protected.original_data.unwrap(),
        [0xa2, 0x01, 0x01, 0x04, 0x44, 0, 0, 0, 7]
    );
    assert_eq!(enc.unprotected.iv.len(), 12);
    assert_eq!(enc.ciphertext.unwrap().len(), 32);
    let r = &enc.recipients[0];
    assert_eq!(
        r.protected.original_data.clone().unwrap(),
        [0xa1, 0x01, 0x38, 0x18]
    );
    assert_eq!(r.unprotected.key_id, cloud.kid);
    assert_eq!(r.ciphertext, Some(vec![]));
}

#[test]
fn kdf_context_bytes() {
    // [1, [nil,nil,nil], [nil,nil,nil], [128, h'A1013818']]
    let want = [
        0x84, 0x01, 0x83, 0xf6, 0xf6, 0xf6, 0x83, 0xf6, 0xf6, 0xf6, 0x82, 0x18, 0x80, 0x44, 0xa1,
        0x01, 0x38, 0x18,
    ];
    assert_eq!(kdf_context(&[0xa1, 0x01, 0x38, 0x18]), want);
}

#[test]
fn flipped_bytes_fail_verification_or_parsing() {
    let (dev, cloud) = (keypair(), keypair());
    let msg = build(&dev, &cloud, 1);
    for i in 0..msg.len() {
        let mut m = msg.clone();
        m[i] ^= 0x80;
        if let Ok(s) = parse_session(&m) {
            assert!(
                s.verify(verifier(&dev.public)).is_err(),
                "flip at {i} still verifies"
            );
        }
    }
}

/// Re-sign a modified inner COSE_Encrypt with the device key, so only the
/// AEAD can catch the change.
fn resign(dev: &KeyPair, msg: &[u8], edit: impl FnOnce(&mut CoseEncrypt)) -> Vec<u8> {
    let outer = CoseSign1::from_tagged_slice(msg).unwrap();
    let mut enc = CoseEncrypt::from_tagged_slice(&outer.payload.unwrap()).unwrap();
    edit(&mut enc);
    let inner = enc.to_tagged_vec().unwrap();
    sign1(outer.protected.header, &inner, signer(&dev.sk)).unwrap()
}

#[test]
#[allow(clippy::type_complexity)]
fn tampered_ciphertext_iv_or_session_id_fail_decryption() {
    let (dev, cloud) = (keypair(), keypair());
    let msg = build(&dev, &cloud, 1);
    let edits: Vec<Box<dyn FnOnce(&mut CoseEncrypt)>> = vec![
        Box::new(|e| e.ciphertext.as_mut().unwrap()[0] ^= 1),
        Box::new(|e| e.ciphertext.as_mut().unwrap()[31] ^= 1),
        Box::new(|e| e.unprotected.iv[0] ^= 1),
        Box::new(|e| {
            e.protected.original_data = None;
            e.protected.header.key_id = vec![0, 0, 0, 2];
        }),
    ];
    for edit in edits {
        let m = resign(&dev, &msg, edit);
        let s = parse_session(&m).unwrap();
        s.verify(verifier(&dev.public)).unwrap();
        let r = s.decrypt(ecdh_static(&cloud.sk), hkdf_sha256, gcm_decrypt);
        assert_eq!(r, Err(Error::Decrypt(CryptoError("decrypt"))));
    }
}

#[test]
fn wrong_cloud_key_fails_decryption() {
    let (dev, cloud, other) = (keypair(), keypair(), keypair());
    let s = parse_session(&build(&dev, &cloud, 1)).unwrap();
    let r = s.decrypt(ecdh_static(&other.sk), hkdf_sha256, gcm_decrypt);
    assert_eq!(r, Err(Error::Decrypt(CryptoError("decrypt"))));
}

#[test]
fn invalid_ephemeral_point_is_a_crypto_error() {
    let (dev, cloud) = (keypair(), keypair());
    let msg = build(&dev, &cloud, 1);
    let m = resign(&dev, &msg, |e| {
        let key = e.recipients[0]
            .unprotected
            .rest
            .iter_mut()
            .find(|(l, _)| *l == Label::Int(-1))
            .unwrap();
        let Value::Map(entries) = &mut key.1 else {
            panic!()
        };
        entries[3].1 = Value::Bytes(vec![0x55; 32]); // y not on the curve
    });
    let s = parse_session(&m).unwrap();
    let r = s.decrypt(ecdh_static(&cloud.sk), hkdf_sha256, gcm_decrypt);
    assert_eq!(r, Err(Error::Crypto(CryptoError("bad peer point"))));
}

#[test]
fn profile_violations_are_rejected() {
    let (dev, cloud) = (keypair(), keypair());
    let msg = build(&dev, &cloud, 1);
    let check = |edit: Box<dyn FnOnce(&mut CoseEncrypt)>, want: &'static str| {
        let m = resign(&dev, &msg, edit);
        assert_eq!(parse_session(&m), Err(Error::Profile(want)), "{want}");
    };
    let reset = |e: &mut CoseEncrypt| e.protected.original_data = None;
    check(
        Box::new(move |e| {
            reset(e);
            e.protected.header.key_id = vec![0, 1, 2];
        }),
        "session id is not a 4-byte kid",
    );
    check(
        Box::new(move |e| {
            reset(e);
            e.protected.header.alg = Some(coset::Algorithm::Assigned(iana::Algorithm::A256GCM));
        }),
        "wrong algorithm",
    );
    check(
        Box::new(|e| e.unprotected.iv = vec![0; 8]),
        "IV is not 12 bytes",
    );
    check(Box::new(|e| e.unprotected.iv = vec![]), "IV missing");
    check(
        Box::new(|e| e.ciphertext.as_mut().unwrap().push(0)),
        "ciphertext is not a 16-byte key + tag",
    );
    check(Box::new(|e| e.ciphertext = None), "ciphertext is detached");
    check(
        Box::new(|e| {
            let r = e.recipients[0].clone();
            e.recipients.push(r);
        }),
        "not exactly one recipient",
    );
    check(
        Box::new(|e| e.recipients.clear()),
        "not exactly one recipient",
    );
    check(
        Box::new(|e| e.recipients[0].unprotected.key_id = vec![1; 4]),
        "recipient kid is not 8 bytes",
    );
    check(
        Box::new(|e| e.recipients[0].unprotected.key_id = vec![]),
        "recipient kid missing",
    );
    check(
        Box::new(|e| e.recipients[0].ciphertext = Some(vec![1; 24])),
        "direct key agreement recipient has a ciphertext",
    );
    check(
        Box::new(|e| {
            let r = &mut e.recipients[0];
            r.protected.original_data = None;
            r.protected.header.alg = Some(coset::Algorithm::Assigned(
                iana::Algorithm::ECDH_ES_HKDF_512,
            ));
        }),
        "wrong algorithm",
    );
    check(
        Box::new(|e| e.recipients[0].unprotected.rest.clear()),
        "ephemeral key missing",
    );
    check(
        Box::new(|e| {
            let (_, Value::Map(m)) = &mut e.recipients[0].unprotected.rest[0] else {
                panic!()
            };
            m.push((Value::from(-4), Value::Bytes(vec![1; 32])));
        }),
        "ephemeral key carries a private key",
    );
    check(
        Box::new(|e| {
            let (_, Value::Map(m)) = &mut e.recipients[0].unprotected.rest[0] else {
                panic!()
            };
            m[1].1 = Value::from(2); // P-384
        }),
        "ephemeral key is not P-256",
    );
    check(
        Box::new(|e| {
            let (_, Value::Map(m)) = &mut e.recipients[0].unprotected.rest[0] else {
                panic!()
            };
            m[3].1 = Value::Bool(true); // compressed form
        }),
        "ephemeral key y is not a 32-byte bstr",
    );

    // Outer Sign1: seq is not allowed, kid must be 8 bytes.
    let outer = CoseSign1::from_tagged_slice(&msg).unwrap();
    let mut h = outer.protected.header.clone();
    h.rest.push((Label::Int(SEQ_LABEL), Value::from(1)));
    let m = sign1(h, outer.payload.as_ref().unwrap(), signer(&dev.sk)).unwrap();
    assert_eq!(
        parse_session(&m),
        Err(Error::Profile("seq in a session message"))
    );
    // Payload that is not a COSE_Encrypt (a data message's payload).
    let m = sign1(
        outer.protected.header.clone(),
        b"\x83\x40\xa0\x40",
        signer(&dev.sk),
    )
    .unwrap();
    assert_eq!(
        parse_session(&m),
        Err(Error::Profile("payload is not a COSE_Encrypt"))
    );
    // A data message is not a session message.
    let d = crate::sign_data(&dev.kid, 1, b"x", signer(&dev.sk)).unwrap();
    assert_eq!(
        parse_session(&d),
        Err(Error::Profile("seq in a session message"))
    );
}

#[test]
fn untagged_inner_and_outer_are_accepted() {
    let (dev, cloud) = (keypair(), keypair());
    let msg = build(&dev, &cloud, 9);
    let outer = CoseSign1::from_tagged_slice(&msg).unwrap();
    let enc = CoseEncrypt::from_tagged_slice(outer.payload.as_ref().unwrap()).unwrap();
    let untagged_inner = enc.to_vec().unwrap();
    let m = sign1(outer.protected.header, &untagged_inner, signer(&dev.sk)).unwrap();
    let s = parse_session(&m[1..]).unwrap();
    s.verify(verifier(&dev.public)).unwrap();
    assert_eq!(
        s.decrypt(ecdh_static(&cloud.sk), hkdf_sha256, gcm_decrypt)
            .unwrap(),
        KEY
    );
}

#[test]
fn crypto_closure_failures() {
    let (dev, cloud) = (keypair(), keypair());
    let r = build_session(
        1,
        &KEY,
        &cloud.kid,
        &cloud.public,
        &dev.kid,
        SessionCrypto::new(
            ecdh_ephemeral,
            hkdf_sha256,
            gcm_encrypt,
            |_: &mut [u8]| Err(CryptoError("rng broken")),
        ),
        signer(&dev.sk),
    );
    assert_eq!(r, Err(Error::Crypto(CryptoError("rng broken"))));
    let r = build_session(
        1,
        &KEY,
        &cloud.kid,
        &cloud.public,
        &dev.kid,
        SessionCrypto::new(
            ecdh_ephemeral,
            |_: &[u8], _: &[u8], _| Ok(vec![0; 15]),
            gcm_encrypt,
            random,
        ),
        signer(&dev.sk),
    );
    assert_eq!(r, Err(Error::CryptoOutput("HKDF output is not 16 bytes")));
    let r = build_session(
        1,
        &KEY,
        &cloud.kid,
        &cloud.public,
        &dev.kid,
        SessionCrypto::new(
            |_: &[u8; 65]| Ok(([2u8; 65], [0u8; 32])),
            hkdf_sha256,
            gcm_encrypt,
            random,
        ),
        signer(&dev.sk),
    );
    assert_eq!(
        r,
        Err(Error::CryptoOutput(
            "ephemeral key is not an uncompressed point"
        ))
    );
    let r = build_session(
        1,
        &KEY,
        &cloud.kid,
        &[4u8; 65],
        &dev.kid,
        crypto(),
        signer(&dev.sk),
    );
    assert_eq!(r, Err(Error::Crypto(CryptoError("bad peer point"))));
}
